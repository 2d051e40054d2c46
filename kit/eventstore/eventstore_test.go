package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

func open(t *testing.T, db *store.DB) *eventstore.Store {
	t.Helper()
	s, err := eventstore.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ev(t testing.TB, typ string, data any) eventstore.Event {
	e, err := eventstore.NewEvent(typ, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAppendAndRead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := open(t, db)
		// Opening twice (a second replica) is harmless.
		open(t, db)

		e1 := ev(t, "Requested", map[string]int{"fare": 10})
		e1.CausationID, e1.CorrelationID = "cmd-1", "req-1"
		e1.Metadata = map[string]string{"user": "ann"}
		v, err := s.Append(ctx, "ride-1", eventstore.NoStream, e1, ev(t, "Accepted", nil))
		if err != nil || v != 2 {
			t.Fatalf("first append: version %d, %v", v, err)
		}
		_, err = s.Append(ctx, "ride-1", eventstore.NoStream, ev(t, "Requested", nil))
		var ce *eventstore.ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, eventstore.ErrConflict) || ce.Actual != 2 || ce.Stream != "ride-1" || ce.Expected != eventstore.NoStream {
			t.Fatalf("NoStream on an existing stream: %v", err)
		}
		_, err = s.Append(ctx, "ride-1", 1, ev(t, "Started", nil))
		if !errors.As(err, &ce) || ce.Actual != 2 || ce.Expected != 1 {
			t.Fatalf("stale expected version: %v", err)
		}
		_, err = s.Append(ctx, "ride-9", 3, ev(t, "Started", nil))
		if !errors.As(err, &ce) || ce.Actual != 0 {
			t.Fatalf("exact version on a missing stream: %v", err)
		}
		if v, err = s.Append(ctx, "ride-1", 2, ev(t, "Started", nil)); err != nil || v != 3 {
			t.Fatalf("exact append: %d %v", v, err)
		}
		if v, err = s.Append(ctx, "ride-2", eventstore.Any, ev(t, "Requested", nil)); err != nil || v != 1 {
			t.Fatalf("Any on a new stream: %d %v", v, err)
		}
		if v, err = s.Append(ctx, "ride-1", eventstore.Any, ev(t, "Finished", nil)); err != nil || v != 4 {
			t.Fatalf("Any on an existing stream: %d %v", v, err)
		}

		got, err := s.ReadStream(ctx, "ride-1", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for i, e := range got {
			types = append(types, e.Type)
			if e.Version != int64(i+1) || e.Stream != "ride-1" || e.ID == "" || e.Time.IsZero() {
				t.Errorf("event %d: %+v", i, e)
			}
		}
		if fmt.Sprint(types) != "[Requested Accepted Started Finished]" {
			t.Fatalf("stream: %v", types)
		}
		if e := got[0]; e.CausationID != "cmd-1" || e.CorrelationID != "req-1" || e.Metadata["user"] != "ann" || string(e.Data) != `{"fare":10}` || e.SchemaVersion != 1 {
			t.Fatalf("first event lost fields: %+v", e)
		}
		if got[1].Metadata != nil || string(got[1].Data) != "null" {
			t.Fatalf("second event: %+v", got[1])
		}
		from3, _ := s.ReadStream(ctx, "ride-1", 3, 1)
		if len(from3) != 1 || from3[0].Type != "Started" {
			t.Fatalf("ReadStream from 3 limit 1: %+v", from3)
		}

		all, err := readAllVisible(ctx, s, 0, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 5 {
			t.Fatalf("ReadAll: %d events", len(all))
		}
		checkPositions(t, db, all)
		if all[3].Stream != "ride-2" {
			t.Fatalf("global order: %+v", all[3])
		}
		rest, _ := s.ReadAll(ctx, all[2].Position, 10)
		if len(rest) != 2 || rest[0].Position != all[3].Position {
			t.Fatalf("ReadAll after %d: %+v", all[2].Position, rest)
		}
		head, at, err := s.Head(ctx)
		if err != nil || head != all[4].Position || at.IsZero() {
			t.Fatalf("Head = %d %v %v", head, at, err)
		}
		if v, _ := s.StreamVersion(ctx, "ride-1"); v != 4 {
			t.Fatalf("StreamVersion = %d", v)
		}

		// Bad input is refused before anything is written.
		if _, err := s.Append(ctx, "", eventstore.Any, ev(t, "X", nil)); err == nil {
			t.Error("empty stream accepted")
		}
		if _, err := s.Append(ctx, "s", eventstore.Any, eventstore.Event{}); err == nil {
			t.Error("event without type accepted")
		}
		if _, err := s.Append(ctx, "s", eventstore.Any, eventstore.Event{Type: "X", Data: json.RawMessage("{nope")}); err == nil {
			t.Error("invalid JSON accepted")
		}
		if _, err := s.Append(ctx, "s", -5, ev(t, "X", nil)); err == nil {
			t.Error("expected version -5 accepted")
		}
		dup := ev(t, "X", nil)
		dup.ID = got[0].ID
		if _, err := s.Append(ctx, "s", eventstore.Any, dup); err == nil {
			t.Error("duplicate event id accepted")
		}
		if head2, _, _ := s.Head(ctx); head2 != head {
			t.Fatalf("refused appends moved the head to %d", head2)
		}
	})
}

// AppendTx commits or rolls back with the caller's other writes.
func TestAppendTxAtomic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := open(t, db)
		if _, err := db.Exec(ctx, "CREATE TABLE outbox (id TEXT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := s.AppendTx(ctx, tx, "acct-1", eventstore.NoStream, ev(t, "Opened", nil)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO outbox (id) VALUES (?)", "m1"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if v, _ := s.StreamVersion(ctx, "acct-1"); v != 0 {
			t.Fatalf("rolled-back append left version %d", v)
		}
		if h, _, _ := s.Head(ctx); h != 0 {
			t.Fatalf("rolled-back append left head %d", h)
		}
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := s.AppendTx(ctx, tx, "acct-1", eventstore.NoStream, ev(t, "Opened", nil)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO outbox (id) VALUES (?)", "m1")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox").Scan(&n)
		all, _ := readAllVisible(ctx, s, 0, 1)
		if n != 1 || len(all) != 1 || all[0].Position <= 0 {
			t.Fatalf("outbox %d rows, events %+v", n, all)
		}
	})
}

