package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// A delete of confirmed rows that cannot finish (here: another
// transaction holds the first message's row lock; in life: SQLite's
// write lock behind the service's transactions) must not hold up the
// publishing of what commits meanwhile, for well over 64 rounds (the
// relay used to wait once 64 rounds' deletes were queued).
func TestSlowDeleteDoesNotHoldPublishing(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := outbox.Prepare(ctx, db); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	var once sync.Once
	locked := make(chan error, 1)
	release := make(chan struct{})
	lockDone := make(chan struct{})
	pub := outbox.PublisherFunc(func(pctx context.Context, dest string, msgs ...broker.Message) error {
		once.Do(func() {
			go func() {
				defer close(lockDone)
				db.InTx(ctx, func(tx *store.Tx) error {
					_, err := tx.Exec(ctx, "SELECT id FROM sy_outbox WHERE msg_id = ? FOR UPDATE", msgs[0].ID)
					locked <- err
					<-release
					return nil
				})
			}()
			if err := <-locked; err != nil {
				t.Error(err)
			}
		})
		return rec.Publish(pctx, dest, msgs...)
	})
	relay, err := outbox.NewRelay(ctx, db, pub, outbox.RelayOptions{Partitions: 1, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); relay.Run(rctx) }()
	defer func() { stop(); <-runDone }()
	releaseOnce := sync.OnceFunc(func() { close(release); <-lockDone })
	defer releaseOnce()

	const n = 100 // one round each, so well over 64 rounds
	for i := range n {
		err := db.InTx(ctx, func(tx *store.Tx) error {
			return outbox.Add(ctx, tx, "queue:q", broker.Message{Body: []byte(fmt.Sprint(i))})
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("message %d published while the first one's delete waits", i+1), func() bool { return rec.total() > i })
	}
	if p, err := outbox.Pending(ctx, db); err != nil || p == 0 {
		t.Fatalf("pending %d (%v): the first message's row should still be there", p, err)
	}
	releaseOnce()
	waitFor(t, 30*time.Second, "every published row deleted", func() bool {
		p, err := outbox.Pending(ctx, db)
		return err == nil && p == 0
	})
	if got := rec.total(); got != n {
		t.Fatalf("%d publishes of %d messages", got, n)
	}
}
