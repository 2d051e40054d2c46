// Package testclock is the one manual clock the project's tests use: the
// code under test takes a `func() time.Time` (Config.Now, Options.Now) and
// the test moves time with Advance instead of sleeping.
package testclock

import (
	"sync"
	"time"
)

// Clock is a manual clock. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Epoch is where New clocks start: a fixed, unremarkable instant.
var Epoch = time.Unix(1_700_000_000, 0)

// New returns a clock reading Epoch.
func New() *Clock { return At(Epoch) }

// At returns a clock reading t.
func At(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (backward if d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}
