package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/upstream"
)

type staticResolver struct{ r *Route }

func (s staticResolver) Resolve(*http.Request) (*Route, bool) { return s.r, true }

// cannedTransport answers every attempt with the same 1 KiB body, so a
// benchmark measures the proxy alone.
type cannedTransport struct{ body []byte }

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       r,
	}, nil
}

// discardWriter is a reusable ResponseWriter.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchHandler(b *testing.B, withMetrics bool) (*Handler, *http.Request) {
	targets := []*upstream.Target{upstream.NewTarget("10.0.0.1:80", 0, 1), upstream.NewTarget("10.0.0.2:80", 1, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		b.Fatal(err)
	}
	var m *Metrics
	if withMetrics {
		if m, err = NewMetrics(prometheus.NewRegistry()); err != nil {
			b.Fatal(err)
		}
	}
	pool, err := NewPool(PoolConfig{Name: "u", Targets: targets, Policy: pol, Metrics: m,
		Transport: cannedTransport{bytes.Repeat([]byte("x"), 1024)}})
	if err != nil {
		b.Fatal(err)
	}
	rt := &Route{Name: "r", Pool: pool}
	h := New(staticResolver{rt}, Options{Metrics: m})
	h.Prepare(rt)
	req := httptest.NewRequest("GET", "http://example.com/v1/rides?x=1", nil)
	req.Header.Set("User-Agent", "bench")
	return h, req
}

func BenchmarkServeHTTP(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "plain"
		if withMetrics {
			name = "metrics"
		}
		b.Run(name, func(b *testing.B) {
			h, req := benchHandler(b, withMetrics)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

func TestServeHTTPCanned(t *testing.T) {
	h, req := benchHandler(&testing.B{}, true)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.Len() != 1024 || rec.Header().Get("X-Request-Id") == "" {
		t.Fatalf("got %d, %d bytes, headers %v", rec.Code, rec.Body.Len(), rec.Header())
	}
	// The observers resolved at build count into the labelled series.
	h.ServeHTTP(httptest.NewRecorder(), req)
	m := h.metrics
	if n := testutil.ToFloat64(m.requests.WithLabelValues("r", "u", "200")); n != 2 {
		t.Fatalf("requests_total{route=r,upstream=u,code=200} = %v, want 2", n)
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Fatalf("%d duration series, want 1", n)
	}
	var attempts float64
	for _, addr := range []string{"10.0.0.1:80", "10.0.0.2:80"} {
		attempts += testutil.ToFloat64(m.attempts.WithLabelValues("u", addr, "200"))
	}
	if attempts != 2 {
		t.Fatalf("attempts_total = %v, want 2", attempts)
	}
	if g := testutil.ToFloat64(m.inflight.WithLabelValues("r")); g != 0 {
		t.Fatalf("inflight gauge %v after the requests, want 0", g)
	}
}

// rawBackend is a loopback HTTP/1.1 server that answers every request
// (without a body) with resp, written as is: a benchmark of the upstream
// path then measures the gateway's side, not a server's.
func rawBackend(tb testing.TB, resp string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for { // request line and header fields, up to the empty line
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkH1Loopback sends GETs through the proxy and its own HTTP/1.1
// transport (the fast path, with its keep-alive pool) to a loopback
// backend.
func BenchmarkH1Loopback(b *testing.B) {
	addr := rawBackend(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n"+strings.Repeat("x", 1024))
	targets := []*upstream.Target{upstream.NewTarget(addr, 0, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := NewPool(PoolConfig{Name: "u", Targets: targets, Policy: pol})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	h := New(staticResolver{&Route{Name: "r", Pool: pool}}, Options{})
	req := httptest.NewRequest("GET", "http://example.com/v1/rides?x=1", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkH1IdleCheck is the check of an idle connection before reuse
// (a non-blocking peek at the socket).
func BenchmarkH1IdleCheck(b *testing.B) {
	addr := rawBackend(b, "")
	tr := newH1Transport(&http.Transport{}, &net.Dialer{}, 0, 8)
	defer tr.Close()
	c, _, err := tr.get(b.Context(), addr, false)
	if err != nil {
		b.Fatal(err)
	}
	tr.put(addr, c)
	b.ReportAllocs()
	for b.Loop() {
		c, reused, err := tr.get(b.Context(), addr, true)
		if err != nil || !reused {
			b.Fatalf("reused %v, err %v", reused, err)
		}
		tr.put(addr, c)
	}
}

// BenchmarkServeHTTPTracing is a proxied request (one upstream attempt,
// canned response) with tracing as the gateway sets it up by default
// (telemetry.Setup with nothing configured: in-memory store, default
// sampling) and with tracing off (no tracer, what `tracing: {disabled:
// true}` gives): the difference is what tracing costs a request.
func BenchmarkServeHTTPTracing(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  *telemetry.Config
	}{{"tracing=off", nil}, {"tracing=default", &telemetry.Config{}}} {
		b.Run(tc.name, func(b *testing.B) {
			h, req := benchHandler(b, true)
			if tc.cfg != nil {
				tr, err := telemetry.Setup(context.Background(), *tc.cfg, "bench", func(string) string { return "" })
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Shutdown(context.Background())
				h.tracing = tr.RequestTracer("switchyard/gateway")
				h.tracer = h.tracing.Tracer()
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}
