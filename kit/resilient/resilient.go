// Package resilient builds an http.RoundTripper stack for service-to-service
// calls out of switchyard's retry and breaker packages: retries with backoff
// and a budget, a circuit breaker per host, per-attempt and overall
// timeouts, a bulkhead, adaptive client-side throttling, hedging and
// traceparent propagation.
//
// Every layer is a Middleware (a func from RoundTripper to RoundTripper)
// usable on its own; New stacks them in the order documented on New.
//
// Errors a layer produces locally are typed and match errors.Is:
// ErrBulkheadFull, ErrThrottled and ErrCircuitOpen (breaker.ErrOpen).
// Every layer closes the body of a response it does not hand back (a
// retried or a losing hedged attempt), so abandoned attempts never hold a
// connection.
package resilient

import (
	"errors"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/retry"
)

// Middleware wraps a RoundTripper in a layer.
type Middleware func(http.RoundTripper) http.RoundTripper

// RoundTripFunc adapts a function to http.RoundTripper.
type RoundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f(req).
func (f RoundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

var _ http.RoundTripper = RoundTripFunc(nil)

// Errors produced locally, without the dependency seeing the request.
var (
	// ErrBulkheadFull is matched by the error of a call refused because
	// its dependency already had the maximum calls in flight and the wait
	// queue was full.
	ErrBulkheadFull = errors.New("bulkhead full")
	// ErrThrottled is matched by the error of a call the adaptive
	// throttle rejected locally because the dependency has been rejecting
	// calls.
	ErrThrottled = errors.New("throttled locally: dependency is rejecting calls")
	// ErrCircuitOpen is breaker.ErrOpen: matched by the error of a call
	// refused because the dependency's circuit breaker is open. The error
	// is also an *breaker.OpenError (errors.As) that tells when to retry.
	ErrCircuitOpen = breaker.ErrOpen
)

// KeyFunc names the dependency a request goes to; bulkheads, breakers and
// throttles keep one state per key.
type KeyFunc func(*http.Request) string

// HostKey is the default KeyFunc: the request URL's host (with its port).
func HostKey(req *http.Request) string { return req.URL.Host }

// Chain applies middleware to rt so that the first middleware is the
// outermost layer (it sees the request first).
func Chain(rt http.RoundTripper, mw ...Middleware) http.RoundTripper {
	for i := len(mw) - 1; i >= 0; i-- {
		rt = mw[i](rt)
	}
	return rt
}

// Options configures the stack New builds. A nil layer config (or a zero
// timeout) leaves that layer out; the zero Options is a transport that only
// propagates traceparent.
type Options struct {
	// Transport sends the attempts. Default http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds the whole call including retries, backoff waits and
	// reading the response body. 0 means none.
	Timeout time.Duration
	// AttemptTimeout bounds each attempt (each retry and each hedged
	// attempt) including reading its body. 0 means none. With Retry.On
	// holding "timeout", an attempt that timed out is retried.
	AttemptTimeout time.Duration
	// Retry configures retries (see retry.Config; its zero value never
	// retries). nil means no retry layer.
	Retry *retry.Config
	// MaxReplayBody is the largest request body, in bytes, the retry layer
	// buffers to replay a request without GetBody. A larger body is sent
	// once and the request is not retried or hedged. Default 1 MiB.
	MaxReplayBody int64
	// MaxRetryAfter is the longest Retry-After a retriable response may
	// ask for and still be retried. Default 10s; -1 ignores Retry-After.
	MaxRetryAfter time.Duration
	// Breaker configures a circuit breaker per dependency (see
	// breaker.Config; zero fields take its defaults). nil means none.
	Breaker *breaker.Config
	// Bulkhead caps concurrent calls per dependency. nil means none.
	Bulkhead *BulkheadConfig
	// Throttle configures adaptive client-side throttling per dependency.
	// nil means none.
	Throttle *ThrottleConfig
	// Hedge configures hedging of idempotent calls. nil means none.
	Hedge *HedgeConfig
	// Key names the dependency of a request for the breaker, bulkhead and
	// throttle. Default HostKey.
	Key KeyFunc
}

// New builds the stack described by opts. From the outside in:
//
//	Trace → Timeout(opts.Timeout) → Retry → Throttle → Breaker →
//	Bulkhead → Hedge → Timeout(opts.AttemptTimeout) → opts.Transport
//
// The order is deliberate: every retry passes the throttle, the breaker and
// the bulkhead again, so a retry cannot slip past an open breaker, is
// counted by the throttle and waits for a bulkhead slot like any call;
// errors those layers produce locally (ErrThrottled, ErrCircuitOpen,
// ErrBulkheadFull) are never retried, so the call fails fast. Hedging sits
// below the bulkhead and breaker: a hedged pair is one call to them and one
// outcome, and a hedge does not take a second bulkhead slot (it does use a
// second connection). The attempt timeout is innermost so each hedged or
// retried attempt gets its own deadline.
//
// New validates every layer's config and returns all problems joined.
func New(opts Options) (http.RoundTripper, error) {
	rt := opts.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	var errs []error
	var mw []Middleware
	mw = append(mw, Trace)
	if opts.Timeout < 0 {
		errs = append(errs, errors.New("timeout: "+opts.Timeout.String()+": expected a positive duration or 0 for none"))
	} else if opts.Timeout > 0 {
		mw = append(mw, Timeout(opts.Timeout))
	}
	if opts.Retry != nil {
		r, err := NewRetry(RetryConfig{Retry: *opts.Retry, MaxReplayBody: opts.MaxReplayBody, MaxRetryAfter: opts.MaxRetryAfter})
		if err != nil {
			errs = append(errs, prefix("retry", err))
		} else {
			mw = append(mw, r.Wrap)
		}
	}
	if opts.Throttle != nil {
		c := *opts.Throttle
		if c.Key == nil {
			c.Key = opts.Key
		}
		t, err := NewThrottle(c)
		if err != nil {
			errs = append(errs, prefix("throttle", err))
		} else {
			mw = append(mw, t.Wrap)
		}
	}
	if opts.Breaker != nil {
		b, err := NewBreakers(BreakerConfig{Breaker: *opts.Breaker, Key: opts.Key})
		if err != nil {
			errs = append(errs, prefix("breaker", err))
		} else {
			mw = append(mw, b.Wrap)
		}
	}
	if opts.Bulkhead != nil {
		c := *opts.Bulkhead
		if c.Key == nil {
			c.Key = opts.Key
		}
		b, err := NewBulkhead(c)
		if err != nil {
			errs = append(errs, prefix("bulkhead", err))
		} else {
			mw = append(mw, b.Wrap)
		}
	}
	if opts.Hedge != nil {
		h, err := NewHedge(*opts.Hedge)
		if err != nil {
			errs = append(errs, prefix("hedge", err))
		} else {
			mw = append(mw, h.Wrap)
		}
	}
	if opts.AttemptTimeout < 0 {
		errs = append(errs, errors.New("attempt_timeout: "+opts.AttemptTimeout.String()+": expected a positive duration or 0 for none"))
	} else if opts.AttemptTimeout > 0 {
		mw = append(mw, Timeout(opts.AttemptTimeout))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return Chain(rt, mw...), nil
}

// prefixError puts the layer's name before a config error.
type prefixError struct {
	layer string
	err   error
}

func (e *prefixError) Error() string { return e.layer + "." + e.err.Error() }
func (e *prefixError) Unwrap() error { return e.err }

// prefix names the layer in every problem of a (possibly joined) error.
func prefix(layer string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = &prefixError{layer, e}
		}
		return errors.Join(out...)
	}
	return &prefixError{layer, err}
}
