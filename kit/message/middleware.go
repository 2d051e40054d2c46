package message

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/retry"
)

// Header names the middleware reads and writes.
const (
	// HeaderTraceparent is the W3C trace context header, propagated as is.
	HeaderTraceparent = "traceparent"
	// HeaderTracestate is the W3C vendor trace state, propagated as is.
	HeaderTracestate = "tracestate"
	// HeaderCorrelationID ties together the messages caused by one request.
	HeaderCorrelationID = "correlation-id"
	// HeaderCausationID, set on messages published from a handler, is the
	// id of the message being handled.
	HeaderCausationID = "causation-id"
)

// RetryConfig tunes Retry. Zero fields take the defaults.
type RetryConfig struct {
	// Attempts is how many times the handler runs for one delivery, the
	// first included. Default 3.
	Attempts int
	// Backoff is the wait between attempts. Default exponential from
	// 10ms, capped at 1s, full jitter.
	Backoff retry.Backoff
	// Retryable decides whether an error is worth another attempt.
	// Default: every error but a cancelled or expired ctx, and Permanent
	// errors.
	Retryable func(error) bool
}

// Permanent wraps err so that Retry does not retry it (the message is
// nacked at once, or dead-lettered by DeadLetter).
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Retry runs the handler again, in process and with backoff, when it
// fails, up to cfg.Attempts times, before the router nacks the message.
// It retries fast, transient failures without a trip through the broker;
// the broker's redelivery (and DeadLetter) handles what outlasts it.
func Retry(cfg RetryConfig) Middleware {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff == (retry.Backoff{}) {
		cfg.Backoff = retry.Backoff{Base: 10 * time.Millisecond, Cap: time.Second}
	}
	if cfg.Retryable == nil {
		cfg.Retryable = func(err error) bool {
			return !IsPermanent(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
		}
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			var err error
			for attempt := 1; ; attempt++ {
				err = next(ctx, d)
				if err == nil || d.Settled() || attempt >= cfg.Attempts || !cfg.Retryable(err) || ctx.Err() != nil {
					return err
				}
				t := time.NewTimer(cfg.Backoff.Delay(attempt, nil))
				select {
				case <-ctx.Done():
					t.Stop()
					return err
				case <-t.C:
				}
			}
		}
	}
}

// DeadLetterConfig tunes DeadLetter.
type DeadLetterConfig struct {
	// Publisher publishes dead letters. Required.
	Publisher Publisher
	// MaxDeliveries: a message whose handler fails on its MaxDeliveries-th
	// delivery (or with a Permanent error) is dead-lettered. Default 5.
	MaxDeliveries int
	// Dest names the dead-letter destination of a source. Default
	// "queue:" + DeadLetterQueue(source, Delivery.Group): NAME.dlq for
	// queue NAME, TOPIC.GROUP.dlq for a durable topic group, the group's
	// own (as the backends'), and TOPIC.-topic.dlq for a live topic
	// subscription; neither of the last two is the dead-letter queue of
	// a queue named TOPIC. A topic group's Delivery.Group (set by the
	// Router) says which group.
	Dest func(source Dest) string
}

// DeadLetter moves poison messages aside: when the handler fails on the
// message's MaxDeliveries-th delivery, or with a Permanent error, it
// publishes the message (body, id, key, headers plus broker's
// x-dead-letter-reason, x-original-queue and x-deliveries) to the
// dead-letter destination and acks it. It works the same on every backend
// and whatever the queue's own MaxDeliveries (set that higher, or the
// backend dead-letters first). A dead-letter queue that does not exist is
// declared (with the defaults) when the Publisher is also a Declarer, as
// a Backend is; otherwise declare it yourself. If the dead-letter publish
// fails, the message is nacked and comes back (a live topic's does not:
// it is gone).
func DeadLetter(cfg DeadLetterConfig) (Middleware, error) {
	if cfg.Publisher == nil {
		return nil, fmt.Errorf("%w: dead-letter middleware: nil publisher", broker.ErrInvalid)
	}
	if cfg.MaxDeliveries < 0 {
		return nil, fmt.Errorf("%w: dead-letter middleware: max deliveries %d must not be negative", broker.ErrInvalid, cfg.MaxDeliveries)
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = 5
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			err := next(ctx, d)
			if err == nil || d.Settled() || (d.Deliveries < cfg.MaxDeliveries && !IsPermanent(err)) {
				return err
			}
			m := d.Message()
			m.Headers[broker.HeaderDeadLetterReason] = err.Error()
			// x-original-queue as the broker writes it, for its redrive:
			// the queue's name; a durable topic group's queue (the
			// backends dead-letter its messages from TOPIC.GROUP too, and
			// redriven they go back to that group alone).
			// A live topic subscription's dead letter names its topic: no queue to
			// go back to (Redrive keeps it unless given RedriveOptions.To).
			orig := d.Source.String()
			switch {
			case d.Source.Kind == Queue:
				orig = d.Source.Name
			case d.Source.Kind == Topic && d.Group != "":
				orig = TopicGroupQueue(d.Source.Name, d.Group)
			}
			to := "queue:" + DeadLetterQueue(d.Source, d.Group)
			if cfg.Dest != nil {
				to = cfg.Dest(d.Source)
			}
			m.Headers[broker.HeaderOriginalQueue] = orig
			m.Headers[broker.HeaderDeliveries] = strconv.Itoa(d.Deliveries)
			pctx := context.WithoutCancel(ctx)
			perr := cfg.Publisher.Publish(pctx, to, m)
			if errors.Is(perr, broker.ErrNotFound) {
				// No one declares a live topic's dead-letter queue (nor
				// a stream's, nor a Dest's): make it, as the backends make
				// a queue's, or a live topic's poison message, nacked,
				// would be gone.
				if dc, ok := cfg.Publisher.(Declarer); ok {
					if derr := dc.Declare(pctx, to, DeclareOptions{}); derr == nil {
						perr = cfg.Publisher.Publish(pctx, to, m)
					}
				}
			}
			if perr != nil {
				return fmt.Errorf("%w (dead-lettering it failed: %w)", err, perr)
			}
			return nil
		}
	}, nil
}

