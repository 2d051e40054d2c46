package eventstore_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// TestRefusedAlikeOnBothDialects: JSON data with invalid UTF-8 inside a
// string (json.Valid takes it), a snapshot of a stream name with a NUL
// byte, and a stream name or event id of several KiB of incompressible
// text were stored on SQLite and refused by PostgreSQL (text encoding,
// the 2.7 KB index entry limit) with the database's own error: the same
// service behaved differently on the two. Both refuse them now, with an
// error that says what is wrong, and store nothing.
func TestRefusedAlikeOnBothDialects(t *testing.T) {
	var b strings.Builder // incompressible, as PostgreSQL would compress a repeated one
	for i := 0; b.Len() < 4<<10; i++ {
		b.WriteString(strconv.FormatUint(uint64(i)*0x9e3779b97f4a7c15>>40, 36))
	}
	long := b.String()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		es, err := eventstore.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]struct {
			stream string
			e      eventstore.Event
			want   string
		}{
			"data with invalid UTF-8": {"s1", eventstore.Event{Type: "T", Data: json.RawMessage("\"\xff\"")}, "UTF-8"},
			"a long stream name":      {long, eventstore.Event{Type: "T"}, "at most 1000 bytes"},
			"a long event id":         {"s2", eventstore.Event{Type: "T", ID: long}, "at most 1000"},
		} {
			for _, expected := range []eventstore.Expected{eventstore.Any, eventstore.NoStream} {
				if _, err := es.Append(ctx, c.stream, expected, c.e); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s (expected %d): %v; want an error saying %q", name, expected, err, c.want)
				}
			}
		}
		for name, snap := range map[string]eventstore.Snapshot{
			"data with invalid UTF-8": {Stream: "s3", Version: 1, Data: json.RawMessage("\"\xff\"")},
			"a NUL in the stream":     {Stream: "s\x00", Version: 1, Data: json.RawMessage("1")},
			"a long stream name":      {Stream: long, Version: 1, Data: json.RawMessage("1")},
		} {
			if err := es.SaveSnapshot(ctx, snap); err == nil || !strings.Contains(err.Error(), "UTF-8") {
				t.Errorf("snapshot with %s: %v", name, err)
			}
		}
		if n, err := es.CountAfter(ctx, 0); err != nil || n != 0 {
			t.Fatalf("%d events stored (%v), want none", n, err)
		}
	})
}

// TestCategoriesDoNotOverlap: the stream of an aggregate is Category +
// "-" + id, so categories "acct" and "acct-old" shared streams: id
// "old-1" of the one was id "1" of the other, and a caller choosing ids
// loaded (and appended to) the other category's aggregate. A category
// with '-' is refused.
func TestCategoriesDoNotOverlap(t *testing.T) {
	es, err := eventstore.Open(context.Background(), storetest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	apply := func(n int, e eventstore.Event) (int, error) { return n + 1, nil }
	for _, cat := range []string{"acct-old", ""} {
		a := &eventstore.Aggregate[int]{Store: es, Category: cat, Apply: apply}
		if _, err := a.Load(context.Background(), "1"); err == nil || !strings.Contains(err.Error(), "category") {
			t.Errorf("category %q: Load: %v", cat, err)
		}
		r := &eventstore.Root[int]{ID: "1"}
		if err := a.Record(r, "Opened", nil); err != nil {
			t.Fatal(err)
		}
		if err := a.Save(context.Background(), r); err == nil || !strings.Contains(err.Error(), "category") {
			t.Errorf("category %q: Save: %v", cat, err)
		}
	}
}
