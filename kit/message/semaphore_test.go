package message

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSemaphoreBound: many goroutines taking and giving back slots never
// hold more than the limit at once, and none is left waiting (a lost
// wake-up would hang one: the deadline fails the test instead).
func TestSemaphoreBound(t *testing.T) {
	for _, limit := range []int{1, 3, 16} {
		var s semaphore
		s.init(limit)
		var held, most atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 2000 {
					s.acquire()
					h := held.Add(1)
					for {
						m := most.Load()
						if h <= m || most.CompareAndSwap(m, h) {
							break
						}
					}
					held.Add(-1)
					s.release()
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("limit %d: goroutines still waiting for a slot (lost wake-up)", limit)
		}
		if m := most.Load(); m > int64(limit) {
			t.Fatalf("limit %d: %d slots held at once", limit, m)
		}
		if n := s.n.Load(); n != 0 {
			t.Fatalf("limit %d: %d slots taken after all were given back", limit, n)
		}
	}
}

// TestSemaphoreWaitsWhenFull: with every slot taken, acquire returns
// only after a release.
func TestSemaphoreWaitsWhenFull(t *testing.T) {
	var s semaphore
	s.init(2)
	s.acquire()
	s.acquire()
	var released atomic.Bool
	got := make(chan bool)
	go func() {
		s.acquire()
		got <- released.Load()
	}()
	// Wait until the goroutine is waiting (counted in waiters) before
	// releasing, so that the order is known.
	deadline := time.Now().Add(30 * time.Second)
	for s.waiters.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("acquire on a full semaphore did not wait")
		}
		time.Sleep(time.Millisecond)
	}
	released.Store(true)
	s.release()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("acquire returned before a slot was given back")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("acquire still waiting after a release (lost wake-up)")
	}
}
