package message

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/switchyard/switchyard/broker"
)

// Handler handles one message. Returning nil acks it, an error nacks it
// (see RetryAfter for the redelivery delay). A handler that settled the
// message itself (Delivery.Ack or Nack) is left alone. ctx ends at the
// router's shutdown deadline, or earlier by middleware (Timeout).
type Handler func(ctx context.Context, d *Delivery) error

// Middleware wraps a handler: retry, dead-lettering, correlation ids,
// timeouts, metrics, an inbox. The router applies them outermost first.
type Middleware func(Handler) Handler

// RouterConfig tunes a Router. Zero fields take the defaults.
type RouterConfig struct {
	// Concurrency is how many handlers of one route run at once. Default
	// 16. With 1 the handler runs on the subscription's goroutine; with
	// more each message is handed over to one of Concurrency worker
	// goroutines through a queue of up to Concurrency messages (a
	// wake-up and a goroutine switch per message when they arrive one
	// at a time, about a microsecond of CPU, fewer in bursts, where a
	// worker takes what is queued before it parks: for handlers that
	// take less, 1 is cheaper).
	Concurrency int
	// Prefetch is each subscription's SubscribeOptions.Prefetch. Default
	// 256. The backend bounds a route's unsettled messages at 4 x
	// Prefetch (see SubscribeOptions.Prefetch: on switchyard up to all of
	// them may be held ahead of the handlers when acks keep up, on
	// JetStream at most Prefetch), those the Concurrency handlers hold,
	// those queued for them (Concurrency > 1) and those waiting for their
	// ack's answer (switchyard: the fsync of the batch they are in)
	// included; the handlers go on while up to 4 x Prefetch acks are in
	// progress.
	Prefetch int
	// ShutdownTimeout bounds how long Run waits, once its ctx ended, for
	// handlers in flight; then their ctx is cancelled and Run returns
	// ErrShutdownTimeout. Default 30s.
	ShutdownTimeout time.Duration
	// NackDelay is the redelivery delay of a message whose handler failed
	// without RetryAfter. Default 0: at once.
	NackDelay time.Duration
	// ResubscribeDelay is the wait before a failed subscription is tried
	// again (doubling up to 5s). Default 100ms.
	ResubscribeDelay time.Duration
	// OnError, if set, hears errors no handler returns: subscriptions that
	// failed and acks or nacks the backend refused. Called from several
	// goroutines.
	OnError func(source string, err error)
	// TracerProvider records a consumer span per handler run ("consume
	// SOURCE"), a child of the trace context the message carries in its
	// headers (traceparent), so the handler's work joins the producer's
	// trace; the handler's ctx holds the span, so what it publishes and
	// calls continues the trace. Default: OpenTelemetry's global provider
	// (package telemetry's Tracing.SetGlobal installs it; without it the
	// spans are no-ops).
	TracerProvider trace.TracerProvider
}

// Validate reports every problem at once.
func (c RouterConfig) Validate() error {
	var errs []error
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d: must not be negative", c.Concurrency))
	}
	if c.Prefetch < 0 {
		errs = append(errs, fmt.Errorf("prefetch %d: must not be negative", c.Prefetch))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout %s: must not be negative", c.ShutdownTimeout))
	}
	if c.NackDelay < 0 {
		errs = append(errs, fmt.Errorf("nack_delay %s: must not be negative", c.NackDelay))
	}
	if c.ResubscribeDelay < 0 {
		errs = append(errs, fmt.Errorf("resubscribe_delay %s: must not be negative", c.ResubscribeDelay))
	}
	return errors.Join(errs...)
}

