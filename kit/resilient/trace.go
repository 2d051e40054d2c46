package resilient

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceparentHeader is the W3C Trace Context request header.
const TraceparentHeader = "traceparent"

// canonicalTraceparent is TraceparentHeader in canonical form, so header
// lookups do not allocate.
const canonicalTraceparent = "Traceparent"

type traceparentKey struct{}

// ContextWithTraceparent returns ctx carrying the traceparent value tp, for
// the Trace layer to put on outgoing requests. An invalid tp (see
// ParseTraceparent) is ignored: ctx is returned unchanged.
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	if _, err := ParseTraceparent(tp); err != nil {
		return ctx
	}
	return context.WithValue(ctx, traceparentKey{}, tp)
}

// TraceparentFromContext returns the traceparent put in ctx by
// ContextWithTraceparent, or "".
func TraceparentFromContext(ctx context.Context) string {
	tp, _ := ctx.Value(traceparentKey{}).(string)
	return tp
}

// Traceparent is a parsed W3C traceparent header value.
type Traceparent struct {
	// Version is the format version; 00 today, ff is invalid.
	Version byte
	// TraceID identifies the whole trace; never all zeros.
	TraceID [16]byte
	// ParentID identifies the caller's span; never all zeros.
	ParentID [8]byte
	// Flags holds the trace flags; bit 0 is "sampled".
	Flags byte
}

// ParseTraceparent parses a traceparent header value as W3C Trace Context
// level 1 defines it: "vv-<32 hex trace id>-<16 hex parent id>-ff", lower
// case hex, neither id all zeros, version ff invalid. A version above 00 may
// carry more fields after a dash, which are ignored.
func ParseTraceparent(s string) (Traceparent, error) {
	var tp Traceparent
	const n = 55 // 2+1+32+1+16+1+2
	if len(s) < n {
		return tp, fmt.Errorf("parsing traceparent %q: %d bytes, expected at least %d", s, len(s), n)
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tp, fmt.Errorf("parsing traceparent %q: expected version-traceid-parentid-flags separated by '-'", s)
	}
	var v [1]byte
	if err := decodeHex(v[:], s[0:2]); err != nil {
		return tp, fmt.Errorf("parsing traceparent %q: version: %v", s, err)
	}
	tp.Version = v[0]
	if tp.Version == 0xff {
		return tp, fmt.Errorf("parsing traceparent %q: version ff is invalid", s)
	}
	if len(s) > n && (tp.Version == 0 || s[n] != '-') {
		return tp, fmt.Errorf("parsing traceparent %q: unexpected data after the flags", s)
	}
	if err := decodeHex(tp.TraceID[:], s[3:35]); err != nil {
		return tp, fmt.Errorf("parsing traceparent %q: trace id: %v", s, err)
	}
	if tp.TraceID == [16]byte{} {
		return tp, fmt.Errorf("parsing traceparent %q: trace id is all zeros", s)
	}
	if err := decodeHex(tp.ParentID[:], s[36:52]); err != nil {
		return tp, fmt.Errorf("parsing traceparent %q: parent id: %v", s, err)
	}
	if tp.ParentID == [8]byte{} {
		return tp, fmt.Errorf("parsing traceparent %q: parent id is all zeros", s)
	}
	if err := decodeHex(v[:], s[53:55]); err != nil {
		return tp, fmt.Errorf("parsing traceparent %q: flags: %v", s, err)
	}
	tp.Flags = v[0]
	return tp, nil
}

// decodeHex decodes lower-case hex s into dst (len(s) == 2*len(dst)).
func decodeHex(dst []byte, s string) error {
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return fmt.Errorf("%q: expected lower-case hex", s)
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Trace is a layer that propagates W3C trace context with
// OpenTelemetry's global tracer provider (TraceWith says which).
func Trace(next http.RoundTripper) http.RoundTripper { return TraceWith(nil)(next) }

// TraceWith returns a layer that propagates W3C trace context: a call
// made in the context of a span (a server or consumer span of the
// caller) gets a client span, "HTTP METHOD HOST", a child of it, with the
// status code (an error for 5xx and transport failures), and the callee
// receives that span as its parent in traceparent (tracestate too); put
// the layer outermost and the span covers the retries and hedges below
// it. A request that already has a traceparent header passes untouched;
// without a span in its context the traceparent the caller put there with
// ContextWithTraceparent is set. The request the caller passed is never
// modified. tp nil is OpenTelemetry's global provider (package
// telemetry's Tracing.SetGlobal installs it).
func TraceWith(tp trace.TracerProvider) Middleware {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer("github.com/switchyard/switchyard/kit/resilient")
	return func(next http.RoundTripper) http.RoundTripper {
		return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Header.Get(canonicalTraceparent) != "" {
				return next.RoundTrip(req)
			}
			if trace.SpanContextFromContext(req.Context()).IsValid() {
				return tracedRoundTrip(tracer, next, req)
			}
			tp := TraceparentFromContext(req.Context())
			if tp == "" {
				return next.RoundTrip(req)
			}
			c := *req
			c.Header = req.Header.Clone()
			if c.Header == nil {
				c.Header = make(http.Header, 1)
			}
			c.Header[canonicalTraceparent] = []string{tp}
			return next.RoundTrip(&c)
		})
	}
}

func tracedRoundTrip(tracer trace.Tracer, next http.RoundTripper, req *http.Request) (*http.Response, error) {
	ctx, sp := tracer.Start(req.Context(), "HTTP "+req.Method+" "+req.URL.Host, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Host),
			attribute.String("url.path", req.URL.Path)))
	defer sp.End()
	c := req.WithContext(ctx)
	c.Header = req.Header.Clone()
	if c.Header == nil {
		c.Header = make(http.Header, 2)
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(c.Header))
	resp, err := next.RoundTrip(c)
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
		return resp, err
	}
	sp.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		sp.SetStatus(codes.Error, resp.Status)
	}
	return resp, nil
}
