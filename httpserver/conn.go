package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Connection states, for Shutdown.
const (
	stateIdle int32 = iota // waiting for (the first byte of) a request
	stateActive
)

// errClientGone is the cause of a request context cancelled because the
// client closed its connection.
var errClientGone = errors.New("client closed the connection")

// errWriteFailed is the cause of a request context cancelled because a
// response write failed (the client is gone or stopped reading for
// WriteTimeout).
var errWriteFailed = errors.New("writing the response failed")

// aLongTimeAgo is a deadline in the past: setting it aborts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// maxDiscard is how much of a request body the handler left unread is
// read and thrown away to keep the connection; beyond it, the connection
// closes (as net/http).
const maxDiscard = 256 << 10

// conn is one client connection. Its request loop runs on one goroutine;
// the watcher (see watch) and Shutdown touch only the fields under mu and
// the atomics.
type conn struct {
	s      *Server
	nc     net.Conn
	remote string
	tls    *tls.ConnectionState // a TLS connection's, every request's TLS; nil: plain TCP
	base   context.Context
	cr     connReader
	br     *bufio.Reader
	dw     deadlineWriter
	bw     *bufio.Writer
	state  atomic.Int32

	mu         sync.Mutex // guards the fields below
	armed      bool       // the current request may be watched
	gen        uint64     // counts arm calls: tells a request from the next
	watching   bool       // a watcher read is in progress
	watchDone  chan struct{}
	cancel     context.CancelCauseFunc // the current request's
	clientGone bool
	hijacked   bool
}

func newConn(s *Server, nc net.Conn, base context.Context) *conn {
	c := &conn{s: s, nc: nc, base: context.WithValue(base, http.LocalAddrContextKey, nc.LocalAddr())}
	if ra := nc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
	}
	c.cr.nc = nc
	c.br = bufio.NewReaderSize(&c.cr, bufSize)
	c.dw = deadlineWriter{nc: nc, timeout: s.writeTimeout()}
	c.bw = bufio.NewWriterSize(&c.dw, bufSize)
	return c
}

// connReader reads from the connection and hands out a byte the watcher
// read first.
type connReader struct {
	nc         net.Conn
	pending    byte
	hasPending bool
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.hasPending {
		p[0] = r.pending
		r.hasPending = false
		return 1, nil
	}
	return r.nc.Read(p)
}

// deadlineWriter writes to the connection with a write deadline renewed
// while the client makes progress: a write fails only once the client
// accepted no byte for a whole timeout (so a slow but steady reader is
// served, one that stopped reading is dropped within one to two timeouts).
// Large writes go in pieces, each with a fresh deadline.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration // 0: none (hijacked connections)

	// With hold set, Write keeps a reference to what it is given in held
	// instead of writing it (see writeGathered).
	hold bool
	held []byte
}

// writePiece is how much is written under one deadline.
const writePiece = 64 << 10

func (w *deadlineWriter) Write(p []byte) (n int, err error) {
	if w.hold {
		w.held = p
		return len(p), nil
	}
	if w.timeout <= 0 {
		return w.nc.Write(p)
	}
	for len(p) > 0 {
		piece := p[:min(len(p), writePiece)]
		_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
		m, err := w.nc.Write(piece)
		n += m
		p = p[m:]
		if err != nil {
			if m > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				continue // the client read some: give it another timeout
			}
			return n, err
		}
	}
	return n, nil
}

// gatherMax is how much of a large write goes out with the buffered
// bytes in one writev; the rest is written in writePiece pieces.
const gatherMax = 256 << 10

