package retry

import (
	"sync/atomic"
	"time"
)

// BudgetWindow is the sliding window a Budget counts over. It is kept as
// ten one-second buckets, so counts age out a second at a time and the
// window spans between 9 and 10 seconds of history.
const BudgetWindow = 10 * time.Second

const budgetBuckets = 10 // BudgetWindow in seconds

// Budget limits retries to a fraction of the original requests of a route
// over BudgetWindow, plus a fixed floor, so that a failing backend does not
// turn every request into Attempts requests (a retry storm). Create it with
// NewBudget. Safe for concurrent use, lock-free and allocation-free.
//
// Concurrent TryRetry calls check and count in two steps, so under a race
// the retries in a window may exceed the limit by at most the number of
// concurrent callers.
type Budget struct {
	ratio    float64
	minRetry float64 // floor: retries allowed per window regardless of traffic

	// Each word packs a bucket's second (high 32 bits, modulo 2^32) and its
	// count (low 32 bits), so a bucket is reset and counted with one CAS.
	requests [budgetBuckets]atomic.Uint64
	retries  [budgetBuckets]atomic.Uint64
}

// NewBudget returns a Budget allowing retries up to ratio times the original
// requests in the window plus minRetriesPerSecond * 10 (the window's
// seconds). Config.Validate checks the values a Policy passes here.
func NewBudget(ratio float64, minRetriesPerSecond int) *Budget {
	return &Budget{
		ratio:    ratio,
		minRetry: float64(minRetriesPerSecond) * BudgetWindow.Seconds(),
	}
}

// Request counts an original request (not a retry) made at now.
func (b *Budget) Request(now time.Time) {
	add(&b.requests, second(now))
}

// TryRetry reports whether a retry at now fits the budget: whether the
// retries counted in the window are fewer than ratio * requests in the
// window + the floor. An allowed retry is counted.
func (b *Budget) TryRetry(now time.Time) bool {
	s := second(now)
	if float64(sum(&b.retries, s)) >= b.ratio*float64(sum(&b.requests, s))+b.minRetry {
		return false
	}
	add(&b.retries, s)
	return true
}

// Counts returns the original requests and retries counted in the window
// ending at now, for metrics and the admin API.
func (b *Budget) Counts(now time.Time) (requests, retries uint64) {
	s := second(now)
	return sum(&b.requests, s), sum(&b.retries, s)
}

// second returns now's bucket number: Unix seconds modulo 2^32.
func second(now time.Time) uint32 { return uint32(now.Unix()) }

// add counts one event in second s.
func add(win *[budgetBuckets]atomic.Uint64, s uint32) {
	w := &win[s%budgetBuckets]
	for {
		old := w.Load()
		next := uint64(s)<<32 | 1
		if uint32(old>>32) == s {
			if uint32(old) == 1<<32-1 {
				return // saturated
			}
			next = old + 1
		}
		if w.CompareAndSwap(old, next) {
			return
		}
	}
}

// sum returns the events counted in the window ending in second s.
func sum(win *[budgetBuckets]atomic.Uint64, s uint32) uint64 {
	var n uint64
	for i := range win {
		v := win[i].Load()
		if age := s - uint32(v>>32); age < budgetBuckets { // wraps for future seconds
			n += uint64(uint32(v))
		}
	}
	return n
}
