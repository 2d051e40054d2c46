package engine

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
)

// Tracing: a message whose headers carry W3C trace context (traceparent,
// tracestate; producers put it there, see broker/client) gets spans of
// the broker in its producer's trace, children of the message's context:
//
//	publish QUEUE | publish topic:TOPIC   from the publish to its confirm
//	deliver QUEUE                         from the publish to the delivery:
//	                                      its length is the time the message
//	                                      waited (switchyard.wait_ms)
//
// The headers are not changed: a consumer's span is a child of the
// producer's span, a sibling of the broker's. Without a Tracer, or for a
// message without traceparent, nothing is allocated.

// msgContext returns the trace context of a message's headers when
// tracing is on and the message carries a valid one.
func (b *Broker) msgContext(h map[string]string) (context.Context, bool) {
	if b.cfg.Tracer == nil || len(h) == 0 {
		return nil, false
	}
	if _, ok := h[broker.HeaderTraceparent]; !ok {
		return nil, false
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(h))
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil, false
	}
	return ctx, true
}

// startPublish starts the publish span of a traced message; nil when the
// message is not traced.
func (b *Broker) startPublish(dest string, msg *broker.Message) trace.Span {
	ctx, ok := b.msgContext(msg.Headers)
	if !ok {
		return nil
	}
	_, sp := b.cfg.Tracer.Start(ctx, "publish "+dest, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("messaging.system", "switchyard"), attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", dest), attribute.String("messaging.message.id", msg.ID),
			attribute.Int("messaging.message.body.size", len(msg.Body))))
	return sp
}

func endPublish(sp trace.Span, seq uint64, duplicate bool, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.SetStatus(otelcodes.Error, err.Error())
	} else {
		sp.SetAttributes(attribute.Int64("switchyard.seq", int64(seq)), attribute.Bool("switchyard.duplicate", duplicate))
	}
	sp.End()
}

// traceDeliveries records a deliver span for each traced message of ds,
// started at its publish: its length is the time it waited in the queue.
func (b *Broker) traceDeliveries(queue string, ds []broker.Delivery) {
	if b.cfg.Tracer == nil {
		return
	}
	now := b.cfg.Now()
	for i := range ds {
		d := &ds[i]
		ctx, ok := b.msgContext(d.Headers)
		if !ok {
			continue
		}
		_, sp := b.cfg.Tracer.Start(ctx, "deliver "+queue, trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(d.PublishedAt),
			trace.WithAttributes(attribute.String("messaging.system", "switchyard"), attribute.String("messaging.operation.type", "receive"),
				attribute.String("messaging.destination.name", queue), attribute.String("messaging.message.id", d.MsgID),
				attribute.Int64("switchyard.seq", int64(d.Seq)), attribute.Int("switchyard.deliveries", d.Deliveries),
				attribute.Float64("switchyard.wait_ms", float64(now.Sub(d.PublishedAt))/float64(time.Millisecond))))
		sp.End(trace.WithTimestamp(now))
	}
}
