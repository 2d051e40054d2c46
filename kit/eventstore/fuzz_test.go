package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// Whatever a caller passes as stream, type, metadata and data either is
// refused with an error or reads back exactly as written.
func FuzzAppendRoundTrip(f *testing.F) {
	f.Add("ride-1", "Requested", "k", "v", []byte(`{"a":1}`), int64(-1))
	f.Add("", "", "", "", []byte(`nope`), int64(0))
	f.Add("s'; DROP TABLE sy_events; --", "T?", "?", "$1", []byte(`"\u0000"`), int64(3))
	f.Add("ü\x00", "\xff", "\x00", "x", []byte(`[1,2,{"b":null}]`), int64(-7))
	f.Add("ride-2", "T", "k", "\xff", []byte(`1`), int64(-1))
	f.Add("ride-3", "T", "k\x00", "v", []byte(`{}`), int64(0))
	fuzzAppend(f, storetest.SQLite(f))
}

// FuzzAppendRoundTripPostgres is FuzzAppendRoundTrip on PostgreSQL,
// whose single-stream append is one generated statement of its own.
func FuzzAppendRoundTripPostgres(f *testing.F) {
	f.Add("ride-1", "Requested", "k", "v", []byte(`{"a":1}`), int64(-1))
	f.Add("s'; DROP TABLE sy_events; --", "T?", "?", "$1", []byte(`"\u0000"`), int64(3))
	f.Add("ü\x00", "\xff", "\x00", "x", []byte(`[1,2,{"b":null}]`), int64(-7))
	f.Add("ride-3", "T", "k", "v", []byte(`{}`), int64(0))
	fuzzAppend(f, storetest.Postgres(f))
}

func fuzzAppend(f *testing.F, db *store.DB) {
	es, err := eventstore.Open(context.Background(), db)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stream, typ, mk, mv string, data []byte, expected int64) {
		ctx := context.Background()
		e := eventstore.Event{Type: typ, Data: json.RawMessage(data), Metadata: map[string]string{mk: mv}}
		before, _ := es.StreamVersion(ctx, stream)
		v, err := es.Append(ctx, stream, eventstore.Expected(expected), e)
		if err != nil {
			after, _ := es.StreamVersion(ctx, stream)
			if after != before {
				t.Fatalf("a refused append (%v) moved %q from %d to %d", err, stream, before, after)
			}
			var ce *eventstore.ConflictError
			if errors.As(err, &ce) && ce.Actual != before {
				t.Fatalf("conflict says actual %d, stream is at %d", ce.Actual, before)
			}
			return
		}
		got, err := es.ReadStream(ctx, stream, v, 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("read back %q v%d: %v %v", stream, v, got, err)
		}
		g := got[0]
		if g.Stream != stream || g.Type != typ || g.Metadata[mk] != mv || g.ID != e.ID && e.ID != "" {
			t.Fatalf("round trip changed the event: %+v", g)
		}
		if len(data) > 0 && !jsonEqual(g.Data, data) {
			t.Fatalf("data %q read back as %q", data, g.Data)
		}
	})
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
