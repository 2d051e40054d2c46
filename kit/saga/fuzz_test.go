package saga_test

import (
	"bytes"
	"context"
	"testing"
	"unicode/utf8"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// FuzzDeliver hands arbitrary replies to a waiting saga: text is stored
// exactly as given, anything else is refused with an error, never
// stored mangled.
func FuzzDeliver(f *testing.F) {
	for _, s := range []string{`{"ok":true}`, "", "\x00", "\xff\xfe", "naïve ☃", "'; DROP TABLE sy_sagas; --"} {
		f.Add([]byte(s))
	}
	db := storetest.SQLite(f)
	ctx := context.Background()
	noop := func(ctx context.Context, sc *saga.StepContext) error { return nil }
	def := &saga.Definition{Name: "fuzz", Steps: []saga.Step{{Name: "ask", Action: noop,
		OnReply: func(ctx context.Context, sc *saga.StepContext, reply []byte) error { return nil }}}}
	if err := saga.Migrate(ctx, db); err != nil {
		f.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *store.Tx) error { return saga.Start(ctx, tx, def, "s", nil) }); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		var ok bool
		err := db.InTx(ctx, func(tx *store.Tx) (err error) {
			ok, err = saga.Deliver(ctx, tx, "s", "ask", reply)
			return err
		})
		text := utf8.Valid(reply) && !bytes.Contains(reply, []byte{0})
		if !text {
			if err == nil {
				t.Fatalf("Deliver(%q) accepted a reply that is not text", reply)
			}
			return
		}
		if err != nil || !ok {
			t.Fatalf("Deliver(%q) = %v, %v", reply, ok, err)
		}
		var got string
		if err := db.QueryRow(ctx, "SELECT reply FROM sy_sagas WHERE id = 's'").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != string(reply) {
			t.Fatalf("stored %q, delivered %q", got, reply)
		}
	})
}
