package message

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHandoffDeliversAll: every delivery put is run exactly once, by at
// most the workers' number at once, whatever the mix of bursts and
// single messages; close ends the workers after the queue is empty.
// A lost wake-up would leave deliveries queued with every worker parked:
// the deadline fails the test instead of hanging.
func TestHandoffDeliversAll(t *testing.T) {
	for _, workers := range []int{2, 4, 16} {
		h := newHandoff(workers)
		const total = 20000
		ds := make([]*Delivery, total)
		for i := range ds {
			ds[i] = &Delivery{Deliveries: i}
		}
		var (
			seen          [total]atomic.Int32
			running, most atomic.Int64
			ran           atomic.Int64
			wg            sync.WaitGroup
		)
		allRan := make(chan struct{})
		run := func(d *Delivery) {
			r := running.Add(1)
			for {
				m := most.Load()
				if r <= m || most.CompareAndSwap(m, r) {
					break
				}
			}
			seen[d.Deliveries].Add(1)
			if d.Deliveries%97 == 0 {
				time.Sleep(50 * time.Microsecond) // a slow handler now and then
			}
			running.Add(-1)
			if ran.Add(1) == total {
				close(allRan)
			}
		}
		for range workers {
			wg.Add(1)
			go func() { defer wg.Done(); h.work(run) }()
		}
		for i, d := range ds {
			if !h.put(context.Background(), d) {
				t.Fatal("put refused with a live ctx")
			}
			if i%500 == 0 {
				// Let the workers drain and park, so that the next
				// puts find them idle.
				deadline := time.Now().Add(60 * time.Second)
				for ran.Load() < int64(i+1) {
					if time.Now().After(deadline) {
						t.Fatalf("%d workers: %d of %d deliveries run (a lost wake-up?)", workers, ran.Load(), i+1)
					}
					time.Sleep(10 * time.Microsecond)
				}
			}
		}
		select {
		case <-allRan:
		case <-time.After(60 * time.Second):
			t.Fatalf("%d workers: %d of %d deliveries run (a lost wake-up?)", workers, ran.Load(), total)
		}
		h.close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%d workers: still running after close", workers)
		}
		for i := range seen {
			if n := seen[i].Load(); n != 1 {
				t.Fatalf("%d workers: delivery %d run %d times", workers, i, n)
			}
		}
		if m := most.Load(); m > int64(workers) {
			t.Fatalf("%d workers: %d ran at once", workers, m)
		}
	}
}

// TestHandoffSlowHandlersGetAWorkerEach: with every worker's handler
// blocked until all of them run, a burst of as many deliveries as
// workers must reach them all at once (a queued delivery behind a busy
// worker would wait for ever here, not just be late).
func TestHandoffSlowHandlersGetAWorkerEach(t *testing.T) {
	const workers = 8
	h := newHandoff(workers)
	var started sync.WaitGroup
	started.Add(workers)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.work(func(*Delivery) { started.Done(); <-release })
		}()
	}
	for range workers {
		if !h.put(context.Background(), &Delivery{}) {
			t.Fatal("put refused")
		}
	}
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		t.Fatal("not every worker got a delivery while the others were busy")
	}
	close(release)
	h.close()
	wg.Wait()
}

// TestHandoffPutFullEndsWithCtx: put on a full queue with no worker
// taking returns false once its ctx ends.
func TestHandoffPutFullEndsWithCtx(t *testing.T) {
	h := newHandoff(2)
	ctx, cancel := context.WithCancel(context.Background())
	for range 2 {
		if !h.put(ctx, &Delivery{}) {
			t.Fatal("put refused with room")
		}
	}
	got := make(chan bool)
	go func() { got <- h.put(ctx, &Delivery{}) }()
	cancel()
	select {
	case ok := <-got:
		if ok {
			t.Fatal("put on a full queue succeeded with no worker")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("put on a full queue did not end with its ctx")
	}
}

// TestHandoffPutAfterAGivenUpWait: a put that gave up waiting for room
// (its ctx ended) leaves the workers' signal for room behind it; the
// next puts that find the queue full must still wait for room, not
// overfill the queue, and every delivery queued must run once.
func TestHandoffPutAfterAGivenUpWait(t *testing.T) {
	h := newHandoff(1)
	first := &Delivery{Deliveries: 1}
	if !h.put(context.Background(), first) {
		t.Fatal("put refused with room")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if h.put(ctx, &Delivery{}) {
		t.Fatal("put on a full queue succeeded with an ended ctx and no worker")
	}
	var (
		mu  sync.Mutex
		ran []int
	)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.work(func(d *Delivery) {
			<-release
			mu.Lock()
			ran = append(ran, d.Deliveries)
			mu.Unlock()
		})
	}()
	// The worker takes the first delivery (signalling room for the put
	// that gave up) and blocks in it; the second fills the queue again.
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		n := h.n
		h.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not take the first delivery")
		}
		time.Sleep(time.Millisecond)
	}
	if !h.put(context.Background(), &Delivery{Deliveries: 2}) {
		t.Fatal("put refused with room")
	}
	third := make(chan bool)
	go func() { third <- h.put(context.Background(), &Delivery{Deliveries: 3}) }()
	// The stale signal must not let the third in beside the second.
	for time.Now().Before(deadline) {
		h.mu.Lock()
		n := h.n
		h.mu.Unlock()
		if n > len(h.q) {
			t.Fatalf("%d queued, capacity %d", n, len(h.q))
		}
		select {
		case <-third:
			t.Fatal("put on a full queue returned while the worker was blocked")
		default:
		}
		if n == 1 {
			h.mu.Lock()
			waits := h.putWaits
			h.mu.Unlock()
			if waits {
				break // the third put is waiting for room again
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	select {
	case ok := <-third:
		if !ok {
			t.Fatal("put refused with a live ctx")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the third put did not get room once the worker went on")
	}
	h.close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 3 || ran[0] != 1 || ran[1] != 2 || ran[2] != 3 {
		t.Fatalf("ran %v, want [1 2 3]", ran)
	}
}
