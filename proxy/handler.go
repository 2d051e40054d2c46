// Package proxy is the L7 reverse proxy: it resolves a route, then forwards
// the request to a target of the route's upstream pool, applying balancing,
// circuit breakers, outlier ejection, retries and timeouts.
//
// The client side (hop-by-hop headers, streaming of SSE and chunked bodies,
// WebSocket upgrades, trailers) is net/http/httputil.ReverseProxy's, but
// for gRPC calls over HTTP/2, which forwardGRPC copies itself (the same
// steps at less cost per call); the upstream side is attemptTransport,
// which makes one or more attempts.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/route"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/upstream"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext reads and writes W3C traceparent and tracestate.
var traceContext = propagation.TraceContext{}

// serverKind is the server span's option, made once (an option is an
// interface value: made per request it costs an allocation).
var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// Route is a resolved route: where a matching request goes.
type Route struct {
	// Name identifies the route in metrics and logs.
	Name string
	// Pool serves the route.
	Pool *Pool
	// Split, when set, sends part of the route's traffic to another pool
	// (strangler fig migration, canary).
	Split *Split
	// StripPrefix is removed from the path before forwarding.
	StripPrefix string
	// Middleware wraps forwarding, outermost first (authentication, rate
	// limits, request transformation ...). A middleware that answers by
	// itself should use WriteError or RecordStatus so logs and metrics see
	// the status. Call Handler.Prepare after setting it.
	Middleware []httpx.Middleware
	// Terminal, when set, answers the route's requests instead of
	// forwarding them to Pool (API composition); Pool may then be nil.
	Terminal http.Handler
	// ResponseHooks run on every upstream response before it is sent,
	// in order (response transformation); an error becomes a 502.
	ResponseHooks []func(*http.Response) error

	handler  http.Handler // Middleware around forwarding, built by Prepare
	obs      *routeObs    // metrics for requests served by Pool
	splitObs *routeObs    // and by Split.Pool
}

// observers returns the route's metrics for requests served by pool.
func (rt *Route) observers(pool *Pool) *routeObs {
	if rt.Split != nil && pool == rt.Split.Pool {
		return rt.splitObs
	}
	return rt.obs
}

// noPool stands in for the pool of routes that have none.
var noPool = &Pool{name: "", respTO: 60 * time.Second}

// Split sends a share of a route's requests, or requests to listed paths,
// to another pool.
type Split struct {
	// Pool receives the split-off requests.
	Pool *Pool
	// Percent of requests (0-100) sent to Pool, chosen at random per request.
	Percent float64
	// PathPrefixes always go to Pool (segment-boundary prefixes).
	PathPrefixes []string
}

// pick returns the pool for r.
func (s *Split) pick(r *http.Request, def *Pool) *Pool {
	for _, p := range s.PathPrefixes {
		if route.HasPathPrefix(r.URL.Path, p) {
			return s.Pool
		}
	}
	if s.Percent > 0 && mrand.Float64()*100 < s.Percent {
		return s.Pool
	}
	return def
}

// Prepare composes the route's middleware around h's forwarding; call it
// once the route is complete and before it is served.
func (h *Handler) Prepare(rt *Route) {
	var next http.Handler = http.HandlerFunc(h.forward)
	if rt.Terminal != nil {
		next = rt.Terminal
	}
	for i := len(rt.Middleware) - 1; i >= 0; i-- {
		next = rt.Middleware[i](next)
	}
	rt.handler = next
	pool := rt.Pool
	if pool == nil {
		pool = noPool
	}
	rt.obs = h.metrics.forRoute(rt.Name, pool.name)
	if rt.Split != nil {
		rt.splitObs = h.metrics.forRoute(rt.Name, rt.Split.Pool.name)
	}
}

