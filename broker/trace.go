package broker

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Trace context travels in message headers as W3C traceparent and
// tracestate (lower case), so that a consumer's span joins its
// producer's trace and the broker records its own spans there.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// WithTraceContext returns msgs with the W3C trace context of ctx's span
// added to the headers of each message that carries no traceparent yet
// (those header maps are copied: the caller's are not modified). Without
// a valid span in ctx it returns msgs itself, allocating nothing. The
// broker's clients (broker/client, broker/local) do it on every publish.
func WithTraceContext(ctx context.Context, msgs []Message) []Message {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return msgs
	}
	var out []Message
	for i := range msgs {
		if _, ok := msgs[i].Headers[HeaderTraceparent]; ok {
			continue
		}
		if out == nil {
			out = append([]Message(nil), msgs...)
		}
		h := make(map[string]string, len(msgs[i].Headers)+2)
		maps.Copy(h, msgs[i].Headers)
		propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(h))
		out[i].Headers = h
	}
	if out == nil {
		return msgs
	}
	return out
}

// TraceContext returns ctx with the trace context of a received message's
// headers as the remote parent, for the consumer's span: start it from
// the returned context and it is a child of the producer's span. Headers
// without a valid traceparent leave ctx as it is.
func TraceContext(ctx context.Context, headers map[string]string) context.Context {
	if _, ok := headers[HeaderTraceparent]; !ok {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(headers))
}
