package resilient_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/kit/resilient"
	"github.com/switchyard/switchyard/retry"
)

func Example() {
	// A dependency that is overloaded for its first two requests.
	var hits atomic.Int64
	payments := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "paid (traceparent %s)", r.Header.Get("traceparent"))
	}))
	defer payments.Close()

	rt, err := resilient.New(resilient.Options{
		Timeout:        5 * time.Second,
		AttemptTimeout: time.Second,
		Retry: &retry.Config{
			Attempts: 3,
			Base:     10 * time.Millisecond,
			On:       []string{"connect_failure", "timeout", "gateway_error"},
		},
		Breaker:  &breaker.Config{MinRequests: 20, FailureRatio: 0.5},
		Bulkhead: &resilient.BulkheadConfig{MaxConcurrent: 64, MaxQueue: 128},
		Throttle: &resilient.ThrottleConfig{K: 2},
		Hedge:    &resilient.HedgeConfig{}, // hedge at the observed p95
	})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: rt}

	// The caller's trace context travels with the request.
	req, _ := http.NewRequest("PUT", payments.URL+"/payments/42", nil)
	ctx := resilient.ContextWithTraceparent(req.Context(),
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	fmt.Println("attempts:", hits.Load())

	// A POST without an Idempotency-Key is never retried.
	hits.Store(0)
	resp, err = client.Post(payments.URL+"/payments", "text/plain", nil)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("POST:", resp.StatusCode, "attempts:", hits.Load())
	// Output:
	// 200 paid (traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01)
	// attempts: 3
	// POST: 503 attempts: 1
}

// Each layer is a func(http.RoundTripper) http.RoundTripper usable alone.
func ExampleBulkhead() {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer slow.Close()
	defer close(release)

	bh, err := resilient.NewBulkhead(resilient.BulkheadConfig{MaxConcurrent: 1})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: bh.Wrap(http.DefaultTransport)}
	go func() { // takes the only slot until released
		if resp, err := client.Get(slow.URL); err == nil {
			resp.Body.Close()
		}
	}()
	for {
		if inFlight, _ := bh.Stats(slow.Listener.Addr().String()); inFlight == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, err = client.Get(slow.URL)
	fmt.Println(errors.Is(err, resilient.ErrBulkheadFull))
	// Output:
	// true
}
