package telemetry

import (
	"context"
	"math/rand/v2"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// RequestTracer traces a high-rate request path (the gateway's) at the
// cost of its head-sampled share only. The caller asks Sample first: a
// sampled request records real spans with Tracer as usual; an unsampled
// one records nothing with the SDK, only its own timings, and when it
// turns out slow or failed (Keep) it rebuilds its spans after the fact
// under the ids it already passed on (StartAs with explicit timestamps),
// so the store keeps it and the exporter sends it: the same tail-based
// keeping as recording every span, without paying for it on the fast,
// good requests that are the common case.
type RequestTracer struct {
	tracer trace.Tracer
	head   sdktrace.Sampler // nil: every request is sampled
	slow   time.Duration
}

// RequestTracer returns the request tracer named name of t.
func (t *Tracing) RequestTracer(name string) *RequestTracer {
	r := &RequestTracer{tracer: t.Provider.Tracer(name), head: t.head, slow: defaultSlow}
	if t.Store != nil {
		r.slow = t.Store.mem.Slow
	}
	return r
}

// Tracer is the tracer of the sampled requests' spans.
func (r *RequestTracer) Tracer() trace.Tracer { return r.tracer }

// Sample is the head sampler's decision for a trace id under parent (a
// context holding the client's remote span context, if it sent one).
// It looks the span context up once; a caller that has it already (the
// gateway, which extracted the traceparent) calls SampleParent, which
// looks up nothing in the request's context.
func (r *RequestTracer) Sample(parent context.Context, tid trace.TraceID, kind trace.SpanKind) bool {
	if r.head == nil {
		return true
	}
	return r.SampleParent(trace.SpanContextFromContext(parent), tid, kind)
}

// SampleParent is the head sampler's decision for a trace id under the
// parent span context (invalid: a root, no traceparent). The samplers
// (parent-based, ratio, reservoir) each read the parent from the
// context they are given: here a context holding only the parent (or
// nothing), so a request without a traceparent costs no walk of its
// context chain (three walks, each to the chain's end, when the
// request's own context was given).
func (r *RequestTracer) SampleParent(parent trace.SpanContext, tid trace.TraceID, kind trace.SpanKind) bool {
	if r.head == nil {
		return true
	}
	ctx := context.Background()
	if parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, parent) // keeps IsRemote: the parent-based sampler tells remote from local
	}
	return r.head.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Kind: kind}).Decision == sdktrace.RecordAndSample
}

// Keep reports whether an unsampled request that failed (or not) and
// took d is kept by the tail rule, the store's: failed, or slow.
func (r *RequestTracer) Keep(failed bool, d time.Duration) bool { return failed || d >= r.slow }

// NewTraceID returns a random trace id.
func NewTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

// NewSpanID returns a random span id.
func NewSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// Start starts a sampled request's span in trace tid (the one Sample
// decided on; a root span would otherwise get a new one), sampled
// without asking the sampler again.
func (r *RequestTracer) Start(ctx context.Context, tid trace.TraceID, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	_, span := r.tracer.Start(context.WithValue(ctx, forcedKey{}, forcedIDs{tid: tid, sampled: true}), name, opts...)
	return trace.ContextWithSpan(ctx, span), span
}

// StartAs starts, under ctx, a span recorded after the fact: it gets
// the ids given (those the request already passed on and logged), it is
// recorded but not sampled (as the head sampler decided), and it starts
// at the time given in opts (trace.WithTimestamp). End it with
// trace.WithTimestamp too.
func (r *RequestTracer) StartAs(ctx context.Context, tid trace.TraceID, sid trace.SpanID, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	_, span := r.tracer.Start(context.WithValue(ctx, forcedKey{}, forcedIDs{tid: tid, sid: sid, rebuilt: true}), name, opts...)
	return trace.ContextWithSpan(ctx, span), span // without the forced ids, for children
}

type forcedKey struct{}

// forcedIDs are the ids of the next span started (a zero sid: a random
// one); rebuilt: the span is recorded after the fact, not sampled;
// sampled: RequestTracer.Sample sampled it.
type forcedIDs struct {
	tid     trace.TraceID
	sid     trace.SpanID
	rebuilt bool
	sampled bool
}

// idGenerator is the SDK's id source: random ids, or the ones StartAs
// put in the context.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if f, ok := ctx.Value(forcedKey{}).(forcedIDs); ok {
		if !f.sid.IsValid() {
			return f.tid, NewSpanID()
		}
		return f.tid, f.sid
	}
	return NewTraceID(), NewSpanID()
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if f, ok := ctx.Value(forcedKey{}).(forcedIDs); ok && f.sid.IsValid() {
		return f.sid
	}
	return NewSpanID()
}