// Concurrent appenders (some of whose transactions roll back, and each of
// which holds its transaction open for a random while after appending,
// so that commits land out of the order the appends began) and a
// concurrent reader: the reader must see every committed event exactly
// once, positions growing (on SQLite 1, 2, 3, ... with no gap), and each
// stream's events in version order, even though appends commit in an
// order nobody controls. A reader that skipped a late commit would miss
// its events for good (it reads after its checkpoint).
func TestGlobalOrderConcurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s := open(t, db)
		const writers, appends = 6, 25
		var committed sync.Map // id -> true
		var nCommitted atomic.Int64
		var wg sync.WaitGroup
		done := make(chan struct{})
		errs := make(chan error, writers+1)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 7))
				for i := range appends {
					n := 1 + r.IntN(3)
					evs := make([]eventstore.Event, n)
					for j := range evs {
						evs[j] = eventstore.Event{ID: eventstore.NewID(), Type: "Tick", Data: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))}
					}
					rollback := r.IntN(5) == 0
					hold := time.Duration(r.IntN(8)) * time.Millisecond
					stream := fmt.Sprintf("s-%d", r.IntN(writers)) // shared between writers
					err := db.InTx(ctx, func(tx *store.Tx) error {
						if _, err := s.AppendTx(ctx, tx, stream, eventstore.Any, evs...); err != nil {
							return err
						}
						// The commit comes late, on purpose: the scenario.
						time.Sleep(hold)
						if rollback {
							return errRollback
						}
						return nil
					})
					if rollback && errors.Is(err, errRollback) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					for _, e := range evs {
						committed.Store(e.ID, true)
					}
					nCommitted.Add(int64(n))
				}
			}()
		}
		seen := map[string]bool{}
		versions := map[string]int64{}
		var last int64
		reader := make(chan struct{})
		go func() {
			defer close(reader)
			finished := false
			for {
				evs, err := s.ReadAll(ctx, last, 50)
				if err != nil {
					errs <- err
					return
				}
				for _, e := range evs {
					if db.Dialect == store.SQLite && e.Position != last+1 {
						errs <- fmt.Errorf("reader after %d got position %d: a gap", last, e.Position)
						return
					}
					if e.Position <= last {
						errs <- fmt.Errorf("reader after %d got position %d: going back", last, e.Position)
						return
					}
					if seen[e.ID] {
						errs <- fmt.Errorf("event %s seen twice", e.ID)
						return
					}
					if e.Version != versions[e.Stream]+1 {
						errs <- fmt.Errorf("stream %s: version %d after %d", e.Stream, e.Version, versions[e.Stream])
						return
					}
					versions[e.Stream] = e.Version
					seen[e.ID] = true
					last = e.Position
				}
				if len(evs) == 0 {
					if finished {
						return
					}
					select {
					case <-done:
						finished = true // one more read after the last commit
					case <-time.After(time.Millisecond): // poll, without spinning
					}
				}
			}
		}()
		wg.Wait()
		close(done)
		<-reader
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if int64(len(seen)) != nCommitted.Load() {
			t.Fatalf("reader saw %d events, %d committed", len(seen), nCommitted.Load())
		}
		committed.Range(func(k, _ any) bool {
			if !seen[k.(string)] {
				t.Errorf("committed event %s never seen", k)
			}
			return true
		})
	})
}

