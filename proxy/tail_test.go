package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/upstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// spanCounter counts the spans the SDK records.
type spanCounter struct{ started, ended atomic.Int64 }

func (c *spanCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) { c.started.Add(1) }
func (c *spanCounter) OnEnd(sdktrace.ReadOnlySpan)                     { c.ended.Add(1) }
func (c *spanCounter) Shutdown(context.Context) error                  { return nil }
func (c *spanCounter) ForceFlush(context.Context) error                { return nil }

// seenTransport answers 200 (or status) and notes the traceparent sent.
type seenTransport struct {
	status int
	tp     atomic.Value
}

func (s *seenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.tp.Store(r.Header.Get("Traceparent"))
	return &http.Response{StatusCode: s.status, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(nil)), Request: r}, nil
}

func tracedHandler(t *testing.T, ratio float64, status int) (*Handler, *telemetry.Tracing, *spanCounter, *seenTransport, *bytes.Buffer) {
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{Ratio: &ratio, Memory: telemetry.Memory{Slow: time.Hour}}, "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	count := &spanCounter{}
	tr.Provider.RegisterSpanProcessor(count)
	targets := []*upstream.Target{upstream.NewTarget("10.0.0.1:80", 0, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		t.Fatal(err)
	}
	seen := &seenTransport{status: status}
	pool, err := NewPool(PoolConfig{Name: "u", Targets: targets, Policy: pol, Transport: seen})
	if err != nil {
		t.Fatal(err)
	}
	rt := &Route{Name: "r", Pool: pool}
	logs := &bytes.Buffer{}
	h := New(staticResolver{rt}, Options{Tracing: tr.RequestTracer("test"), AccessLog: slog.New(slog.NewJSONHandler(logs, nil))})
	h.Prepare(rt)
	return h, tr, count, seen, logs
}

// An unsampled request that is fast and good records no span at all,
// yet the upstream gets the trace context (sampled flag 0) and the access
// log its trace id, continuing the client's trace when it sent one.
func TestUnsampledFastRequestRecordsNoSpan(t *testing.T) {
	h, tr, count, seen, logs := tracedHandler(t, 0, 200)
	for _, client := range []string{"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"} {
		logs.Reset()
		req := httptest.NewRequest("GET", "http://example.com/x", nil)
		if client != "" {
			req.Header.Set("Traceparent", client)
			req.Header.Set("Tracestate", "vendor=1")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		tp, _ := seen.tp.Load().(string)
		if len(tp) != 55 || !strings.HasPrefix(tp, "00-") || !strings.HasSuffix(tp, "-00") || strings.Contains(tp, "00f067aa0ba902b7") {
			t.Fatalf("upstream got traceparent %q", tp)
		}
		if client != "" && tp[3:35] != client[3:35] {
			t.Errorf("upstream got trace %s, the client's is %s", tp[3:35], client[3:35])
		}
		if !strings.Contains(logs.String(), `"trace_id":"`+tp[3:35]+`"`) {
			t.Errorf("access log lacks trace %s: %s", tp[3:35], logs.String())
		}
	}
	if n, m := count.started.Load(), count.ended.Load(); n != 0 || m != 0 {
		t.Errorf("the SDK recorded %d spans (%d ended), want none", n, m)
	}
	if got := tr.Store.Traces(telemetry.Query{}); len(got) != 0 {
		t.Errorf("store kept %+v", got)
	}
}

// A head-sampled request records its spans as it goes, under the trace
// id it was sampled on; an unsampled one that failed is rebuilt.
func TestSampledAndFailedRequestsRecordSpans(t *testing.T) {
	h, tr, count, seen, _ := tracedHandler(t, 1, 200)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.com/x", nil))
	tp, _ := seen.tp.Load().(string)
	if !strings.HasSuffix(tp, "-01") {
		t.Fatalf("sampled request: upstream got %q", tp)
	}
	if got, ok := tr.Store.Trace(tp[3:35]); !ok || len(got.Spans) != 2 || !got.Sampled || got.Spans[1].SpanID != tp[36:52] {
		t.Errorf("sampled trace %s: %+v", tp[3:35], got)
	}

	h, tr, count, seen, _ = tracedHandler(t, 0, 502)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.com/x", nil))
	tp, _ = seen.tp.Load().(string)
	got, ok := tr.Store.Trace(tp[3:35])
	if !ok || len(got.Spans) != 2 || got.Sampled || !got.Error || got.Spans[1].SpanID != tp[36:52] || got.Spans[1].ParentID != got.Spans[0].SpanID {
		t.Errorf("failed unsampled trace %s: %+v", tp[3:35], got)
	}
	if count.ended.Load() != 2 {
		t.Errorf("%d spans recorded, want 2", count.ended.Load())
	}
}
