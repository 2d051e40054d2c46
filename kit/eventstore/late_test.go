package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// On PostgreSQL appenders do not wait for each other, so a later append
// can commit while an earlier one is still open. Readers must not see the
// later one until the earlier one has ended (or they would move their
// checkpoint past it and skip it for good), and then both, the earlier
// first. (SQLite runs one writer at a time: the scenario cannot happen.)
func TestLateCommitNotSkipped(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := open(t, db)
	if _, err := s.Append(ctx, "before", eventstore.NoStream, ev(t, "Before", nil)); err != nil {
		t.Fatal(err)
	}
	before, err := readAllVisible(ctx, s, 0, 1) // another package's open transaction may hold it back a moment
	if err != nil || len(before) != 1 {
		t.Fatalf("ReadAll: %+v %v", before, err)
	}
	checkpoint := before[0].Position

	// A subscriber, which must get the events in the same order as the
	// reads below, each once, without waiting for its hour-long poll.
	s.PollInterval = time.Hour
	got := make(chan eventstore.Event, 10)
	sctx, stopSub := context.WithCancel(ctx)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		s.Subscribe(sctx, checkpoint, func(_ context.Context, e eventstore.Event) error { got <- e; return nil })
	}()
	defer func() { stopSub(); <-subDone }()

	appended := make(chan error, 1)
	release := make(chan struct{})
	early := make(chan error, 1)
	go func() {
		early <- db.InTx(ctx, func(tx *store.Tx) error {
			_, err := s.AppendTx(ctx, tx, "early", eventstore.NoStream, ev(t, "Early", nil))
			appended <- err
			<-release // the commit comes late
			return err
		})
	}()
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "late", eventstore.NoStream, ev(t, "Late", nil)); err != nil {
		t.Fatal(err)
	}
	// "late" has committed; "early" has not. Nothing after the checkpoint
	// may be read yet, however often the reader looks.
	for range 5 {
		evs, err := s.ReadAll(ctx, checkpoint, 0)
		if err != nil || len(evs) != 0 {
			close(release)
			t.Fatalf("read %+v (%v) while an older append was still open", evs, err)
		}
		if h, _, err := s.Head(ctx); err != nil || h != checkpoint {
			close(release)
			t.Fatalf("Head = %d (%v) while an older append was still open, want %d", h, err, checkpoint)
		}
	}
	select {
	case e := <-got:
		close(release)
		t.Fatalf("subscriber got %+v while an older append was still open", e)
	default:
	}
	close(release)
	if err := <-early; err != nil {
		t.Fatal(err)
	}
	evs, err := s.ReadAll(ctx, checkpoint, 0)
	if err != nil || len(evs) != 2 || evs[0].Type != "Early" || evs[1].Type != "Late" || evs[1].Position <= evs[0].Position {
		t.Fatalf("after the older append committed: %+v %v", evs, err)
	}
	// The subscriber learns of it without a wake-up for "early" being
	// needed first (its own notification may come before or after).
	for _, want := range evs {
		select {
		case e := <-got:
			if e.ID != want.ID || e.Position != want.Position {
				t.Fatalf("subscriber got %s at %d, want %s at %d", e.Type, e.Position, want.Type, want.Position)
			}
		case <-ctx.Done():
			t.Fatalf("subscriber never got %s", want.Type)
		}
	}
}