var errRollback = errors.New("roll back on purpose")

// checkPositions checks that evs, read in global order, have growing
// positions: 1, 2, 3, ... on SQLite.
func checkPositions(t *testing.T, db *store.DB, evs []eventstore.Event) {
	t.Helper()
	var last int64
	for i, e := range evs {
		if e.Position <= last || (db.Dialect == store.SQLite && e.Position != int64(i+1)) {
			t.Fatalf("position %d at index %d after %d", e.Position, i, last)
		}
		last = e.Position
	}
}

// Two writers load the same aggregate; only one save wins.
func TestConcurrentWritersConflict(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := open(t, db)
		if _, err := s.Append(ctx, "acct-1", eventstore.NoStream, ev(t, "Opened", nil)); err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Append(ctx, "acct-1", 1, ev(t, "Deposited", nil))
				if err == nil {
					wins.Add(1)
				} else if !errors.Is(err, eventstore.ErrConflict) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d writers won at version 1", wins.Load())
		}
		if v, _ := s.StreamVersion(ctx, "acct-1"); v != 2 {
			t.Fatalf("version %d", v)
		}
	})
}

func TestSubscribe(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s := open(t, db)
		// No polling to speak of: new events must arrive by wake-up.
		s.PollInterval = time.Hour
		for i := range 3 {
			if _, err := s.Append(ctx, "old", eventstore.Any, ev(t, "Old", i)); err != nil {
				t.Fatal(err)
			}
		}
		old, err := readAllVisible(ctx, s, 0, 3)
		if err != nil || len(old) != 3 {
			t.Fatalf("ReadAll: %d events, %v", len(old), err)
		}
		got := make(chan eventstore.Event, 100)
		sctx, stop := context.WithCancel(ctx)
		subDone := make(chan error, 1)
		go func() {
			subDone <- s.Subscribe(sctx, old[0].Position, func(_ context.Context, e eventstore.Event) error {
				got <- e
				return nil
			})
		}()
		next := func() eventstore.Event {
			select {
			case e := <-got:
				return e
			case <-ctx.Done():
				t.Fatal("timed out waiting for an event")
				return eventstore.Event{}
			}
		}
		for _, want := range old[1:] {
			if e := next(); e.Position != want.Position {
				t.Fatalf("catch-up: position %d, want %d", e.Position, want.Position)
			}
		}
		last := old[2].Position
		for i := range 5 {
			e := ev(t, "New", i)
			if _, err := s.Append(ctx, "new", eventstore.Any, e); err != nil {
				t.Fatal(err)
			}
			if got := next(); got.Position <= last || got.Type != "New" || got.Version != int64(i+1) {
				t.Fatalf("live: %+v after position %d", got, last)
			} else {
				last = got.Position
			}
		}
		stop()
		if err := <-subDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe returned %v", err)
		}
		// A handler error ends the subscription with that error.
		boom := errors.New("boom")
		err = s.Subscribe(ctx, 0, func(context.Context, eventstore.Event) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Subscribe with failing handler: %v", err)
		}
	})
}

