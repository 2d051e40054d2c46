package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/httpx/listtest"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an in-process OTLP/HTTP collector: it decodes every export
// and remembers the spans by trace id.
type receiver struct {
	mu    sync.Mutex
	spans map[string][]string // trace id (hex) -> span names
	srv   *httptest.Server
	hdr   http.Header
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{spans: map[string][]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces protobuf", 400)
			return
		}
		body, _ := io.ReadAll(req.Body)
		var ex collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &ex); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.hdr = req.Header.Clone()
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					id := fmt.Sprintf("%x", sp.TraceId)
					r.spans[id] = append(r.spans[id], sp.Name)
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.spans[id]...)
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// A trace made of a server span and a child: exported when sampled, kept
// in memory either way.
func span(t *testing.T, tr *Tracing, name string, fail bool, d time.Duration) string {
	t.Helper()
	ctx, root := tr.Tracer("test").Start(context.Background(), name, trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Tracer("test").Start(ctx, name+"/child")
	time.Sleep(d)
	if fail {
		child.SetStatus(codes.Error, "upstream said 502")
	}
	child.End()
	root.End()
	return root.SpanContext().TraceID().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With the standard environment variables only: OTLP over HTTP to the
// collector they name, the service name they give, ratio 0 (nothing
// sampled) — and still a failed trace and a slow one reach the collector,
// while a fast good one does not.
func TestEnvironmentAndTailKeeping(t *testing.T) {
	rcv := newReceiver(t)
	tr, err := Setup(context.Background(), Config{Memory: Memory{Slow: 50 * time.Millisecond}}, "switchyard", env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL,
		"OTEL_SERVICE_NAME":           "rides",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	if !tr.Exporting {
		t.Fatal("the OTLP endpoint from the environment was not used")
	}
	good := span(t, tr, "GET /fast", false, 0)
	bad := span(t, tr, "GET /fails", true, 0)
	slow := span(t, tr, "GET /slow", false, 60*time.Millisecond)
	tr.Provider.ForceFlush(context.Background())
	waitFor(t, "the failed and the slow trace at the collector", func() bool {
		return len(rcv.got(bad)) == 2 && len(rcv.got(slow)) == 2
	})
	if got := rcv.got(good); len(got) != 0 {
		t.Errorf("an unsampled good fast trace was exported: %v", got)
	}
	if st, ok := tr.Store.Trace(good); !ok || st.Service != "rides" || len(st.Spans) != 2 || st.Sampled {
		t.Errorf("good trace in memory: %+v %v", st, ok)
	}
	kept := tr.Store.Traces(Query{Kind: "kept"})
	if len(kept) != 2 {
		t.Fatalf("kept traces: %+v", kept)
	}
	if e := tr.Store.Traces(Query{Kind: "error"}); len(e) != 1 || e[0].ID != bad || e[0].Root != "GET /fails" {
		t.Errorf("error traces: %+v", e)
	}
}

// Sampled traces go out through the batcher as usual, with configured
// headers; a traceparent from the caller is continued.
func TestSampledExportAndPropagation(t *testing.T) {
	rcv := newReceiver(t)
	one := 1.0
	tr, err := Setup(context.Background(), Config{Ratio: &one, OTLP: &OTLP{Endpoint: rcv.srv.URL, Headers: map[string]string{"X-Api-Key": "env:KEY"}}},
		"gw", env(map[string]string{"KEY": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	carrier := propagation.HeaderCarrier{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	ctx := Propagator.Extract(context.Background(), carrier)
	_, sp := tr.Tracer("t").Start(ctx, "hop")
	sp.End()
	tr.Provider.ForceFlush(context.Background())
	waitFor(t, "the continued trace at the collector", func() bool { return len(rcv.got("4bf92f3577b34da6a3ce929d0e0e4736")) == 1 })
	rcv.mu.Lock()
	key := rcv.hdr.Get("X-Api-Key")
	rcv.mu.Unlock()
	if key != "s3cret" {
		t.Errorf("export header: %q", key)
	}
	if st, ok := tr.Store.Trace("4bf92f3577b34da6a3ce929d0e0e4736"); !ok || st.Spans[0].ParentID != "00f067aa0ba902b7" {
		t.Errorf("continued trace: %+v %v", st, ok)
	}
}

// A flood of fast good traces does not push the failures out; memory
// stays bounded.
func TestStoreBounded(t *testing.T) {
	tr, err := Setup(context.Background(), Config{Memory: Memory{Traces: 10}}, "x", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	bad := span(t, tr, "bad", true, 0)
	for i := 0; i < 1000; i++ {
		span(t, tr, "ok", false, 0)
	}
	if all := tr.Store.Traces(Query{Limit: 1000}); len(all) != 11 {
		t.Fatalf("%d traces kept, want 10 recent + 1 failed", len(all))
	}
	if _, ok := tr.Store.Trace(bad); !ok {
		t.Fatal("the failed trace was pushed out by good ones")
	}
	tr.Store.mu.Lock()
	n := len(tr.Store.byID)
	tr.Store.mu.Unlock()
	if n != 11 {
		t.Fatalf("index holds %d traces", n)
	}
}

func TestHandler(t *testing.T) {
	tr, _ := Setup(context.Background(), Config{}, "x", env(nil))
	id := span(t, tr, "GET /x", true, 0)
	srv := httptest.NewServer(tr.Store.Handler())
	defer srv.Close()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := get("/admin/traces?kind=error"); code != 200 || len(out["traces"].([]any)) != 1 {
		t.Errorf("list: %d %v", code, out)
	}
	if code, out := get("/admin/traces/" + id); code != 200 || len(out["spans"].([]any)) != 2 {
		t.Errorf("one: %d %v", code, out)
	}
	for path, want := range map[string]string{
		"/admin/traces?kind=slowish": `kind "slowish"`,
		"/admin/traces?limit=0":      `limit "0"`,
		"/admin/traces?min_ms=-1":    `min_ms "-1"`,
		"/admin/traces/zz":           `no trace "zz"`,
	} {
		if code, out := get(path); code < 400 || !strings.Contains(fmt.Sprint(out["error"]), want) {
			t.Errorf("%s: %d %v", path, code, out)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := 2.0
	err := Config{Sampler: "sometimes", Ratio: &bad, OTLP: &OTLP{Endpoint: "collector:4318", Protocol: "udp"}, Memory: Memory{Traces: -1}}.Validate()
	for _, want := range []string{`sampler: "sometimes"`, "ratio: 2", `otlp.endpoint: "collector:4318"`, `otlp.protocol: "udp"`, "memory.traces: -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	_, err = Setup(context.Background(), Config{}, "x", env(map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "lots"}))
	if err == nil || !strings.Contains(err.Error(), `OTEL_TRACES_SAMPLER_ARG: "lots"`) {
		t.Errorf("bad sampler arg: %v", err)
	}
	_, err = Setup(context.Background(), Config{}, "x", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "nope"}))
	if err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), "from the environment") {
		t.Errorf("bad endpoint from env: %v", err)
	}
}

// The default head sampler samples a hundredth of root traces and at
// least 10 a second, the same whether exporting or not (slow and failed
// ones are kept besides); an explicit ratio is the ratio alone.
func TestDefaultRatio(t *testing.T) {
	for _, e := range []map[string]string{nil, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}} {
		tr, err := Setup(context.Background(), Config{}, "x", env(e))
		if err != nil {
			t.Fatal(err)
		}
		if d := tr.head.Description(); !strings.Contains(d, "Reservoir{10/s,") || !strings.Contains(d, "TraceIDRatioBased{0.01}") {
			t.Errorf("env %v: head sampler %s", e, d)
		}
		tr.Shutdown(context.Background())
	}
	for _, c := range []struct {
		cfg Config
		env map[string]string
	}{{Config{Ratio: new(float64)}, nil}, {Config{}, map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0.5"}}} {
		tr, err := Setup(context.Background(), c.cfg, "x", env(c.env))
		if err != nil {
			t.Fatal(err)
		}
		if d := tr.head.Description(); strings.Contains(d, "Reservoir") {
			t.Errorf("%+v %v: head sampler %s, want the ratio alone", c.cfg, c.env, d)
		}
		tr.Shutdown(context.Background())
	}
}

// The reservoir samples the first root traces of each second whatever
// the ratio, never a trace whose parent was not sampled, and a request
// RequestTracer.Sample sampled stays sampled when its span starts even
// with the reservoir spent.
func TestReservoir(t *testing.T) {
	zero, three := 0.0, 3
	tr, err := Setup(context.Background(), Config{Ratio: &zero, MinPerSecond: &three}, "x", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	rt := tr.RequestTracer("t")
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: NewTraceID(), SpanID: NewSpanID(), Remote: true}))
	for sec := time.Now().Unix(); ; sec = time.Now().Unix() {
		got, started := 0, 0
		for range 50 {
			if rt.Sample(unsampledParent, NewTraceID(), trace.SpanKindServer) {
				t.Fatal("a trace whose parent was not sampled was sampled")
			}
			tid := NewTraceID()
			if rt.Sample(context.Background(), tid, trace.SpanKindServer) {
				got++
				_, sp := rt.Start(context.Background(), tid, "r")
				if !sp.SpanContext().IsSampled() || sp.SpanContext().TraceID() != tid {
					t.Fatalf("sampled request's span %v", sp.SpanContext())
				}
				sp.End()
				started++
			}
		}
		if time.Now().Unix() != sec {
			continue // the second turned mid-way: count again
		}
		if got != 3 || started != 3 {
			t.Fatalf("%d of 50 root traces sampled in one second, want the reservoir's 3", got)
		}
		return
	}
}

// Traces come in pages by their Link rel="next": following them visits
// every trace once, newest first; a bad cursor is 400.
func TestHandlerPages(t *testing.T) {
	tr, _ := Setup(context.Background(), Config{}, "x", env(nil))
	for i := 0; i < 7; i++ {
		span(t, tr, "GET /p", false, 0)
	}
	srv := httptest.NewServer(tr.Store.Handler())
	defer srv.Close()
	want := tr.Store.Traces(Query{Limit: 100})
	var got []string
	target := "/admin/traces?limit=3"
	for pages := 0; target != ""; pages++ {
		if pages > 5 {
			t.Fatal("the next links do not end")
		}
		resp, err := http.Get(srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Traces []struct {
				ID string `json:"trace_id"`
			} `json:"traces"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		for _, tt := range out.Traces {
			got = append(got, tt.ID)
		}
		target = httpx.NextLink(resp.Header.Values("Link"))
	}
	if len(got) != len(want) || len(want) < 7 {
		t.Fatalf("pages gave %d traces, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i].ID {
			t.Fatalf("trace %d: %s, want %s (newest first, each once)", i, got[i], want[i].ID)
		}
	}
	for _, c := range []string{"@@", httpx.EncodeCursor("queue", "1.x"), httpx.EncodeCursor("traces", "12.nothex")} {
		resp, err := http.Get(srv.URL + "/admin/traces?cursor=" + c)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "cursor") {
			t.Errorf("cursor %q: %d %s", c, resp.StatusCode, b)
		}
	}
}

// The trace list is a paged list like the admin API's others: stable
// pages that hold every trace once, an ETag per page with 304 for a
// matching If-None-Match, and 400 naming a hostile limit or cursor
// (httpx/listtest); one trace has an ETag too.
func TestHandlerListConventions(t *testing.T) {
	tr, _ := Setup(context.Background(), Config{}, "x", env(nil))
	for i := 0; i < 5; i++ {
		span(t, tr, "GET /p", false, 0)
	}
	srv := httptest.NewServer(tr.Store.Handler())
	defer srv.Close()
	var want []string
	for _, s := range tr.Store.Traces(Query{Limit: 100}) {
		want = append(want, s.ID)
	}
	names := func(t *testing.T, body []byte) []string {
		var out struct {
			Traces []struct {
				ID string `json:"trace_id"`
			} `json:"traces"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("page %s: %v", body, err)
		}
		var ids []string
		for _, tt := range out.Traces {
			ids = append(ids, tt.ID)
		}
		return ids
	}
	l := listtest.List{Base: srv.URL, Path: "/admin/traces", Names: names, Want: want}
	listtest.Check(t, l)
	listtest.Check(t, listtest.List{Base: srv.URL, Path: "/admin/traces?kind=all", Names: names, Want: want})

	resp, body := l.Get(t, "/admin/traces/"+want[0], nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" {
		t.Fatalf("one trace: %d ETag %q %s", resp.StatusCode, etag, body)
	}
	if resp, body = l.Get(t, "/admin/traces/"+want[0], map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 || len(body) != 0 {
		t.Fatalf("one trace, If-None-Match its ETag: %d %q, want 304 without a body", resp.StatusCode, body)
	}
	// A new trace changes the first page: the old ETag no longer matches.
	resp, _ = l.Get(t, "/admin/traces?limit=2", nil)
	old := resp.Header.Get("ETag")
	span(t, tr, "GET /new", false, 0)
	if resp, _ = l.Get(t, "/admin/traces?limit=2", map[string]string{"If-None-Match": old}); resp.StatusCode != 200 || resp.Header.Get("ETag") == old {
		t.Fatalf("after a new trace: %d ETag %q (was %q), want 200 with a new tag", resp.StatusCode, resp.Header.Get("ETag"), old)
	}
}