// writeGathered writes what bw holds (a response head) and then p, where
// p does not fit in bw: in one writev system call, not a write of the
// filled buffer and another of the rest, and without copying p's start
// into the buffer. A large stored body (an edge cache hit) leaves in
// one system call with its head.
func (c *conn) writeGathered(p []byte) error {
	bw, w := c.bw, &c.dw
	if bw.Buffered() == 0 || len(p) <= bw.Available() {
		_, err := bw.Write(p)
		return err
	}
	// Flush hands bw's buffered bytes to w, which holds on to them; they
	// stay valid until bw is written to again, after the writev below.
	w.hold = true
	err := bw.Flush()
	w.hold = false
	head := w.held
	w.held = nil
	if err != nil {
		return err
	}
	first := p[:min(len(p), gatherMax)]
	bufs := net.Buffers{head, first}
	for len(bufs) > 0 {
		if w.timeout > 0 {
			_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		m, err := bufs.WriteTo(w.nc) // consumes what was written
		if err != nil {
			if m > 0 && w.timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				continue // the client read some: give it another timeout
			}
			return err
		}
	}
	if rest := p[len(first):]; len(rest) > 0 {
		_, err = w.Write(rest)
	}
	return err
}

func (c *conn) serve() {
	defer c.s.forget(c)
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logf("panic serving a connection", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
		}
		c.mu.Lock()
		hijacked := c.hijacked
		c.mu.Unlock()
		if !hijacked {
			_ = c.nc.Close()
		}
	}()
	if tc, ok := c.nc.(*tls.Conn); ok && !c.startTLS(tc) {
		return
	}
	afterPOST := false
	for {
		c.state.Store(stateIdle)
		if c.s.inShutdown.Load() {
			return
		}
		if c.br.Buffered() == 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.s.idleTimeout()))
			if _, err := c.br.Peek(1); err != nil {
				return // closed, idle timeout, or Shutdown closed it
			}
		}
		c.state.Store(stateActive)
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.readHeaderTimeout()))
		if afterPOST {
			// Old clients end a POST body with an extra CRLF: skip empty
			// lines before the next request line (RFC 9112 2.2), as
			// net/http does.
			peek, _ := c.br.Peek(4) // ReadRequest reports the error
			_, _ = c.br.Discard(leadingCRorLF(peek))
		}
		info, herr, err := c.readHead()
		if err != nil {
			return // the client left or was too slow: nobody to answer
		}
		if herr != nil {
			c.writeError(herr.status, herr.msg)
			return
		}
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.rejectRequest(err)
			return
		}
		_ = c.nc.SetReadDeadline(time.Time{})
		if msg := checkRequest(req); msg != "" {
			c.writeError(http.StatusBadRequest, msg)
			return
		}
		if info.chunked {
			// Our strict chunked reader replaces ReadRequest's lenient one
			// (which takes bare LF and any chunk extension bytes).
			req.Body = &chunkedBody{br: c.br, req: req, maxTrailer: int(c.s.maxHeaderBytes())}
		}
		afterPOST = req.Method == http.MethodPost
		if !c.serveRequest(req) {
			return
		}
	}
}

// startTLS completes tc's handshake unless done already (the gateway's
// listener hands over connections after it), within ReadHeaderTimeout,
// and keeps its state for the requests' TLS field, as net/http's server
// does. It reports whether the connection is usable.
func (c *conn) startTLS(tc *tls.Conn) bool {
	st := tc.ConnectionState()
	if !st.HandshakeComplete {
		_ = c.nc.SetDeadline(time.Now().Add(c.s.readHeaderTimeout()))
		if err := tc.Handshake(); err != nil {
			c.s.logf("TLS handshake failed", "remote", c.remote, "error", err.Error())
			return false
		}
		_ = c.nc.SetDeadline(time.Time{})
		st = tc.ConnectionState()
	}
	c.tls = &st
	return true
}

func leadingCRorLF(b []byte) int {
	for i, c := range b {
		if c != '\r' && c != '\n' {
			return i
		}
	}
	return len(b)
}

// checkRequest applies the checks net/http's server adds to ReadRequest's.
// ReadRequest itself accepts field names net/http's server rejects, such
// as "Content-Length " with a space before the colon: passing those on
// would let a request be framed differently here than by a proxy in front.
//
// ReadRequest has already removed the Host field, so the Host checks look
// at req.Host, which holds the field's value unless the target is absolute
// (or a CONNECT authority). Unlike net/http, an HTTP/1.1 request with an
// empty Host field is rejected, and one with an absolute target is accepted
// without a Host field or with a malformed one.
func checkRequest(req *http.Request) string {
	if req.ProtoMajor != 1 {
		return "unsupported protocol version"
	}
	if req.Host == "" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
		return "missing required Host header"
	}
	if req.URL.Host == "" && !httpguts.ValidHostHeader(req.Host) {
		return "malformed Host header"
	}
	for k, vs := range req.Header {
		if !validToken(k) {
			return "invalid header name"
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value"
			}
		}
	}
	return ""
}

