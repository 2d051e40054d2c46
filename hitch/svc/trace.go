package svc

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/kit/resilient"
	"github.com/switchyard/switchyard/telemetry"
)

// setupTracing sets up the process's tracing from the OTEL_* environment
// (`hitch up` points it at its receiver, or passes the operator's own),
// installs it as OpenTelemetry's global provider, which the kit's
// outbox relay, message router, saga orchestrator and resilient client
// use by default, and returns it. Nothing configured: no exporter, and
// spans are not recorded (no one could read them), but trace context is
// still passed on.
func setupTracing(ctx context.Context, name string) (*telemetry.Tracing, error) {
	tr, err := telemetry.Setup(ctx, telemetry.Config{}, name, nil)
	if err != nil {
		return nil, err
	}
	if !tr.Exporting {
		_ = tr.Shutdown(ctx)
		if tr, err = telemetry.Setup(ctx, telemetry.Config{Disabled: true}, name, nil); err != nil {
			return nil, err
		}
	}
	tr.SetGlobal()
	return tr, nil
}

// traced serves h in a server span per request ("METHOD /path"),
// continuing the caller's W3C traceparent (the gateway's attempt span),
// with the status code; a 5xx is an error. Health checks get no span.
func traced(tracer trace.Tracer, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
			h.ServeHTTP(w, r)
			return
		}
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, sp := tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			sp.SetAttributes(attribute.Int("http.response.status_code", sw.code))
			if sw.code >= 500 {
				sp.SetStatus(codes.Error, http.StatusText(sw.code))
			}
			sp.End()
		}()
		h.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// statusWriter remembers the status code; it passes Flush and Hijack
// (WebSockets) through.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijacking: the response writer cannot")
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// tracedTransport is rt with a client span per call and the span's
// traceparent sent (kit/resilient's Trace layer).
func tracedTransport(rt http.RoundTripper) http.RoundTripper { return resilient.Trace(rt) }