// Call sends req to a pool with its balancing, breakers and retries and
// returns the upstream response (for API composition). The caller closes
// the body. req's URL host is replaced by the chosen target.
func (h *Handler) Call(pool *Pool, req *http.Request) (*http.Response, error) {
	st := &reqState{Context: req.Context(), pool: pool, clientCtx: req.Context(),
		route: &Route{Name: "call:" + pool.name, Pool: pool}, State: httpx.State{RequestID: req.Header.Get("X-Request-Id")}}
	req = req.WithContext(st)
	req.URL.Scheme = "http"
	if req.Header.Get("Traceparent") != "" {
		req.Header.Set("Traceparent", httpx.ChildTraceparent(req.Header.Get("Traceparent")))
	}
	return attemptTransport{h: h}.RoundTrip(req)
}

// forward sends the request upstream, within the pool's in-flight cap.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request) {
	st := r.Context().Value(stateKey{}).(*reqState)
	grpc := httpx.IsGRPC(r)
	if r.Body != nil && r.Body != http.NoBody && st.bodyMode == bodyUnread {
		// Read a small body ahead, before the in-flight cap, the breakers
		// and the choice of a target: a slow client holds none of them.
		cb := wrapBody(w, r, st)
		defer func() {
			cb.disarm()
			h.buffered.Add(-st.reserved)
		}()
		if grpc {
			// A gRPC call's body is a stream of messages that may wait
			// for the server's answers (client and bidi streaming): it
			// goes upstream as it comes, never read ahead or retried.
			st.bodyMode = bodyStreamed
		} else if !h.readAhead(r, st, cb) {
			h.errorHandler(w, r, st.bodyErr.Load())
			return
		}
	}
	if c := st.pool.inflight; c != nil {
		if !c.TryAcquire() {
			httpx.WriteError(w, r, &httpx.Error{Status: http.StatusServiceUnavailable, Code: "upstream_busy",
				Msg: "upstream " + st.pool.name + " is at its in-flight limit", RetryAfter: time.Second})
			return
		}
		defer c.Release()
	}
	if grpc && grpcDirect(r, st.pool) {
		h.forwardGRPC(w, r)
		return
	}
	if _, ok := r.Header["Upgrade"]; ok {
		dropH2CUpgrade(r.Header)
	}
	h.rp.ServeHTTP(w, r)
}

// dropH2CUpgrade removes an offer to upgrade to h2c (cleartext HTTP/2,
// RFC 7540 3.2) from a request's Upgrade field, with its HTTP2-Settings:
// the offer is for this hop, whose server declines it by ignoring it
// (RFC 9110 7.8); passed on, a target that accepts would switch the
// connection to a protocol the client never agreed to with it. Other
// offers (websocket) stay.
func dropH2CUpgrade(h http.Header) {
	vs := h["Upgrade"]
	found := false
	for _, v := range vs {
		for tok := range strings.SplitSeq(v, ",") {
			if isH2C(tok) {
				found = true
			}
		}
	}
	if !found {
		return
	}
	var keep []string
	for _, v := range vs {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !isH2C(tok) {
				keep = append(keep, tok)
			}
		}
	}
	delete(h, "Http2-Settings")
	if len(keep) == 0 {
		delete(h, "Upgrade")
		return
	}
	h["Upgrade"] = []string{strings.Join(keep, ", ")}
}

func isH2C(tok string) bool { return strings.EqualFold(strings.TrimSpace(tok), "h2c") }

// Resolver finds the route of a request. The gateway implements it over
// its current (hot-reloadable) routing table.
type Resolver interface {
	Resolve(r *http.Request) (*Route, bool)
}

// Options configure a Handler.
type Options struct {
	// AccessLog receives one record per request; nil disables access logs.
	AccessLog *slog.Logger
	// ErrorLog receives proxy errors; nil discards them.
	ErrorLog *slog.Logger
	// Metrics, if set, records Prometheus metrics.
	Metrics *Metrics
	// MaxBodyBuffer is how many bytes of a request body are read before
	// the request goes upstream (so a slow client holds no upstream
	// connection) and kept for retries; larger bodies are streamed.
	// Default 64 KiB.
	MaxBodyBuffer int
	// MaxBodyBufferTotal bounds the bytes of all request bodies buffered
	// at once; a body that does not fit is streamed. Default 64 MiB.
	MaxBodyBufferTotal int64
	// Observer, if set, is told of every request answered through a
	// route once it is complete (SLO tracking); it must not block.
	Observer Observer
	// Tracing, if set, traces every request: a server span (continuing
	// the client's W3C traceparent) and a client span per upstream
	// attempt, whose context is what the upstream receives in
	// traceparent. Only a head-sampled request records its spans as it
	// goes; another one keeps its timings and builds its spans at its end
	// only when it turned out slow or failed (telemetry.RequestTracer).
	// Nil: no spans; a valid incoming traceparent is passed on with a new
	// span id.
	Tracing *telemetry.RequestTracer
}

