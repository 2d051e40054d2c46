package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"
)

// coalescePair is a coalescingConn over a real loopback TCP connection and
// the peer's end of it.
func coalescePair(t *testing.T) (*coalescingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl := coalesceListener{ln}
	peerc := make(chan net.Conn, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			errc <- err
			return
		}
		peerc <- c
	}()
	c, err := cl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var peer net.Conn
	select {
	case peer = <-peerc:
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	cc := c.(*coalescingConn)
	cc.on.Store(true) // as an HTTP/2 connection
	return cc, peer
}

// Every byte arrives, in order, whatever the sizes of the writes (small
// ones gathered, large ones written as they are, mixed).
func TestCoalescingConnKeepsOrder(t *testing.T) {
	c, peer := coalescePair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var want bytes.Buffer
	sizes := []int{1, 9, 13, 100, 4096, coalesceLimit, coalesceLimit + 1, 3 * coalesceLimit, 0, 7}
	for range 300 {
		p := make([]byte, sizes[rng.IntN(len(sizes))])
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		want.Write(p)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	src := bytes.NewReader(want.Bytes())
	rng = rand.New(rand.NewPCG(1, 2))
	for src.Len() > 0 {
		p := make([]byte, min(src.Len(), sizes[rng.IntN(len(sizes))]))
		_, _ = src.Read(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer read %d bytes, not the %d written in order", len(b), want.Len())
	}
}

// A peer that does not read holds the server's writes back: the held
// bytes stay bounded (the Write waits), and the write deadline ends the
// wait with a timeout error, which every later Write returns too.
func TestCoalescingConnBackpressure(t *testing.T) {
	c, _ := coalescePair(t)
	if err := c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	var err error
	for i := 0; err == nil; i++ {
		_, err = c.Write(p)
		c.mu.Lock()
		held := len(c.pending)
		c.mu.Unlock()
		if held > coalesceLimit+len(p) {
			t.Fatalf("after %d writes %d bytes are held, more than the limit %d", i+1, held, coalesceLimit)
		}
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the blocked Write ended with %v, want a timeout", err)
	}
	if _, err2 := c.Write(p); err2 == nil {
		t.Fatal("a Write after the failed one succeeded")
	}
}

// A peer that reset the connection: a later Write returns the error, and
// the connection is closed, so that the server's reader stops too.
func TestCoalescingConnWriteErrorCloses(t *testing.T) {
	c, peer := coalescePair(t)
	if tc, ok := peer.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST
	}
	peer.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte("frame"))
		if err == nil {
			_ = c.drain()
		}
	}
	if err == nil {
		t.Fatal("writes to a reset connection kept succeeding for 10s")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, rerr := c.Read(make([]byte, 1)); rerr == nil {
		t.Fatal("a Read after the write error succeeded")
	} else if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was not closed after the write error: Read waited for its deadline (%v)", rerr)
	}
}

// Close sends what was written before it (net/http's final GOAWAY), then
// closes; a peer that never reads cannot keep the connection open past
// the linger time.
func TestCoalescingConnCloseFlushesThenCloses(t *testing.T) {
	c, peer := coalescePair(t)
	if _, err := c.Write([]byte("goaway")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(peer)
	if err != nil || string(b) != "goaway" {
		t.Fatalf("the peer read %q, %v; want \"goaway\" then EOF", b, err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("a Write after Close succeeded")
	}

	// A peer that does not read: the writer is stuck in its write, Close
	// returns at once, and the connection closes within the linger time.
	c2, peer2 := coalescePair(t)
	_ = peer2
	big := make([]byte, 1000)
	for {
		c2.mu.Lock()
		held := len(c2.pending)
		c2.mu.Unlock()
		if held >= coalesceLimit/2 {
			break
		}
		if _, err := c2.Write(big); err != nil {
			t.Fatal(err)
		}
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(coalesceLinger + 10*time.Second)
	for {
		c2.mu.Lock()
		closed := c2.closed
		c2.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection to a peer that does not read stayed open past the linger time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawPair is a coalescingConn as the listener hands it out (coalescing
// off) over real loopback TCP, and the peer's end.
func rawPair(t *testing.T) (*coalescingConn, net.Conn) {
	t.Helper()
	c, peer := coalescePair(t)
	c.on.Store(false)
	return c, peer
}

// A connection coalesces only once its first read is the HTTP/2 preface;
// an HTTP/1 request leaves it writing straight through.
func TestCoalescingOnlyForHTTP2Preface(t *testing.T) {
	for _, tc := range []struct {
		first string
		want  bool
	}{
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"PRI * HTTP/1.1\r\n\r\n", false},
	} {
		c, peer := rawPair(t)
		if _, err := peer.Write([]byte(tc.first)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if got := c.on.Load(); got != tc.want {
			t.Errorf("first read %q: coalescing %v, want %v", tc.first, got, tc.want)
		}
		// A later preface-like read changes nothing: only the first counts.
		if _, err := peer.Write([]byte("PRI * HTTP/2.0\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if got := c.on.Load(); got != tc.want {
			t.Errorf("after a second read: coalescing %v, want %v", got, tc.want)
		}
		// Off: a write is on the wire when Write returns (nothing held).
		if !tc.want {
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			held := len(c.pending) > 0 || c.writing
			c.mu.Unlock()
			if held {
				t.Error("a connection that does not coalesce held a write")
			}
		}
	}
}

// Over TLS, coalescing follows the negotiated protocol: on for h2, off for
// http/1.1.
func TestCoalescingFollowsALPN(t *testing.T) {
	certFile, keyFile, cert := selfSigned(t, t.TempDir())
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, proto := range []string{"h2", "http/1.1"} {
		c, peer := rawPair(t)
		srv := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}})
		cli := tls.Client(peer, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{proto}})
		errc := make(chan error, 1)
		go func() { errc <- cli.Handshake() }()
		if err := srv.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		coalesceH2(srv)
		if got, want := c.on.Load(), proto == "h2"; got != want {
			t.Errorf("ALPN %s: coalescing %v, want %v", proto, got, want)
		}
	}
	// Not a TLS connection, or not ours: nothing happens.
	c, _ := rawPair(t)
	coalesceH2(c)
	if c.on.Load() {
		t.Error("a plain connection was turned on by coalesceH2")
	}
}

// Through net/http's own server, as newServer sets it up: an h2c
// prior-knowledge client's connection coalesces, an HTTP/1 client's does
// not. (net/http reads the preface's first 14 bytes on their own, so a
// check for more of it never turned coalescing on.)
func TestCoalescingThroughNetHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *coalescingConn, 4)
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }),
		Protocols: new(http.Protocols),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns <- c.(*coalescingConn)
			}
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { coalesceH2(c); return ctx },
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(coalesceListener{ln})
	t.Cleanup(func() { srv.Close() })
	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		if h2 {
			tr.Protocols.SetUnencryptedHTTP2(true)
		} else {
			tr.Protocols.SetHTTP1(true)
		}
		res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		c := <-conns
		if got := c.on.Load(); got != h2 {
			t.Errorf("%s: coalescing %v, want %v", body, got, h2)
		}
	}
}
