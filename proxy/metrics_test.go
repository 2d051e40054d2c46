package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

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
			route.request(200, d, trace.SpanContext{})
		}
	})
}

// A sampled request's trace id is the exemplar of its latency
// observation; an unsampled one leaves none.
func TestLatencyExemplar(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	m.forRoute("rides", "api").request(200, 3*time.Millisecond, sampled)
	m.forRoute("other", "api").request(200, 3*time.Millisecond, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "switchyard_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.Metric {
			route := ""
			for _, l := range mt.Label {
				if l.GetName() == "route" {
					route = l.GetValue()
				}
			}
			for _, b := range mt.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					for _, l := range ex.Label {
						found[route] = l.GetName() + "=" + l.GetValue()
					}
				}
			}
		}
	}
	if found["rides"] != "trace_id=4bf92f3577b34da6a3ce929d0e0e4736" || found["other"] != "" {
		t.Fatalf("exemplars by route: %v", found)
	}
}
