package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
	"github.com/switchyard/switchyard/tlsconf"
)

// h1Client is an HTTPS client that speaks HTTP/1.1 only (ALPN offers
// http/1.1), trusting roots, presenting certs.
func h1Client(roots *x509.CertPool, serverName string, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName, Certificates: certs, NextProtos: []string{"http/1.1"}},
		DisableKeepAlives: true,
	}}
}

// rawTLS sends raw over a TLS connection offering protos and returns the
// status line of the answer.
func rawTLS(t *testing.T, addr string, roots *x509.CertPool, raw string, protos ...string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "api.example", NextProtos: protos})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	return strings.TrimSpace(line)
}

// TestTLSHTTP1OwnServer: on a tls listener, connections that negotiate
// http/1.1 (or nothing) by ALPN are served by the gateway's own HTTP/1.x
// server (its strict framing answers a duplicate Content-Length 400,
// which net/http's server lets through), and keep what net/http gave
// them: the verified client certificate's identity is forwarded, a
// client_cert: required route refuses a client without one and answers
// 421 for another host than the connection's SNI, a reloaded certificate
// is served; an HTTP/2 client on the same listener still gets HTTP/2
// (from net/http's server, which lets the duplicate through); with
// server.http1: net/http both go to net/http's server.
func TestTLSHTTP1OwnServer(t *testing.T) {
	ca := testpki.NewCA(t, "front ca")
	clients := testpki.NewCA(t, "client ca")
	api1 := ca.Issue(t, "api-1", "api.example", "127.0.0.1")
	api2 := ca.Issue(t, "api-2", "api.example", "127.0.0.1")
	alice := clients.Issue(t, "alice", "alice.clients.example", "spiffe://example.org/alice")

	dir := t.TempDir()
	certFile, keyFile := dir+"/api.pem", dir+"/api.key"
	copyFile(t, api1.CertFile, certFile)
	copyFile(t, api1.KeyFile, keyFile)

	var seen atomic.Value
	be := newBackend(t, "b")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Values(tlsconf.HeaderClientCert))
		io.WriteString(w, "ok")
	})
	cfg := func(http1 string) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
server: { http1: %s }
tls:
  cert: %s
  key: %s
  client_ca: %s
  watch_interval: 1h
upstreams:
  b: { targets: [{ address: %s }] }
routes:
  - { match: { path_prefix: /secure }, upstream: b, client_cert: required }
  - { upstream: b }
