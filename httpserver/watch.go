package httpserver

import (
	"sync"
	"time"
)

// watchList delays the disconnect watch of requests by about WatchAfter
// without a timer per request: resetting a runtime timer on every request
// often moves the earliest timer, which wakes the network poller (an extra
// system call and wake-up per request, measured to cost more than the
// watch it saves). Instead arm appends the request to a list, and one
// sweeper goroutine, running only while the list is not empty, wakes every
// WatchAfter and starts the watch of the requests that were listed before
// its previous wake-up and still run: they have run for between one and
// two WatchAfter.
type watchList struct {
	mu      sync.Mutex
	cur     []watchEntry // listed since the last sweep
	prev    []watchEntry // listed before it: due at the next sweep
	running bool         // a sweeper goroutine runs
}

type watchEntry struct {
	c   *conn
	gen uint64
}

// add lists the request of c armed as gen, starting the sweeper if needed.
func (w *watchList) add(c *conn, gen uint64) {
	w.mu.Lock()
	w.cur = append(w.cur, watchEntry{c, gen})
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.sweep(c.s.watchAfter())
	}
}

// sweep runs until two consecutive sweeps find nothing listed.
func (w *watchList) sweep(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var spare []watchEntry
	for range t.C {
		w.mu.Lock()
		due := w.prev
		w.prev, w.cur = w.cur, spare[:0]
		if len(due) == 0 && len(w.prev) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		for _, e := range due {
			e.c.startWatch(e.gen)
		}
		clear(due) // do not keep closed connections reachable
		spare = due
	}
}
