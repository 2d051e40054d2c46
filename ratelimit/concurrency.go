package ratelimit

import (
	"fmt"
	"sync/atomic"
)

// Concurrency limits the requests in flight to one upstream; the gateway
// answers 503 when TryAcquire fails. Lock-free and safe for concurrent
// use.
type Concurrency struct {
	max      int64
	inFlight atomic.Int64
}

// NewConcurrency returns a limiter admitting at most max requests at once;
// max is at least 1.
func NewConcurrency(max int) (*Concurrency, error) {
	if max < 1 {
		return nil, fmt.Errorf("concurrency limit %d: expected at least 1", max)
	}
	return &Concurrency{max: int64(max)}, nil
}

// TryAcquire takes a slot and reports true, or reports false at once when
// all slots are taken. Each true must be paired with one Release.
func (c *Concurrency) TryAcquire() bool {
	for {
		n := c.inFlight.Load()
		if n >= c.max {
			return false
		}
		if c.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back a slot taken by TryAcquire. It panics when no slot
// is taken: an unpaired Release is a bug that would silently raise the
// limit.
func (c *Concurrency) Release() {
	if c.inFlight.Add(-1) < 0 {
		c.inFlight.Add(1)
		panic("ratelimit: Concurrency.Release without a successful TryAcquire")
	}
}

// InFlight returns the number of slots taken.
func (c *Concurrency) InFlight() int { return int(c.inFlight.Load()) }

// Max returns the limit.
func (c *Concurrency) Max() int { return int(c.max) }
