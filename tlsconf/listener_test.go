package tlsconf

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
)

// splitSetup serves a SplitListener on loopback with a test certificate
// and returns its two sides and address.
func splitSetup(t *testing.T, timeout time.Duration) (h1, h2 net.Listener, addr string) {
	t.Helper()
	ca := testpki.NewCA(t, "split CA")
	leaf := ca.Issue(t, "localhost", "localhost", "127.0.0.1")
	certs, err := NewCerts(Server{Cert: leaf.CertFile, Key: leaf.KeyFile}, []string{"h2", "http/1.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 = SplitListener(inner, certs.TLSConfig(), timeout, nil)
	t.Cleanup(func() { h1.Close() })
	return h1, h2, inner.Addr().String()
}

// dialALPN completes a client handshake offering protos (none: no ALPN)
// and returns the connection.
func dialALPN(t *testing.T, addr string, protos ...string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: protos}) //nolint:gosec // test server
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptWithin runs ln.Accept and returns its result, or fails the test
// after d (the connection went elsewhere or nowhere).
func acceptWithin(t *testing.T, ln net.Listener, d time.Duration) (net.Conn, error) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-time.After(d):
		t.Fatalf("no connection on %T within %s", ln, d)
		return nil, nil
	}
}

// TestSplitListenerByALPN: connections that negotiated h2 come out of the
// h2 side, http/1.1 and no ALPN out of the h1 side, handshakes done; an
// h2 connection nobody accepts yet does not hold up the h1 side; closing
// one side ends both.
func TestSplitListenerByALPN(t *testing.T) {
	h1, h2, addr := splitSetup(t, 0)

	// An h2 connection first, not accepted until the end.
	dialALPN(t, addr, "h2", "http/1.1")
	for _, protos := range [][]string{{"http/1.1"}, nil} {
		dialALPN(t, addr, protos...)
		c, err := acceptWithin(t, h1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st := c.(*tls.Conn).ConnectionState()
		if !st.HandshakeComplete || st.NegotiatedProtocol == "h2" {
			t.Fatalf("h1 side (client offered %q): handshake complete %v, protocol %q", protos, st.HandshakeComplete, st.NegotiatedProtocol)
		}
		c.Close()
	}
	c, err := acceptWithin(t, h2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("h2 side: protocol %q", p)
	}
	c.Close()

	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h1.Close(); err != nil { // the other server's Shutdown closes its side too
		t.Fatalf("closing the other side: %v, want nil", err)
	}
	for _, ln := range []net.Listener{h1, h2} {
		if _, err := acceptWithin(t, ln, 5*time.Second); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	}
	if h1.Addr().String() != addr || h2.Addr().String() != addr {
		t.Fatalf("addresses %s %s, want %s", h1.Addr(), h2.Addr(), addr)
	}
}

// TestSplitListenerStalledHandshake: a client that sends half a
// ClientHello (and one that sends nothing) does not delay an HTTP/1.1
// client's handshake, and is closed at the handshake timeout.
func TestSplitListenerStalledHandshake(t *testing.T) {
	h1, _, addr := splitSetup(t, 300*time.Millisecond)
	var stalled []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 1 {
			if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
				t.Fatal(err)
			}
		}
		stalled = append(stalled, c)
	}
	dialALPN(t, addr, "http/1.1")
	c, err := acceptWithin(t, h1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, s := range stalled {
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.Read(make([]byte, 64)); err == nil {
			t.Fatal("a stalled handshake got an answer")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("a stalled handshake was still open 10s after its 300ms timeout")
		}
	}
}
