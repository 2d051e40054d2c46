package resilient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/retry"
)

// DefaultMaxReplayBody is the default RetryConfig.MaxReplayBody: 1 MiB.
const DefaultMaxReplayBody = 1 << 20

// RetryConfig configures a Retry layer.
type RetryConfig struct {
	// Retry is the policy: attempts, backoff, the conditions that make an
	// attempt retriable and the budget (see retry.Config; the zero value
	// never retries).
	Retry retry.Config
	// MaxReplayBody is the largest request body, in bytes, buffered so the
	// request can be resent when it has no GetBody. A request with a larger
	// body is sent once, never retried. Default DefaultMaxReplayBody; -1
	// buffers nothing (only requests with GetBody or no body are retried).
	MaxReplayBody int64
	// MaxRetryAfter is the longest Retry-After a retriable response may ask
	// for and still be retried (after waiting at least that long); a
	// response asking for longer is returned to the caller. Default 10s;
	// -1 ignores Retry-After.
	MaxRetryAfter time.Duration
	// Now returns the current time for the budget and Retry-After dates.
	// Default time.Now.
	Now func() time.Time
}

// DefaultMaxRetryAfter is the default RetryConfig.MaxRetryAfter.
const DefaultMaxRetryAfter = 10 * time.Second

// Retry is a layer that resends failed attempts. A failed attempt is
// retried when all of these hold:
//
//   - the policy's conditions (retry.Config.On) match its error or status;
//   - it is safe (retry.Safe): the attempt never reached the dependency (a
//     connect failure), or the method is idempotent, or the request carries
//     an Idempotency-Key header;
//   - the body can be replayed (no body, GetBody, or buffered within
//     MaxReplayBody);
//   - tries remain and the retry budget allows it;
//   - the caller's context is not done, and its deadline leaves time for
//     the wait;
//   - a Retry-After header on the response, if any, asks for no more than
//     MaxRetryAfter: the wait is then the longer of it and the backoff.
//
// Errors that inner layers produce locally (ErrThrottled, ErrCircuitOpen,
// ErrBulkheadFull) are never retried. The body of a response that is
// retried is closed. Create it with NewRetry; safe for concurrent use.
type Retry struct {
	policy        *retry.Policy
	maxBody       int64
	maxRetryAfter time.Duration
	now           func() time.Time
}

// NewRetry validates cfg and returns the layer. Its budget is shared by
// every transport the layer wraps.
func NewRetry(cfg RetryConfig) (*Retry, error) {
	p, err := retry.NewPolicy(cfg.Retry)
	if err != nil {
		return nil, err
	}
	if cfg.MaxRetryAfter < -1 {
		return nil, fmt.Errorf("max_retry_after: %v: expected -1 (ignore), 0 (default) or a positive duration", cfg.MaxRetryAfter)
	}
	r := &Retry{policy: p, maxBody: cfg.MaxReplayBody, maxRetryAfter: cfg.MaxRetryAfter, now: cfg.Now}
	if r.maxBody == 0 {
		r.maxBody = DefaultMaxReplayBody
	}
	if r.maxRetryAfter == 0 {
		r.maxRetryAfter = DefaultMaxRetryAfter
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Policy returns the compiled retry policy (for its Budget's counts).
func (r *Retry) Policy() *retry.Policy { return r.policy }

// Wrap returns next behind the retry layer.
func (r *Retry) Wrap(next http.RoundTripper) http.RoundTripper {
	return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		return r.roundTrip(next, req)
	})
}

func (r *Retry) roundTrip(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	if r.policy.Attempts() <= 1 {
		return next.RoundTrip(req)
	}
	ctx := req.Context()
	hasKey := req.Header.Get(retry.IdempotencyKeyHeader) != ""
	attemptReq, replayable, err := r.replayable(req)
	if err != nil {
		return nil, err
	}
	r.policy.Budget().Request(r.now())
	for attempt := 1; ; attempt++ {
		if attempt > 1 && attemptReq.GetBody != nil {
			body, err := attemptReq.GetBody()
			if err != nil {
				return nil, fmt.Errorf("retry: replaying the request body: %w", err)
			}
			a := *attemptReq
			a.Body = body
			req = &a
		} else {
			req = attemptReq
		}
		resp, err := next.RoundTrip(req)
		if attempt >= r.policy.Attempts() || !replayable || ctx.Err() != nil {
			return resp, err
		}
		var retriable bool
		if err != nil {
			kind := retry.Classify(err)
			retriable = r.policy.RetryOnError(kind) && retry.Safe(req.Method, hasKey, kind != retry.ConnectFailure)
		} else {
			retriable = r.policy.RetryOnStatus(resp.StatusCode) && retry.Safe(req.Method, hasKey, true)
		}
		if !retriable {
			return resp, err
		}
		now := r.now()
		wait := r.policy.Backoff().Delay(attempt, nil)
		if resp != nil && r.maxRetryAfter > 0 {
			if v := resp.Header.Get("Retry-After"); v != "" {
				if ra, ok := ParseRetryAfter(v, now); ok {
					if ra > r.maxRetryAfter {
						return resp, nil // the dependency asks for more patience than we have
					}
					wait = max(wait, ra)
				}
			}
		}
		if dl, ok := ctx.Deadline(); ok && now.Add(wait).After(dl) {
			return resp, err // the retry could not finish in time anyway
		}
		if !r.policy.Budget().TryRetry(now) {
			return resp, err
		}
		drainClose(resp)
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

// replayable returns the request to send first and whether it can be
// resent: a request without a body or with GetBody is replayable as is; a
// body within maxBody is read into memory and the returned copy gets a
// GetBody; a larger one is sent once as read so far plus the rest.
func (r *Retry) replayable(req *http.Request) (*http.Request, bool, error) {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return req, true, nil
	}
	if r.maxBody < 0 {
		return req, false, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, r.maxBody+1))
	if err != nil {
		_ = req.Body.Close()
		return nil, false, fmt.Errorf("retry: reading the request body to buffer it: %w", err)
	}
	a := *req
	if int64(len(buf)) > r.maxBody {
		a.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return &a, false, nil
	}
	_ = req.Body.Close()
	a.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	a.Body, _ = a.GetBody()
	a.ContentLength = int64(len(buf))
	return &a, true, nil
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ParseRetryAfter parses a Retry-After header value (RFC 9110 section
// 10.2.3): delay-seconds, or an HTTP-date taken relative to now (a date in
// the past means 0). It reports false for anything else, including
// negative or absurdly large numbers.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		var secs int64
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			secs = secs*10 + int64(c-'0')
			if secs > maxRetryAfterSeconds {
				return 0, false
			}
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		return 0, true
	}
	return d, true
}

// maxRetryAfterSeconds bounds a parsed delay (about 31 years) so that it
// cannot overflow a time.Duration.
const maxRetryAfterSeconds = 1 << 30