// A transaction that got its id before it reached a stream whose last
// append came from a younger transaction would put its events before
// that stream's earlier ones in the global order. It fails with a
// serialization failure instead, which InTx retries with a new id.
func TestOlderTransactionRetried(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := open(t, db)
	attempts := 0
	var firstErr error
	err := db.InTx(ctx, func(tx *store.Tx) error {
		attempts++
		// Take a transaction id now, before the stream is reached.
		var xid string
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
			return err
		}
		if attempts == 1 {
			// A younger transaction appends to the stream and commits.
			if _, err := s.Append(ctx, "acct", eventstore.NoStream, ev(t, "Opened", nil)); err != nil {
				return err
			}
		}
		_, err := s.AppendTx(ctx, tx, "acct", eventstore.Any, ev(t, "Deposited", nil))
		if attempts == 1 {
			firstErr = err
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 || !store.IsRetryable(firstErr) {
		t.Fatalf("%d attempts, first error %v; want a retryable error, then success", attempts, firstErr)
	}
	all, err := readAllVisible(ctx, s, 0, 2)
	if err != nil || len(all) != 2 || all[0].Type != "Opened" || all[0].Version != 1 || all[1].Type != "Deposited" || all[1].Version != 2 {
		t.Fatalf("global order: %+v %v", all, err)
	}
}

// Several appends in one PostgreSQL transaction number their events on
// from each other: one transaction id, positions in append order.
func TestSeveralAppendsInOneTransaction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := open(t, db)
		var evs [][]eventstore.Event
		err := db.InTx(ctx, func(tx *store.Tx) error {
			evs = nil
			for i, n := range []int{1, 3, 2} {
				b := make([]eventstore.Event, n)
				for j := range b {
					b[j] = ev(t, "E", j)
				}
				if _, err := s.AppendTx(ctx, tx, []string{"a", "b", "a"}[i], eventstore.Any, b...); err != nil {
					return err
				}
				evs = append(evs, b)
			}
			// And a multi-stream append after them.
			m := []eventstore.StreamAppend{{Stream: "c", Expected: eventstore.NoStream, Events: []eventstore.Event{ev(t, "E", 0)}},
				{Stream: "b", Expected: 3, Events: []eventstore.Event{ev(t, "E", 1), ev(t, "E", 2)}}}
			if err := s.AppendManyTx(ctx, tx, m); err != nil {
				return err
			}
			evs = append(evs, m[0].Events, m[1].Events)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []eventstore.Event
		for _, b := range evs {
			want = append(want, b...)
		}
		all, err := readAllVisible(ctx, s, 0, len(want))
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Fatalf("read %d events, appended %d", len(all), len(want))
		}
		checkPositions(t, db, all)
		for i := range all {
			if all[i].ID != want[i].ID || all[i].Position != want[i].Position || all[i].Version != want[i].Version {
				t.Fatalf("event %d: read %s %s v%d at %d, appended %s %s v%d at %d", i, all[i].ID, all[i].Stream, all[i].Version, all[i].Position,
					want[i].ID, want[i].Stream, want[i].Version, want[i].Position)
			}
		}
		if db.Dialect == store.Postgres && all[len(all)-1].Position-all[0].Position != int64(len(all)-1) {
			t.Fatalf("one transaction's positions %d..%d: want consecutive", all[0].Position, all[len(all)-1].Position)
		}
	})
}

// A PostgreSQL transaction has 65,535 positions; the append that would
// pass them fails with an error saying so (and nothing of it is stored).
func TestTransactionPositionsRunOut(t *testing.T) {
	db := storetest.Postgres(t)
	ctx := context.Background()
	s := open(t, db)
	for _, multi := range []bool{false, true} {
		err := db.InTx(ctx, func(tx *store.Tx) error {
			// Use up the transaction's range but one position, by hand.
			if _, err := tx.Exec(ctx, `INSERT INTO sy_events (position, stream, version, id, type, schema_version, data, created_ms)
				VALUES ((pg_current_xact_id()::text::bigint << 16) + 65534, 'filler', 1, 'filler', 'F', 1, 'null', 0)`); err != nil {
				return err
			}
			if _, err := s.AppendTx(ctx, tx, "x", eventstore.Any, ev(t, "Last", nil)); err != nil {
				return fmt.Errorf("the last position: %w", err)
			}
			if multi {
				return s.AppendManyTx(ctx, tx, []eventstore.StreamAppend{{Stream: "y", Expected: eventstore.Any, Events: []eventstore.Event{ev(t, "Over", nil)}},
					{Stream: "z", Expected: eventstore.Any, Events: []eventstore.Event{ev(t, "Over", nil)}}})
			}
			_, err := s.AppendTx(ctx, tx, "x", eventstore.Any, ev(t, "Over", nil))
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "at most 65535 per transaction") {
			t.Fatalf("multi=%v: past the last position: %v", multi, err)
		}
	}
	if all, err := s.ReadAll(ctx, 0, 0); err != nil || len(all) != 0 {
		t.Fatalf("after the refused transactions: %+v %v", all, err)
	}
}

// A refused append (here: its transaction is older than the stream's
// last appender) fails the statement itself, so the caller's
// transaction is aborted: a caller that ignores the error cannot commit
// the stream's advanced version without its events.
func TestRefusedAppendAbortsTransaction(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := open(t, db)
	var appendErr error
	err := db.InTx(ctx, func(tx *store.Tx) error {
		var xid string
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
			return err
		}
		if _, err := s.Append(ctx, "acct", eventstore.NoStream, ev(t, "Opened", nil)); err != nil {
			return err
		}
		_, appendErr = s.AppendTx(ctx, tx, "acct", eventstore.Any, ev(t, "Deposited", nil))
		return nil // ignores the error and tries to commit
	})
	if !store.IsRetryable(appendErr) {
		t.Fatalf("AppendTx in the older transaction: %v; want a serialization failure", appendErr)
	}
	if err == nil {
		t.Fatal("the transaction whose append was refused committed")
	}
	if v, err := s.StreamVersion(ctx, "acct"); err != nil || v != 1 {
		t.Fatalf("stream version %d (%v), want 1", v, err)
	}
	if all, err := readAllVisible(ctx, s, 0, 1); err != nil || len(all) != 1 {
		t.Fatalf("ReadAll: %+v %v", all, err)
	}
}

