package httpserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// hijackEcho hijacks, greets and answers two lines the client sends.
func hijackEcho(t *testing.T, viaController bool, ready chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ready <- struct{}{}
			<-ready
		}
		var nc net.Conn
		var brw *bufio.ReadWriter
		var err error
		if viaController {
			nc, brw, err = http.NewResponseController(w).Hijack()
		} else {
			nc, brw, err = w.(http.Hijacker).Hijack()
		}
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(testDeadline))
		if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
			t.Errorf("Write after Hijack returned %v", err)
		}
		_, _ = brw.WriteString("hello raw\n")
		_ = brw.Flush()
		for range 2 {
			line, err := brw.ReadString('\n')
			if err != nil {
				t.Errorf("reading from the hijacked connection: %v", err)
				return
			}
			_, _ = brw.WriteString("got " + line)
			_ = brw.Flush()
		}
	}
}

func TestHijack(t *testing.T) {
	for _, viaController := range []bool{false, true} {
		t.Run(fmt.Sprintf("controller=%v", viaController), func(t *testing.T) {
			ts := startServer(t, hijackEcho(t, viaController, nil), nil)
			c := dial(t, ts.addr)
			// The first line comes in the same write as the request: it
			// is in the server's read buffer when the handler hijacks.
			c.send(get("/") + "one\n")
			expectLine(t, c, "hello raw\n")
			expectLine(t, c, "got one\n")
			c.send("two\n")
			expectLine(t, c, "got two\n")
			c.expectClosed()
		})
	}

	t.Run("byte taken by the watcher", func(t *testing.T) {
		ready := make(chan struct{})
		ts := startServer(t, hijackEcho(t, false, ready), func(s *Server) { s.WatchAfter = -1 })
		c := dial(t, ts.addr)
		c.send(get("/"))
		recv(t, ready, "the handler to start")
		sc := ts.onlyConn(t)
		c.send("one\n")
		waitFor(t, "the watcher to read a byte", sc.hasPendingByte)
		ready <- struct{}{}
		expectLine(t, c, "hello raw\n")
		expectLine(t, c, "got one\n")
		c.send("two\n")
		expectLine(t, c, "got two\n")
	})
}

func expectLine(t *testing.T, c *rawConn, want string) {
	t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil || line != want {
		t.Fatalf("read %q, %v; want %q", line, err, want)
	}
}

// TestUpgradeThroughReverseProxy runs a WebSocket-like protocol switch
// through httputil.ReverseProxy served by this server.
func TestUpgradeThroughReverseProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		nc, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("backend Hijack: %v", err)
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(testDeadline))
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
		}
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)
	ts := startServer(t, httputil.NewSingleHostReverseProxy(target), nil)

	c := dial(t, ts.addr)
	c.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade response %v, %v", resp, err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("message %d\n", i)
		c.send(msg)
		expectLine(t, c, "echo "+msg)
	}
	// The client leaving ends the tunnel; the server carries on.
	_ = c.nc.Close()
	c = dial(t, ts.addr)
	if resp, body := c.roundTrip("GET", get("/plain")); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "want Upgrade") {
		t.Fatalf("plain request through the proxy: %d %q", resp.StatusCode, body)
	}
}

// TestReverseProxyBodies proxies request bodies, including one the backend
// answers before reading and a client that expects 100 Continue; run with
// -race, it checks that the proxy's transport reading the body on its own
// goroutine does not race with the server.
func TestReverseProxyBodies(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)
	ts := startServer(t, httputil.NewSingleHostReverseProxy(target), nil)

	t.Run("read", func(t *testing.T) {
		c := dial(t, ts.addr)
		for range 3 {
			if _, body := c.roundTrip("POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"); body != "5" {
				t.Fatalf("body %q", body)
			}
		}
	})

	t.Run("answered early", func(t *testing.T) {
		// The transport reads the body on its own goroutine while the
		// handler writes the backend's answer. (ReverseProxy answers only
		// once the transport wrote the whole body, with net/http's server
		// as with this one.)
		c := dial(t, ts.addr)
		c.send("POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
		c.send("world" + get("/"))
		if resp, _ := c.response("POST"); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// The server either goes on with the next request or closes.
		if resp, body, err := c.tryResponse("GET"); err == nil && (resp.StatusCode != 200 || body != "0") {
			t.Fatalf("next request: %d %q", resp.StatusCode, body)
		} else if err != nil && !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("next request: %v", err)
		}
	})

	t.Run("100-continue", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, _ := c.response("POST")
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("first response %d", resp.StatusCode)
		}
		c.send("hello")
		resp, body := c.response("POST")
		for resp.StatusCode == http.StatusContinue { // the backend's, forwarded (net/http would send it too)
			resp, body = c.response("POST")
		}
		if resp.StatusCode != 200 || body != "5" {
			t.Fatalf("final response %d %q", resp.StatusCode, body)
		}
	})
}
