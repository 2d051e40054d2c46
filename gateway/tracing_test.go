package gateway

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

type tracedTrace struct {
	ID    string `json:"trace_id"`
	Error bool   `json:"error"`
	Spans []struct {
		SpanID     string            `json:"span_id"`
		ParentID   string            `json:"parent_id"`
		Name       string            `json:"name"`
		Kind       string            `json:"kind"`
		Status     string            `json:"status"`
		Attributes map[string]string `json:"attributes"`
	} `json:"spans"`
}

func fetchTrace(t *testing.T, gw *running, id string) tracedTrace {
	t.Helper()
	var tr tracedTrace
	eventually(t, 5*time.Second, "trace "+id+" in the admin API", func() bool {
		code, body, _ := get(t, gw.admin+"/admin/traces/"+id)
		if code != 200 {
			return false
		}
		return json.Unmarshal([]byte(body), &tr) == nil
	})
	return tr
}

// A request through the gateway is one trace: the client's traceparent is
// continued by the gateway's server span, each upstream attempt is a client
// span under it with its target and retry number, and the upstream receives
// the attempt's span as its parent. The access log names the trace.
func TestTracingSpansPerRequestAndAttempt(t *testing.T) {
	var calls atomic.Int64
	var mu sync.Mutex
	var seen []string // traceparents the backends received
	record := func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		seen = append(seen, r.Header.Get("Traceparent"))
		mu.Unlock()
		return calls.Add(1) == 1
	}
	a, b := newBackend(t, "a"), newBackend(t, "b")
	fail := func(w http.ResponseWriter, r *http.Request) {
		if record(w, r) {
			w.WriteHeader(503) // the first attempt fails, the retry succeeds
			return
		}
		io.WriteString(w, "ok")
	}
	a.handle(fail)
	b.handle(fail)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
upstreams:
  u:
    targets: [{address: %s}, {address: %s}]
    retry: { attempts: 2, on: [503] }
routes:
  - match: { path_prefix: / }
    upstream: u
`, a.addr(), b.addr()))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	code, body, _ := get(t, gw.url+"/hello", "Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if code != 200 || body != "ok" {
		t.Fatalf("request: %d %q", code, body)
	}
	tr := fetchTrace(t, gw, traceID)
	if len(tr.Spans) != 3 {
		t.Fatalf("spans: %+v", tr.Spans)
	}
	server := tr.Spans[0]
	if server.Kind != "server" || server.ParentID != "00f067aa0ba902b7" || server.Attributes["http.response.status_code"] != "200" || server.Attributes["switchyard.attempts"] != "2" {
		t.Errorf("server span: %+v", server)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, at := range tr.Spans[1:] {
		if at.Kind != "client" || at.ParentID != server.SpanID || at.Attributes["switchyard.retry"] != fmt.Sprint(i) || at.Attributes["server.address"] == "" {
			t.Errorf("attempt %d span: %+v", i, at)
		}
		// What the upstream got: this trace, with the attempt as parent.
		if want := "00-" + traceID + "-" + at.SpanID + "-01"; seen[i] != want {
			t.Errorf("attempt %d: upstream got traceparent %q, want %q", i, seen[i], want)
		}
	}
	if tr.Spans[1].Status != "Error" || tr.Spans[2].Status != "" {
		t.Errorf("attempt statuses: %q %q", tr.Spans[1].Status, tr.Spans[2].Status)
	}
	if !strings.Contains(gw.logs.String(), `"trace_id":"`+traceID+`"`) {
		t.Errorf("access log lacks the trace id: %s", gw.logs.String())
	}
}

// Tracing exports to an OTLP collector named in the config, and can be
// turned off (then the traceparent is still passed on).
func TestTracingExportAndDisable(t *testing.T) {
	var mu sync.Mutex
	names := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var ex collectortrace.ExportTraceServiceRequest
		if proto.Unmarshal(data, &ex) != nil {
			http.Error(w, "bad", 400)
			return
		}
		mu.Lock()
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					names[sp.Name]++
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	defer collector.Close()
	be := newBackend(t, "be")
	var got atomic.Value
	be.handle(func(w http.ResponseWriter, r *http.Request) { got.Store(r.Header.Get("Traceparent")) })
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
tracing: { ratio: 1, otlp: { endpoint: %s } }
upstreams: { u: { targets: [{address: %s}] } }
routes: [{ name: api, upstream: u }]
`, collector.URL, be.addr()))
	get(t, gw.url+"/x")
	gw.cancel() // shutdown flushes the batcher
	eventually(t, 10*time.Second, "the spans at the collector", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return names["GET api"] == 1 && names["upstream u"] == 1
	})

	off := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
