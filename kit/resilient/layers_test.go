package resilient

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/breaker"
)

func TestBreakerOpensPerHost(t *testing.T) {
	bad := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	good := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTransport(t)
	done := leakCheck(t, tr, bad, good)
	br, err := NewBreakers(BreakerConfig{Breaker: breaker.Config{MinRequests: 3, OpenFor: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	rt := br.Wrap(tr)
	for range 3 {
		if code, _, err := get(t, rt, bad.URL); err != nil || code != 500 {
			t.Fatalf("got %d %v", code, err)
		}
	}
	_, _, err = get(t, rt, bad.URL)
	var oe *breaker.OpenError
	if !errors.Is(err, ErrCircuitOpen) || !errors.As(err, &oe) || oe.RetryAfter() <= 0 {
		t.Fatalf("err = %v, want ErrCircuitOpen with a retry-after", err)
	}
	if bad.hits.Load() != 3 {
		t.Fatalf("the open breaker let %d requests through, want 3", bad.hits.Load())
	}
	if code, _, err := get(t, rt, good.URL); err != nil || code != 200 {
		t.Fatalf("another host: got %d %v, want 200: breakers are per host", code, err)
	}
	if s := br.For(good.Listener.Addr().String()).State(); s != breaker.Closed {
		t.Fatalf("good host's breaker is %v", s)
	}
	done()
}

func TestBreakerIgnoresCallerCancel(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	tr := newTransport(t)
	br, _ := NewBreakers(BreakerConfig{Breaker: breaker.Config{MinRequests: 1, OpenFor: time.Hour}})
	rt := br.Wrap(tr)
	req := mustGet(t, b.URL)
	ctx, cancel := contextWithCancel(req)
	go func() {
		waitFor(t, "request to arrive", func() bool { return b.hits.Load() == 1 })
		cancel()
	}()
	if _, _, err := do(rt, req.WithContext(ctx)); !errors.Is(err, errCanceled) {
		t.Fatalf("err = %v", err)
	}
	if s := br.For(b.Listener.Addr().String()).State(); s != breaker.Closed {
		t.Fatalf("breaker %v after a cancelled call, want closed", s)
	}
}

func TestBulkheadCapsConcurrencyExactly(t *testing.T) {
	const maxConc, queue, callers = 3, 2, 10
	release := make(chan struct{})
	var inFlight, peak atomic.Int64
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
		io.WriteString(w, "ok")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	bh, err := NewBulkhead(BulkheadConfig{MaxConcurrent: maxConc, MaxQueue: queue})
	if err != nil {
		t.Fatal(err)
	}
	rt := bh.Wrap(tr)
	key := b.Listener.Addr().String()

	var wg sync.WaitGroup
	var ok, full, other atomic.Int64
	for range callers {
		wg.Go(func() {
			code, _, err := get(t, rt, b.URL)
			switch {
			case err == nil && code == 200:
				ok.Add(1)
			case errors.Is(err, ErrBulkheadFull):
				var be *BulkheadError
				if !errors.As(err, &be) || be.Key != key || be.MaxConcurrent != maxConc {
					t.Errorf("bulkhead error %#v", err)
				}
				full.Add(1)
			default:
				t.Errorf("unexpected outcome %d %v", code, err)
				other.Add(1)
			}
		})
	}
	waitFor(t, "3 in flight at the backend, 2 queued, 5 refused", func() bool {
		f, w := bh.Stats(key)
		return inFlight.Load() == maxConc && f == maxConc && w == queue && full.Load() == callers-maxConc-queue
	})
	close(release)
	wg.Wait()
	if ok.Load() != maxConc+queue || full.Load() != callers-maxConc-queue || peak.Load() != maxConc {
		t.Fatalf("ok %d, refused %d, peak concurrency %d: want %d, %d, %d",
			ok.Load(), full.Load(), peak.Load(), maxConc+queue, callers-maxConc-queue, maxConc)
	}
	if f, w := bh.Stats(key); f != 0 || w != 0 {
		t.Fatalf("after the calls: %d in flight, %d waiting", f, w)
	}
	done()
}

func TestBulkheadQueuedCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { <-release })
	tr := newTransport(t)
	bh, _ := NewBulkhead(BulkheadConfig{MaxConcurrent: 1, MaxQueue: 1})
	rt := bh.Wrap(tr)
	first := make(chan error, 1)
	go func() { _, _, err := get(t, rt, b.URL); first <- err }()
	waitFor(t, "first call in flight", func() bool { return b.hits.Load() == 1 })
	req := mustGet(t, b.URL)
	ctx, cancel := contextWithCancel(req)
	key := b.Listener.Addr().String()
	go func() {
		waitFor(t, "second call queued", func() bool { _, w := bh.Stats(key); return w == 1 })
		cancel()
	}()
	if _, _, err := do(rt, req.WithContext(ctx)); !errors.Is(err, errCanceled) {
		t.Fatalf("queued call: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if f, w := bh.Stats(key); f != 0 || w != 0 {
		t.Fatalf("%d in flight, %d waiting", f, w)
	}
}

func TestThrottleRejectsLocallyWhenDependencyRejects(t *testing.T) {
	var status atomic.Int64
	status.Store(503)
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) })
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	var dice atomic.Value
	dice.Store(0.5)
	now := time.Unix(1_700_000_000, 0)
	var nowMu sync.Mutex
	th, err := NewThrottle(ThrottleConfig{
		K: 2, Window: time.Minute, MinRequests: 1,
		Rand: func() float64 { return dice.Load().(float64) },
		Now:  func() time.Time { nowMu.Lock(); defer nowMu.Unlock(); return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	rt := th.Wrap(tr)
	key := b.Listener.Addr().String()
	// p = requests/(requests+1) while nothing is accepted: 0, 1/2, 2/3...
	// With the dice at 0.5 the first two calls go out, the third is refused.
	for i := range 2 {
		if code, _, err := get(t, rt, b.URL); err != nil || code != 503 {
			t.Fatalf("call %d: %d %v", i, code, err)
		}
	}
	if p := th.RejectProbability(key); p != 2.0/3 {
		t.Fatalf("reject probability %v, want 2/3", p)
	}
	_, _, err = get(t, rt, b.URL)
	if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), key) {
		t.Fatalf("err = %v, want ErrThrottled naming %s", err, key)
	}
	if b.hits.Load() != 2 {
		t.Fatalf("backend saw %d calls, want 2", b.hits.Load())
	}
	if req, acc := th.Counts(key); req != 3 || acc != 0 {
		t.Fatalf("counts %v/%v, want 3 requests (the refused one too), 0 accepts", req, acc)
	}

	// The dependency recovers; a lucky draw lets a call through and each
	// accept lowers the probability until it is 0.
	status.Store(200)
	dice.Store(0.99)
	for th.RejectProbability(key) > 0 {
		if code, _, err := get(t, rt, b.URL); err != nil || code != 200 {
			t.Fatalf("got %d %v", code, err)
		}
	}
	if req, acc := th.Counts(key); req-2*acc > 0 {
		t.Fatalf("counts %v/%v: probability should be 0", req, acc)
	}

	// Outcomes age out of the window.
	status.Store(503)
	dice.Store(0.0)
	for th.RejectProbability(key) == 0 {
		get(t, rt, b.URL)
	}
	nowMu.Lock()
	now = now.Add(time.Minute)
	nowMu.Unlock()
	if req, acc := th.Counts(key); req != 0 || acc != 0 {
		t.Fatalf("after a window: %v/%v, want nothing counted", req, acc)
	}
	done()
}