// Observer is told of each request answered through a route, once, when
// it is complete: the route's name, the upstream that served it (""
// for routes without one), the status logged and the time to answer it.
// It runs on the request's goroutine: it must be cheap and never block.
type Observer interface {
	ObserveRequest(route, upstream string, status int, d time.Duration)
}

// Handler is the proxy's http.Handler. Safe for concurrent use.
type Handler struct {
	resolver  Resolver
	rp        *httputil.ReverseProxy
	accessLog *slog.Logger
	errorLog  *slog.Logger
	metrics   *Metrics
	maxBody   int
	inflight  atomic.Int64
	tracing   *telemetry.RequestTracer
	tracer    trace.Tracer // tracing's, for the sampled requests' spans
	observer  Observer

	maxBodyTotal int64
	buffered     atomic.Int64 // request body bytes held by read-ahead
}

// Defaults of Options.
const (
	DefaultMaxBodyBuffer      = 64 << 10
	DefaultMaxBodyBufferTotal = 64 << 20
)

// New returns a proxy handler that resolves routes with resolver.
func New(resolver Resolver, opts Options) *Handler {
	h := &Handler{
		resolver:  resolver,
		accessLog: opts.AccessLog,
		errorLog:  opts.ErrorLog,
		metrics:   opts.Metrics,
		maxBody:   opts.MaxBodyBuffer,
		tracing:   opts.Tracing,
		observer:  opts.Observer,

		maxBodyTotal: opts.MaxBodyBufferTotal,
	}
	if h.tracing != nil {
		h.tracer = h.tracing.Tracer()
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBuffer
	}
	if h.maxBodyTotal <= 0 {
		h.maxBodyTotal = DefaultMaxBodyBufferTotal
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      attemptTransport{h: h},
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.errorHandler,
		ErrorLog:       nil,
		BufferPool:     newBufferPool(),
	}
	if opts.ErrorLog != nil {
		h.rp.ErrorLog = slog.NewLogLogger(opts.ErrorLog.Handler(), slog.LevelWarn)
	}
	return h
}

// InFlight returns the number of requests being served.
func (h *Handler) InFlight() int64 { return h.inflight.Load() }

type stateKey struct{}

// reqState follows one request through the proxy. It is also the
// request's context (the client's, made cancellable for the response
// timeout), which saves a context.WithValue per request. It is not pooled:
// the response-timeout callback may still hold it after the request ends.
type reqState struct {
	context.Context
	route       *Route
	pool        *Pool // the route's pool, or its split's
	httpx.State       // request id and recorded status, shared with middleware
	target      *upstream.Target
	sticky      balance.Sticky // of the target set the target came from
	attempts    int
	circuitOpen bool
	respBodyErr error       // reading the upstream response body failed
	respHeader  http.Header // the client response's header, nil in Call
	timedOut    atomic.Bool
	clientCtx   context.Context
	timer       *time.Timer
	// connListed are the fields the client named in its Connection
	// header (see sanitizeClientHeaders).
	connListed []string
	// The request body: read ahead (body) or streamed; bodyErr is the
	// first error reading it (set from the transport's goroutine).
	bodyMode uint8
	// hvals holds the values of the fields the gateway sets on the
	// outbound request (setHeader): spare room in the backing array of
	// the request's cloned header (forwardGRPC), where a Set allocated
	// a slice per field.
	hvals []string
	// grpcDeadline is when the deadline sent upstream in grpc-timeout
	// runs out (zero for other requests): a gRPC server resets a call
	// whose deadline passed, which is the call's timeout, not a failure.
	grpcDeadline time.Time
	body         []byte
	reserved     int64 // bytes of the read-ahead budget held
	bodyErr      atomic.Pointer[ClientBodyError]
	cbody        *clientBody // the client's body, wrapped (nil without one)
	span         trace.Span  // the server span of a sampled request; nil otherwise
	// An unsampled request's trace and server span ids (zero without
	// tracing) and its record, until it ends.
	tid  trace.TraceID
	sid  trace.SpanID
	tail *tailRecord
}

