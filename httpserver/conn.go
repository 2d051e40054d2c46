package httpserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Connection states, for Shutdown.
const (
	stateIdle int32 = iota // waiting for (the first byte of) a request
	stateActive
)

// errClientGone is the cause of a request context cancelled because the
// client closed its connection.
var errClientGone = errors.New("client closed the connection")

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
	base   context.Context
	cr     connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	state  atomic.Int32

	watchTimer *time.Timer
	mu         sync.Mutex // guards the fields below
	armed      bool       // the current request may be watched
	watching   bool       // a watcher read is in progress
	watchDone  chan struct{}
	cancel     context.CancelCauseFunc // the current request's
	clientGone bool
	hijacked   bool
}

func newConn(s *Server, nc net.Conn, base context.Context) *conn {
	c := &conn{s: s, nc: nc, base: base}
	if ra := nc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
	}
	c.cr.nc = nc
	c.br = bufio.NewReaderSize(&c.cr, bufSize)
	c.bw = bufio.NewWriterSize(nc, bufSize)
	return c
}

// connReader reads from the connection with an optional byte budget (the
// header size limit) and hands out a byte the watcher read first.
type connReader struct {
	nc         net.Conn
	remain     int64
	pending    byte
	hasPending bool
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.remain <= 0 {
		return 0, io.EOF // the header limit: reported as 431 by the caller
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	if r.hasPending {
		p[0] = r.pending
		r.hasPending = false
		r.remain--
		return 1, nil
	}
	n, err := r.nc.Read(p)
	r.remain -= int64(n)
	return n, err
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
	c.watchTimer = time.AfterFunc(math.MaxInt64, c.watch)
	defer c.watchTimer.Stop()

	headerLimit := c.s.maxHeaderBytes() + bufSize // slop for what bufio reads ahead
	for {
		c.state.Store(stateIdle)
		if c.s.inShutdown.Load() {
			return
		}
		c.cr.remain = headerLimit
		if c.br.Buffered() == 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.s.idleTimeout()))
			if _, err := c.br.Peek(1); err != nil {
				return // closed, idle timeout, or Shutdown closed it
			}
		}
		c.state.Store(stateActive)
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.readHeaderTimeout()))
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.rejectRequest(err)
			return
		}
		c.cr.remain = math.MaxInt64
		_ = c.nc.SetReadDeadline(time.Time{})
		if msg := checkRequest(req); msg != "" {
			c.writeError(http.StatusBadRequest, msg)
			return
		}
		if !c.serveRequest(req) {
			return
		}
	}
}

// checkRequest applies the checks net/http's server adds to ReadRequest's.
func checkRequest(req *http.Request) string {
	if req.ProtoMajor != 1 {
		return "unsupported protocol version"
	}
	if req.Host == "" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
		return "missing required Host header"
	}
	if !validHost(req.Host) {
		return "malformed Host header"
	}
	return ""
}

// validHost accepts the characters a Host header may hold (RFC 3986
// reg-name, IP literals, port) and rejects controls, spaces and the like.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:%[]@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// rejectRequest answers a request that could not be read, when there is
// anyone to answer.
func (c *conn) rejectRequest(err error) {
	var ne net.Error
	switch {
	case c.cr.remain <= 0:
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		// The client left or was too slow: nobody to answer.
	case strings.Contains(err.Error(), "unsupported transfer encoding"):
		c.writeError(http.StatusNotImplemented, "unsupported transfer encoding")
	default:
		c.writeError(http.StatusBadRequest, err.Error())
	}
}

// writeError answers a request the server rejects before any handler saw
// it; the connection closes afterwards.
func (c *conn) writeError(status int, msg string) {
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
	req = req.WithContext(ctx)
	req.RemoteAddr = c.remote

	w := &response{c: c, req: req, header: make(http.Header, 8), contentLength: -1}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody {
		b := &requestBody{rc: req.Body, c: c}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") && req.ProtoAtLeast(1, 1) {
			b.continueW = w
		}
		req.Body = b
		w.body = b
	} else if req.Header.Get("Expect") != "" {
		// An expectation on a request without a body is met trivially;
		// any other expectation is not supported (RFC 9110 10.1.1).
		if !strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			c.writeError(http.StatusExpectationFailed, "unsupported expectation")
			return false
		}
	}

	c.mu.Lock()
	c.cancel = cancel
	c.clientGone = false
	c.mu.Unlock()
	if !hasBody {
		c.arm()
	}

	if !c.runHandler(w, req) {
		return false
	}
	c.disarm()
	c.mu.Lock()
	c.cancel = nil
	gone, hijacked := c.clientGone, c.hijacked
	c.mu.Unlock()
	if hijacked {
		return false
	}

	keep = !req.Close && !gone && !c.s.inShutdown.Load()
	if w.body != nil && !w.body.eof {
		if w.body.continueW != nil && !w.body.continued {
			// The client is waiting for 100 Continue we never sent: it
			// will not send the body, so the connection cannot be reused.
			keep = false
		} else if keep && !w.committed {
			// Small leftovers are read and dropped to keep the
			// connection; more than maxDiscard, or a failure, closes it.
			n, err := io.CopyN(io.Discard, w.body.rc, maxDiscard+1)
			if n > maxDiscard || (err != nil && err != io.EOF) {
				keep = false
			}
		} else {
			keep = false
		}
	}
	w.closeAfter = w.closeAfter || !keep
	if err := w.finish(); err != nil {
		return false
	}
	return !w.closeAfter
}

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
	c.mu.Unlock()
	if d := c.s.watchAfter(); d > 0 {
		c.watchTimer.Reset(d)
	} else {
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
	c.watchTimer.Stop()
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
type requestBody struct {
	rc        io.ReadCloser
	c         *conn
	continueW *response // set when the client expects 100 Continue
	continued bool
	eof       bool
	closed    bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.continueW != nil && !b.continued {
		b.continued = true
		if !b.continueW.committed && !b.continueW.c.hijackedNow() {
			_, _ = b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := b.c.bw.Flush(); err != nil {
				return 0, err
			}
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		b.c.arm()
	}
	return n, err
}

// Close marks the body closed; the unread rest is dealt with after the
// handler returns (discarded or the connection closed).
func (b *requestBody) Close() error {
	b.closed = true
	return nil
}

func (c *conn) hijackedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hijacked
}