func TestUpcast(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := open(t, db)
		old := eventstore.Event{Type: "RideRequested", SchemaVersion: 1, Data: json.RawMessage(`{"from":"A","to":"B"}`)}
		cur := eventstore.Event{Type: "RideRequested", SchemaVersion: 3, Data: json.RawMessage(`{"route":{"from":"C","to":"D"},"seats":2}`)}
		if _, err := s.Append(ctx, "ride-1", eventstore.NoStream, old, cur); err != nil {
			t.Fatal(err)
		}
		// v1 -> v2: nest from/to under route. v2 -> v3: add seats = 1.
		s.Upcast("RideRequested", 1, func(e eventstore.Event) (eventstore.Event, error) {
			var v1 struct{ From, To string }
			if err := e.Decode(&v1); err != nil {
				return e, err
			}
			e.Data, _ = json.Marshal(map[string]any{"route": map[string]string{"from": v1.From, "to": v1.To}})
			e.SchemaVersion = 2
			return e, nil
		})
		s.Upcast("RideRequested", 2, func(e eventstore.Event) (eventstore.Event, error) {
			var m map[string]any
			if err := e.Decode(&m); err != nil {
				return e, err
			}
			m["seats"] = 1
			e.Data, _ = json.Marshal(m)
			e.SchemaVersion = 3
			return e, nil
		})
		got, err := s.ReadStream(ctx, "ride-1", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].SchemaVersion != 3 || string(got[0].Data) != `{"route":{"from":"A","to":"B"},"seats":1}` || got[0].Version != 1 || got[0].Position <= 0 {
			t.Fatalf("upcast v1: %+v %s", got[0], got[0].Data)
		}
		if string(got[1].Data) != string(cur.Data) {
			t.Fatalf("current shape changed: %s", got[1].Data)
		}
		all, _ := readAllVisible(ctx, s, 0, 1)
		if all[0].SchemaVersion != 3 {
			t.Fatalf("ReadAll does not upcast: %+v", all[0])
		}
		// An upcaster that does not move forward is an error, not a loop.
		s.Upcast("Loop", 1, func(e eventstore.Event) (eventstore.Event, error) { return e, nil })
		s.Append(ctx, "loop", eventstore.Any, eventstore.Event{Type: "Loop"})
		if _, err := s.ReadStream(ctx, "loop", 1, 0); err == nil {
			t.Fatal("upcaster returning the same version accepted")
		}
		s.Upcast("Ping", 1, func(e eventstore.Event) (eventstore.Event, error) { e.Type = "Pong"; return e, nil })
		s.Upcast("Pong", 1, func(e eventstore.Event) (eventstore.Event, error) { e.Type = "Ping"; return e, nil })
		s.Append(ctx, "ping", eventstore.Any, eventstore.Event{Type: "Ping"})
		if _, err := s.ReadStream(ctx, "ping", 1, 0); err == nil {
			t.Fatal("cycle of upcasters accepted")
		}
	})
}

type account struct {
	Balance int64 `json:"balance"`
	Ops     int   `json:"ops"`
}

