package resilient

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Throttle defaults.
const (
	DefaultThrottleK      = 2.0
	DefaultThrottleWindow = 2 * time.Minute
	DefaultThrottleMin    = 20
)

// throttleBuckets is the number of slices the throttle's window is kept in.
const throttleBuckets = 10

// ThrottleConfig configures adaptive client-side throttling.
type ThrottleConfig struct {
	// K is the multiplier of accepted calls: the throttle starts rejecting
	// once the calls attempted exceed K times the calls the dependency
	// accepted. Lower is more aggressive. At least 1. Default 2.
	K float64
	// Window is how far back calls are counted, kept as 10 slices of
	// Window/10. At least 10ms. Default 2 minutes.
	Window time.Duration
	// MinRequests is the number of requests the window must hold before
	// the throttle rejects anything, so that one refused call of an idle
	// client (which by the formula alone would reject half the next calls)
	// does not throttle it. At least 1 (1: the formula from the first
	// call). Default 20.
	MinRequests int
	// Rejected reports whether the dependency rejected a call. Default
	// DefaultRejected.
	Rejected func(*http.Response, error) bool
	// Key names the dependency of a request. Default HostKey.
	Key KeyFunc
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Rand returns a uniform value in [0, 1). Default math/rand/v2's
	// Float64.
	Rand func() float64
}

// DefaultRejected counts as rejected a call that failed without a response
// and a response with status 429 or 503: the dependency is overloaded or
// unreachable. Other statuses, including other 5xx, are answers.
func DefaultRejected(resp *http.Response, err error) bool {
	return err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
}

func (c ThrottleConfig) withDefaults() ThrottleConfig {
	if c.K == 0 {
		c.K = DefaultThrottleK
	}
	if c.Window == 0 {
		c.Window = DefaultThrottleWindow
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultThrottleMin
	}
	if c.Rejected == nil {
		c.Rejected = DefaultRejected
	}
	if c.Key == nil {
		c.Key = HostKey
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	return c
}

// Validate reports every problem of c (after defaults) at once.
func (c ThrottleConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if !(c.K >= 1) || math.IsInf(c.K, 0) {
		errs = append(errs, fmt.Errorf("k: %v: expected a finite number of at least 1", c.K))
	}
	if c.MinRequests < 1 {
		errs = append(errs, fmt.Errorf("min_requests: %d: expected at least 1", c.MinRequests))
	}
	if c.Window < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("window: %v: expected at least 10ms", c.Window))
	}
	return errors.Join(errs...)
}

// Throttle is adaptive client-side throttling as in Google's SRE book
// ("Handling Overload"): per dependency it counts, over a sliding window,
// the calls attempted (requests, including those it rejected itself) and
// the calls the dependency accepted (accepts), and rejects a new call
// locally with probability
//
//	max(0, (requests - K*accepts) / (requests + 1))
//
// once the window holds at least MinRequests requests, so that when the
// dependency rejects most calls, most of the load it would have refused
// never leaves the client, yet a trickle still probes it. With K=2 the
// throttle tolerates up to half the calls rejected; beyond that it sheds
// more the more the dependency refuses. Locally rejected calls fail with an error matching ErrThrottled.
// Calls the caller cancelled count nothing. Create it with NewThrottle;
// safe for concurrent use.
type Throttle struct {
	cfg   ThrottleConfig
	width time.Duration
	start time.Time
	mu    sync.Mutex
	byID  map[string]*throttleWindow
}

type throttleBucket struct {
	epoch             int64
	requests, accepts float64
}

type throttleWindow struct {
	b [throttleBuckets]throttleBucket
}

// NewThrottle validates cfg and returns the layer.
func NewThrottle(cfg ThrottleConfig) (*Throttle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Throttle{cfg: cfg, width: cfg.Window / throttleBuckets, start: cfg.Now(), byID: make(map[string]*throttleWindow)}, nil
}

func (t *Throttle) epoch(now time.Time) int64 { return int64(max(now.Sub(t.start), 0) / t.width) }

func (t *Throttle) windowLocked(key string) *throttleWindow {
	w := t.byID[key]
	if w == nil {
		w = new(throttleWindow)
		t.byID[key] = w
	}
	return w
}

// Counts returns the requests and accepts counted for the dependency key in
// the window ending now.
func (t *Throttle) Counts(key string) (requests, accepts float64) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sumLocked(t.windowLocked(key), t.epoch(now))
}

// RejectProbability returns the probability with which the next call to
// the dependency key is rejected.
func (t *Throttle) RejectProbability(key string) float64 {
	req, acc := t.Counts(key)
	if req < float64(t.cfg.MinRequests) {
		return 0
	}
	return max(0, (req-t.cfg.K*acc)/(req+1))
}

func (t *Throttle) sumLocked(w *throttleWindow, e int64) (requests, accepts float64) {
	for i := range w.b {
		if b := &w.b[i]; b.epoch > e-throttleBuckets && b.epoch <= e {
			requests += b.requests
			accepts += b.accepts
		}
	}
	return requests, accepts
}

func (t *Throttle) count(key string, accepted bool) {
	e := t.epoch(t.cfg.Now())
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.windowLocked(key)
	b := &w.b[e%throttleBuckets]
	if b.epoch != e {
		*b = throttleBucket{epoch: e}
	}
	b.requests++
	if accepted {
		b.accepts++
	}
}

// Wrap returns next behind the throttle.
func (t *Throttle) Wrap(next http.RoundTripper) http.RoundTripper {
	return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		key := t.cfg.Key(req)
		if p := t.RejectProbability(key); p > 0 && t.cfg.Rand() < p {
			t.count(key, false)
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("calling %s: %w (rejecting %.0f%% of calls)", key, ErrThrottled, p*100)
		}
		resp, err := next.RoundTrip(req)
		if err != nil && (req.Context().Err() != nil || errors.Is(err, ErrCircuitOpen) || errors.Is(err, ErrBulkheadFull)) {
			// The caller gave up, or an inner layer refused the call
			// locally: the dependency did not see it.
			return nil, err
		}
		t.count(key, !t.cfg.Rejected(resp, err))
		return resp, err
	})
}