// Timeout bounds each handler run with d; the handler's ctx ends then.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Delivery) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, m)
		}
	}
}

// Event is what a metrics hook hears after each handler run.
type Event struct {
	Source     Dest
	Deliveries int
	Duration   time.Duration
	Err        error // nil on success
}

// Metrics calls hook after every handler run, on the handler's goroutine:
// count, time and label it with the counters of your choice (Prometheus,
// expvar). The hook must be fast and safe for concurrent use.
func Metrics(hook func(Event)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			start := time.Now()
			err := next(ctx, d)
			hook(Event{Source: d.Source, Deliveries: d.Deliveries, Duration: time.Since(start), Err: err})
			return err
		}
	}
}

// Trace is the correlation state of the message being handled.
type Trace struct {
	Traceparent   string
	Tracestate    string
	CorrelationID string
	CausationID   string // the id of the message that caused this one
}

type traceKey struct{}

// WithTrace returns ctx carrying t, for Propagate to copy into published
// messages; Correlation does it for handlers, an HTTP handler can do it
// from its request.
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the Trace in ctx, if any.
func TraceFrom(ctx context.Context) (Trace, bool) {
	t, ok := ctx.Value(traceKey{}).(Trace)
	return t, ok
}

// Correlation puts the incoming message's traceparent, tracestate and
// correlation-id headers into the handler's ctx (WithTrace); a message
// without a correlation-id gets its own id, or a new random one. Messages
// the handler publishes through Propagate carry them on.
func Correlation() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			t := Trace{
				Traceparent:   d.Headers[HeaderTraceparent],
				Tracestate:    d.Headers[HeaderTracestate],
				CorrelationID: d.Headers[HeaderCorrelationID],
				CausationID:   d.ID,
			}
			if t.CorrelationID == "" {
				t.CorrelationID = d.ID
			}
			if t.CorrelationID == "" {
				t.CorrelationID = NewID()
			}
			return next(WithTrace(ctx, t), d)
		}
	}
}

// NewID returns a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Propagate returns a Publisher that adds the ctx's Trace (see WithTrace,
// Correlation) to each message's headers, where the message does not set
// them already, then publishes through p. The trace context is that of
// ctx's span when it has one (the router's consumer span: messages the
// handler publishes are its children), else the Trace's. The caller's
// header maps are not modified.
func Propagate(p Publisher) Publisher { return propagator{p} }

type propagator struct{ p Publisher }

func (p propagator) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	t, ok := TraceFrom(ctx)
	if !ok {
		return p.p.Publish(ctx, dest, broker.WithTraceContext(ctx, msgs)...)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		h := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, h)
		t.Traceparent, t.Tracestate = h[HeaderTraceparent], h[HeaderTracestate]
	}
	out := make([]broker.Message, len(msgs))
	for i, m := range msgs {
		h := make(map[string]string, len(m.Headers)+4)
		set := func(k, v string) {
			if v != "" {
				h[k] = v
			}
		}
		set(HeaderTraceparent, t.Traceparent)
		set(HeaderTracestate, t.Tracestate)
		set(HeaderCorrelationID, t.CorrelationID)
		set(HeaderCausationID, t.CausationID)
		for k, v := range m.Headers {
			h[k] = v
		}
		m.Headers = h
		out[i] = m
	}
	return p.p.Publish(ctx, dest, out...)
}
