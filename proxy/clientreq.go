package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/ratelimit"
	"github.com/switchyard/switchyard/tlsconf"
	"golang.org/x/net/http/httpguts"
)

// This file holds what the proxy does about the client's side of a
// request before it goes upstream: reading small bodies ahead, telling
// the client's body errors from upstream failures, and keeping the
// client from removing or spoofing the headers the gateway sets.

// ClientBodyError is a failure to read the client's request body:
// malformed chunked framing, a body cut short, or one that did not arrive
// in time. It is the client's fault: the client gets 400 (or 408 when
// TimedOut), and the failure never counts against the upstream (circuit
// breakers, outlier detection, passive health, error metrics).
//
// The proxy wraps every request body it forwards so that any read error
// is recognised as one, wherever the transport reports it.
type ClientBodyError struct {
	// Err is the read error.
	Err error
	// TimedOut reports that the body was too slow: the server's body read
	// deadline passed or the request's response timeout ended it.
	TimedOut bool
}

func (e *ClientBodyError) Error() string {
	return "reading the client's request body: " + e.Err.Error()
}

func (e *ClientBodyError) Unwrap() error { return e.Err }

// toError is the answer to the client.
func (e *ClientBodyError) toError() *httpx.Error {
	if e.TimedOut {
		return &httpx.Error{Status: http.StatusRequestTimeout, Code: "request_body_timeout",
			Msg: "the request body did not arrive in time", Err: e}
	}
	return &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request_body",
		Msg: "the request body is malformed or incomplete", Err: e}
}

// Body modes of a request (reqState.bodyMode).
const (
	bodyUnread   uint8 = iota // not looked at (API composition calls)
	bodyBuffered              // read completely into reqState.body: replayable
	bodyStreamed              // streamed from the client: sent once
)

// clientBody wraps the client's request body: it turns read errors into
// *ClientBodyError (recorded on the request) and, while armed, aborts a
// read blocked on the client when the request ends (response timeout,
// client gone), so a slow body never outlives its request. It is armed
// by the first read that may block: a body whose reads all find their
// bytes there (a unary gRPC call's, under a server whose body tells,
// readReadier) costs no watch on the request's context.
type clientBody struct {
	rc      io.ReadCloser
	st      *reqState
	w       http.ResponseWriter
	reading atomic.Bool // a Read waits on the client
	// armedOnce is armed or disarmed, for Read's check without mu (a
	// stream's reads after its first wait cost no lock).
	armedOnce atomic.Bool

	// The abort runs on its own goroutine and may race the handler's
	// return: once disarmed (the handler's deferred disarm included) it
	// must not touch w, whose HTTP/2 stream state is gone after the
	// handler returned (SetReadDeadline then dereferences nil). mu makes
	// disarm wait for an abort already running.
	mu       sync.Mutex
	armed    bool
	disarmed bool
	stop     func() bool // the watch's, once armed
}

// readReadier is a request body that tells whether Read would return at
// once (httpserver/h2's).
type readReadier interface{ ReadReady() bool }

func (b *clientBody) Read(p []byte) (int, error) {
	if !b.armedOnce.Load() {
		if rr, ok := b.rc.(readReadier); !ok || !rr.ReadReady() {
			b.arm()
		}
	}
	b.reading.Store(true)
	n, err := b.rc.Read(p)
	b.reading.Store(false)
	if err == nil {
		return n, nil
	}
	b.disarm() // the body is over one way or another
	if err == io.EOF {
		return n, err
	}
	ce := &ClientBodyError{Err: err, TimedOut: isTimeout(err) || b.st.timedOut.Load()}
	if !b.st.bodyErr.CompareAndSwap(nil, ce) {
		ce = b.st.bodyErr.Load()
	}
	return n, ce
}

func (b *clientBody) Close() error { return b.rc.Close() }

// arm starts the watch: the end of the request (st is done) sets the
// connection's read deadline in the past, which ends a read blocked on a
// slow client. Once only, and never after disarm.
func (b *clientBody) arm() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.armed || b.disarmed {
		return
	}
	b.armed = true
	b.armedOnce.Store(true)
	b.stop = context.AfterFunc(b.st, b.abort)
}

