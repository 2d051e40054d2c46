package resilient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/retry"
)

func retryLayer(t *testing.T, cfg RetryConfig) *Retry {
	t.Helper()
	r, err := NewRetry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var retry503 = retry.Config{Attempts: 3, Base: time.Millisecond, On: []string{"gateway_error", "connect_failure", "timeout"}}

func TestRetryGetUntilSuccess(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n < 3 {
			w.WriteHeader(503)
			io.WriteString(w, "busy, a body the retry layer must close")
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503}).Wrap(tr)
	code, body, err := get(t, rt, b.URL)
	if err != nil || code != 200 || body != "ok" {
		t.Fatalf("got %d %q %v, want 200 ok", code, body, err)
	}
	if b.hits.Load() != 3 {
		t.Fatalf("backend saw %d requests, want 3", b.hits.Load())
	}
	done()
}

func TestRetryGivesUpAfterAttempts(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503}).Wrap(tr)
	code, _, err := get(t, rt, b.URL)
	if err != nil || code != 503 {
		t.Fatalf("got %d %v, want the last 503", code, err)
	}
	if b.hits.Load() != 3 {
		t.Fatalf("backend saw %d requests, want 3", b.hits.Load())
	}
	done()
}

// opaqueBody is a request body http.NewRequest cannot give a GetBody.
type opaqueBody struct{ io.Reader }

func TestRetryPostIsNotRetried(t *testing.T) {
	var bodies []string
	var mu sync.Mutex
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(data))
		mu.Unlock()
		w.WriteHeader(503)
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503}).Wrap(tr)

	req, _ := http.NewRequest("POST", b.URL, opaqueBody{strings.NewReader("charge 10")})
	code, _, err := do(rt, req)
	if err != nil || code != 503 {
		t.Fatalf("got %d %v, want 503", code, err)
	}
	if b.hits.Load() != 1 {
		t.Fatalf("a POST without Idempotency-Key reached the backend %d times, want 1", b.hits.Load())
	}

	// With an Idempotency-Key it is retried, the buffered body replayed.
	req, _ = http.NewRequest("POST", b.URL, opaqueBody{strings.NewReader("charge 10")})
	req.Header.Set("Idempotency-Key", "k1")
	if code, _, err := do(rt, req); err != nil || code != 503 {
		t.Fatalf("got %d %v, want 503", code, err)
	}
	if b.hits.Load() != 4 {
		t.Fatalf("backend saw %d requests, want 1+3", b.hits.Load())
	}
	mu.Lock()
	for i, got := range bodies {
		if got != "charge 10" {
			t.Errorf("attempt %d sent body %q, want %q", i, got, "charge 10")
		}
	}
	mu.Unlock()
	done()
}

func TestRetryBodyTooLargeIsSentOnce(t *testing.T) {
	var got atomic.Int64
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		got.Store(int64(len(data)))
		w.WriteHeader(503)
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503, MaxReplayBody: 10}).Wrap(tr)
	req, _ := http.NewRequest("PUT", b.URL, opaqueBody{strings.NewReader(strings.Repeat("x", 100))})
	if code, _, err := do(rt, req); err != nil || code != 503 {
		t.Fatalf("got %d %v, want 503", code, err)
	}
	if b.hits.Load() != 1 || got.Load() != 100 {
		t.Fatalf("backend saw %d requests with %d bytes, want 1 with the whole 100", b.hits.Load(), got.Load())
	}
	done()
}

func TestRetryConnectFailureRetriesEvenPost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	var attempts atomic.Int64
	tr := newTransport(t)
	counting := RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return tr.RoundTrip(r)
	})
	rt := retryLayer(t, RetryConfig{Retry: retry503}).Wrap(counting)
	req, _ := http.NewRequest("POST", "http://"+addr, strings.NewReader("x"))
	_, _, err = do(rt, req)
	if retry.Classify(err) != retry.ConnectFailure {
		t.Fatalf("err = %v, want a connect failure", err)
	}
	if attempts.Load() != 3 {
		t.Fatalf("%d attempts, want 3: a request that never reached the backend is safe to retry", attempts.Load())
	}
}

func TestRetryBudgetStopsRetryStorm(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	tr := newTransport(t)
	cfg := retry503
	cfg.Budget = 0.1
	cfg.MinRetriesPerSecond = -1
	now := time.Unix(1_700_000_000, 0)
	r := retryLayer(t, RetryConfig{Retry: cfg, Now: func() time.Time { return now }})
	rt := r.Wrap(tr)
	for range 20 {
		if code, _, err := get(t, rt, b.URL); err != nil || code != 503 {
			t.Fatalf("got %d %v", code, err)
		}
	}
	reqs, retries := r.Policy().Budget().Counts(now)
	if reqs != 20 || retries > 2 || b.hits.Load() != 20+int64(retries) {
		t.Fatalf("%d requests, %d retries, %d hits: want retries within 10%% of 20", reqs, retries, b.hits.Load())
	}
}

