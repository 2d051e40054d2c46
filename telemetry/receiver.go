package telemetry

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// ReceiverOptions bound what a Receiver accepts.
type ReceiverOptions struct {
	// MaxBody is the largest request body accepted, in bytes, after gzip
	// decompression too. Default 8 MiB (an exporter's batch of 512 spans
	// is well under 1 MiB).
	MaxBody int64
}

// Limits on one received span, so that a sender cannot make one span
// hold more memory than a recorded one would.
const (
	maxAttrs      = 128  // attributes kept per span
	maxEvents     = 128  // event names kept per span
	maxValueBytes = 1024 // bytes of one attribute value, name or event name
)

// Receiver returns an OTLP/HTTP trace receiver (binary protobuf, the
// http/protobuf protocol of the OpenTelemetry exporters): POST an
// ExportTraceServiceRequest to it (mounted at /v1/traces) and its spans
// join the traces of s (Store.Add), so that the spans of every process
// exporting here show in one place, /admin/traces/{id}. It answers
// 200 with an ExportTraceServiceResponse (rejected spans counted in its
// partial success: ids of the wrong length or all zero), 400 with a
// google.rpc.Status for a body that is not a valid request, 413 over
// MaxBody, 415 for another content type or encoding than
// application/x-protobuf, identity or gzip.
func (s *Store) Receiver(opts ReceiverOptions) http.Handler {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 8 << 20
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			rpcError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s: an OTLP receiver takes POST", r.Method))
			return
		}
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-protobuf" {
			rpcError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: expected application/x-protobuf (OTLP http/protobuf; JSON is not accepted)", r.Header.Get("Content-Type")))
			return
		}
		body, code, err := readBody(w, r, opts.MaxBody)
		if err != nil {
			rpcError(w, code, err.Error())
			return
		}
		spans, rejected, err := DecodeOTLP(body)
		if err != nil {
			rpcError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.Add(spans)
		resp := &collectortrace.ExportTraceServiceResponse{}
		if rejected > 0 {
			resp.PartialSuccess = &collectortrace.ExportTracePartialSuccess{RejectedSpans: int64(rejected),
				ErrorMessage: "spans with a trace id other than 16 bytes or a span id other than 8 bytes (or all zero) were dropped"}
		}
		out, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})
}

// readBody reads the request body, gunzipped if so encoded, up to max
// bytes; on error it returns the status to answer with.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int, error) {
	var in io.Reader = http.MaxBytesReader(w, r.Body, max)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("gzip body: %v", err)
		}
		in = io.LimitReader(zr, max+1)
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q: expected gzip or none", enc)
	}
	body, err := io.ReadAll(in)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || int64(len(body)) > max:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", max)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	return body, 0, nil
}

func rpcError(w http.ResponseWriter, code int, msg string) {
	out, _ := proto.Marshal(&rpcstatus.Status{Code: int32(grpcCode(code)), Message: msg})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(out)
}

// grpcCode is the google.rpc.Code closest to an HTTP status.
func grpcCode(status int) int {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return 12 // UNIMPLEMENTED
	}
	return 3 // INVALID_ARGUMENT
}

// DecodeOTLP decodes an OTLP ExportTraceServiceRequest (binary protobuf)
// into spans for Store.Add. Spans whose ids have the wrong length or are
// all zero are skipped and counted in rejected; a body that is not such
// a request is an error.
func DecodeOTLP(body []byte) (spans []Received, rejected int, err error) {
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, 0, fmt.Errorf("decoding an OTLP ExportTraceServiceRequest: %v", err)
	}
	for _, rs := range req.ResourceSpans {
		service := ""
		if res := rs.GetResource(); res != nil {
			for _, a := range res.Attributes {
				if a.GetKey() == "service.name" {
					service = clip(anyString(a.GetValue(), 0))
				}
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r, ok := decodeSpan(sp, service)
				if !ok {
					rejected++
					continue
				}
				spans = append(spans, r)
			}
		}
	}
	return spans, rejected, nil
}