// Value returns the state itself for stateKey and defers to the parent
// context otherwise.
func (st *reqState) Value(key any) any {
	switch key.(type) {
	case stateKey:
		return st
	case httpx.StateKey:
		return &st.State
	}
	return st.Context.Value(key)
}

// clientGone reports whether the client cancelled (not our own timeout).
func (st *reqState) clientGone() bool {
	return st.clientCtx.Err() != nil && !st.timedOut.Load()
}

// writeEarly answers a request refused before it has a route: a gRPC
// call gets the error as a gRPC status in a trailers-only response (as
// every later gateway error), not a JSON body its client cannot read.
func writeEarly(w http.ResponseWriter, r *http.Request, e *httpx.Error, id string) {
	if httpx.IsGRPC(r) {
		e.WriteGRPC(w, id)
		return
	}
	e.Write(w, id)
}

// ServeHTTP proxies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.inflight.Add(1)
	defer h.inflight.Add(-1)

	id := r.Header.Get("X-Request-Id")
	if !httpx.ValidRequestID(id) {
		id = httpx.NewRequestID()
	}
	w.Header().Set("X-Request-Id", id)

	if e := refuseMethod(r); e != nil {
		if e.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", allowedMethods)
		}
		w.Header().Set("Connection", "close")
		e.Write(w, id)
		h.log(r, nil, id, e.Status, 0, start)
		h.metrics.request("", "", e.Status, time.Since(start))
		return
	}
	mergeSlashes(r)
	if e := refusePath(r); e != nil {
		writeEarly(w, r, e, id)
		h.log(r, nil, id, e.Status, 0, start)
		h.metrics.request("", "", e.Status, time.Since(start))
		return
	}
	listed := sanitizeClientHeaders(r.Header)

	rt, ok := h.resolver.Resolve(r)
	if !ok {
		e := &httpx.Error{Status: http.StatusNotFound, Code: "no_route", Msg: "no route matches " + r.Method + " " + r.Host + r.URL.Path}
		writeEarly(w, r, e, id)
		h.log(r, nil, id, e.Status, 0, start)
		h.metrics.request("", "", e.Status, time.Since(start))
		return
	}

	st := &reqState{route: rt, pool: rt.Pool, State: httpx.State{RequestID: id}, clientCtx: r.Context(), connListed: listed, respHeader: w.Header()}
	if st.pool == nil { // a terminal route (composition): no pool of its own
		st.pool = noPool
	}
	if rt.Split != nil {
		st.pool = rt.Split.pick(r, rt.Pool)
	}
	ctx, cancel := context.WithCancel(r.Context())
	if h.tracing != nil {
		var parent trace.SpanContext
		if _, ok := r.Header["Traceparent"]; ok { // Extract's lookups allocate (canonical keys)
			ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
			parent = trace.SpanContextFromContext(ctx)
		}
		tid := parent.TraceID()
		if !parent.IsValid() {
			tid = telemetry.NewTraceID()
		}
		if h.tracing.SampleParent(parent, tid, trace.SpanKindServer) {
			ctx, st.span = h.tracing.Start(ctx, tid, r.Method+" "+rt.Name, serverKind,
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
					attribute.String("http.route", rt.Name), attribute.String("client.address", r.RemoteAddr),
					attribute.String("switchyard.request_id", id)))
		} else {
			st.tid, st.sid = tid, telemetry.NewSpanID()
			st.tail = tailPool.Get().(*tailRecord)
			st.tail.parent, st.tail.path = parent, r.URL.Path
		}
	}
	st.Context = ctx
	st.timer = time.AfterFunc(st.pool.respTO, func() {
		st.timedOut.Store(true)
		cancel()
	})
	obs := rt.observers(st.pool)
	obs.routeInflight(1)
	defer func() {
		st.timer.Stop()
		cancel()
		obs.routeInflight(-1)
		v := recover()
		switch {
		case v == http.ErrAbortHandler:
			// The reverse proxy aborts a response whose upstream body
			// broke off, or that the client stopped taking, so that the
			// server closes the connection without ending the response
			// as complete: the log and metrics must not say 200.
			st.Status = st.abortStatus()
		case v != nil:
			st.Status = http.StatusInternalServerError
		case st.respBodyErr != nil && st.Status < 400:
			// A server that does not abort (without http.ServerContextKey)
			// ended the response; it was broken all the same.
			st.Status = st.abortStatus()
		}
		var sc trace.SpanContext
		if st.span != nil {
			sc = st.span.SpanContext()
		}
		d := time.Since(start)
		obs.request(st.Status, d, sc)
		if h.observer != nil {
			h.observer.ObserveRequest(rt.Name, st.pool.name, st.Status, d)
		}
		if st.span != nil {
			st.span.SetAttributes(attribute.Int("http.response.status_code", st.Status), attribute.Int("switchyard.attempts", st.attempts))
			if st.Status >= 500 {
				st.span.SetStatus(otelcodes.Error, http.StatusText(st.Status))
			}
			st.span.End()
		}
		if rec := st.tail; rec != nil {
			if h.tracing.Keep(st.Status >= 500 || rec.failed, d) {
				h.rebuild(r, st, id, start, d)
			}
			st.tail = nil
			rec.release()
		}
		h.log(r, st, id, st.Status, st.attempts, start)
		if v != nil {
			panic(v) // the server closes the connection (the stack is not unwound yet)
		}
	}()
	if rt.handler != nil {
		rt.handler.ServeHTTP(w, r.WithContext(st))
	} else {
		h.forward(w, r.WithContext(st))
	}
}

