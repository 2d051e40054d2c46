package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestConfigBuiltInCode: a Config given in Options is validated (errors
// name the key path), served, counted under the given metric labels in a
// shared registry, and never reloaded.
func TestConfigBuiltInCode(t *testing.T) {
	_, err := New(Options{ConfigPath: "built", Config: &Config{Listen: "127.0.0.1:0"}, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "built: upstreams: missing") {
		t.Fatalf("invalid config in code: %v", err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer backend.Close()
	reg := prometheus.NewRegistry()
	newGW := func(side string) *Gateway {
		cfg := &Config{Listen: "127.0.0.1:0", AccessLog: "off",
			Upstreams: map[string]*Upstream{"b": {Targets: []Target{{Address: strings.TrimPrefix(backend.URL, "http://")}}}},
			Routes:    []Route{{Upstream: "b"}}}
		g, err := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Registry: reg, MetricLabels: prometheus.Labels{"side": side}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := newGW("a"), newGW("b") // two gateways, one registry
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	resp, err := http.Get("http://" + a.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hi" {
		t.Fatalf("body %q", body)
	}
	want := `
# HELP switchyard_requests_total Requests answered, by route, upstream and status code.
# TYPE switchyard_requests_total counter
switchyard_requests_total{code="200",route="route0",side="a",upstream="b"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "switchyard_requests_total"); err != nil {
		t.Fatalf("shared registry: %v", err)
	}
	if err := b.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "built in code") {
		t.Fatalf("reload of a config built in code: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
