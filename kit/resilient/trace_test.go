package resilient

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/telemetry"
)

// A call made inside a span gets a client span, a child of it, covering
// the retries below the layer; the backend receives the client span as
// its parent; a 5xx marks it failed.
func TestTraceClientSpan(t *testing.T) {
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "payments", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Value
	b := newBackend(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("traceparent"))
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	rt := TraceWith(tr.Provider)(newTransport(t))
	for _, want := range []int{503, 200} {
		ctx, parent := tr.Tracer("t").Start(context.Background(), "charge", trace.WithSpanKind(trace.SpanKindServer))
		req := mustGet(t, b.URL).WithContext(ctx)
		code, _, err := do(rt, req)
		parent.End()
		if err != nil || code != want {
			t.Fatalf("status %d %v, want %d", code, err, want)
		}
		if req.Header.Get("traceparent") != "" {
			t.Fatal("the caller's request was modified")
		}
		id := parent.SpanContext().TraceID().String()
		kept, ok := tr.Store.Trace(id)
		if !ok || len(kept.Spans) != 2 {
			t.Fatalf("trace %s: %+v", id, kept)
		}
		client := kept.Spans[1]
		got := seen.Load().(string)
		if client.Kind != "client" || client.ParentID != parent.SpanContext().SpanID().String() || got[3:35] != id || got[36:52] != client.SpanID {
			t.Errorf("client span %+v, backend saw %q", client, got)
		}
		if (want == 503) != (client.Status == "Error") || client.Attributes["http.response.status_code"] == "" {
			t.Errorf("status %d: span %+v", want, client)
		}
	}
}
