package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// smallBufListener makes the server's send buffers small, so a response
// much larger than them really waits for the client to read.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// startSmallBufServer is startServer on a listener with small send buffers.
func startSmallBufServer(t *testing.T, h http.Handler, configure func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h}
	configure(s)
	out := &testServer{Server: s, addr: ln.Addr().String(), served: make(chan error, 1)}
	go func() { out.served <- s.Serve(smallBufListener{ln}) }()
	t.Cleanup(func() { _ = s.Close() })
	return out
}

// TestWriteTimeoutStalledClient: a client that asks for a huge response
// and never reads it is dropped after WriteTimeout without progress; the
// handler's Write fails (an upstream connection is not held forever).
func TestWriteTimeoutStalledClient(t *testing.T) {
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1<<20)
		for range 200 { // 200 MB
			if _, err := w.Write(buf); err != nil {
				// Work for the request stops: its context is cancelled.
				if cause := context.Cause(r.Context()); !errors.Is(cause, errWriteFailed) {
					err = fmt.Errorf("write failed (%v) but the context's cause is %v", err, cause)
				}
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	})
	ts := startSmallBufServer(t, h, func(s *Server) { s.WriteTimeout = 100 * time.Millisecond })
	c := dial(t, ts.addr)
	c.send(get("/big"))
	if err := recv(t, writeErr, "the handler's write to fail"); err == nil {
		t.Fatalf("the handler wrote 200 MB to a client that reads nothing")
	} else if !isTimeout(err) {
		t.Fatalf("the handler's write failed with %v, want a timeout", err)
	}
	// The connection is closed: what was sent before drains, then EOF.
	_, err := io.Copy(io.Discard, c.nc)
	if isTimeout(err) {
		t.Fatalf("the connection stayed open")
	}
}

// TestWriteTimeoutSlowReader: a client reading slowly but steadily gets
// the whole response, although it takes longer than WriteTimeout.
func TestWriteTimeoutSlowReader(t *testing.T) {
	const size = 1 << 20
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(make([]byte, size))
	})
	const timeout = 300 * time.Millisecond
	ts := startSmallBufServer(t, h, func(s *Server) { s.WriteTimeout = timeout })
	c := dial(t, ts.addr)
	c.send(get("/big"))
	start := time.Now()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8<<10)
	total := 0
	for {
		n, err := resp.Body.Read(buf)
		total += n
		if err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond) // pace the reader, well under the timeout
	}
	if total < size {
		t.Fatalf("got %d of %d bytes in %v", total, size, time.Since(start))
	}
	t.Logf("read %d bytes in %v with a write timeout of %v", total, time.Since(start), timeout)
}

// TestReadBodyTimeout: a client that stops sending its body is answered
// 408 and closed; the handler's read fails. One that sends slowly but
// steadily is served.
func TestReadBodyTimeout(t *testing.T) {
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			readErr <- err
			http.Error(w, "handler's own answer", http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "got "+string(b))
	})
	ts := startServer(t, h, func(s *Server) { s.ReadBodyTimeout = 100 * time.Millisecond })
	for _, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
	} {
		c := dial(t, ts.addr)
		c.send(req) // and nothing more of the body
		if err := recv(t, readErr, "the handler's read to fail"); !isTimeout(err) {
			t.Errorf("%q: handler read error %v, want a timeout", req, err)
		}
		resp, body := c.response("POST")
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Fatalf("%q: status %d close %v body %q, want 408 and close", req, resp.StatusCode, resp.Close, body)
		}
		c.expectClosed()
	}

	// Slow but steady: one byte at a time, the whole body taking longer
	// than the timeout.
	c := dial(t, ts.addr)
	c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
	for range 20 {
		time.Sleep(10 * time.Millisecond) // pace the sender, well under the timeout
		c.send("a")
	}
	resp, body := c.response("POST")
	if resp.StatusCode != 200 || body != "got "+strings.Repeat("a", 20) {
		t.Fatalf("slow body: status %d body %q", resp.StatusCode, body)
	}
}
