package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testDeadline bounds every wait in these tests: it is how long a test
// waits for something that should happen, never a duration a behaviour is
// measured against. Reaching it means the behaviour is broken.
const testDeadline = 10 * time.Second

// testServer is a Server serving on a loopback listener.
type testServer struct {
	*Server
	addr   string
	served chan error // Serve's result
}

// startServer serves h on 127.0.0.1 with the fields set by configure (may
// be nil). The server is closed when the test ends.
func startServer(t testing.TB, h http.Handler, configure func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	s := &Server{Handler: h}
	if configure != nil {
		configure(s)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String(), served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case err := <-ts.served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
			ts.served <- err // for a test that waits on it too
		case <-time.After(testDeadline):
			t.Errorf("Serve did not return after Close")
		}
	})
	return ts
}

// waitServed waits for Serve to return and gives its result.
func (ts *testServer) waitServed(t testing.TB) error {
	t.Helper()
	select {
	case err := <-ts.served:
		ts.served <- err
		return err
	case <-time.After(testDeadline):
		t.Fatalf("Serve did not return")
		return nil
	}
}

// rawConn is a client connection that speaks HTTP/1.x as raw bytes.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	_ = nc.SetDeadline(time.Now().Add(testDeadline))
	t.Cleanup(func() { _ = nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("writing %q: %v", trunc(s), err)
	}
}

// response reads one response to a request with the given method and its
// whole body.
func (c *rawConn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, body, err := c.tryResponse(method)
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	return resp, body
}

func (c *rawConn) tryResponse(method string) (*http.Response, string, error) {
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return resp, string(b), err
	}
	return resp, string(b), nil
}

// roundTrip sends a request and reads its response.
func (c *rawConn) roundTrip(method, raw string) (*http.Response, string) {
	c.t.Helper()
	c.send(raw)
	return c.response(method)
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	b, err := c.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Fatalf("connection still open: read %q", trunc(string(b)+string(rest)))
	case isTimeout(err):
		c.t.Fatalf("connection still open after %v", testDeadline)
	case errors.Is(err, io.EOF), isReset(err):
	default:
		c.t.Fatalf("reading to the end: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset by peer")
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// get is a minimal HTTP/1.1 GET.
func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n"
}

// echoPath answers with the request path.
var echoPath = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, r.URL.Path)
})

// recv waits for a value from ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testDeadline):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// onlyConn returns the server's single tracked connection.
func (ts *testServer) onlyConn(t testing.TB) *conn {
	t.Helper()
	var c *conn
	waitFor(t, "one tracked connection", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if len(ts.conns) != 1 {
			return false
		}
		for k := range ts.conns {
			c = k
		}
		return true
	})
	return c
}

// hasPendingByte reports whether the watcher took a byte off the wire.
func (c *conn) hasPendingByte() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cr.hasPending
}

// logBuffer collects a server's log, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, nil))
}

// ctxWithDeadline is a context bounded by testDeadline.
func ctxWithDeadline(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}
