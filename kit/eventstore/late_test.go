package eventstore_test

import (
	"context"
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
	before, err := s.ReadAll(ctx, 0, 0)
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
	all, err := s.ReadAll(ctx, 0, 0)
	if err != nil || len(all) != 2 || all[0].Type != "Opened" || all[0].Version != 1 || all[1].Type != "Deposited" || all[1].Version != 2 {
		t.Fatalf("global order: %+v %v", all, err)
	}
}