func TestHedgeCancelsSlowerAttempt(t *testing.T) {
	cancelled := make(chan struct{})
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.WriteHeader(200)
			w.(http.Flusher).Flush() // headers out, body never ends
			<-r.Context().Done()
			close(cancelled)
			return
		}
		io.WriteString(w, "fast")
	})
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	h, err := NewHedge(HedgeConfig{Delay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt's headers arrive at once: the transport holds
	// them back until the attempt is cancelled, so the slower attempt
	// returns a response whose body the hedge layer must close.
	var calls atomic.Int64
	loserClosed := make(chan struct{})
	slowHeaders := RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(r)
		if calls.Add(1) == 1 {
			<-r.Context().Done()
			if err == nil {
				resp.Body = afterClose(resp.Body, func() { close(loserClosed) })
			}
		}
		return resp, err
	})
	code, body, err := get(t, h.Wrap(slowHeaders), b.URL)
	if err != nil || code != 200 || body != "fast" {
		t.Fatalf("got %d %q %v, want the hedged attempt's answer", code, body, err)
	}
	recv(t, cancelled, "the backend to see the slower attempt cancelled")
	recv(t, loserClosed, "the slower attempt's response body to be closed")
	if h.Hedged() != 1 || b.hits.Load() != 2 {
		t.Fatalf("hedged %d, backend hits %d: want 1 and 2", h.Hedged(), b.hits.Load())
	}
	done()
}

func TestHedgeFirstAnswerWinsWithoutHedge(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { io.WriteString(w, "one") })
	tr := newTransport(t)
	done := leakCheck(t, tr, b)
	h, _ := NewHedge(HedgeConfig{Delay: time.Hour})
	code, body, err := get(t, h.Wrap(tr), b.URL)
	if err != nil || code != 200 || body != "one" || h.Hedged() != 0 || b.hits.Load() != 1 {
		t.Fatalf("got %d %q %v, hedged %d", code, body, err, h.Hedged())
	}
	done()
}