// WithDefaults fills zero fields.
func (c RouterConfig) WithDefaults() RouterConfig {
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Prefetch == 0 {
		c.Prefetch = 256
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.ResubscribeDelay == 0 {
		c.ResubscribeDelay = 100 * time.Millisecond
	}
	return c
}

// RouteOptions tune one route.
type RouteOptions struct {
	// Group is the consumer group of a stream source, or the durable
	// group of a topic source (SubscribeOptions.Group).
	Group string
	// Concurrency overrides RouterConfig.Concurrency for this route.
	Concurrency int
	// Middleware wraps this route's handler inside the router's own
	// (Router.Use), outermost first.
	Middleware []Middleware
}

// settleWindow is how many Prefetch's worth of acks and nacks a route
// may have in progress before its handlers wait for them. With one, the
// switchyard adapter's ack request in flight held half the window and
// the handlers stopped at each fsync: ack-and-wait in batches of about
// Prefetch/2 (128 receipts per request at the default). With three they
// went on through the fsync and a request carried about 380 (bench
// BenchmarkRouter in kit/message/sybroker). Four is the backends' own
// bound on unsettled messages (SubscribeOptions.Prefetch), which now
// limits a route first: the acks in progress can take the whole window
// while the backend pushes no more, and on switchyard the acks of
// several pushed batches share one group commit (about half the fsyncs
// of three, docs/benchmarks.md credit12i).
const settleWindow = 4

// ErrShutdownTimeout is returned by Run when handlers were still running
// at the shutdown deadline.
var ErrShutdownTimeout = errors.New("message router: handlers still running at the shutdown deadline")

// Router runs handlers for the messages of its sources. Configure it with
// Use and Handle, then call Run once. Handle and Use are not safe to call
// concurrently with Run.
type Router struct {
	sub    Subscriber
	cfg    RouterConfig
	mw     []Middleware
	routes []*route
	errs   []error
	ran    bool
	tracer trace.Tracer
	// noSpans: the provider is a no-op one; globalNoop: it is
	// OpenTelemetry's default global one, a no-op until an SDK is
	// installed (checked per message, see spans).
	noSpans, globalNoop bool
}

type route struct {
	source Dest
	raw    string
	h      Handler
	opts   RouteOptions
}

// NewRouter returns a router reading from sub.
func NewRouter(sub Subscriber, cfg RouterConfig) (*Router, error) {
	if sub == nil {
		return nil, fmt.Errorf("%w: message router: nil subscriber", broker.ErrInvalid)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: message router config: %w", broker.ErrInvalid, err)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	r := &Router{sub: sub, cfg: cfg.WithDefaults(), tracer: tp.Tracer("github.com/switchyard/switchyard/kit/message")}
	switch tp.(type) {
	case noop.TracerProvider, *noop.TracerProvider:
		r.noSpans = true
	default:
		r.globalNoop = isGlobalDefault(tp)
	}
	return r, nil
}

// isGlobalDefault reports whether tp is OpenTelemetry's global provider
// before any SDK was installed (otel.SetTracerProvider): its spans are
// no-ops until then. Once a provider is installed otel.GetTracerProvider
// returns that one instead, so the check per message is this type test.
func isGlobalDefault(tp trace.TracerProvider) bool {
	t := reflect.TypeOf(tp)
	if t == globalDefaultType.Load() {
		return t != nil
	}
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().PkgPath() != "go.opentelemetry.io/otel/internal/global" || t.Elem().Name() != "tracerProvider" {
		return false
	}
	globalDefaultType.Store(t)
	return true
}

// globalDefaultType is the type of OpenTelemetry's default global
// provider, once seen.
var globalDefaultType atomicType

type atomicType struct{ p atomic.Pointer[reflect.Type] }

func (a *atomicType) Load() reflect.Type {
	if t := a.p.Load(); t != nil {
		return *t
	}
	return nil
}

func (a *atomicType) Store(t reflect.Type) { a.p.Store(&t) }

// spans reports whether handler spans are recorded: not with a no-op
// provider, where a span cost three allocations per message (the span,
// its context and the interface conversion) and recorded nothing. The
// trace context the message carries is put in the handler's ctx either
// way, so what the handler publishes continues the producer's trace as
// a no-op span would have.
func (r *Router) spans() bool {
	if r.noSpans {
		return false
	}
	return !r.globalNoop || !isGlobalDefault(otel.GetTracerProvider())
}

// Use adds middleware for every route, outermost first.
func (r *Router) Use(mw ...Middleware) { r.mw = append(r.mw, mw...) }

// Handle adds a route: h handles the messages of source ("queue:NAME",
// "topic:NAME", "stream:NAME"). A bad source or a stream source without
// a group is an error, also returned by Run.
func (r *Router) Handle(source string, h Handler, opts RouteOptions) error {
	d, err := ParseDest(source)
	if err == nil && h == nil {
		err = fmt.Errorf("%w: route %q: nil handler", broker.ErrInvalid, source)
	}
	if err == nil && d.Kind == Stream && opts.Group == "" {
		err = fmt.Errorf("%w: route %q: a stream source needs RouteOptions.Group", broker.ErrInvalid, source)
	}
	if err == nil && opts.Concurrency < 0 {
		err = fmt.Errorf("%w: route %q: concurrency %d must not be negative", broker.ErrInvalid, source, opts.Concurrency)
	}
	if err != nil {
		r.errs = append(r.errs, err)
		return err
	}
	r.routes = append(r.routes, &route{source: d, raw: source, h: h, opts: opts})
	return nil
}

// Run subscribes every route and handles messages until ctx ends, then
// shuts down gracefully: it stops taking new messages (one the backend
// hands over that finds the route's workers and their queue full is
// nacked for immediate redelivery; those queued are handled),
// waits up to ShutdownTimeout for handlers in flight to finish and settle
// their messages, and returns nil, or ErrShutdownTimeout after cancelling
// the ctx of handlers still running (a handler that ignores its ctx goes on
// after Run returned). A failed subscription is retried with backoff and
// reported to OnError; an invalid source ends Run with that error. Run
// may be called once.
func (r *Router) Run(ctx context.Context) error {
	if r.ran {
		return errors.New("message router: Run called twice")
	}
	r.ran = true
	if len(r.errs) > 0 {
		return errors.Join(r.errs...)
	}
	if len(r.routes) == 0 {
		return fmt.Errorf("%w: message router: no routes", broker.ErrInvalid)
	}
	// subCtx ends the subscriptions; workCtx is the handlers' ctx, which
	// outlives ctx until the shutdown deadline.
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()

	var (
		subs     sync.WaitGroup
		inFlight tracker // workers, inline handlers and settles in progress
		fatalMu  sync.Mutex
		fatal    error
	)
	inFlight.zero = make(chan struct{})
	for _, rt := range r.routes {
		h := rt.h
		for i := len(rt.opts.Middleware) - 1; i >= 0; i-- {
			h = rt.opts.Middleware[i](h)
		}
		for i := len(r.mw) - 1; i >= 0; i-- {
			h = r.mw[i](h)
		}
		n := rt.opts.Concurrency
		if n == 0 {
			n = r.cfg.Concurrency
		}
		rs := &routeState{raw: rt.raw, spanName: "consume " + rt.raw, settles: &inFlight}
		rs.settling.init(settleWindow * r.cfg.Prefetch)
		if rt.source.Kind != Queue {
			rs.group = rt.opts.Group
		}
		rs.acked = func(err error) {
			if err != nil {
				r.report(rs.raw, fmt.Errorf("acking a message: %w", err))
			}
			rs.settling.release()
			rs.settles.done()
		}
		var (
			deliver func(*Delivery)
			work    *handoff // to the workers (Concurrency > 1)
		)
		if n == 1 {
			// One handler at a time: it runs on the subscription's
			// goroutine, without a hand-over (a wake-up and a goroutine
			// switch per message, about a microsecond).
			deliver = func(d *Delivery) {
				if subCtx.Err() != nil || !inFlight.tryAdd() {
					r.giveBack(subCtx, rt.raw, d)
					return
				}
				r.handle(workCtx, rs, h, d)
				inFlight.done()
			}
		} else {
			// Up to n deliveries wait for a worker beside the n being
			// handled. One queued is handled, also when the router
			// stops (as one a worker took); one that finds the queue
			// full then is given back.
			work = newHandoff(n)
			deliver = func(d *Delivery) {
				if !work.put(subCtx, d) {
					r.giveBack(subCtx, rt.raw, d)
				}
			}
			run := func(d *Delivery) { r.handle(workCtx, rs, h, d) }
			for range n {
				inFlight.add()
				go func() {
					defer inFlight.done()
					work.work(run)
				}()
			}
		}
		subs.Add(1)
		go func() {
			defer subs.Done()
			if work != nil {
				defer work.close()
			}
			err := r.subscribe(subCtx, rt, deliver)
			if err != nil {
				fatalMu.Lock()
				if fatal == nil {
					fatal = err
				}
				fatalMu.Unlock()
				stopSubs()
			}
		}()
	}
	<-subCtx.Done() // ctx ended (or a fatal error): no new messages
	timer := time.NewTimer(r.cfg.ShutdownTimeout)
	defer timer.Stop()
	subsDone := make(chan struct{})
	go func() { subs.Wait(); close(subsDone) }()
	idle := inFlight.drain()
	timedOut := false
	select {
	case <-subsDone:
		select {
		case <-idle:
		case <-timer.C:
			timedOut = true
		}
	case <-timer.C:
		timedOut = true
	}
	fatalMu.Lock()
	defer fatalMu.Unlock()
	if timedOut {
		stopWork()
		return errors.Join(fatal, ErrShutdownTimeout)
	}
	return fatal
}

// giveBack nacks a message taken but not started at shutdown, for
// immediate redelivery to another consumer.
func (r *Router) giveBack(ctx context.Context, source string, d *Delivery) {
	if err := d.Nack(context.WithoutCancel(ctx), 0); err != nil {
		r.report(source, fmt.Errorf("returning a message at shutdown: %w", err))
	}
}

// tracker counts what Run waits for at shutdown: worker goroutines,
// handlers run on the subscription's goroutine, settles in progress.
// Unlike a WaitGroup it may be added to while drain waits (tryAdd then
// refuses, for an inline delivery arriving at shutdown). Atomic: the
// inline handlers of a route count themselves per message.
type tracker struct {
	state atomic.Int64 // the count, and drainBit once draining
	once  sync.Once
	zero  chan struct{} // closed once draining and the count is 0
}

const drainBit = 1 << 62

func (t *tracker) add() { t.state.Add(1) }

// tryAdd adds one unless drain was called.
func (t *tracker) tryAdd() bool {
	for {
		v := t.state.Load()
		if v&drainBit != 0 {
			return false
		}
		if t.state.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

func (t *tracker) done() {
	if t.state.Add(-1) == drainBit {
		t.once.Do(func() { close(t.zero) })
	}
}

// drain returns a channel closed once nothing is counted.
func (t *tracker) drain() <-chan struct{} {
	if t.state.Or(drainBit) == 0 {
		t.once.Do(func() { close(t.zero) })
	}
	return t.zero
}

// subscribe keeps rt's subscription up until ctx ends; it returns an
// error only for an invalid source.
func (r *Router) subscribe(ctx context.Context, rt *route, deliver func(*Delivery)) error {
	opts := SubscribeOptions{Prefetch: r.cfg.Prefetch, Group: rt.opts.Group}
	wait := r.cfg.ResubscribeDelay
	for {
		err := r.sub.Subscribe(ctx, rt.raw, opts, deliver)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, broker.ErrInvalid) {
			return fmt.Errorf("subscribing to %q: %w", rt.raw, err)
		}
		if err == nil {
			err = errors.New("subscription ended")
		}
		r.report(rt.raw, fmt.Errorf("subscribing to %q (again in %s): %w", rt.raw, wait, err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// handle runs h for d and settles d unless h did. The settling goes on
// without the worker (AckAsync, or a goroutine for a nack; at most
// settleWindow x Prefetch at once per route), so that the worker takes the next message
// while the backend makes the ack durable; settles counts them for the
// shutdown.
func (r *Router) handle(ctx context.Context, rt *routeState, h Handler, d *Delivery) {
	if rt.group != "" {
		d.Group = rt.group
	}
	ctx = broker.TraceContext(ctx, d.Headers)
	var err error
	if r.spans() {
		err = r.handleInSpan(ctx, rt, h, d)
	} else {
		err = h(ctx, d)
	}
	if d.Settled() {
		return
	}
	rt.settling.acquire()
	rt.settles.add()
	if err == nil {
		d.AckAsync(rt.acked)
		return
	}
	sctx := context.WithoutCancel(ctx)
	go func() {
		defer func() { rt.settling.release(); rt.settles.done() }()
		delay := r.cfg.NackDelay
		var ra *retryAfterError
		if errors.As(err, &ra) {
			delay = ra.delay
		}
		if err := d.Nack(sctx, delay); err != nil {
			r.report(rt.raw, fmt.Errorf("nacking a message: %w", err))
		}
	}()
}

// handleInSpan runs h in a consumer span.
func (r *Router) handleInSpan(ctx context.Context, rt *routeState, h Handler, d *Delivery) error {
	ctx, sp := r.tracer.Start(ctx, rt.spanName, consumerSpan...)
	if sp.IsRecording() {
		sp.SetAttributes(attribute.String("messaging.operation.type", "process"), attribute.String("messaging.destination.name", d.Source.Name),
			attribute.String("messaging.message.id", d.ID), attribute.Int("messaging.message.delivery_count", d.Deliveries))
	}
	err := h(ctx, d)
	if err != nil {
		sp.SetStatus(otelcodes.Error, err.Error())
	}
	sp.End()
	return err
}

// consumerSpan are the options of every handler span, built once (as
// routeState.spanName): per message they were two of the router's
// allocations.
var consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

// routeState is a route while Run runs.
type routeState struct {
	raw      string
	spanName string    // "consume " + raw
	settling semaphore // a slot per settle in progress
	settles  *tracker
	acked    func(error) // AckAsync's done: one func for the route, not one per message
	group    string      // Delivery.Group: a topic or stream source's group
}

func (r *Router) report(source string, err error) {
	if r.cfg.OnError != nil {
		r.cfg.OnError(source, err)
	}
}

// RetryAfter wraps err so that the router nacks the message with delay
// instead of RouterConfig.NackDelay.
func RetryAfter(err error, delay time.Duration) error {
	return &retryAfterError{err: err, delay: delay}
}

type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string { return fmt.Sprintf("%v (retry after %s)", e.err, e.delay) }
func (e *retryAfterError) Unwrap() error { return e.err }

// semaphore bounds the settles of a route in progress. Taking and giving
// back a slot is an atomic add unless the window is full; a buffered
// channel was two channel operations (each a lock) per message, paid
// even where the ack is done at once (JetStream).
type semaphore struct {
	n       atomic.Int64 // slots taken
	limit   int64
	waiters atomic.Int64 // acquire calls waiting on cond
	mu      sync.Mutex
	cond    sync.Cond
}

func (s *semaphore) init(limit int) {
	s.limit = int64(limit)
	s.cond.L = &s.mu
}

// acquire takes a slot, waiting while all limit are taken.
func (s *semaphore) acquire() {
	for {
		v := s.n.Load()
		if v < s.limit {
			if s.n.CompareAndSwap(v, v+1) {
				return
			}
			continue
		}
		// Full: wait under mu. A release after the count below was
		// read sees waiters > 0 and signals under mu, so it cannot
		// fall between the check and the Wait.
		s.mu.Lock()
		s.waiters.Add(1)
		for s.n.Load() >= s.limit {
			s.cond.Wait()
		}
		s.waiters.Add(-1)
		s.mu.Unlock()
	}
}

// release gives a slot back.
func (s *semaphore) release() {
	s.n.Add(-1)
	if s.waiters.Load() > 0 {
		s.mu.Lock()
		s.cond.Signal()
		s.mu.Unlock()
	}
}
