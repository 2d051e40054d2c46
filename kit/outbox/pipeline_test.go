package outbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// gate is a Publisher whose publishes of key "slow" wait until released
// (and then fail when told to), recording every publish in order.
type gate struct {
	mu      sync.Mutex
	order   []string // message ids, in publish (confirm) order
	started chan string
	release chan error
}

func (g *gate) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	for _, m := range msgs {
		g.started <- m.ID
	}
	if msgs[0].Key == "slow" {
		select {
		case err := <-g.release:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range msgs {
		g.order = append(g.order, m.ID)
	}
	return nil
}

// While a batch waits for the broker's confirm, a message committed
// meanwhile under another key is published at once, not after that
// confirm; one under the same key waits for it, and when the batch in
// flight fails, the key's messages go out again in their order.
func TestRelayPipelines(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		prepare(t, db)
		add := func(id, key string) {
			t.Helper()
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				return outbox.Add(ctx, tx, "queue:q", broker.Message{ID: id, Key: key})
			}); err != nil {
				t.Fatal(err)
			}
		}
		g := &gate{started: make(chan string, 100), release: make(chan error)}
		relay, err := outbox.NewRelay(ctx, db, g, outbox.RelayOptions{Partitions: 1, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		add("s1", "slow")
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); relay.Run(rctx) }()
		defer func() { stop(); close(g.release); <-done }()
		next := func(what string) string {
			t.Helper()
			select {
			case id := <-g.started:
				return id
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
				return ""
			}
		}
		if id := next("s1"); id != "s1" {
			t.Fatalf("first publish %s, want s1", id)
		}
		// s1 waits for its confirm. Another key goes out meanwhile; the
		// same key does not.
		add("s2", "slow")
		add("f1", "fast")
		if id := next("f1"); id != "f1" {
			t.Fatalf("while s1 is in flight, %s was published; want f1 (another key), and s2 (the same key) not yet", id)
		}
		// s1's publish fails: s1 goes again, then s2, in order.
		g.release <- errors.New("broker gone")
		if a, b := next("s1 again"), next("s2"); a != "s1" || b != "s2" {
			t.Fatalf("after the failed batch: %s, %s; want s1, s2", a, b)
		}
		g.release <- nil
		waitFor(t, 10*time.Second, "s1, s2 confirmed", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.order) == 3
		})
		g.mu.Lock()
		got := append([]string(nil), g.order...)
		g.mu.Unlock()
		if got[0] != "f1" || got[1] != "s1" || got[2] != "s2" {
			t.Fatalf("confirmed %v, want [f1 s1 s2]", got)
		}
	})
}
