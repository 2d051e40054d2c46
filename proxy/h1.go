package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/retry"
)

// h1Transport is a lean HTTP/1.1 client for the common case of a proxied
// request without a body and without an upgrade: it writes the request
// and reads the response on the calling goroutine over its own keep-alive
// pool, instead of handing them to http.Transport's per-connection read
// and write goroutines (measured: those hand-offs and their wake-ups are a
// large part of the proxy's CPU per request). Requests with a body, an
// Upgrade header or a non-http scheme go to the fallback http.Transport,
// which handles 100-continue, early responses while a body is still being
// sent, and protocol switches.
//
// The wire work is the standard library's: Request.Write and
// http.ReadResponse (chunked bodies, trailers, HEAD). Informational (1xx)
// responses are forwarded through the request's httptrace.ClientTrace
// (Got1xxResponse, which httputil.ReverseProxy sets), at most max1xx of
// them; a status under 100 or a 101 (the fast path never asks for an
// upgrade) fails the request and closes the connection.
type h1Transport struct {
	fallback      *http.Transport
	dialer        *net.Dialer
	headerTimeout time.Duration
	maxIdle       int

	mu     sync.Mutex
	idle   map[string][]*h1Conn
	closed bool
}

var _ http.RoundTripper = (*h1Transport)(nil)

type h1Conn struct {
	nc   net.Conn
	lr   limitedReader // what br reads from: nc, with the header size limit
	br   *bufio.Reader
	bw   *bufio.Writer
	peek peeker // see alive
}

func newH1Transport(fallback *http.Transport, dialer *net.Dialer, headerTimeout time.Duration, maxIdle int) *h1Transport {
	return &h1Transport{fallback: fallback, dialer: dialer, headerTimeout: headerTimeout, maxIdle: maxIdle,
		idle: map[string][]*h1Conn{}}
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Only replayable requests take the fast path: a kept-alive connection
	// the server closed while idle is detected when it fails, and then the
	// request must be safe to send again (http.Transport notices such
	// closes in its read loop instead).
	replayable := retry.Idempotent(req.Method) || req.Header.Get("Idempotency-Key") != ""
	if !replayable || (req.Body != nil && req.Body != http.NoBody) || req.URL.Scheme != "http" || req.Close ||
		req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	for try := 0; ; try++ {
		// A retry always dials: the other idle connections to addr were
		// likely closed by the server at the same time.
		c, reused, err := t.get(req.Context(), addr, try == 0)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		_ = c.nc.Close()
		// A kept-alive connection the server closed meanwhile fails
		// before any answer; like http.Transport, try once more on a new
		// connection when the request may be replayed.
		if reused && try == 0 && req.Context().Err() == nil && staleConn(err) {
			continue
		}
		return nil, err
	}
}

// staleConn reports errors typical of a keep-alive connection closed by
// the server before it read the request.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// aLongTimeAgo is a deadline in the past: setting it aborts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

func (t *h1Transport) exchange(c *h1Conn, req *http.Request) (*http.Response, error) {
	// Cancelling the request (client gone, response timeout) aborts any
	// blocked read or write on the connection.
	stop := context.AfterFunc(req.Context(), func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	if t.headerTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	if err := req.Write(c.bw); err != nil {
		stop()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, err
	}
	var resp *http.Response
	for n1xx := 0; ; {
		var err error
		c.lr.remain = maxResponseHeader + int64(c.br.Size()) // bufio may read ahead into the body
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			stop()
			if c.lr.remain <= 0 {
				return nil, errResponseHeaderTooLarge
			}
			return nil, err
		}
		code := resp.StatusCode
		if code >= 200 {
			break
		}
		// The caller closes the connection on these errors.
		switch {
		case code < 100:
			stop()
			return nil, fmt.Errorf("upstream sent status %d: %w", code, errBadStatus)
		case code == http.StatusSwitchingProtocols:
			// The fast path never asks for an upgrade.
			stop()
			return nil, fmt.Errorf("upstream switched protocols (101) without an Upgrade request: %w", errBadStatus)
		}
		// Informational answers (103 Early Hints ...) precede the real one
		// and go on to the client (as with http.Transport, through the
		// reverse proxy's trace); 100 Continue was not asked for here.
		if n1xx++; n1xx > max1xx {
			stop()
			return nil, fmt.Errorf("upstream sent more than %d informational (1xx) responses: %w", max1xx, errBadStatus)
		}
		if code != http.StatusContinue {
			if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
					stop()
					return nil, err
				}
			}
		}
	}
	c.lr.remain = math.MaxInt64
	if t.headerTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	// A response without a body (HEAD, 204, 304, Content-Length: 0) is
	// complete already, even if nobody reads its empty body.
	resp.Body = &h1Body{rc: resp.Body, c: c, t: t, stop: stop, addr: req.URL.Host, keep: !resp.Close,
		eof: resp.Body == http.NoBody}
	return resp, nil
}

