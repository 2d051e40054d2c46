package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type nopResponseWriter struct{ h http.Header }

func (w *nopResponseWriter) Header() http.Header         { return w.h }
func (w *nopResponseWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopResponseWriter) WriteHeader(int)             {}

// BenchmarkEdgeHit measures a cache hit through the whole gateway
// handler (request id, route lookup, metrics, access log off, the cache
// middleware) without the network: what a hit costs beyond HTTP parsing.
func BenchmarkEdgeHit(b *testing.B) {
	// tracing: the default (spans in memory) and off, to show what the
	// server span costs a request that never leaves the gateway.
	for _, tc := range []struct{ name, tracing string }{{"tracing=default", ""}, {"tracing=off", "tracing: { disabled: true }\n"}} {
		b.Run(tc.name, func(b *testing.B) { benchmarkEdgeHit(b, tc.tracing) })
	}
}

func benchmarkEdgeHit(b *testing.B, tracing string) {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprint(w, body)
	}))
	defer be.Close()
	path := filepath.Join(b.TempDir(), "gw.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\naccess_log: off\n%scaches:\n  edge: { memory: 64MiB }\nupstreams:\n  u: { targets: [{address: %s}] }\nroutes:\n  - { upstream: u, cache: edge }\n",
		tracing, be.Listener.Addr())
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	g, err := New(Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer g.stop(g.current.Load())
	req := httptest.NewRequest(http.MethodGet, "http://example.com/obj?id=1", nil)
	rec := httptest.NewRecorder()
	g.handler.ServeHTTP(rec, req)
	rec = httptest.NewRecorder()
	g.handler.ServeHTTP(rec, req)
	if rec.Header().Get("Cache-Status") != "switchyard; hit" {
		b.Fatalf("not a hit: %d %q", rec.Code, rec.Header().Get("Cache-Status"))
	}
	w := &nopResponseWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		g.handler.ServeHTTP(w, req)
	}
}
