package httpserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
)

// startTLSServer serves h over TLS on loopback: with handshaken, the
// listener hands out connections whose handshake is done (as the
// gateway's does); otherwise tls.NewListener's, not yet handshaken.
func startTLSServer(t *testing.T, h http.Handler, handshaken bool) (addr string, client *tls.Config) {
	t.Helper()
	ca := testpki.NewCA(t, "httpserver CA")
	leaf := ca.Issue(t, "server", "api.example")
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = tls.NewListener(inner, cfg)
	if handshaken {
		ln = handshakingListener{ln}
	}
	s := &Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case <-served:
		case <-time.After(testDeadline):
			t.Error("Serve did not return after Close")
		}
	})
	client = &tls.Config{RootCAs: ca.Pool(), ServerName: "api.example", Certificates: []tls.Certificate{ca.Issue(t, "client-1").TLS}}
	return inner.Addr().String(), client
}

// handshakingListener completes each connection's handshake in Accept.
type handshakingListener struct{ net.Listener }

func (l handshakingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := c.(*tls.Conn).Handshake(); err != nil {
		c.Close()
		return l.Accept()
	}
	return c, nil
}

// TestTLSConnections: over TLS (handshake done before Serve sees the
// connection, or not yet), every request of a keep-alive connection has
// the connection's TLS state, the verified client certificate included,
// as with net/http's server; a plain connection's requests have none.
func TestTLSConnections(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			io.WriteString(w, "plain")
			return
		}
		cn := "-"
		if len(r.TLS.VerifiedChains) > 0 {
			cn = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
		io.WriteString(w, r.TLS.ServerName+" "+cn)
	})
	for _, handshaken := range []bool{true, false} {
		addr, cfg := startTLSServer(t, h, handshaken)
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(testDeadline))
		br := bufio.NewReader(c)
		for i := range 2 {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.example\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "api.example client-1" {
				t.Fatalf("handshaken %v, request %d: handler saw %q, want the SNI and the client certificate", handshaken, i, b)
			}
		}
		c.Close()
	}
	plain := startServer(t, h, nil)
	rc := dial(t, plain.addr)
	rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := rc.response(http.MethodGet); body != "plain" {
		t.Fatalf("plain connection: %q", body)
	}
}

// TestTLSClientGone: a client that closes its TLS connection while its
// request is in the handler cancels the request's context (the watcher
// reads through the TLS layer), and a pipelined request read by the
// watcher is served after the first.
func TestTLSClientGone(t *testing.T) {
	arrived := make(chan struct{}, 1)
	cause := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			io.WriteString(w, "fast")
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(20 * time.Millisecond) // long enough to be watched (WatchAfter 2ms): the pipelined bytes arrive meanwhile
			io.WriteString(w, "slow")
			return
		}
		arrived <- struct{}{}
		<-r.Context().Done()
		cause <- context.Cause(r.Context())
	})
	addr, cfg := startTLSServer(t, h, true)

	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(testDeadline))
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []string
	for range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, string(b))
	}
	if strings.Join(got, ",") != "slow,fast" {
		t.Fatalf("pipelined over TLS: %q", got)
	}

	if _, err := io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(testDeadline):
		t.Fatal("request did not reach the handler")
	}
	c.Close()
	select {
	case err := <-cause:
		if !errors.Is(err, errClientGone) {
			t.Fatalf("context cause %v, want %v", err, errClientGone)
		}
	case <-time.After(testDeadline):
		t.Fatal("the handler's context was not cancelled after the TLS client left")
	}
}
