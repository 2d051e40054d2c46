package message

import (
	"context"
	"sync"
)

// handoff carries a route's deliveries from its subscription to its
// worker goroutines (Concurrency > 1). An unbuffered channel woke a
// parked worker for every message, and the worker parked again after
// it: two goroutine switches per message. Here a delivery wakes a worker
// only when none is already waking up, and a worker that finds more
// queued behind the one it took wakes the next (so slow handlers still
// get a worker each at once); workers take what is queued before they
// park. A burst of messages costs about one wake-up per worker, not one
// per message.
//
// At most cap deliveries wait in the queue (put blocks beyond), beside
// the ones the workers are handling. put has one caller at a time (the
// route's subscription goroutine): its room signal wakes one waiter.
type handoff struct {
	mu      sync.Mutex
	q       []*Delivery // ring of cap entries
	head, n int
	idle    []chan struct{} // parked workers' wake-up channels, most recent last
	waking  int             // workers woken that have not yet looked at the queue
	closed  bool
	// putWaits: put waits on space for the queue to have room; a worker
	// taking a delivery then sends on space (one channel for the route,
	// not one made and closed per wait: the queue fills at every burst).
	// A signal left in it by a put that gave up (ctx ended) only makes
	// the next wait look at the queue once more.
	putWaits bool
	space    chan struct{}
}

func newHandoff(capacity int) *handoff {
	return &handoff{q: make([]*Delivery, capacity), space: make(chan struct{}, 1)}
}

// put queues d, waiting while the queue is full; false if ctx ended
// first (d was not queued).
func (h *handoff) put(ctx context.Context, d *Delivery) bool {
	h.mu.Lock()
	for h.n == len(h.q) {
		h.putWaits = true
		h.mu.Unlock()
		select {
		case <-h.space:
		case <-ctx.Done():
			return false
		}
		h.mu.Lock()
	}
	i := h.head + h.n // a wrap, not a %: a division per message
	if i >= len(h.q) {
		i -= len(h.q)
	}
	h.q[i] = d
	h.n++
	w := h.wakeLocked()
	h.mu.Unlock()
	if w != nil {
		w <- struct{}{}
	}
	return true
}

// wakeLocked returns the wake-up channel of a parked worker to signal
// (after unlocking) if deliveries are queued and no worker is already
// waking up to take them.
func (h *handoff) wakeLocked() chan struct{} {
	if h.n == 0 || h.waking > 0 || len(h.idle) == 0 {
		return nil
	}
	w := h.idle[len(h.idle)-1]
	h.idle = h.idle[:len(h.idle)-1]
	h.waking++
	return w
}

// close ends the workers once the queue is empty. put must not be
// called after close.
func (h *handoff) close() {
	h.mu.Lock()
	h.closed = true
	idle := h.idle
	h.idle = nil
	h.mu.Unlock()
	for _, w := range idle {
		w <- struct{}{}
	}
}

// work takes deliveries and runs each until the handoff is closed and
// empty.
func (h *handoff) work(run func(*Delivery)) {
	wake := make(chan struct{}, 1)
	h.mu.Lock()
	for {
		if h.n > 0 {
			d := h.q[h.head]
			h.q[h.head] = nil
			if h.head++; h.head == len(h.q) {
				h.head = 0
			}
			h.n--
			room := h.putWaits
			h.putWaits = false
			w := h.wakeLocked() // more queued: the next worker
			h.mu.Unlock()
			if room {
				select {
				case h.space <- struct{}{}:
				default: // a signal is already waiting
				}
			}
			if w != nil {
				w <- struct{}{}
			}
			run(d)
			h.mu.Lock()
			continue
		}
		if h.closed {
			h.mu.Unlock()
			return
		}
		h.idle = append(h.idle, wake)
		h.mu.Unlock()
		<-wake
		h.mu.Lock()
		if !h.closed {
			h.waking--
		}
	}
}
