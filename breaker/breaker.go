// Package breaker is a circuit breaker that stops sending requests to a
// target whose recent failure ratio is too high, then probes it to decide
// when to send traffic again.
//
// A Breaker is closed (requests flow and outcomes are counted in a sliding
// window), open (requests are refused until Config.OpenFor has passed) or
// half-open (a few probe requests are admitted; all succeeding closes the
// breaker, any failing opens it again).
//
// The caller pairs every Allow that returns nil with exactly one Record.
package breaker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
)

// State is the state of a Breaker.
type State int

// The three breaker states.
const (
	// Closed lets every request through and counts outcomes.
	Closed State = iota
	// Open refuses every request until Config.OpenFor has passed.
	Open
	// HalfOpen admits up to Config.HalfOpenProbes probe requests.
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// buckets is the number of time buckets the sliding window is split into;
// outcomes leave the window one bucket (Window/buckets) at a time.
const buckets = 10

// Config configures a Breaker. The zero value of every field means its
// default.
type Config struct {
	// FailureRatio is the fraction of failed requests in the window at or
	// above which the breaker opens; 0 < FailureRatio <= 1. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is the number of requests the window must hold before the
	// breaker may open, so that a handful of failures on an idle target do
	// not trip it. At least 1. Default 20.
	MinRequests int `yaml:"min_requests"`
	// Window is the length of the sliding window over which outcomes are
	// counted. It is kept as 10 buckets of Window/10, so outcomes age out one
	// bucket at a time. At least 10ms. Default 10s.
	Window time.Duration `yaml:"window"`
	// OpenFor is how long the breaker stays open before admitting probes.
	// Positive. Default 10s.
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenProbes is the number of probe requests admitted while
	// half-open; they must all succeed to close the breaker. At least 1.
	// Default 3.
	HalfOpenProbes int `yaml:"half_open_probes"`
}

// Defaults applied by WithDefaults to zero fields.
const (
	DefaultFailureRatio   = 0.5
	DefaultMinRequests    = 20
	DefaultWindow         = 10 * time.Second
	DefaultOpenFor        = 10 * time.Second
	DefaultHalfOpenProbes = 3
)

// minWindow keeps a bucket at least a millisecond long.
const minWindow = 10 * time.Millisecond

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.FailureRatio == 0 {
		c.FailureRatio = DefaultFailureRatio
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.OpenFor == 0 {
		c.OpenFor = DefaultOpenFor
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return c
}

// Validate reports every problem of c (after defaults) at once, joined with
// errors.Join. It does not modify c.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if !(c.FailureRatio > 0 && c.FailureRatio <= 1) { // also rejects NaN
		errs = append(errs, config.Fieldf("failure_ratio", "%v: expected 0 < ratio <= 1", c.FailureRatio))
	}
	if c.MinRequests < 1 {
		errs = append(errs, config.Fieldf("min_requests", "%d: expected at least 1", c.MinRequests))
	}
	if c.Window < minWindow {
		errs = append(errs, config.Fieldf("window", "%v: expected at least %v", c.Window, minWindow))
	}
	if c.OpenFor <= 0 {
		errs = append(errs, config.Fieldf("open_for", "%v: expected a positive duration", c.OpenFor))
	}
	if c.HalfOpenProbes < 1 {
		errs = append(errs, config.Fieldf("half_open_probes", "%d: expected at least 1", c.HalfOpenProbes))
	}
	return errors.Join(errs...)
}

// Options are the dependencies of a Breaker.
type Options struct {
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// OnStateChange, if set, is called on every state transition. It is
	// called with the breaker's lock held, so transitions are reported in
	// order; it must be quick and must not call methods of the Breaker.
	OnStateChange func(from, to State)
}

// ErrOpen is the sentinel matched (errors.Is) by the error Allow returns
// when it refuses a request.
var ErrOpen = errors.New("circuit breaker is open")

// OpenError is the error Allow returns when it refuses a request. It wraps
// ErrOpen. It is allocated once per open period and shared by every refusal
// in that period, so refusing allocates nothing; treat it as read-only.
type OpenError struct {
	// Until is when the breaker will admit probes again. It is the zero time
	// when the breaker is half-open and all its probes are in flight.
	Until time.Time

	now func() time.Time
}

// RetryAfter returns how long until the breaker admits probes again, or 0
// when it is half-open (the probes in flight decide; retry soon).
func (e *OpenError) RetryAfter() time.Duration {
	if e.Until.IsZero() {
		return 0
	}
	return max(e.Until.Sub(e.now()), 0)
}

// Error describes the refusal.
func (e *OpenError) Error() string {
	if e.Until.IsZero() {
		return "circuit breaker is half-open: all probes in flight"
	}
	return fmt.Sprintf("circuit breaker is open: retry after %v", e.RetryAfter().Round(time.Millisecond))
}

// Unwrap returns ErrOpen.
func (e *OpenError) Unwrap() error { return ErrOpen }

// bucket counts the outcomes of one Window/buckets slice of time.
type bucket struct {
	epoch    int64 // bucket number since Breaker.start
	total    uint32
	failures uint32
}

// Breaker is a circuit breaker. Create it with New. Safe for concurrent use;
// Allow and Record take a mutex for a few arithmetic operations and never
// allocate.
type Breaker struct {
	cfg      Config
	now      func() time.Time
	onChange func(from, to State)
	start    time.Time     // origin of bucket epochs
	width    time.Duration // Window / buckets

	mu    sync.Mutex
	state State
	win   [buckets]bucket
	// open
	openErr *OpenError // refusal error of the current open period
	// half-open
	halfSince time.Time
	admitted  int // probes admitted
	succeeded int // probes that succeeded
	halfErr   *OpenError
}