// readHead waits until the buffer holds a whole request head (at most
// MaxHeaderBytes) and checks it (scanHead). It returns an I/O error when
// the client left or was too slow, a headError for a request to refuse.
func (c *conn) readHead() (headInfo, *headError, error) {
	limit := int(c.s.maxHeaderBytes())
	scanned := 0
	for {
		b, _ := c.br.Peek(c.br.Buffered())
		end, next, herr := headEnd(b[:min(len(b), limit)], scanned)
		if herr != nil {
			return headInfo{}, herr, nil
		}
		if end > 0 {
			info, herr := scanHead(b[:end])
			return info, herr, nil
		}
		scanned = next
		if len(b) >= limit {
			if bytes.IndexByte(b[:limit], '\n') < 0 {
				return headInfo{}, &headError{http.StatusRequestURITooLong, "request line too long"}, nil
			}
			return headInfo{}, &headError{http.StatusRequestHeaderFieldsTooLarge, "request header too large"}, nil
		}
		if c.br.Buffered() == c.br.Size() {
			// A head larger than the usual buffer: move to one that holds
			// the largest head allowed, for this connection only.
			rest := bytes.Clone(b)
			c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), &c.cr), limit)
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			return headInfo{}, nil, err
		}
	}
}

// rejectRequest answers a request whose head passed scanHead but that
// ReadRequest could not parse.
func (c *conn) rejectRequest(err error) {
	switch {
	case isUnsupportedTE(err):
		c.writeError(http.StatusNotImplemented, "unsupported transfer encoding")
	default:
		// The parser's message quotes what the client sent: log it, but
		// do not reflect client bytes back in the answer.
		c.s.logf("malformed request", "remote", c.remote, "error", err.Error())
		c.writeError(http.StatusBadRequest, "malformed request")
	}
}

// isUnsupportedTE reports whether ReadRequest failed on a Transfer-Encoding
// it does not implement ("gzip", or "chunked" and another coding). net/http
// exports no way to tell: this matches its error type by name, as its own
// server does by type, rather than one of the type's several messages.
func isUnsupportedTE(err error) bool {
	return fmt.Sprintf("%T", err) == "*http.unsupportedTEError"
}

// writeError answers a request the server rejects before any handler saw
// it; the connection closes afterwards.
func (c *conn) writeError(status int, msg string) {
	c.dw.timeout = min(c.dw.timeout, time.Second)
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%d %s: %s",
		status, http.StatusText(status), len(http.StatusText(status))+6+len(msg), status, http.StatusText(status), msg)
	_ = c.bw.Flush()
	c.s.logf("rejected a request", "remote", c.remote, "status", status, "error", msg)
}