func decodeSpan(sp *tracepb.Span, service string) (Received, bool) {
	var tid trace.TraceID
	var sid, pid trace.SpanID
	if len(sp.TraceId) != len(tid) || len(sp.SpanId) != len(sid) || (len(sp.ParentSpanId) != 0 && len(sp.ParentSpanId) != len(pid)) {
		return Received{}, false
	}
	copy(tid[:], sp.TraceId)
	copy(sid[:], sp.SpanId)
	copy(pid[:], sp.ParentSpanId)
	if !tid.IsValid() || !sid.IsValid() {
		return Received{}, false
	}
	start := time.Unix(0, int64(min(sp.StartTimeUnixNano, 1<<63-1)))
	end := time.Unix(0, int64(min(sp.EndTimeUnixNano, 1<<63-1)))
	x := Span{Service: service, SpanID: sid.String(), Name: clip(sp.Name), Kind: spanKind(sp.Kind), Start: start, Duration: max(end.Sub(start), 0)}
	if pid.IsValid() {
		x.ParentID = pid.String()
	}
	switch sp.GetStatus().GetCode() {
	case tracepb.Status_STATUS_CODE_ERROR:
		x.Status, x.Message = codes.Error.String(), clip(sp.GetStatus().GetMessage())
	case tracepb.Status_STATUS_CODE_OK:
		x.Status = codes.Ok.String()
	}
	for i, a := range sp.Attributes {
		if i == maxAttrs {
			break
		}
		if x.Attributes == nil {
			x.Attributes = make(map[string]string, min(len(sp.Attributes), maxAttrs))
		}
		x.Attributes[clip(a.GetKey())] = clip(anyString(a.GetValue(), 0))
	}
	for i, e := range sp.Events {
		if i == maxEvents {
			break
		}
		x.Events = append(x.Events, clip(e.GetName()))
	}
	return Received{TraceID: tid, Span: x, Root: !pid.IsValid()}, true
}

func spanKind(k tracepb.Span_SpanKind) string {
	if k < 0 || k > tracepb.Span_SPAN_KIND_CONSUMER {
		k = tracepb.Span_SPAN_KIND_UNSPECIFIED
	}
	// The OTLP enum numbers the kinds as trace.SpanKind does.
	return trace.SpanKind(k).String()
}

// anyString renders an attribute value as text, as attribute.Value.Emit
// does for recorded spans; nested values are cut at depth 4.
func anyString(v *commonpb.AnyValue, depth int) string {
	if v == nil {
		return ""
	}
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return fmt.Sprintf("%x", x.BytesValue[:min(len(x.BytesValue), maxValueBytes/2)])
	case *commonpb.AnyValue_ArrayValue:
		if depth >= 4 {
			return "[...]"
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				b.WriteByte(',')
			}
			if b.Len() > maxValueBytes {
				b.WriteString("...")
				break
			}
			b.WriteString(anyString(e, depth+1))
		}
		b.WriteByte(']')
		return b.String()
	case *commonpb.AnyValue_KvlistValue:
		if depth >= 4 {
			return "{...}"
		}
		var b bytes.Buffer
		b.WriteByte('{')
		for i, kv := range x.KvlistValue.GetValues() {
			if i > 0 {
				b.WriteByte(',')
			}
			if b.Len() > maxValueBytes {
				b.WriteString("...")
				break
			}
			b.WriteString(clip(kv.GetKey()))
			b.WriteByte(':')
			b.WriteString(anyString(kv.GetValue(), depth+1))
		}
		b.WriteByte('}')
		return b.String()
	}
	return ""
}

// clip cuts s to maxValueBytes, at a rune boundary.
func clip(s string) string {
	if len(s) <= maxValueBytes {
		return s
	}
	n := maxValueBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