func (b *clientBody) abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.disarmed {
		_ = http.NewResponseController(b.w).SetReadDeadline(pastDeadline)
	}
}

// disarm stops the abort (waiting for one already running); safe to call
// more than once.
func (b *clientBody) disarm() {
	b.mu.Lock()
	b.disarmed = true
	b.armedOnce.Store(true)
	stop := b.stop
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// wrapBody puts a clientBody around r's body.
func wrapBody(w http.ResponseWriter, r *http.Request, st *reqState) *clientBody {
	cb := &clientBody{rc: r.Body, st: st, w: w}
	r.Body = cb
	st.cbody = cb
	return cb
}

// pastDeadline is a deadline in the past: setting it aborts blocked I/O.
var pastDeadline = time.Unix(1, 0)

var errBodyTimeout = errors.New("timed out waiting for the client to send the request body")

// clientBodyFailed returns the client's body error of a request whose
// attempt failed with err, or nil when the failure is not the client's.
// When the response timeout cut an attempt while the body was still
// waited for from the client, the client was too slow (not the target):
// that is decided here rather than by the aborted read, which the
// transport may not wait for.
func (st *reqState) clientBodyFailed(err error) *ClientBodyError {
	if ce := st.bodyErr.Load(); ce != nil {
		return ce
	}
	if err != nil && st.timedOut.Load() && st.cbody != nil && st.cbody.reading.Load() {
		st.bodyErr.CompareAndSwap(nil, &ClientBodyError{Err: errBodyTimeout, TimedOut: true})
		return st.bodyErr.Load()
	}
	return nil
}

// readAhead reads the body of r (wrapped in cb) before an upstream is
// picked, up to the handler's max_body_buffer and within the global
// budget of buffered bytes, so that a slow client holds no upstream
// connection. A body read completely is kept for retries; a larger one,
// or one the budget cannot hold, is streamed (what was read first). It
// returns false when reading failed (st.bodyErr says why).
func (h *Handler) readAhead(r *http.Request, st *reqState, cb *clientBody) bool {
	limit := int64(h.maxBody)
	if r.ContentLength > limit {
		st.bodyMode = bodyStreamed
		return true
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			// Grow to the announced length, else by doubling from 4 KiB,
			// never past limit.
			size := max(2*int64(cap(buf)), 4<<10)
			if r.ContentLength >= 0 {
				size = r.ContentLength
			}
			size = min(size, limit)
			if int64(cap(buf)) == size {
				// Full: the body must end here, or it is streamed.
				var one [1]byte
				n, err := readSome(cb, one[:])
				switch {
				case n > 0:
					st.bodyMode = bodyStreamed
					r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), bytes.NewReader(one[:n]), cb), cb}
					return true
				case err == io.EOF:
					h.buffer(r, st, buf)
					return true
				}
				st.bodyErr.CompareAndSwap(nil, &ClientBodyError{Err: err})
				return false
			}
			if !h.reserve(size - int64(cap(buf))) {
				break // the budget is used up: stream
			}
			st.reserved += size - int64(cap(buf))
			nb := make([]byte, len(buf), size)
			copy(nb, buf)
			buf = nb
		}
		n, err := cb.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			h.buffer(r, st, buf)
			return true
		}
		if err != nil {
			return false
		}
	}
	st.bodyMode = bodyStreamed
	if len(buf) > 0 {
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), cb), cb}
	}
	return true
}

// buffer makes the complete body buf the request's, replayable.
func (h *Handler) buffer(r *http.Request, st *reqState, buf []byte) {
	if buf == nil {
		buf = []byte{}
	}
	st.body, st.bodyMode = buf, bodyBuffered
	r.Body = io.NopCloser(bytes.NewReader(buf))
}

