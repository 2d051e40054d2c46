package resilient

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/retry"
)

func fullOptions(tr http.RoundTripper) Options {
	return Options{
		Transport:      tr,
		Timeout:        10 * time.Second,
		AttemptTimeout: 5 * time.Second,
		Retry:          &retry.Config{Attempts: 3, Base: time.Millisecond, On: []string{"gateway_error", "connect_failure", "timeout"}},
		Breaker:        &breaker.Config{},
		Bulkhead:       &BulkheadConfig{MaxConcurrent: 4, MaxQueue: 4},
		Throttle:       &ThrottleConfig{},
		Hedge:          &HedgeConfig{MinSamples: 10},
	}
}

// TestStackEndToEnd runs concurrent idempotent calls through every layer
// against a backend failing the first attempt of every fourth call with
// 503 (more would make the throttle, rightly, start rejecting: with K=2 it
// tolerates up to half the attempts rejected): all succeed, the trace
// context reaches the backend, and nothing leaks.
func TestStackEndToEnd(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var badTrace atomic.Int64
	var seen sync.Map
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("traceparent") != tp {
			badTrace.Add(1)
		}
		id, _ := strconv.Atoi(r.Header.Get("X-Call"))
		if _, again := seen.LoadOrStore(id, true); !again && id%4 == 0 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt, err := New(fullOptions(tr))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed, calls atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 25 {
				req := mustGet(t, b.URL)
				req.Header.Set("X-Call", strconv.FormatInt(calls.Add(1), 10))
				req = req.WithContext(ContextWithTraceparent(req.Context(), tp))
				if code, body, err := do(rt, req); err != nil || code != 200 || body != "ok" {
					t.Errorf("got %d %q %v", code, body, err)
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || badTrace.Load() != 0 {
		t.Fatalf("%d calls failed, %d arrived without the traceparent", failed.Load(), badTrace.Load())
	}
	if b.hits.Load() < 125 {
		t.Fatalf("backend saw %d requests, want at least 100 calls + 25 retries", b.hits.Load())
	}
	done()
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(Options{
		Timeout:  -1,
		Retry:    &retry.Config{Attempts: 99},
		Breaker:  &breaker.Config{FailureRatio: 2},
		Bulkhead: &BulkheadConfig{MaxConcurrent: 0, MaxQueue: -1},
		Throttle: &ThrottleConfig{K: 0.5, MinRequests: -1},
		Hedge:    &HedgeConfig{Percentile: 1.5},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"timeout: -1ns", "retry.attempts: 99", "breaker.failure_ratio: 2",
		"bulkhead.max_concurrent: 0", "bulkhead.max_queue: -1", "throttle.k: 0.5", "hedge.percentile: 1.5", "throttle.min_requests: -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNewZeroOptionsPassesThrough(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") })
	tr := newTransport(t)
	rt, err := New(Options{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := get(t, rt, b.URL); err != nil || code != 200 || body != "plain" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
}

// TestStackHedgesPostWithIdempotencyKey: a POST with an Idempotency-Key and
// a body without GetBody is buffered by the retry layer, so the hedge below
// it can send the same body twice.
func TestStackHedgesPostWithIdempotencyKey(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(data))
		mu.Unlock()
		if n == 1 {
			<-r.Context().Done() // the first attempt hangs until cancelled
			return
		}
		io.WriteString(w, "booked")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	o := fullOptions(tr)
	o.Hedge = &HedgeConfig{Delay: 5 * time.Millisecond}
	rt, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", b.URL, opaqueBody{strings.NewReader("ride 7")})
	req.Header.Set("Idempotency-Key", "ride-7")
	if code, body, err := do(rt, req); err != nil || code != 200 || body != "booked" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
	waitFor(t, "both attempts at the backend", func() bool { return b.hits.Load() == 2 })
	done()
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || bodies[0] != "ride 7" || bodies[1] != "ride 7" {
		t.Fatalf("bodies %q, want the same body twice", bodies)
	}
}