// New returns a closed Breaker. It applies defaults to cfg and returns the
// validation error, if any.
func New(cfg Config, opts Options) (*Breaker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Breaker{
		cfg:      cfg,
		now:      opts.Now,
		onChange: opts.OnStateChange,
		width:    cfg.Window / buckets,
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.start = b.now()
	b.halfErr = &OpenError{now: b.now}
	return b, nil
}

// Allow reports whether a request may be sent: nil, or an *OpenError
// wrapping ErrOpen. When it returns nil the caller must call Record once
// with the request's outcome.
func (b *Breaker) Allow() error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(now)
	switch b.state {
	case Open:
		return b.openErr
	case HalfOpen:
		if b.admitted >= b.cfg.HalfOpenProbes {
			return b.halfErr
		}
		b.admitted++
	}
	return nil
}

// Record records the outcome of a request admitted by Allow. While closed
// it counts the outcome and opens the breaker when the window holds at
// least MinRequests outcomes of which at least FailureRatio failed. While
// half-open a failure opens the breaker again and the HalfOpenProbes-th
// success closes it with an empty window. While open it does nothing (the
// request was admitted before the breaker opened).
//
// Record cannot tell a probe from a request admitted before the breaker
// opened that completes late: such a late failure while half-open reopens
// the breaker (the cautious choice), and successes count only up to the
// number of probes admitted.
func (b *Breaker) Record(success bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(now)
	switch b.state {
	case Closed:
		bk := b.bucketLocked(now)
		bk.total++
		if !success {
			bk.failures++
		}
		total, failures := b.sumLocked(now)
		if total >= uint64(b.cfg.MinRequests) && float64(failures) >= b.cfg.FailureRatio*float64(total) {
			b.openLocked(now)
		}
	case HalfOpen:
		if !success {
			b.openLocked(now)
			return
		}
		// Outcomes beyond the probes admitted come from requests admitted
		// before the breaker opened; they are not probes.
		if b.succeeded >= b.admitted {
			return
		}
		b.succeeded++
		if b.succeeded >= b.cfg.HalfOpenProbes {
			b.closeLocked()
		}
	}
}

// Release ends a request admitted by Allow without an outcome, for a
// request that says nothing about the protected service (the client sent a
// bad or too slow request body). It counts nothing; while half-open it
// frees the request's probe slot so another request may probe.
func (b *Breaker) Release() {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(now)
	if b.state == HalfOpen && b.admitted > b.succeeded {
		b.admitted--
	}
}

// State returns the breaker's state at the current time. An open breaker
// whose OpenFor has passed becomes half-open here (and OnStateChange is
// called), as it would on the next Allow.
func (b *Breaker) State() State {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(now)
	return b.state
}

// ForceClose closes the breaker at once with an empty window, whatever its
// state. Call it when an active health check reports the target healthy, so
// a recovered target need not wait for OpenFor and the probes.
func (b *Breaker) ForceClose() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked()
}

// advanceLocked applies the time-driven transitions: open → half-open once
// OpenFor has passed, and a fresh half-open round when probes admitted in
// the previous round have not all reported within OpenFor (a caller lost
// its Record), so the breaker cannot stay half-open forever.
func (b *Breaker) advanceLocked(now time.Time) {
	switch b.state {
	case Open:
		if !now.Before(b.openErr.Until) {
			b.setStateLocked(HalfOpen)
			b.halfSince = now
			b.admitted, b.succeeded = 0, 0
		}
	case HalfOpen:
		if now.Sub(b.halfSince) >= b.cfg.OpenFor {
			b.halfSince = now
			b.admitted, b.succeeded = 0, 0
		}
	}
}

// openLocked opens the breaker for OpenFor from now. The refusal error is
// allocated here, once per open period.
func (b *Breaker) openLocked(now time.Time) {
	b.openErr = &OpenError{Until: now.Add(b.cfg.OpenFor), now: b.now}
	b.setStateLocked(Open)
}

// closeLocked closes the breaker with an empty window.
func (b *Breaker) closeLocked() {
	b.win = [buckets]bucket{}
	b.admitted, b.succeeded = 0, 0
	b.setStateLocked(Closed)
}

func (b *Breaker) setStateLocked(to State) {
	from := b.state
	if from == to {
		return
	}
	b.state = to
	if b.onChange != nil {
		b.onChange(from, to)
	}
}

// epoch returns the bucket number of now.
func (b *Breaker) epoch(now time.Time) int64 {
	d := now.Sub(b.start)
	if d < 0 {
		d = 0
	}
	return int64(d / b.width)
}

// bucketLocked returns now's bucket, emptied if it held an older epoch.
func (b *Breaker) bucketLocked(now time.Time) *bucket {
	e := b.epoch(now)
	bk := &b.win[e%buckets]
	if bk.epoch != e {
		*bk = bucket{epoch: e}
	}
	return bk
}

// sumLocked returns the outcomes counted in the window ending at now.
func (b *Breaker) sumLocked(now time.Time) (total, failures uint64) {
	e := b.epoch(now)
	for i := range b.win {
		bk := &b.win[i]
		if bk.epoch > e-buckets && bk.epoch <= e {
			total += uint64(bk.total)
			failures += uint64(bk.failures)
		}
	}
	return total, failures
}
