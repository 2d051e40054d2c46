package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// The relay keeps a connection of its own to read on only when the pool
// has room for it: in a service whose handle has one connection, a kept
// reader would make the service's next transaction wait forever.
func TestRelayLeavesASmallPoolItsConnection(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		prepare(t, db)
		db.SetMaxOpenConns(1)
		g := &gate{started: make(chan string, 100), release: make(chan error)}
		relay, err := outbox.NewRelay(ctx, db, g, outbox.RelayOptions{Partitions: 1, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); relay.Run(rctx) }()
		defer func() { stop(); close(g.release); <-done }()
		for _, id := range []string{"m1", "m2", "m3"} {
			tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
			err := db.InTx(tctx, func(tx *store.Tx) error {
				return outbox.Add(tctx, tx, "queue:q", broker.Message{ID: id, Key: "k"})
			})
			tcancel()
			if err != nil {
				t.Fatalf("committing %s beside a running relay on a one-connection pool: %v", id, err)
			}
			select {
			case got := <-g.started:
				if got != id {
					t.Fatalf("published %s, want %s", got, id)
				}
			case <-ctx.Done():
				t.Fatalf("%s not published: %v", id, ctx.Err())
			}
		}
	})
}
