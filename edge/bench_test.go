package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// nopWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the cache's hit path alone.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkHit measures a hit of a 1 KiB object: key, lookup, headers, body.
func BenchmarkHit(b *testing.B) { benchmarkHit(b, 1024) }

// BenchmarkHitLarge is BenchmarkHit for a 100 KiB object.
func BenchmarkHitLarge(b *testing.B) { benchmarkHit(b, 100<<10) }

func benchmarkHit(b *testing.B, size int) {
	body := strings.Repeat("x", size)
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})
	c, _ := New(NewStore(64<<20, 0), Policy{}, Options{})
	defer c.Close()
	h := c.Middleware()(origin)
	req := httptest.NewRequest(http.MethodGet, "http://example.com/obj?id=1", nil)
	h.ServeHTTP(httptest.NewRecorder(), req)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if s := c.Store().Stats(); s.Hits < int64(b.N) {
		b.Fatalf("hits %d of %d", s.Hits, b.N)
	}
}

// BenchmarkHitGzip measures a hit answered from a stored gzip variant.
func BenchmarkHitGzip(b *testing.B) {
	body := strings.Repeat("compressible text ", 100)
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})
	c, _ := New(NewStore(64<<20, 0), Policy{}, Options{Compress: &Compress{Gzip: true, Brotli: true}})
	defer c.Close()
	h := c.Middleware()(origin)
	req := httptest.NewRequest(http.MethodGet, "http://example.com/obj?id=1", nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate, br;q=0.9")
	h.ServeHTTP(httptest.NewRecorder(), req)
	w := &nopWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.h.Get("Content-Encoding") != "gzip" {
		b.Fatalf("not gzip: %q", w.h)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}
