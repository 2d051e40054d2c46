package resilient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/retry"
)

// Hedge defaults.
const (
	DefaultHedgePercentile = 0.95
	DefaultHedgeMinSamples = 20
	DefaultHedgeMinDelay   = time.Millisecond
)

// hedgeSamples is the number of recent latencies the delay is computed
// from, and hedgeRecompute how often (in samples) it is recomputed.
const (
	hedgeSamples   = 256
	hedgeRecompute = 16
)

// HedgeConfig configures hedging.
type HedgeConfig struct {
	// Delay is how long the first attempt runs alone before a second is
	// sent. 0 means adaptive: the Percentile of the latencies observed so
	// far (of the last 256 calls), once MinSamples were seen; until then
	// no call is hedged.
	Delay time.Duration
	// Percentile of observed latency used as the adaptive delay, 0 < p < 1.
	// Default 0.95.
	Percentile float64
	// MinSamples is the number of observed calls before the adaptive delay
	// is used. Default 20.
	MinSamples int
	// MinDelay is the smallest adaptive delay, so a very fast dependency is
	// not hedged on every call. Default 1ms.
	MinDelay time.Duration
}

func (c HedgeConfig) withDefaults() HedgeConfig {
	if c.Percentile == 0 {
		c.Percentile = DefaultHedgePercentile
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultHedgeMinSamples
	}
	if c.MinDelay == 0 {
		c.MinDelay = DefaultHedgeMinDelay
	}
	return c
}

// Validate reports every problem of c (after defaults) at once.
func (c HedgeConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Delay < 0 {
		errs = append(errs, fmt.Errorf("delay: %v: expected 0 (adaptive) or a positive duration", c.Delay))
	}
	if !(c.Percentile > 0 && c.Percentile < 1) {
		errs = append(errs, fmt.Errorf("percentile: %v: expected 0 < p < 1", c.Percentile))
	}
	if c.MinSamples < 1 || c.MinSamples > hedgeSamples {
		errs = append(errs, fmt.Errorf("min_samples: %d: expected 1 to %d", c.MinSamples, hedgeSamples))
	}
	if c.MinDelay < 0 {
		errs = append(errs, fmt.Errorf("min_delay: %v: expected a positive duration", c.MinDelay))
	}
	return errors.Join(errs...)
}

// Hedge is a layer that sends a second attempt of an idempotent call when
// the first has not answered within a delay, and returns whichever answers
// first (any response, whatever its status; an error only when both
// attempts failed). The other attempt's context is cancelled and its
// response body, if one arrives, is closed.
//
// Only calls that are safe to send twice are hedged: idempotent methods
// (retry.Idempotent) or requests with an Idempotency-Key header, and whose
// body is absent or replayable through GetBody (the Retry layer provides
// GetBody for buffered bodies). Other calls pass through untouched. A call
// whose first attempt fails before the delay is not hedged: its error is
// returned (a retry layer above decides what to do). Create it with
// NewHedge; safe for concurrent use.
type Hedge struct {
	cfg HedgeConfig

	mu      sync.Mutex
	samples [hedgeSamples]time.Duration
	n       int // samples recorded, saturating at hedgeSamples
	next    int // ring position
	since   int // samples since the last recompute
	delay   atomic.Int64
	hedged  atomic.Int64
}

// NewHedge validates cfg and returns the layer.
func NewHedge(cfg HedgeConfig) (*Hedge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Hedge{cfg: cfg.withDefaults()}
	h.delay.Store(int64(cfg.Delay))
	return h, nil
}

// Delay returns the current hedging delay; 0 means calls are not hedged
// yet (adaptive delay without enough samples).
func (h *Hedge) Delay() time.Duration { return time.Duration(h.delay.Load()) }

// Hedged returns how many second attempts were sent.
func (h *Hedge) Hedged() int64 { return h.hedged.Load() }

// observe records the latency of a winning attempt.
func (h *Hedge) observe(d time.Duration) {
	if h.cfg.Delay > 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples[h.next] = d
	h.next = (h.next + 1) % hedgeSamples
	h.n = min(h.n+1, hedgeSamples)
	h.since++
	if h.n < h.cfg.MinSamples || h.since < hedgeRecompute && h.delay.Load() != 0 {
		return
	}
	h.since = 0
	s := slices.Clone(h.samples[:h.n])
	slices.Sort(s)
	p := s[min(int(float64(len(s))*h.cfg.Percentile), len(s)-1)]
	h.delay.Store(int64(max(p, h.cfg.MinDelay)))
}

// hedgeable reports whether req may be sent twice.
func hedgeable(req *http.Request) bool {
	if !retry.Safe(req.Method, req.Header.Get(retry.IdempotencyKeyHeader) != "", true) {
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

type hedgeResult struct {
	resp  *http.Response
	err   error
	i     int
	start time.Time
}

// Wrap returns next behind the hedging layer.
func (h *Hedge) Wrap(next http.RoundTripper) http.RoundTripper {
	return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		delay := h.Delay()
		if delay <= 0 || !hedgeable(req) {
			start := time.Now()
			resp, err := next.RoundTrip(req)
			if err == nil {
				h.observe(time.Since(start))
			}
			return resp, err
		}
		return h.hedge(next, req, delay)
	})
}

func (h *Hedge) hedge(next http.RoundTripper, req *http.Request, delay time.Duration) (*http.Response, error) {
	results := make(chan hedgeResult, 2)
	var cancels [2]context.CancelFunc
	send := func(i int, r *http.Request) {
		ctx, cancel := context.WithCancel(req.Context())
		cancels[i] = cancel
		start := time.Now()
		go func() {
			resp, err := next.RoundTrip(r.WithContext(ctx))
			results <- hedgeResult{resp, err, i, start}
		}()
	}
	send(0, req)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	launched, received := 1, 0
	var firstErr error
	for received < launched {
		select {
		case <-timer.C:
			if launched > 1 {
				continue
			}
			second := req
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					continue // cannot replay: let the first attempt finish alone
				}
				c := *req
				c.Body = body
				second = &c
			}
			h.hedged.Add(1)
			send(1, second)
			launched++
		case r := <-results:
			received++
			if r.err != nil {
				cancels[r.i]()
				if firstErr == nil {
					firstErr = r.err
				}
				if launched == 1 {
					return nil, r.err // failed before the hedge: not hedged
				}
				continue
			}
			// The winner. Cancel the loser and close whatever it returns.
			if launched > received {
				loser := 1 - r.i
				cancels[loser]()
				go func() {
					drainClose((<-results).resp)
				}()
			}
			h.observe(time.Since(r.start))
			r.resp.Body = afterClose(r.resp.Body, cancels[r.i])
			return r.resp, nil
		}
	}
	return nil, firstErr
}
