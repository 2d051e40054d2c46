package l4_test

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/l4"
)

// resetBackend accepts one connection and hands it over.
func resetBackend(t *testing.T) (string, <-chan *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		got <- c.(*net.TCPConn)
	}()
	return ln.Addr().String(), got
}

// exchange sends ping from a to b through the proxy and reads it there.
func exchange(t *testing.T, from, to net.Conn) {
	t.Helper()
	if _, err := from.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	to.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(to, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf, err)
	}
}

// readErr is what the next read on c ends with (nothing more is sent).
func readErr(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if n > 0 {
		t.Fatalf("read %d unexpected bytes", n)
	}
	return err
}

// A client that aborts (a reset, not a FIN) has its abort passed on to
// the upstream as a reset, as HAProxy does: a graceful close would tell
// the upstream the client finished normally.
func TestTCPClientResetReachesUpstream(t *testing.T) {
	baddr, accepted := resetBackend(t)
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, baddr)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	up := <-accepted
	exchange(t, c, up)
	exchange(t, up, c)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	if err := readErr(t, up); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("upstream read after the client's reset: %v, want a reset", err)
	}
	waitFor(t, "the connection to end", func() bool { return s.Stats().Active == 0 })
}

// And the other way: an upstream that resets resets the client.
func TestTCPUpstreamResetReachesClient(t *testing.T) {
	baddr, accepted := resetBackend(t)
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, baddr)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	up := <-accepted
	exchange(t, c, up)
	exchange(t, up, c)
	up.SetLinger(0)
	up.Close()
	if err := readErr(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after the upstream's reset: %v, want a reset", err)
	}
	waitFor(t, "the connection to end", func() bool { return s.Stats().Active == 0 })
}

// A graceful close stays graceful: the upstream sees EOF, not a reset.
func TestTCPClientCloseReachesUpstreamAsEOF(t *testing.T) {
	baddr, accepted := resetBackend(t)
	addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, baddr)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	up := <-accepted
	exchange(t, c, up)
	c.Close()
	if err := readErr(t, up); err != io.EOF {
		t.Fatalf("upstream read after the client's close: %v, want EOF", err)
	}
}

// Connections run on goroutines kept from ended ones; closing the server
// ends those too.
func TestTCPSpareGoroutinesEndOnClose(t *testing.T) {
	before := runtime.NumGoroutine()
	b := backend(t, tcpBackend(t, "a", nil))
	s, err := l4.NewTCP(l4.TCPConfig{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	for i := range 20 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if got := hello(t, c); got != "a" {
			t.Fatalf("connection %d: greeting %q", i, got)
		}
		c.Close()
	}
	waitFor(t, "the connections to end", func() bool { return s.Stats().Active == 0 })
	s.Close()
	<-served
	// The backend's goroutines (its listener stays open until cleanup)
	// may still be ending: allow for its accept loop only.
	waitFor(t, "the spare goroutines to end", func() bool { return runtime.NumGoroutine() <= before+1 })
}