// abortStatus is the status recorded for a response that was aborted
// after it began: 504 when the response timeout cut it, 499 when the
// client left (or stopped taking it), 502 when the upstream body broke.
func (st *reqState) abortStatus() int {
	switch {
	case st.timedOut.Load():
		return http.StatusGatewayTimeout
	case st.clientGone():
		return 499
	case st.respBodyErr != nil:
		return http.StatusBadGateway
	}
	return 499 // writing to the client failed
}

func (h *Handler) log(r *http.Request, st *reqState, id string, status, attempts int, start time.Time) {
	if h.accessLog == nil {
		return
	}
	routeName, upstreamName, target := "", "", ""
	if st != nil {
		routeName, upstreamName = st.route.Name, st.pool.name
		if st.target != nil {
			target = st.target.Address
		}
	}
	h.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("request_id", id),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
		slog.String("route", routeName),
		slog.String("upstream", upstreamName),
		slog.String("target", target),
		slog.Int("status", status),
		slog.Int("attempts", attempts),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("trace_id", traceID(st)),
		slog.String("span_id", spanID(st)),
	)
}

// spanID is the request's server span id for the access log, "" without
// a span.
func spanID(st *reqState) string {
	switch {
	case st == nil:
		return ""
	case st.span != nil:
		return st.span.SpanContext().SpanID().String()
	case st.sid.IsValid():
		return st.sid.String()
	}
	return ""
}

// traceID is the request's trace id for the access log: its span's, or
// the one passed on in traceparent.
func traceID(st *reqState) string {
	if st == nil {
		return ""
	}
	if st.span != nil {
		return st.span.SpanContext().TraceID().String()
	}
	if st.tid.IsValid() {
		return st.tid.String()
	}
	if len(st.Traceparent) == 55 {
		return st.Traceparent[3:35]
	}
	return ""
}

