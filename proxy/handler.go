// Package proxy is the L7 reverse proxy: it resolves a route, then forwards
// the request to a target of the route's upstream pool, applying balancing,
// circuit breakers, outlier ejection, retries and timeouts.
//
// The client side (hop-by-hop headers, streaming of SSE and chunked bodies,
// WebSocket upgrades, trailers) is net/http/httputil.ReverseProxy's; the
// upstream side is attemptTransport, which makes one or more attempts.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/route"
	"github.com/switchyard/switchyard/upstream"
)

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
	Middleware []Middleware
	// Terminal, when set, answers the route's requests instead of
	// forwarding them to Pool (API composition); Pool may then be nil.
	Terminal http.Handler
	// ResponseHooks run on every upstream response before it is sent,
	// in order (response transformation); an error becomes a 502.
	ResponseHooks []func(*http.Response) error

	handler http.Handler // Middleware around forwarding, built by Prepare
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

// Middleware wraps a handler.
type Middleware func(next http.Handler) http.Handler

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
}

// Call sends req to a pool with its balancing, breakers and retries and
// returns the upstream response (for API composition). The caller closes
// the body. req's URL host is replaced by the chosen target.
func (h *Handler) Call(pool *Pool, req *http.Request) (*http.Response, error) {
	st := &reqState{Context: req.Context(), pool: pool, clientCtx: req.Context(),
		route: &Route{Name: "call:" + pool.name, Pool: pool}, requestID: req.Header.Get("X-Request-Id")}
	req = req.WithContext(st)
	req.URL.Scheme = "http"
	if req.Header.Get("Traceparent") != "" {
		req.Header.Set("Traceparent", childTraceparent(req.Header.Get("Traceparent")))
	}
	return attemptTransport{h: h}.RoundTrip(req)
}

// forward sends the request upstream, within the pool's in-flight cap.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request) {
	st := r.Context().Value(stateKey{}).(*reqState)
	if c := st.pool.inflight; c != nil {
		if !c.TryAcquire() {
			WriteError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "upstream_busy",
				Msg: "upstream " + st.pool.name + " is at its in-flight limit", RetryAfter: time.Second})
			return
		}
		defer c.Release()
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

// WriteError answers r with a gateway error (JSON body, Retry-After) and
// records its status for the access log and metrics. For use by middleware.
func WriteError(w http.ResponseWriter, r *http.Request, e *Error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	id := ""
	if st != nil {
		st.status = e.Status
		id = st.requestID
	}
	e.write(w, id)
}

// RecordStatus records the status of a response a middleware wrote itself.
func RecordStatus(r *http.Request, status int) {
	if st, _ := r.Context().Value(stateKey{}).(*reqState); st != nil {
		st.status = status
	}
}

// RequestID returns the gateway's id of the request ("" outside the proxy).
func RequestID(r *http.Request) string {
	if st, _ := r.Context().Value(stateKey{}).(*reqState); st != nil {
		return st.requestID
	}
	return ""
}

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
	// MaxBodyBuffer is how many request body bytes are kept for retries.
	// Default 64 KiB.
	MaxBodyBuffer int
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
}

// New returns a proxy handler that resolves routes with resolver.
func New(resolver Resolver, opts Options) *Handler {
	h := &Handler{
		resolver:  resolver,
		accessLog: opts.AccessLog,
		errorLog:  opts.ErrorLog,
		metrics:   opts.Metrics,
		maxBody:   opts.MaxBodyBuffer,
	}
	if h.maxBody <= 0 {
		h.maxBody = 64 << 10
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
	requestID   string
	target      *upstream.Target
	attempts    int
	status      int
	circuitOpen bool
	bodyErr     error       // reading the upstream response body failed
	respHeader  http.Header // the client response's header, nil in Call
	timedOut    atomic.Bool
	clientCtx   context.Context
	timer       *time.Timer
}

// Value returns the state itself for stateKey and defers to the parent
// context otherwise.
func (st *reqState) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return st
	}
	return st.Context.Value(key)
}

// clientGone reports whether the client cancelled (not our own timeout).
func (st *reqState) clientGone() bool {
	return st.clientCtx.Err() != nil && !st.timedOut.Load()
}

