package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/discovery"
)

// TestBalancerHasTargetsOnceWatchIsReady is the documented sequence
// (Watch, <-Ready, NewBalancer, call): the balancer must hold the set
// the watcher is ready with, not apply it later on its own goroutine
// (before, the first calls failed with ErrNoInstance while it caught up,
// and callers spun on Ready, which was already closed).
func TestBalancerHasTargetsOnceWatchIsReady(t *testing.T) {
	_, c := startRegistry(t)
	ctx := context.Background()
	a := backend(t, "a")
	l, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "a", Address: addr(a)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	for i := range 50 {
		w, err := c.Watch(ctx, "rides", discovery.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		<-w.Ready()
		bal, err := discovery.NewBalancer(w, discovery.BalancerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		n := len(bal.Targets())
		select {
		case <-bal.Ready():
		default:
			t.Errorf("round %d: balancer over a ready watcher is not ready", i)
		}
		bal.Close()
		w.Close()
		if n != 1 {
			t.Fatalf("round %d: %d targets right after the watch was ready, want 1", i, n)
		}
	}
}

// TestBalancerSeesUpdatesWithAnotherReader: a second reader of the
// watcher's Updates (a caller logging the sets, as the docs invite) must
// not steal the balancer's updates; before, each set went to one reader
// only and the balancer could keep a stale set forever.
func TestBalancerSeesUpdatesWithAnotherReader(t *testing.T) {
	_, c := startRegistry(t)
	ctx := context.Background()
	a, b := backend(t, "a"), backend(t, "b")
	la, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "a", Address: addr(a)})
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close(ctx)
	w, err := c.Watch(ctx, "rides", discovery.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	bal, err := discovery.NewBalancer(w, discovery.BalancerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	// The other reader drains Updates eagerly.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-w.Updates():
			case <-stop:
				return
			}
		}
	}()
	select {
	case <-bal.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("balancer never got its first set")
	}
	lb, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "b", Address: addr(b)})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close(ctx)
	waitFor(t, "the balancer to see instance b", func() bool { return len(bal.Targets()) == 2 })
}
