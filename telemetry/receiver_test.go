package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// A second process (a real OTLP/HTTP exporter) continues the gateway's
// trace and exports to the gateway's receiver: the store shows one trace
// with the spans of both, each naming its service, the root the
// gateway's. Spans that arrive before the local root ends are kept
// already, and merged with it when it ends.
func TestReceiverJoinsTraces(t *testing.T) {
	one := 1.0 // a sampled trace: every span of the service is exported
	gw, err := Setup(context.Background(), Config{Ratio: &one}, "gateway", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Store.Receiver(ReceiverOptions{}))
	defer srv.Close()
	svc, err := Setup(context.Background(), Config{Ratio: &one}, "x", env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SERVICE_NAME": "rides"}))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())

	ctx, root := gw.Tracer("gw").Start(context.Background(), "POST rides", trace.WithSpanKind(trace.SpanKindServer))
	carrier := propagation.MapCarrier{}
	Propagator.Inject(ctx, carrier)
	id := root.SpanContext().TraceID().String()

	// The service's spans reach the receiver while the gateway's root is
	// still open.
	sctx, server := svc.Tracer("svc").Start(Propagator.Extract(context.Background(), carrier), "POST /v1/rides", trace.WithSpanKind(trace.SpanKindServer))
	_, child := svc.Tracer("svc").Start(sctx, "publish rides", trace.WithSpanKind(trace.SpanKindProducer))
	child.SetStatus(codes.Error, "broker down")
	child.End()
	server.End()
	svc.Provider.ForceFlush(context.Background())
	waitFor(t, "the service's spans kept before the gateway's root ended", func() bool {
		tr, ok := gw.Store.Trace(id)
		return ok && len(tr.Spans) == 2
	})
	root.End()
	// A late span of the service joins the kept trace.
	_, late := svc.Tracer("svc").Start(sctx, "late")
	late.End()
	svc.Provider.ForceFlush(context.Background())
	waitFor(t, "four spans in one trace", func() bool {
		tr, ok := gw.Store.Trace(id)
		return ok && len(tr.Spans) == 4
	})
	tr, _ := gw.Store.Trace(id)
	if tr.Root != "POST rides" || tr.Service != "gateway" || !tr.Error {
		t.Errorf("summary: %+v", tr)
	}
	services := map[string]string{}
	for _, s := range tr.Spans {
		services[s.Name] = s.Service
	}
	if services["POST rides"] != "gateway" || services["POST /v1/rides"] != "rides" || services["publish rides"] != "rides" {
		t.Errorf("services: %v", services)
	}
	if e := gw.Store.Traces(Query{Kind: "error"}); len(e) != 1 || e[0].ID != id {
		t.Errorf("a trace failed elsewhere is kept as failed: %+v", e)
	}
}

func otlpBody(t testing.TB, spans ...*tracepb.Span) []byte {
	b, err := proto.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "matching"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReceiverRefusesBadInput(t *testing.T) {
	st := NewStore(Memory{}, "gw", nil)
	h := st.Receiver(ReceiverOptions{MaxBody: 4096})
	tid := bytes.Repeat([]byte{1}, 16)
	good := &tracepb.Span{TraceId: tid, SpanId: bytes.Repeat([]byte{2}, 8), Name: "consume rides", Kind: tracepb.Span_SPAN_KIND_CONSUMER,
		StartTimeUnixNano: uint64(time.Now().UnixNano()), EndTimeUnixNano: uint64(time.Now().UnixNano()) + 1000,
		Attributes: []*commonpb.KeyValue{{Key: "n", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}}}}}}}}
	zeroID := &tracepb.Span{TraceId: make([]byte, 16), SpanId: bytes.Repeat([]byte{2}, 8)}
	shortID := &tracepb.Span{TraceId: tid[:5], SpanId: bytes.Repeat([]byte{2}, 8)}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(otlpBody(t, good))
	zw.Close()
	var bomb bytes.Buffer
	zw = gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	for _, c := range []struct {
		name, method, ctype, enc string
		body                     []byte
		code                     int
		msg                      string
	}{
		{"good", "POST", "application/x-protobuf", "", otlpBody(t, good), 200, ""},
		{"gzip", "POST", "application/x-protobuf", "gzip", gz.Bytes(), 200, ""},
		{"partly bad", "POST", "application/x-protobuf", "", otlpBody(t, good, zeroID, shortID), 200, ""},
		{"get", "GET", "", "", nil, 405, "method GET"},
		{"json", "POST", "application/json", "", []byte(`{}`), 415, `content type "application/json"`},
		{"brotli", "POST", "application/x-protobuf", "br", []byte("x"), 415, `content encoding "br"`},
		{"garbage", "POST", "application/x-protobuf", "", []byte("\xff\xff\xff\xff not protobuf"), 400, "decoding an OTLP"},
		{"bad gzip", "POST", "application/x-protobuf", "gzip", []byte("not gzip"), 400, "gzip body"},
		{"too big", "POST", "application/x-protobuf", "", make([]byte, 5000), 413, "body over 4096 bytes"},
		{"gzip bomb", "POST", "application/x-protobuf", "gzip", bomb.Bytes(), 413, "body over 4096 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "/v1/traces", bytes.NewReader(c.body))
			req.Header.Set("Content-Type", c.ctype)
			if c.enc != "" {
				req.Header.Set("Content-Encoding", c.enc)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.code {
				t.Fatalf("status %d, want %d: %q", rec.Code, c.code, rec.Body.String())
			}
			if c.code != 200 {
				var st rpcstatus.Status
				if err := proto.Unmarshal(rec.Body.Bytes(), &st); err != nil || !strings.Contains(st.Message, c.msg) {
					t.Fatalf("error body %q (%v), want a Status saying %q", rec.Body.String(), err, c.msg)
				}
				return
			}
			var resp collectortrace.ExportTraceServiceResponse
			if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if c.name == "partly bad" && resp.GetPartialSuccess().GetRejectedSpans() != 2 {
				t.Fatalf("partial success: %v", resp.GetPartialSuccess())
			}
		})
	}
	tr, ok := st.Trace("01010101010101010101010101010101")
	if !ok || len(tr.Spans) != 3 || tr.Root != "consume rides" || tr.Service != "matching" || tr.Spans[0].Attributes["n"] != "[7]" || tr.Spans[0].Kind != "consumer" {
		t.Fatalf("received trace: %+v %v", tr, ok)
	}
}

// Whatever the body, the receiver answers 200 or 400 and keeps only
// spans with valid ids.
func FuzzReceiver(f *testing.F) {
	f.Add(otlpBody(f, &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), ParentSpanId: bytes.Repeat([]byte{3}, 8), Name: "x"}))
	f.Add([]byte{})
	f.Add([]byte("\x0a\x02\x0a\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		st := NewStore(Memory{Traces: 4, MaxSpans: 8}, "gw", nil)
		h := st.Receiver(ReceiverOptions{MaxBody: 1 << 16})
		req := httptest.NewRequest("POST", "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && rec.Code != 400 && rec.Code != 413 {
			t.Fatalf("status %d", rec.Code)
		}
		for _, sum := range st.Traces(Query{Limit: 100}) {
			tr, ok := st.Trace(sum.ID)
			if !ok || len(tr.Spans) > 8 {
				t.Fatalf("trace %s: %v, %d spans", sum.ID, ok, len(tr.Spans))
			}
			for _, s := range tr.Spans {
				if len(s.SpanID) != 16 || s.SpanID == "0000000000000000" || len(s.Attributes) > maxAttrs {
					t.Fatalf("span kept: %+v", s)
				}
			}
		}
	})
}