func TestHedgeNotForPost(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	})
	tr := newTransport(t)
	h, _ := NewHedge(HedgeConfig{Delay: time.Nanosecond})
	rt := h.Wrap(tr)
	res := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", b.URL, strings.NewReader("order"))
		_, _, err := do(rt, req)
		res <- err
	}()
	// A hedge would be sent 1ns after the POST; wait for the POST to
	// arrive, then give the hedge timer ample time to fire if it were armed
	// (this is a check that something does NOT happen).
	waitFor(t, "the POST", func() bool { return b.hits.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	close(release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if h.Hedged() != 0 || b.hits.Load() != 1 {
		t.Fatalf("a POST was hedged: %d hedges, %d hits", h.Hedged(), b.hits.Load())
	}
}

func TestHedgeBothFail(t *testing.T) {
	errBoom := errors.New("boom")
	var calls atomic.Int64
	h, _ := NewHedge(HedgeConfig{Delay: time.Nanosecond})
	second := make(chan struct{})
	rt := h.Wrap(RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			<-second // fail only after the hedge is out
		} else {
			defer close(second)
		}
		return nil, errBoom
	}))
	_, _, err := get(t, rt, "http://127.0.0.1:1/")
	if !errors.Is(err, errBoom) || calls.Load() != 2 {
		t.Fatalf("err %v after %d attempts, want boom after 2", err, calls.Load())
	}
}

func TestHedgeAdaptiveDelay(t *testing.T) {
	h, _ := NewHedge(HedgeConfig{MinSamples: 20})
	for i := 1; i <= 19; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	if h.Delay() != 0 {
		t.Fatalf("delay %v before MinSamples, want 0 (no hedging)", h.Delay())
	}
	for i := 20; i <= 100; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	// 100 samples 1..100ms; p95 is the 96th smallest. Recomputed every 16
	// samples, so it lags by up to 15 samples.
	if d := h.Delay(); d < 80*time.Millisecond || d > 96*time.Millisecond {
		t.Fatalf("delay %v, want about the p95 of 1..100ms", d)
	}
}

func TestTracePropagation(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var seen atomic.Value
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("traceparent"))
	})
	tr := newTransport(t)
	rt := Trace(tr)

	req := mustGet(t, b.URL)
	req = req.WithContext(ContextWithTraceparent(req.Context(), tp))
	if _, _, err := do(rt, req); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != tp {
		t.Fatalf("backend saw traceparent %q, want %q", seen.Load(), tp)
	}
	if req.Header.Get("traceparent") != "" {
		t.Fatal("the caller's request was modified")
	}

	// A traceparent already on the request wins.
	const own = "00-11111111111111111111111111111111-2222222222222222-00"
	req = mustGet(t, b.URL)
	req.Header.Set("traceparent", own)
	req = req.WithContext(ContextWithTraceparent(req.Context(), tp))
	do(rt, req)
	if seen.Load() != own {
		t.Fatalf("backend saw %q, want the request's own %q", seen.Load(), own)
	}

	// An invalid value is never put in the context.
	req = mustGet(t, b.URL)
	req = req.WithContext(ContextWithTraceparent(req.Context(), "00-zz-bad"))
	do(rt, req)
	if seen.Load() != "" {
		t.Fatalf("backend saw %q, want none", seen.Load())
	}
}

func TestParseTraceparent(t *testing.T) {
	good := []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future",
	}
	for _, s := range good {
		if _, err := ParseTraceparent(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := map[string]string{
		"": "bytes",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x":  "after the flags",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":    "version ff",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":    "trace id is all zeros",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":    "parent id is all zeros",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":    "lower-case hex",
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01":    "separated",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":    "version",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00": "flags",
	}
	for s, want := range bad {
		_, err := ParseTraceparent(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want one mentioning %q", s, err, want)
		}
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future")
	f.Add("ff-00000000000000000000000000000000-0000000000000000-00")
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTraceparent(s)
		if err != nil {
			return
		}
		// What parses is 55 bytes of lower-case hex and dashes whose
		// fields decode back to the input.
		re := strings.ToLower(s[:55])
		if re != s[:55] || tp.TraceID == [16]byte{} || tp.ParentID == [8]byte{} || tp.Version == 0xff {
			t.Fatalf("accepted %q as %+v", s, tp)
		}
	})
}

func TestThrottleWaitsForMinRequests(t *testing.T) {
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	tr := newTransport(t)
	th, err := NewThrottle(ThrottleConfig{MinRequests: 5, Rand: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	rt := th.Wrap(tr)
	for i := range 5 {
		if code, _, err := get(t, rt, b.URL); err != nil || code != 503 {
			t.Fatalf("call %d: %d %v: want it sent, the window holds fewer than 5 requests", i, code, err)
		}
	}
	if _, _, err := get(t, rt, b.URL); !errors.Is(err, ErrThrottled) {
		t.Fatalf("6th call: %v, want ErrThrottled", err)
	}
}

func TestBreakerIgnoresLocalRefusals(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) { <-release })
	tr := newTransport(t)
	br, _ := NewBreakers(BreakerConfig{Breaker: breaker.Config{MinRequests: 1, OpenFor: time.Hour}})
	bh, _ := NewBulkhead(BulkheadConfig{MaxConcurrent: 1})
	rt := Chain(tr, br.Wrap, bh.Wrap)
	first := make(chan error, 1)
	go func() { _, _, err := get(t, rt, b.URL); first <- err }()
	waitFor(t, "first call in flight", func() bool { return b.hits.Load() == 1 })
	if _, _, err := get(t, rt, b.URL); !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("err = %v, want ErrBulkheadFull", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if s := br.For(b.Listener.Addr().String()).State(); s != breaker.Closed {
		t.Fatalf("breaker %v: a bulkhead refusal must not count as the dependency failing", s)
	}
}
