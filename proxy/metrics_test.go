package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/upstream"
)

// BenchmarkMetricsPerRequest compares what one proxied request costs in
// metrics: looking the series up by label values every time ("labels",
// how the proxy did it before) against the observers resolved when the
// route and pool are built ("observers").
func BenchmarkMetricsPerRequest(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	resp := &http.Response{StatusCode: 200}
	d := 3 * time.Millisecond
	b.Run("labels", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.inflight.WithLabelValues("rides").Add(1)
			m.attemptDuration.WithLabelValues("rides-api", "10.0.0.1:8080").Observe(d.Seconds())
			m.attempts.WithLabelValues("rides-api", "10.0.0.1:8080", codeLabel(resp.StatusCode)).Inc()
			m.inflight.WithLabelValues("rides").Add(-1)
			m.request("rides", "rides-api", 200, d)
		}
	})
	b.Run("observers", func(b *testing.B) {
		route := m.forRoute("rides", "rides-api")
		pool := m.forPool("rides-api", []*upstream.Target{upstream.NewTarget("10.0.0.1:8080", 0, 1)})
		t := pool.targets[0]
		b.ReportAllocs()
		for b.Loop() {
			route.routeInflight(1)
			t.attempt(resp, nil, d)
			route.routeInflight(-1)
			route.request(200, d)
		}
	})
}