tracing: { disabled: true }
upstreams: { u: { targets: [{address: %s}] } }
routes: [{ upstream: u }]
`, be.addr()))
	get(t, off.url+"/x", "Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	tp, _ := got.Load().(string)
	if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") {
		t.Errorf("traceparent with tracing off: %q", tp)
	}
	if code, body, _ := get(t, off.admin+"/admin/traces"); code != 200 || !strings.Contains(body, `"traces": []`) {
		t.Errorf("traces with tracing off: %d %s", code, body)
	}
}

func TestTracingConfigErrors(t *testing.T) {
	_, err := ParseConfig([]byte(`
listen: 127.0.0.1:0
tracing:
  sampler: sometimes
  otlp: { endpoint: "collector:4318" }
upstreams: { u: { targets: [{address: 127.0.0.1:1}] } }
routes: [{ upstream: u }]
`), "gw.yaml")
	for _, want := range []string{`gw.yaml:4:3: tracing.sampler: "sometimes" is not one of`, `tracing.otlp.endpoint: "collector:4318" is not an http://`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// exported collects what an OTLP/HTTP collector receives, by trace id.
type exportedSpan struct {
	spanID, parentID, name string
	start, end             time.Time
	failed                 bool
}

func otlpCollector(t *testing.T) (*httptest.Server, func(traceID string) []exportedSpan) {
	var mu sync.Mutex
	byTrace := map[string][]exportedSpan{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var ex collectortrace.ExportTraceServiceRequest
		if proto.Unmarshal(data, &ex) != nil {
			http.Error(w, "bad", 400)
			return
		}
		mu.Lock()
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					id := hex.EncodeToString(sp.TraceId)
					byTrace[id] = append(byTrace[id], exportedSpan{spanID: hex.EncodeToString(sp.SpanId), parentID: hex.EncodeToString(sp.ParentSpanId),
						name: sp.Name, start: time.Unix(0, int64(sp.StartTimeUnixNano)), end: time.Unix(0, int64(sp.EndTimeUnixNano)),
						failed: sp.Status != nil && sp.Status.Code == tracev1.Status_STATUS_CODE_ERROR})
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv, func(id string) []exportedSpan {
		mu.Lock()
		defer mu.Unlock()
		return append([]exportedSpan(nil), byTrace[id]...)
	}
}

// The head sampler drops every trace here (ratio 0): a request records
// no span as it goes, yet one that failed and one that was slow are
// rebuilt at their end, kept at /admin/traces and exported, each as a
// server span with its attempts' client spans under it, with the ids
// the upstream received (sampled flag 0) and the access log names, and
// the times the gateway measured.
func TestTracingUnsampledSlowOrFailedKept(t *testing.T) {
	collector, exported := otlpCollector(t)
	const slow = 100 * time.Millisecond
	var mu sync.Mutex
	seen := map[string][]string{} // path -> traceparents received
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = append(seen[r.URL.Path], r.Header.Get("Traceparent"))
		n := len(seen[r.URL.Path])
		mu.Unlock()
		switch {
		case r.URL.Path == "/fail":
			w.WriteHeader(502)
		case r.URL.Path == "/retried" && n == 1:
			w.WriteHeader(503)
		case r.URL.Path == "/slow":
			time.Sleep(slow + 20*time.Millisecond)
		}
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
tracing: { ratio: 0, otlp: { endpoint: %s }, memory: { slow: %s } }
upstreams: { u: { targets: [{address: %s}], retry: { attempts: 2, on: [503] } } }
routes: [{ name: api, upstream: u }]
`, collector.URL, slow, be.addr()))

	for _, tc := range []struct {
		path     string
		status   int
		attempts int
	}{{"/fail", 502, 1}, {"/slow", 200, 1}} {
		t.Run(tc.path[1:], func(t *testing.T) {
			began := time.Now()
			code, _, hdr := get(t, gw.url+tc.path)
			took := time.Since(began)
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			mu.Lock()
			tps := append([]string(nil), seen[tc.path]...)
			mu.Unlock()
			if len(tps) != tc.attempts {
				t.Fatalf("upstream got %d attempts, want %d", len(tps), tc.attempts)
			}
			traceID := tps[0][3:35]
			for _, tp := range tps {
				if len(tp) != 55 || tp[3:35] != traceID || !strings.HasSuffix(tp, "-00") {
					t.Fatalf("traceparents %q: want one trace, unsampled", tps)
				}
			}
			tr := fetchTrace(t, gw, traceID)
			if len(tr.Spans) != 1+tc.attempts {
				t.Fatalf("spans: %+v", tr.Spans)
			}
			server := tr.Spans[0]
			if server.Kind != "server" || server.Name != "GET api" || server.ParentID != "" ||
				server.Attributes["http.response.status_code"] != fmt.Sprint(tc.status) || server.Attributes["switchyard.attempts"] != fmt.Sprint(tc.attempts) ||
				server.Attributes["switchyard.request_id"] != hdr.Get("X-Request-Id") || server.Attributes["url.path"] != tc.path {
				t.Errorf("server span: %+v", server)
			}
			if !strings.Contains(gw.logs.String(), `"trace_id":"`+traceID+`","span_id":"`+server.SpanID+`"`) {
				t.Errorf("access log lacks trace %s span %s: %s", traceID, server.SpanID, gw.logs.String())
			}
			for i, at := range tr.Spans[1:] {
				if at.Kind != "client" || at.ParentID != server.SpanID || at.Attributes["switchyard.retry"] != fmt.Sprint(i) ||
					at.Attributes["server.address"] != be.addr() || tps[i] != "00-"+traceID+"-"+at.SpanID+"-00" {
					t.Errorf("attempt %d span: %+v (upstream got %q)", i, at, tps[i])
				}
			}
			// The times: the server span holds its attempts, and lasted
			// no longer than the client waited; a slow one at least slow.
			var got []exportedSpan
			eventually(t, 10*time.Second, "the trace at the collector", func() bool {
				got = exported(traceID)
				return len(got) == 1+tc.attempts
			})
			byID := map[string]exportedSpan{}
			for _, sp := range got {
				byID[sp.spanID] = sp
			}
			srv, ok := byID[server.SpanID]
			if !ok || srv.parentID != "" || srv.name != "GET api" || srv.failed != (tc.status >= 500) {
				t.Fatalf("exported server span %+v of %+v", srv, got)
			}
			if d := srv.end.Sub(srv.start); d <= 0 || d > took || (tc.path == "/slow" && d < slow) {
				t.Errorf("server span lasted %s; the client waited %s", d, took)
			}
			for i, at := range tr.Spans[1:] {
				sp, ok := byID[at.SpanID]
				if !ok || sp.parentID != server.SpanID || sp.name != "upstream u" || sp.start.Before(srv.start) || sp.end.After(srv.end) || sp.end.Before(sp.start) {
					t.Errorf("exported attempt %d: %+v (server %+v)", i, sp, srv)
				}
				if i > 0 && sp.start.Before(byID[tr.Spans[i].SpanID].end) {
					t.Errorf("attempt %d began before attempt %d ended", i, i-1)
				}
				if failed := i == 0 && tc.status != 200 || tc.path == "/retried" && i == 0; sp.failed != failed {
					t.Errorf("attempt %d failed=%v, want %v", i, sp.failed, failed)
				}
			}
		})
	}
}