`, http1, certFile, keyFile, clients.File, be.addr())
	}
	gw := startGateway(t, cfg("switchyard"))
	addr := gw.g.Addr().String()
	url := "https://" + addr

	dupCL := "GET /open HTTP/1.1\r\nHost: api.example\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	if got := rawTLS(t, addr, ca.Pool(), dupCL, "http/1.1"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Fatalf("duplicate Content-Length over TLS HTTP/1.1: %q, want 400 from the gateway's own server", got)
	}
	if got := rawTLS(t, addr, ca.Pool(), dupCL); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Fatalf("duplicate Content-Length over TLS without ALPN: %q, want 400 from the gateway's own server", got)
	}

	code, body, _ := tlsGet(t, h1Client(ca.Pool(), "api.example"), url+"/secure", tlsconf.HeaderClientCert, "Hash=spoof")
	if code != http.StatusForbidden || !strings.Contains(body, "client_cert_required") {
		t.Fatalf("HTTP/1.1 without a certificate: %d %s", code, body)
	}
	code, _, resp := tlsGet(t, h1Client(ca.Pool(), "api.example", alice.TLS), url+"/secure", "Host", "api.example", tlsconf.HeaderClientCert, "Hash=spoof;CN=\"admin\"")
	vals, _ := seen.Load().([]string)
	if code != 200 || resp.Proto != "HTTP/1.1" || len(vals) != 1 {
		t.Fatalf("HTTP/1.1 with a certificate: %d %s, upstream saw %q", code, resp.Proto, vals)
	}
	id, err := tlsconf.ParseClientCert(vals[0])
	if err != nil || id.CN != "alice" || len(id.URI) != 1 || id.URI[0] != "spiffe://example.org/alice" {
		t.Fatalf("identity %q: %+v %v", vals[0], id, err)
	}
	if code, body, _ := tlsGet(t, h1Client(ca.Pool(), "api.example", alice.TLS), url+"/secure", "Host", "admin.example"); code != http.StatusMisdirectedRequest {
		t.Fatalf("HTTP/1.1, another host than the SNI: %d %s, want 421", code, body)
	}
	tlsGet(t, h1Client(ca.Pool(), "api.example"), url+"/open", tlsconf.HeaderClientCert, "Hash=spoof")
	if vals, _ := seen.Load().([]string); len(vals) != 0 {
		t.Fatalf("spoofed identity reached the upstream over HTTP/1.1: %q", vals)
	}

	// HTTP/2 on the same listener: net/http's server.
	code, _, resp = tlsGet(t, tlsClient(ca.Pool(), "api.example", alice.TLS), url+"/secure", "Host", "api.example")
	if code != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("HTTP/2 client: %d %s", code, resp.Proto)
	}

	// A reloaded certificate is served to HTTP/1.1 clients.
	copyFile(t, api2.CertFile, certFile)
	copyFile(t, api2.KeyFile, keyFile)
	if code, body, _ := do(t, http.MethodPost, gw.admin+"/admin/reload", nil); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	_, _, resp = tlsGet(t, h1Client(ca.Pool(), "api.example"), url+"/open")
	if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != "api-2" || resp.Proto != "HTTP/1.1" {
		t.Fatalf("after reload: %s served %q, want api-2", resp.Proto, got)
	}

	// server.http1: net/http: every connection to net/http's server, which
	// takes the duplicate Content-Length.
	gwStd := startGateway(t, cfg("net/http"))
	if got := rawTLS(t, gwStd.g.Addr().String(), ca.Pool(), dupCL, "http/1.1"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("server.http1 net/http: %q, want 200 from net/http's server", got)
	}
}

// TestTLSGracefulShutdownBothServers: on a tls listener, an HTTP/1.1 and
// an HTTP/2 request in flight when shutdown begins both complete, new
// connections are refused, and Run returns cleanly once they are done.
func TestTLSGracefulShutdownBothServers(t *testing.T) {
	ca := testpki.NewCA(t, "shutdown ca")
	cert := ca.Issue(t, "front", "api.example", "127.0.0.1")
	b := newBackend(t, "b")
	g := newGate(t)
	b.handle(g.handler)
	r := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
server: { shutdown_timeout: 5s }
tls: { cert: %s, key: %s }
upstreams:
  b: { targets: [{ address: %s }] }
routes:
  - { upstream: b }
`, cert.CertFile, cert.KeyFile, b.addr()))
	addr := r.g.Addr().String()
	h1 := h1Client(ca.Pool(), "api.example")
	h2 := tlsClient(ca.Pool(), "api.example")
	d1 := goGet(h1, "https://"+addr+"/slow")
	g.waitArrived(t)
	d2 := goGet(h2, "https://"+addr+"/slow")
	g.waitArrived(t)

	r.cancel()
	waitListenerClosed(t, addr)
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("Run returned with requests in flight: %v", err)
	default:
	}
	g.release()
	for name, d := range map[string]<-chan response{"HTTP/1.1": d1, "HTTP/2": d2} {
		select {
		case res := <-d:
			if res.err != nil || res.code != http.StatusOK || res.body != "done" {
				t.Fatalf("in-flight %s request: %d %q %v, want 200 \"done\"", name, res.code, res.body, res.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("in-flight %s request did not complete", name)
		}
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Run: %v, want a clean shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last requests finished")
	}
}