// On PostgreSQL a conflict is the insert of a version that exists (there
// is no stream row to lock): an append racing one still open waits for
// it on the (stream, version) index, then takes none of the versions the
// winner took. Here the winner (2 events) is still open when the loser
// (3 events) starts, so the loser's third version is free: it must not
// be inserted alone. With an exact expected version the loser gets a
// conflict with the winner's version; with Any it appends after it.
func TestRacingAppendTakesAllOrNothing(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := open(t, db)
	three := func() []eventstore.Event {
		return []eventstore.Event{ev(t, "L", nil), ev(t, "L", nil), ev(t, "L", nil)}
	}
	for _, tc := range []struct {
		name     string
		expected eventstore.Expected
		inTx     bool // the loser appends in a transaction of the caller's
	}{{"nostream", eventstore.NoStream, false}, {"any", eventstore.Any, false},
		{"nostream-tx", eventstore.NoStream, true}, {"any-tx", eventstore.Any, true}} {
		stream := "race-" + tc.name
		var loserErr error
		loserDone := make(chan struct{})
		err := db.InTx(ctx, func(tx *store.Tx) error {
			var pid int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return err
			}
			if _, err := s.AppendTx(ctx, tx, stream, eventstore.NoStream, ev(t, "W", nil), ev(t, "W", nil)); err != nil {
				return err
			}
			go func() {
				defer close(loserDone)
				if !tc.inTx {
					_, loserErr = s.Append(ctx, stream, tc.expected, three()...)
					return
				}
				loserErr = db.InTx(ctx, func(tx *store.Tx) error {
					_, err := s.AppendTx(ctx, tx, stream, tc.expected, three()...)
					return err
				})
			}()
			// Commit only once the loser waits for this transaction.
			for {
				var waiting bool
				if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE ? = ANY (pg_blocking_pids(pid)))", pid).Scan(&waiting); err != nil {
					return err
				}
				if waiting {
					return nil
				}
				select {
				case <-loserDone:
					return fmt.Errorf("the loser ended before waiting for the winner: %v", loserErr)
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
		})
		if err != nil {
			t.Fatalf("%s: the winner: %v", tc.name, err)
		}
		<-loserDone
		evs, err := s.ReadStream(ctx, stream, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		var types string
		for i, e := range evs {
			if e.Version != int64(i+1) {
				t.Fatalf("%s: event %d has version %d", tc.name, i, e.Version)
			}
			types += e.Type
		}
		if tc.expected == eventstore.NoStream {
			var ce *eventstore.ConflictError
			if !errors.As(loserErr, &ce) || ce.Actual != 2 {
				t.Fatalf("%s: the loser: %v; want a conflict at version 2", tc.name, loserErr)
			}
			if types != "WW" {
				t.Fatalf("%s: stream %s, want WW", tc.name, types)
			}
			continue
		}
		if loserErr != nil || types != "WWLLL" {
			t.Fatalf("%s: the loser: %v; stream %s, want WWLLL", tc.name, loserErr, types)
		}
	}
}