// readSome reads until it gets a byte or an error (a Reader may return
// 0, nil).
func readSome(r io.Reader, p []byte) (int, error) {
	for range 100 {
		if n, err := r.Read(p); n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// reserve takes n bytes of the global read-ahead budget.
func (h *Handler) reserve(n int64) bool {
	for {
		cur := h.buffered.Load()
		if cur+n > h.maxBodyTotal {
			return false
		}
		if h.buffered.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// BufferedBodyBytes returns the bytes of request bodies currently held by
// read-ahead (bounded by Options.MaxBodyBufferTotal).
func (h *Handler) BufferedBodyBytes() int64 { return h.buffered.Load() }

// gatewayHeaders are the request headers the gateway itself sets or
// vouches for upstream: the consumer identity (auth), X-Degraded (rate
// limits), the forwarding headers and the request id. Clients can neither
// remove them (through Connection) nor slip in underscore spellings of
// them, which many backends (CGI, PHP, nginx with underscores_in_headers)
// read as the dashed name.
var gatewayHeaders = map[string]bool{
	auth.HeaderConsumer: true, auth.HeaderTier: true, auth.HeaderScopes: true,
	ratelimit.HeaderDegraded: true,
	"X-Forwarded-For":        true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "Forwarded": true,
	"X-Request-Id": true, "Traceparent": true,
	tlsconf.HeaderClientCert: true,
}

// hopByHop are the standard hop-by-hop fields, which
// httputil.ReverseProxy removes itself (and treats specially: Upgrade, Te).
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// sanitizeClientHeaders runs on the client's request before routing and
// middleware. It removes the fields the client named in its Connection
// header now, while every field in the request is still the client's, and
// returns their names so that rewrite can restore the fields the gateway
// sets under those names after httputil.ReverseProxy removed them again.
// It also drops a client-sent X-Degraded (only the rate limiter sets it).
func sanitizeClientHeaders(h http.Header) (listed []string) {
	delete(h, ratelimit.HeaderDegraded)
	delete(h, tlsconf.HeaderClientCert) // set only from a certificate the gateway verified
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			f = textproto.TrimString(f)
			if f == "" {
				continue
			}
			name := http.CanonicalHeaderKey(f)
			if hopByHop[name] || strings.EqualFold(name, "close") {
				continue
			}
			delete(h, name)
			listed = append(listed, name)
		}
	}
	return listed
}

// restoreGatewayHeaders puts back on out the fields named in the client's
// Connection header that the gateway set on in after the client's own
// were removed (sanitizeClientHeaders); httputil.ReverseProxy removed
// them from out as hop-by-hop.
// setHeader is h.Set(k, v) for a canonical key k, the value's slice
// (length and capacity 1: an append copies) taken from st.hvals while it
// lasts. st may be nil.
func (st *reqState) setHeader(h http.Header, k, v string) {
	if st == nil || len(st.hvals) == 0 {
		h[k] = []string{v}
		return
	}
	st.hvals[0] = v
	h[k] = st.hvals[0:1:1]
	st.hvals = st.hvals[1:]
}

// setXForwarded is httputil.ProxyRequest.SetXForwarded, its fields set
// with setHeader.
func (st *reqState) setXForwarded(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	clientIP, _, err := net.SplitHostPort(pr.In.RemoteAddr)
	if err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		st.setHeader(h, "X-Forwarded-For", clientIP)
	} else {
		delete(h, "X-Forwarded-For")
	}
	st.setHeader(h, "X-Forwarded-Host", pr.In.Host)
	if pr.In.TLS == nil {
		st.setHeader(h, "X-Forwarded-Proto", "http")
	} else {
		st.setHeader(h, "X-Forwarded-Proto", "https")
	}
}

// cloneHeader is h.Clone() with room for spare more keys in the map (no
// growth as the gateway adds its fields) and spare more values in the
// backing array of the values, returned as the second result.
func cloneHeader(h http.Header, spare int) (http.Header, []string) {
	nv := 0
	for _, vv := range h {
		nv += len(vv)
	}
	sv := make([]string, nv+spare)
	h2 := make(http.Header, len(h)+spare)
	for k, vv := range h {
		if vv == nil {
			h2[k] = nil
			continue
		}
		n := copy(sv, vv)
		h2[k] = sv[:n:n]
		sv = sv[n:]
	}
	return h2, sv
}

func restoreGatewayHeaders(in, out http.Header, listed []string) {
	for _, name := range listed {
		if v, ok := in[name]; ok {
			out[name] = append([]string(nil), v...)
		}
	}
}

// dropUnderscoreSpoofs removes fields whose name has an underscore where
// the dashed spelling is a gateway header or a field also present: a
// backend that maps "_" to "-" would take the client's value for it.
func dropUnderscoreSpoofs(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		dashed := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
		if _, present := h[dashed]; present || gatewayHeaders[dashed] {
			delete(h, k)
		}
	}
}

