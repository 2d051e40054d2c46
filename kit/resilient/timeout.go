package resilient

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// TimeoutError is the error of a call (or attempt) that ran out of the time
// a Timeout layer gave it. It wraps context.DeadlineExceeded, so
// retry.Classify sees a timeout.
type TimeoutError struct {
	// After is the timeout that passed.
	After time.Duration
	// Err is the transport's error.
	Err error
}

// Error says which timeout passed and what the transport reported.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %v: %v", e.After, e.Err)
}

// Unwrap returns the transport's error and context.DeadlineExceeded.
func (e *TimeoutError) Unwrap() []error { return []error{e.Err, context.DeadlineExceeded} }

// Timeout returns a layer that gives each request passing it at most d,
// from the call to the end of reading the response body: the deadline stays
// in force until the body is closed. Placed outside a retry layer it bounds
// the whole call; inside, each attempt. d <= 0 means no timeout.
func Timeout(d time.Duration) Middleware {
	return func(next http.RoundTripper) http.RoundTripper {
		if d <= 0 {
			return next
		}
		return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
			ctx, cancel := context.WithTimeout(req.Context(), d)
			resp, err := next.RoundTrip(req.WithContext(ctx))
			if err != nil {
				// Our deadline, not the caller's, ended the call.
				if ctx.Err() == context.DeadlineExceeded && req.Context().Err() == nil {
					err = &TimeoutError{After: d, Err: err}
				}
				cancel()
				return nil, err
			}
			resp.Body = afterClose(resp.Body, cancel)
			return resp, nil
		})
	}
}