// serveRequest runs the handler for one request and finishes its
// response; it reports whether the connection may serve another.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	ctx, cancel := context.WithCancelCause(c.base)
	defer cancel(nil)
	// Keep the pointer ReadRequest returned: a chunked body sets the
	// trailer it reads on that Request, so the handler must have it.
	*req = *req.WithContext(ctx)
	req.RemoteAddr = c.remote
	req.TLS = c.tls

	// 100-continue is the only expectation there is (RFC 9110 10.1.1); on
	// a request without a body it is met trivially.
	expect := req.Header.Get("Expect")
	continues := hasToken(expect, "100-continue")
	if expect != "" && !continues {
		c.writeError(http.StatusExpectationFailed, "unsupported expectation")
		return false
	}
	w := &response{c: c, req: req, header: make(http.Header, 8), contentLength: -1, clientClose: wantsClose(req)}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody {
		b := &requestBody{rc: req.Body, c: c}
		if continues && req.ProtoAtLeast(1, 1) {
			b.w = w
			w.continueState = continueWanted
		}
		req.Body = b
		w.body = b
	}

	c.mu.Lock()
	c.cancel = cancel
	c.clientGone = false
	c.mu.Unlock()
	if !hasBody {
		c.arm()
	}

	ok := c.runHandler(w, req)
	bodyEOF := false
	if w.body != nil {
		// Before disarm: a body read on another goroutine must not arm
		// the watcher again once the request loop owns the connection.
		bodyEOF = w.body.handlerDone()
	}
	c.disarm()
	if !ok {
		return false
	}
	c.mu.Lock()
	c.cancel = nil
	gone, hijacked := c.clientGone, c.hijacked
	c.mu.Unlock()
	if hijacked {
		return false
	}

	// The watcher cannot tell a client that left from one that only shut
	// its sending side after pipelining requests: answer those it sent
	// (as net/http does), and close once none is left.
	if gone && (c.br.Buffered() > 0 || c.cr.hasPending) {
		gone = false
	}
	keep = !w.clientClose && !gone && !c.s.inShutdown.Load()
	if w.body != nil && !bodyEOF {
		if w.body.w != nil && !w.continueSent() {
			// The client is waiting for 100 Continue we never sent: it
			// will not send the body, so the connection cannot be reused.
			keep = false
		} else if status, _ := w.body.failure(); status != 0 {
			keep = false // reading already failed: nothing more is read
		} else if keep && !w.committed {
			// Small leftovers are read and dropped to keep the
			// connection; more than maxDiscard, or a failure, closes it.
			if t := c.s.readBodyTimeout(); t > 0 {
				_ = c.nc.SetReadDeadline(time.Now().Add(t))
			}
			n, err := io.CopyN(io.Discard, w.body.rc, maxDiscard+1)
			if n > maxDiscard || (err != nil && err != io.EOF) {
				keep = false
			}
			if err != nil && err != io.EOF {
				w.body.mu.Lock()
				w.body.noteFailure(err)
				w.body.mu.Unlock()
			}
		} else {
			keep = false
		}
		if status, msg := w.body.failure(); status != 0 {
			// The request was not what it claimed to be, or never
			// arrived whole: the handler's answer (if not yet sent) is
			// replaced, and nothing after it is read.
			// A handler that blamed the client itself (a 4xx of its own,
			// such as the gateway's JSON error) keeps its answer.
			if !w.committed && !(w.wroteHeader && w.status >= 400 && w.status < 500) {
				c.writeError(status, msg)
				return false
			}
			keep = false
		}
	}
	w.closeAfter = w.closeAfter || !keep
	if err := w.finish(); err != nil {
		return false
	}
	return !w.closeAfter
}

// wantsClose reports whether the client asks to close the connection after
// the response, decided as net/http's server does: HTTP/1.0 closes unless
// the Connection field holds "keep-alive", HTTP/1.1 closes when it holds
// "close". Its token match also splits on spaces, ReadRequest's (which set
// req.Close) only on commas.
func wantsClose(req *http.Request) bool {
	if !req.ProtoAtLeast(1, 1) {
		return !hasToken(req.Header.Get("Connection"), "keep-alive")
	}
	return req.Close || hasToken(req.Header.Get("Connection"), "close")
}

// hasToken reports whether the comma- or space-separated list v holds
// token, ignoring case (as net/http's hasToken).
func hasToken(v, token string) bool {
	for sp := 0; sp+len(token) <= len(v); sp++ {
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// runHandler calls the handler, recovering a panic (the connection then
// closes; http.ErrAbortHandler is the quiet way for a handler to do that).
func (c *conn) runHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			c.disarm()
			if v != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logf("panic serving a request", "remote", c.remote, "method", req.Method, "uri", req.RequestURI,
					"panic", fmt.Sprint(v), "stack", string(buf))
			}
			ok = false
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return true
}

// arm lets the watcher check the connection for a client that leaves, once
// the request has run for WatchAfter. Only while no request body is being
// read: the watcher reads from the connection itself.
func (c *conn) arm() {
	c.mu.Lock()
	c.armed = true
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	if c.s.watchAfter() > 0 {
		c.s.watches.add(c, gen)
	} else {
		go c.watch()
	}
}

