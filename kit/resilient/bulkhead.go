package resilient

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
)

// BulkheadConfig configures a Bulkhead.
type BulkheadConfig struct {
	// MaxConcurrent is the largest number of calls in flight to one
	// dependency; a call is in flight from RoundTrip until its response
	// body is closed (or RoundTrip returns an error). At least 1.
	MaxConcurrent int
	// MaxQueue is how many calls may wait for a slot when MaxConcurrent are
	// in flight; a call beyond that fails at once with ErrBulkheadFull. A
	// waiting call gives up when its context is done. 0 means no queue.
	MaxQueue int
	// Key names the dependency of a request. Default HostKey.
	Key KeyFunc
}

// Validate reports every problem of c at once.
func (c BulkheadConfig) Validate() error {
	var errs []error
	if c.MaxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("max_concurrent: %d: expected at least 1", c.MaxConcurrent))
	}
	if c.MaxQueue < 0 {
		errs = append(errs, fmt.Errorf("max_queue: %d: expected 0 or more", c.MaxQueue))
	}
	return errors.Join(errs...)
}

// Bulkhead is a layer capping the calls in flight per dependency, so that
// one slow dependency cannot take every goroutine and connection of the
// caller. Create it with NewBulkhead; safe for concurrent use.
//
// The caller must close every response body it gets, as with any
// RoundTripper: the slot is held until then.
type Bulkhead struct {
	cfg  BulkheadConfig
	mu   sync.Mutex
	byID map[string]*compartment
}

// compartment is one dependency's slots.
type compartment struct {
	slots   chan struct{}
	waiting atomic.Int64
}

// BulkheadError is the error of a call the bulkhead refused. It matches
// ErrBulkheadFull.
type BulkheadError struct {
	// Key is the dependency.
	Key string
	// MaxConcurrent and MaxQueue are the limits that were full.
	MaxConcurrent, MaxQueue int
}

// Error names the dependency and the limits that were full.
func (e *BulkheadError) Error() string {
	return fmt.Sprintf("calling %s: bulkhead full: %d calls in flight and %d waiting", e.Key, e.MaxConcurrent, e.MaxQueue)
}

// Unwrap returns ErrBulkheadFull.
func (e *BulkheadError) Unwrap() error { return ErrBulkheadFull }

// NewBulkhead validates cfg and returns the layer.
func NewBulkhead(cfg BulkheadConfig) (*Bulkhead, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Key == nil {
		cfg.Key = HostKey
	}
	return &Bulkhead{cfg: cfg, byID: make(map[string]*compartment)}, nil
}

func (b *Bulkhead) compartment(key string) *compartment {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.byID[key]
	if c == nil {
		c = &compartment{slots: make(chan struct{}, b.cfg.MaxConcurrent)}
		b.byID[key] = c
	}
	return c
}

// Stats returns the calls in flight and waiting for the dependency key.
func (b *Bulkhead) Stats(key string) (inFlight, waiting int) {
	c := b.compartment(key)
	return len(c.slots), int(c.waiting.Load())
}

// Wrap returns next behind the bulkhead.
func (b *Bulkhead) Wrap(next http.RoundTripper) http.RoundTripper {
	return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		key := b.cfg.Key(req)
		c := b.compartment(key)
		if err := b.acquire(req, key, c); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, err
		}
		// The slot goes back with the body, or at once on an error or a
		// panic below (recovered above, by net/http's server for one, the
		// slot would be lost for good).
		held := true
		defer func() {
			if held {
				<-c.slots
			}
		}()
		resp, err := next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		held = false
		resp.Body = afterClose(resp.Body, func() { <-c.slots })
		return resp, nil
	})
}

func (b *Bulkhead) acquire(req *http.Request, key string, c *compartment) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	if c.waiting.Add(1) > int64(b.cfg.MaxQueue) {
		c.waiting.Add(-1)
		return &BulkheadError{Key: key, MaxConcurrent: b.cfg.MaxConcurrent, MaxQueue: b.cfg.MaxQueue}
	}
	defer c.waiting.Add(-1)
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-req.Context().Done():
		return fmt.Errorf("calling %s: waiting for a bulkhead slot: %w", key, req.Context().Err())
	}
}
