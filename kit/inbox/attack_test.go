package inbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// TestIDsThatAreNotText: a producer chooses the Msg-Id, and a broker's
// JSON API takes "\u0000" in it. PostgreSQL's text column refuses NUL
// bytes and invalid UTF-8, so Process failed every delivery of such a
// message: one that could never be processed, redelivered until
// dead-lettered. Such ids are stored by digest, applied once, and stay
// distinct from each other and from their text look-alikes. And an id
// spelling another id's digest ("sha256:..." of a long id) was stored
// as it is: the long id's message was then skipped as processed.
func TestIDsThatAreNotText(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := counterTable(ctx, db); err != nil {
			t.Fatal(err)
		}
		incr := func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
			return err
		}
		want := 0
		for _, id := range []string{"a\x00b", "a\x00c", "\xff\xfe", "\xff\xfd", "a\ufffdb", "ab"} {
			for i := range 2 {
				applied, err := inbox.Process(ctx, db, "c", id, incr)
				if err != nil || applied != (i == 0) {
					t.Fatalf("delivery %d of id %q: applied %v, %v", i, id, applied, err)
				}
			}
			want++
		}
		// A producer that sends an id spelling another id's digest does
		// not get that other message skipped.
		long := strings.Repeat("x", 300)
		sum := sha256.Sum256([]byte(long))
		for _, id := range []string{"sha256:" + hex.EncodeToString(sum[:]), long} {
			if applied, err := inbox.Process(ctx, db, "c", id, incr); err != nil || !applied {
				t.Fatalf("first delivery of id %.20q..: applied %v, %v", id, applied, err)
			}
			want++
		}
		if n := counter(t, db); n != want {
			t.Fatalf("counter %d, want %d", n, want)
		}
		// The consumer name is configuration: refused, not digested.
		if _, err := inbox.Process(ctx, db, "c\x00", "m", incr); err == nil || !strings.Contains(err.Error(), "consumer name") {
			t.Fatalf("consumer name with a NUL byte: %v", err)
		}
		if _, err := inbox.New(ctx, db, inbox.Options{Consumer: "\xff"}); err == nil {
			t.Fatal("New took a consumer name that is not UTF-8")
		}
	})
}

// FuzzProcessIDs: whatever id a producer chooses (empty aside) is
// applied once and then skipped, on both databases.
func FuzzProcessIDs(f *testing.F) {
	fuzzProcessIDs(f, storetest.SQLite(f))
}

// FuzzProcessIDsPostgres is FuzzProcessIDs on PostgreSQL, whose text
// columns refuse NUL bytes and invalid UTF-8.
func FuzzProcessIDsPostgres(f *testing.F) {
	fuzzProcessIDs(f, storetest.Postgres(f))
}

func fuzzProcessIDs(f *testing.F, db *store.DB) {
	for _, s := range []string{"m-1", "a\x00b", "\xff", "sha256:00", strings.Repeat("x", 201), "'; DROP TABLE sy_inbox; --", "id:?"} {
		f.Add(s)
	}
	ctx := context.Background()
	n := 0
	f.Fuzz(func(t *testing.T, id string) {
		n++
		consumer := "c" + strconv.Itoa(n) // a fresh consumer: the id is new to it
		for i := range 2 {
			applied, err := inbox.Process(ctx, db, consumer, id, func(tx *store.Tx) error { return nil })
			if id == "" {
				if err == nil {
					t.Fatal("an empty id was taken")
				}
				return
			}
			if err != nil || applied != (i == 0) {
				t.Fatalf("delivery %d of id %q: applied %v, %v", i, id, applied, err)
			}
		}
	})
}