// startWatch starts the watcher if the request armed as gen still runs.
func (c *conn) startWatch(gen uint64) {
	c.mu.Lock()
	ok := c.armed && c.gen == gen && !c.watching && !c.hijacked
	c.mu.Unlock()
	if ok {
		go c.watch()
	}
}

// watch reads from the connection while a request is served, to notice a
// client that closes it (then the request's context is cancelled). Any
// byte it reads (a pipelined next request) is kept for the request loop.
func (c *conn) watch() {
	c.mu.Lock()
	if !c.armed || c.watching || c.hijacked {
		c.mu.Unlock()
		return
	}
	c.watching = true
	done := make(chan struct{})
	c.watchDone = done
	c.mu.Unlock()

	var b [1]byte
	n, err := c.nc.Read(b[:])

	c.mu.Lock()
	if n == 1 {
		c.cr.pending, c.cr.hasPending = b[0], true
	} else if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.clientGone = true
		if c.cancel != nil {
			c.cancel(errClientGone)
		}
	}
	c.watching = false
	c.mu.Unlock()
	close(done)
}

// disarm stops the watcher (if it runs, by aborting its read) and waits
// for it, so the request loop owns the connection's reads again.
func (c *conn) disarm() {
	c.mu.Lock()
	c.armed = false
	watching, done := c.watching, c.watchDone
	c.mu.Unlock()
	if watching {
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
		<-done
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

// closeFromOutside closes the connection from Shutdown or Close; the
// request loop notices and exits.
func (c *conn) closeFromOutside() {
	c.mu.Lock()
	hijacked := c.hijacked
	c.mu.Unlock()
	if !hijacked {
		_ = c.nc.Close()
	}
}

// requestBody wraps a request body: it notices the end (then the watcher
// may run), and sends 100 Continue before the first read when the client
// asked for it.
//
// The handler may pass the body to another goroutine that reads and
// closes it while the handler writes the response (httputil.ReverseProxy's
// transport does), possibly until after the handler returned: the state
// is under mu, 100 Continue is written under the response's continueMu,
// and the underlying body (net/http's) serializes its own reads.
type requestBody struct {
	rc io.ReadCloser
	c  *conn
	w  *response // set when the client expects 100 Continue

	mu         sync.Mutex
	eof        bool
	closed     bool
	done       bool // the handler returned
	failStatus int  // the answer a failed read calls for (400, 408), or 0
	failMsg    string
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	closed, eof := b.closed || b.done, b.eof
	b.mu.Unlock()
	switch {
	case closed:
		return 0, http.ErrBodyReadAfterClose
	case eof:
		return 0, io.EOF
	}
	if b.w != nil {
		if err := b.w.sendContinue(); err != nil {
			return 0, err
		}
	}
	if t := b.c.s.readBodyTimeout(); t > 0 {
		_ = b.c.nc.SetReadDeadline(time.Now().Add(t))
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.mu.Lock()
		b.eof = true
		if !b.done {
			// The watcher reads without a deadline.
			_ = b.c.nc.SetReadDeadline(time.Time{})
			b.c.arm()
		}
		b.mu.Unlock()
	case err != nil:
		b.mu.Lock()
		b.noteFailure(err)
		b.mu.Unlock()
	}
	return n, err
}

// noteFailure records why reading the body failed, when the client is to
// be told: a body that breaks the framing rules (400) or a client that
// sent nothing for ReadBodyTimeout (408). Called with mu held.
func (b *requestBody) noteFailure(err error) {
	if b.failStatus != 0 {
		return
	}
	switch {
	case isBadBody(err):
		b.failStatus, b.failMsg = http.StatusBadRequest, "malformed request body"
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.failStatus, b.failMsg = http.StatusRequestTimeout, "request body not received in time"
	}
}

// failure returns the answer noteFailure chose, or 0.
func (b *requestBody) failure() (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failStatus, b.failMsg
}

// Close marks the body closed; the unread rest is dealt with after the
// handler returns (discarded or the connection closed).
func (b *requestBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// handlerDone ends reads by other goroutines (as net/http closes the body
// when the handler returns) and reports whether the body was read to its
// end.
func (b *requestBody) handlerDone() (eof bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	return b.eof
}