func applyAccount(st account, e eventstore.Event) (account, error) {
	var amt struct{ Amount int64 }
	if err := e.Decode(&amt); err != nil {
		return st, err
	}
	switch e.Type {
	case "Deposited":
		st.Balance += amt.Amount
	case "Withdrawn":
		if st.Balance < amt.Amount {
			return st, fmt.Errorf("insufficient funds: balance %d, withdrawing %d", st.Balance, amt.Amount)
		}
		st.Balance -= amt.Amount
	default:
		return st, fmt.Errorf("unknown event %s", e.Type)
	}
	st.Ops++
	return st, nil
}

func TestAggregateSnapshots(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := open(t, db)
		agg := &eventstore.Aggregate[account]{Store: s, Category: "acct", Apply: applyAccount, SnapshotEvery: 10}
		r, err := agg.Load(ctx, "1")
		if err != nil || r.Version != 0 {
			t.Fatalf("empty load: %+v %v", r, err)
		}
		// 25 deposits of 1..25 in saves of 3 and 4 events.
		amount := int64(0)
		for r.Version < 25 {
			for range min(3+int(r.Version)%2, 25-int(r.Version)) {
				amount++
				if err := agg.Record(r, "Deposited", map[string]int64{"amount": amount}); err != nil {
					t.Fatal(err)
				}
			}
			if err := agg.Save(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		want := account{Balance: 25 * 26 / 2, Ops: 25}
		if err := agg.Record(r, "Withdrawn", map[string]int64{"amount": 1 << 40}); err == nil || len(r.Pending) != 0 {
			t.Fatalf("a refused event was queued: %v %d", err, len(r.Pending))
		}
		l, err := agg.Load(ctx, "1")
		if err != nil {
			t.Fatal(err)
		}
		snap, ok, _ := s.LoadSnapshot(ctx, "acct-1")
		if !ok || snap.Version < 20 || snap.Version > 25 {
			t.Fatalf("snapshot: %+v %v", snap, ok)
		}
		if l.State != want || l.Version != 25 || l.Replayed != int(25-snap.Version) {
			t.Fatalf("load: %+v (snapshot at %d)", l, snap.Version)
		}
		// On demand: nothing left to replay.
		if err := agg.Snapshot(ctx, l); err != nil {
			t.Fatal(err)
		}
		if l2, _ := agg.Load(ctx, "1"); l2.Replayed != 0 || l2.State != want {
			t.Fatalf("after on-demand snapshot: %+v", l2)
		}
		// A new state shape ignores old snapshots and replays everything.
		agg2 := *agg
		agg2.SnapshotSchema = 2
		if l3, _ := agg2.Load(ctx, "1"); l3.Replayed != 25 || l3.State != want {
			t.Fatalf("other snapshot schema: %+v", l3)
		}
		// A stale root loses to a fresh save.
		a, _ := agg.Load(ctx, "1")
		b, _ := agg.Load(ctx, "1")
		agg.Record(a, "Deposited", map[string]int64{"amount": 1})
		agg.Record(b, "Withdrawn", map[string]int64{"amount": 1})
		if err := agg.Save(ctx, a); err != nil {
			t.Fatal(err)
		}
		var ce *eventstore.ConflictError
		if err := agg.Save(ctx, b); !errors.As(err, &ce) || ce.Actual != 26 {
			t.Fatalf("stale save: %v", err)
		}
		if err := agg.Snapshot(ctx, b); err == nil {
			t.Fatal("snapshot with pending events accepted")
		}
	})
}

// readAllVisible reads every event after from once at least want are
// visible. On PostgreSQL, ReadAll stops below the oldest transaction
// running anywhere on the server (so that no reader skips a late
// commit): another package's test holding a transaction open makes
// events appended and committed here invisible for that long.
func readAllVisible(ctx context.Context, s *eventstore.Store, from int64, want int) ([]eventstore.Event, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, err := s.ReadAll(ctx, from, 0)
		if err != nil || len(all) >= want || time.Now().After(deadline) {
			return all, err
		}
		time.Sleep(5 * time.Millisecond) // poll interval inside a deadline loop
	}
}