func TestRetryStopsWhenCallerCancels(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	tr := newTransport(t)
	cfg := retry503
	cfg.Base, cfg.Jitter = time.Hour, "none"
	rt := retryLayer(t, RetryConfig{Retry: cfg}).Wrap(tr)
	req, _ := http.NewRequest("GET", b.URL, nil)
	ctx, cancel := contextWithCancel(req)
	go func() {
		waitFor(t, "first attempt", func() bool { return b.hits.Load() == 1 })
		cancel()
	}()
	// The cancel lands either during the hour-long backoff (the call ends
	// with the context's error) or just before the layer decides to retry
	// (the 503 is returned): either way at once, and without a retry.
	code, _, err := do(rt, req.WithContext(ctx))
	if !errors.Is(err, errCanceled) && !(err == nil && code == 503) {
		t.Fatalf("got %d %v, want context.Canceled or the 503", code, err)
	}
	if b.hits.Load() != 1 {
		t.Fatalf("backend saw %d requests after the caller cancelled, want 1", b.hits.Load())
	}
}

func TestTimeoutPerAttemptIsRetried(t *testing.T) {
	cancelled := make(chan struct{})
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up
			close(cancelled)
			return
		}
		io.WriteString(w, "second")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt, err := New(Options{Transport: tr, Retry: &retry503, AttemptTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := get(t, rt, b.URL)
	if err != nil || code != 200 || body != "second" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
	recv(t, cancelled, "the backend to see the first attempt cancelled")
	done()
}

func TestTimeoutOverall(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt, err := New(Options{Transport: tr, Retry: &retry503, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = get(t, rt, b.URL)
	var te *TimeoutError
	if !errors.As(err, &te) || te.After != 50*time.Millisecond || !errors.Is(err, errDeadline) {
		t.Fatalf("err = %v, want a *TimeoutError after 50ms matching context.DeadlineExceeded", err)
	}
	if b.hits.Load() != 1 {
		t.Fatalf("%d attempts: the overall timeout must not be retried", b.hits.Load())
	}
	done()
}

func TestTimeoutCoversBodyRead(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "head")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := Timeout(50 * time.Millisecond)(tr)
	resp, err := rt.RoundTrip(mustGet(t, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, errDeadline) {
		t.Fatalf("reading the body: %v, want the deadline", err)
	}
	done()
}

func TestRetryReplaysBodyWithGetBody(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(data))
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(502)
		}
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503, MaxReplayBody: -1}).Wrap(tr)
	// strings.Reader: http.NewRequest sets GetBody, so nothing is buffered.
	req, _ := http.NewRequest("PUT", b.URL, strings.NewReader("seat 12A"))
	if code, _, err := do(rt, req); err != nil || code != 200 {
		t.Fatalf("got %d %v", code, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 3 || bodies[0] != "seat 12A" || bodies[1] != "seat 12A" || bodies[2] != "seat 12A" {
		t.Fatalf("bodies %q, want \"seat 12A\" three times", bodies)
	}
	done()
}

func TestRetryAfterConnectionDropped(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // drop the connection without an answer
			}
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	cfg := retry503
	cfg.On = []string{"reset"}
	rt := retryLayer(t, RetryConfig{Retry: cfg}).Wrap(tr)
	if code, body, err := get(t, rt, b.URL); err != nil || code != 200 || body != "ok" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
	// The same failure for a POST is not retried: it reached the backend.
	b.hits.Store(0)
	req, _ := http.NewRequest("POST", b.URL, strings.NewReader("x"))
	if _, _, err := do(rt, req); retry.Classify(err) != retry.Reset || b.hits.Load() != 1 {
		t.Fatalf("POST: err %v after %d hits, want a reset after 1", err, b.hits.Load())
	}
	done()
}

func TestRetryDoesNotWaitOnStalledBody(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.WriteHeader(503)
			io.WriteString(w, "part of a body that never ends")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503}).Wrap(tr)
	if code, body, err := get(t, rt, b.URL); err != nil || code != 200 || body != "ok" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
	done()
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	var retryAfter atomic.Value
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n%2 == 1 {
			w.Header().Set("Retry-After", retryAfter.Load().(string))
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	rt := retryLayer(t, RetryConfig{Retry: retry503}).Wrap(tr)

	// Asks for an hour, more than MaxRetryAfter (10s): not retried.
	retryAfter.Store("3600")
	if code, _, err := get(t, rt, b.URL); err != nil || code != 503 || b.hits.Load() != 1 {
		t.Fatalf("got %d %v after %d hits, want the 503 after 1", code, err, b.hits.Load())
	}

	// Asks for 5s but the caller's deadline is nearer: returned at once.
	b.hits.Store(0)
	retryAfter.Store("5")
	req := mustGet(t, b.URL)
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if code, _, err := do(rt, req.WithContext(ctx)); err != nil || code != 503 || b.hits.Load() != 1 {
		t.Fatalf("got %d %v after %d hits, want the 503 after 1", code, err, b.hits.Load())
	}

	// Asks for 1s: retried, after at least that long (a lower bound, which
	// no scheduler delay can break).
	b.hits.Store(0)
	retryAfter.Store("1")
	start := time.Now()
	if code, body, err := get(t, rt, b.URL); err != nil || code != 200 || body != "ok" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
	if waited := time.Since(start); waited < time.Second || b.hits.Load() != 2 {
		t.Fatalf("retried after %v and %d hits, want at least 1s and 2 hits", waited, b.hits.Load())
	}
	done()
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{"Fri, 04 Dec 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Fri, 04 Dec 2026 11:00:00 GMT", 0, true}, // in the past
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"12abc", 0, false},
		{"99999999999999999999999", 0, false},
		{"soon", 0, false},
	}
	for _, c := range cases {
		got, ok := ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "Fri, 04 Dec 2026 12:00:30 GMT", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if !ok && d != 0 || d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}