// ServeHTTP proxies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.inflight.Add(1)
	defer h.inflight.Add(-1)

	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)

	rt, ok := h.resolver.Resolve(r)
	if !ok {
		e := &Error{Status: http.StatusNotFound, Code: "no_route", Msg: "no route matches " + r.Method + " " + r.Host + r.URL.Path}
		e.write(w, id)
		h.log(r, nil, id, e.Status, 0, start)
		h.metrics.request("", "", e.Status, time.Since(start))
		return
	}

	st := &reqState{route: rt, pool: rt.Pool, requestID: id, clientCtx: r.Context(), respHeader: w.Header()}
	if st.pool == nil { // a terminal route (composition): no pool of its own
		st.pool = noPool
	}
	if rt.Split != nil {
		st.pool = rt.Split.pick(r, rt.Pool)
	}
	ctx, cancel := context.WithCancel(r.Context())
	st.Context = ctx
	st.timer = time.AfterFunc(st.pool.respTO, func() {
		st.timedOut.Store(true)
		cancel()
	})
	h.metrics.routeInflight(rt.Name, 1)
	defer func() {
		st.timer.Stop()
		cancel()
		h.metrics.routeInflight(rt.Name, -1)
		v := recover()
		switch {
		case v == http.ErrAbortHandler:
			// The reverse proxy aborts a response whose upstream body
			// broke off, or that the client stopped taking, so that the
			// server closes the connection without ending the response
			// as complete: the log and metrics must not say 200.
			st.status = st.abortStatus()
		case v != nil:
			st.status = http.StatusInternalServerError
		case st.bodyErr != nil && st.status < 400:
			// A server that does not abort (without http.ServerContextKey)
			// ended the response; it was broken all the same.
			st.status = st.abortStatus()
		}
		h.metrics.request(rt.Name, st.pool.name, st.status, time.Since(start))
		h.log(r, st, id, st.status, st.attempts, start)
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
	case st.bodyErr != nil:
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
	)
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
	pr.SetXForwarded()
	out.Header.Set("X-Request-Id", st.requestID)
	out.Header.Set("Traceparent", childTraceparent(pr.In.Header.Get("Traceparent")))
}

// modifyResponse stamps gateway headers on a response from a target.
func (h *Handler) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(stateKey{}).(*reqState)
	st.status = resp.StatusCode
	resp.Header.Del("X-Request-Id")
	if st.respHeader != nil && len(st.respHeader["X-Request-Id"]) == 0 {
		// The reverse proxy clears the client response's header after
		// forwarding a 1xx (103 Early Hints), so that the hints' fields do
		// not reach the final response: ours goes back with the upstream's.
		resp.Header["X-Request-Id"] = []string{st.requestID}
	}
	if isStream(resp) {
		st.timer.Stop() // streams are not bounded by the response timeout once started
	}
	for _, hook := range st.route.ResponseHooks {
		if err := hook(resp); err != nil {
			return &Error{Status: http.StatusBadGateway, Code: "response_transform", Msg: "transforming the upstream response", Err: err}
		}
	}
	if s := st.pool.sticky; s != nil && st.target != nil {
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
	e := toError(err, st.clientGone())
	if st.timedOut.Load() && e.Code != "circuit_open" {
		e = &Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Msg: "upstream timed out", Err: err}
	}
	st.status = e.Status
	if h.errorLog != nil && e.Code != "client_closed" {
		h.errorLog.LogAttrs(r.Context(), slog.LevelWarn, "proxy error",
			slog.String("request_id", st.requestID), slog.String("route", st.route.Name),
			slog.String("code", e.Code), slog.String("error", e.Error()))
	}
	if e.Code == "client_closed" {
		return // nobody to answer
	}
	e.write(w, st.requestID)
}

// validRequestID accepts client-supplied ids that are short and printable.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// childTraceparent continues a W3C trace context: the trace id and flags
// of a valid incoming traceparent are kept and the gateway's own span id
// becomes the parent; otherwise a new sampled trace starts.
func childTraceparent(in string) string {
	// version(2) - trace-id(32) - parent-id(16) - flags(2)
	var out [55]byte
	var rnd [24]byte // 16 bytes of trace id (when new) + 8 of span id
	_, _ = rand.Read(rnd[:])
	copy(out[:3], "00-")
	out[35], out[52] = '-', '-'
	hex.Encode(out[36:52], rnd[16:])
	if len(in) == 55 && in[2] == '-' && in[35] == '-' && in[52] == '-' && in[:2] != "ff" &&
		isHex(in[:2]) && isHex(in[3:35]) && isHex(in[36:52]) && isHex(in[53:]) &&
		in[3:35] != "00000000000000000000000000000000" {
		copy(out[3:35], in[3:35])
		copy(out[53:], in[53:])
	} else {
		hex.Encode(out[3:35], rnd[:16])
		copy(out[53:], "01")
	}
	return string(out[:])
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
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