// h1Body returns its connection to the pool once the body was read to the
// end, and closes it otherwise.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	t    *h1Transport
	stop func() bool
	addr string
	keep bool
	eof  bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.rc.Close() // for a fully read body this does no I/O
	cancelled := !b.stop()
	// Bytes after the end of the response (more than its Content-Length,
	// a body on a HEAD, 204 or 304 answer) would be read as the answer to
	// the connection's next request, which may be another client's: such
	// a connection is closed, as nginx and http.Transport do. Bytes that
	// arrive later are caught by the check in get.
	if b.eof && b.keep && !cancelled && err == nil && b.c.br.Buffered() == 0 {
		b.t.put(b.addr, b.c)
		return nil
	}
	_ = b.c.nc.Close()
	return err
}

// get returns an idle connection to addr (when mayReuse), or dials a new one.
// An idle connection is checked before reuse (one non-blocking peek at the
// socket, see alive): one the server closed is dropped instead of failing
// the request, and one with unsolicited bytes is dropped instead of
// serving them as the next request's answer.
func (t *h1Transport) get(ctx context.Context, addr string, mayReuse bool) (c *h1Conn, reused bool, err error) {
	for mayReuse {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		c = list[len(list)-1]
		t.idle[addr] = list[:len(list)-1]
		t.mu.Unlock()
		if c.alive() {
			return c, true, nil
		}
		_ = c.nc.Close()
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c = &h1Conn{nc: nc, lr: limitedReader{r: nc, remain: math.MaxInt64}, bw: bufio.NewWriterSize(nc, 4<<10)}
	c.br = bufio.NewReaderSize(&c.lr, 16<<10)
	c.peek = newPeeker(nc)
	return c, false, nil
}

// maxResponseHeader bounds a target's response header (status line and
// fields), as http.Transport's MaxResponseHeaderBytes default does: a
// target cannot make the gateway buffer without end.
const maxResponseHeader = 1 << 20

var errResponseHeaderTooLarge = errors.New("upstream response header exceeds 1 MiB")

// max1xx bounds the informational responses before the final one, so a
// target cannot keep a request (and the client) waiting with them.
const max1xx = 8

// errBadStatus marks a response status the proxy does not accept from a
// target on the fast path.
var errBadStatus = errors.New("invalid upstream response status")

// limitedReader reads from r until remain bytes were read, then reports
// EOF (the caller tells that apart from a real EOF by remain).
type limitedReader struct {
	r      io.Reader
	remain int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.r.Read(p)
	l.remain -= int64(n)
	return n, err
}

// put keeps an idle connection for reuse.
func (t *h1Transport) put(addr string, c *h1Conn) {
	_ = c.nc.SetDeadline(time.Time{})
	t.mu.Lock()
	if !t.closed && len(t.idle[addr]) < t.maxIdle {
		t.idle[addr] = append(t.idle[addr], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = c.nc.Close()
}

// Close closes the idle connections of both transports and stops keeping
// new ones: connections still in use are closed by their requests when
// they finish, so a retired pool (after a reload) leaks none.
func (t *h1Transport) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			_ = c.nc.Close()
		}
	}
	t.fallback.CloseIdleConnections()
}