// dropGatewayTrailers removes from a request's trailer the fields the
// gateway sets or vouches for (in any spelling, '_' for '-' included): a
// backend that reads trailers as metadata would take a client's for the
// gateway's. The trailer of a body read ahead is complete when the
// request is rewritten; one that arrives later is not forwarded.
func dropGatewayTrailers(t http.Header) {
	for k := range t {
		if gatewayHeaders[http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))] {
			delete(t, k)
		}
	}
}

// refuseMethod answers requests the gateway never proxies: CONNECT (it is
// not a forward proxy), the HTTP/2 connection preface ("PRI *
// HTTP/2.0") reaching an HTTP/1 handler, and what no HTTP/1.1 request
// line can carry, which net/http's HTTP/2 server passes on: a method that
// is no token, a space in the query (Request.Write puts the query in the
// request line as it is: "GET /p?a b HTTP/1.1" has four parts, which
// backends split each their own way).
func refuseMethod(r *http.Request) *httpx.Error {
	switch {
	case !httpguts.ValidHeaderFieldName(r.Method):
		return &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: "invalid method"}
	case strings.IndexByte(r.URL.RawQuery, ' ') >= 0:
		return &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: "space in the query"}
	case r.Method == http.MethodConnect:
		return &httpx.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Msg: "CONNECT is not supported: the gateway is not a forward proxy"}
	case r.Method == "PRI":
		return &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request",
			Msg: "HTTP/2 connection preface on an HTTP/1 connection"}
	}
	return nil
}

// mergeSlashes replaces runs of slashes in r's path by one slash, before
// routing, as nginx does by default (merge_slashes): "//admin" matches the
// /admin route, instead of another route that would take it to a backend
// that merges slashes itself. Encoded slashes (%2F) are left alone.
func mergeSlashes(r *http.Request) {
	u := r.URL
	// Work on the escaped form the request will be forwarded with: RawPath
	// may be set yet unused (an invalid encoding such as a raw space), in
	// which case the escaped path comes from Path.
	esc := u.EscapedPath()
	if !strings.Contains(esc, "//") {
		return
	}
	raw := collapseSlashes(esc)
	if p, err := url.PathUnescape(raw); err == nil {
		u.Path, u.RawPath = p, raw
	}
}

func collapseSlashes(p string) string {
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && len(b) > 0 && b[len(b)-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// refusePath answers a request whose path has a dot segment ("." or ".."
// between slashes, also percent-encoded, or between backslashes, which
// some servers take for slashes). Routes match the path as written, but
// most backends resolve dot segments: "/public/../admin" would reach the
// backend's /admin through the route for /public, without /admin's
// access control. No browser or HTTP library sends such paths (RFC 3986
// 5.2.4 has the client remove them), so they are refused, not rewritten.
func refusePath(r *http.Request) *httpx.Error {
	p := r.URL.Path
	for len(p) > 0 {
		i := strings.IndexAny(p, "/\\")
		seg := p
		if i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		if seg == "." || seg == ".." {
			return &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request",
				Msg: "the request path has a dot segment (\"/./\" or \"/../\")"}
		}
	}
	return nil
}

// allowedMethods is the Allow header of 405 answers.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