// rewrite builds the outbound request (its target host is set per attempt).
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*reqState)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = "upstream.invalid" // replaced by the chosen target
	if p := st.route.StripPrefix; p != "" {
		out.URL.Path = route.StripPrefix(out.URL.Path, p)
		if out.URL.RawPath != "" {
			out.URL.RawPath = route.StripPrefix(out.URL.RawPath, p)
		}
	}
	// Append to, rather than replace, an incoming X-Forwarded-For chain.
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
		out.Header["X-Forwarded-For"] = prior
	}
	st.setXForwarded(pr)
	restoreGatewayHeaders(pr.In.Header, out.Header, st.connListed)
	dropUnderscoreSpoofs(out.Header)
	dropGatewayTrailers(out.Trailer)
	st.setHeader(out.Header, "X-Request-Id", st.RequestID)
	if httpx.IsGRPC(pr.In) {
		st.grpcDeadline = time.Now().Add(st.boundGRPCTimeout(out.Header, st.pool.respTO))
	}
	if st.span == nil && !st.sid.IsValid() {
		st.Traceparent = httpx.ChildTraceparent(pr.In.Header.Get("Traceparent"))
		st.setHeader(out.Header, "Traceparent", st.Traceparent)
	} else {
		// Each attempt's span sets it (attemptTransport).
		out.Header.Del("Traceparent")
		out.Header.Del("Tracestate")
	}
}

// modifyResponse stamps gateway headers on a response from a target.
func (h *Handler) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(stateKey{}).(*reqState)
	st.Status = resp.StatusCode
	resp.Header.Del("X-Request-Id")
	if st.respHeader != nil && len(st.respHeader["X-Request-Id"]) == 0 {
		// The reverse proxy clears the client response's header after
		// forwarding a 1xx (103 Early Hints), so that the hints' fields do
		// not reach the final response: ours goes back with the upstream's.
		resp.Header["X-Request-Id"] = []string{st.RequestID}
	}
	if isStream(resp) {
		st.timer.Stop() // streams are not bounded by the response timeout once started
	}
	for _, hook := range st.route.ResponseHooks {
		if err := hook(resp); err != nil {
			return &httpx.Error{Status: http.StatusBadGateway, Code: "response_transform", Msg: "transforming the upstream response", Err: err}
		}
	}
	if s := st.sticky; s != nil && st.target != nil {
		if c := s.StickyCookie(resp.Request, st.target); c != nil {
			resp.Header.Add("Set-Cookie", c.String())
		}
	}
	return nil
}

func isStream(resp *http.Response) bool {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return true
	}
	ct := resp.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "text/event-stream")
}

func (h *Handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(stateKey{}).(*reqState)
	if ce := st.bodyErr.Load(); ce != nil {
		err = ce // the client's body failed, whatever the transport made of it
	}
	e := toError(err, st.clientGone())
	if e.Code == "upstream_error" && st.pool.certAsked.Load() {
		e = &httpx.Error{Status: http.StatusBadGateway, Code: "upstream_tls",
			Msg: "TLS with upstream failed: a target of upstream " + st.pool.name + " asked for a client certificate and its tls section has none (cert, key)", Err: err}
	}
	var ce *ClientBodyError
	expired := !st.grpcDeadline.IsZero() && !time.Now().Before(st.grpcDeadline) && e.Code == "upstream_error"
	if (st.timedOut.Load() || expired) && e.Code != "circuit_open" && !errors.As(err, &ce) {
		e = &httpx.Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Msg: "upstream timed out", Err: err}
	}
	if ce != nil {
		// The body's framing is broken or its read aborted: the rest of
		// the connection cannot be trusted.
		w.Header().Set("Connection", "close")
	}
	st.Status = e.Status
	if h.errorLog != nil && e.Code != "client_closed" {
		h.errorLog.LogAttrs(r.Context(), slog.LevelWarn, "proxy error",
			slog.String("request_id", st.RequestID), slog.String("route", st.route.Name),
			slog.String("code", e.Code), slog.String("error", e.Error()))
	}
	if e.Code == "client_closed" {
		return // nobody to answer
	}
	if httpx.IsGRPC(r) {
		e.WriteGRPC(w, st.RequestID)
		return
	}
	e.Write(w, st.RequestID)
}

// bufferPool lends 32 KiB copy buffers to the reverse proxy.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	bp := &bufferPool{}
	bp.p.New = func() any { b := make([]byte, 32<<10); return &b }
	return bp
}

func (bp *bufferPool) Get() []byte  { return *(bp.p.Get().(*[]byte)) }
func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }
