package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
	"github.com/switchyard/switchyard/tlsconf"
)

// tlsClient is an HTTPS client trusting roots, presenting certs, naming
// serverName in SNI.
func tlsClient(roots *x509.CertPool, serverName string, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName, Certificates: certs},
		ForceAttemptHTTP2: true, DisableKeepAlives: true,
	}}
}

func tlsGet(t *testing.T, c *http.Client, url string, hdr ...string) (int, string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// TestUpstreamTLS: HTTPS to targets, HTTP/2 by ALPN, a target that
// requires the gateway's client certificate refuses it without one (502
// upstream_tls, logged with the TLS alert) and accepts it with one; a
// target whose certificate does not chain to the configured CA is
// refused.
func TestUpstreamTLS(t *testing.T) {
	ca := testpki.NewCA(t, "upstream ca")
	other := testpki.NewCA(t, "someone else")
	srvCert := ca.Issue(t, "backend", "backend.internal")
	gwCert := ca.Issue(t, "gateway", "gateway.internal")
	var proto, peer atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		peer.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		io.WriteString(w, "secret")
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	cfg := func(upTLS string) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
upstreams:
  secure:
    tls: %s
    targets: [{ address: %s }]
routes:
  - { upstream: secure }
`, upTLS, addr)
	}
	gw := startGateway(t, cfg(fmt.Sprintf("{ ca: %s, server_name: backend.internal }", ca.File)))
	code, body, _ := get(t, gw.url+"/x")
	if code != http.StatusBadGateway || !strings.Contains(body, `"upstream_tls"`) {
		t.Fatalf("without a client certificate: %d %s, want 502 upstream_tls\n%s", code, body, gw.logs)
	}
	eventually(t, 5*time.Second, "the refusal logged with its cause: "+gw.logs.String(), func() bool {
		return strings.Contains(gw.logs.String(), "TLS with upstream failed") && (strings.Contains(gw.logs.String(), "asked for a client certificate") || strings.Contains(gw.logs.String(), "tls: certificate required"))
	})

	gw.rewrite(t, cfg(fmt.Sprintf("{ ca: %s, server_name: backend.internal, cert: %s, key: %s }", ca.File, gwCert.CertFile, gwCert.KeyFile)))
	if code, body, _ := do(t, http.MethodPost, gw.admin+"/admin/reload", nil); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	code, body, _ = get(t, gw.url+"/x")
	if code != 200 || body != "secret" {
		t.Fatalf("with the client certificate: %d %s", code, body)
	}
	if proto.Load() != "HTTP/2.0" || peer.Load() != "gateway" {
		t.Errorf("upstream saw %v from %v, want HTTP/2.0 (ALPN) from the gateway's certificate", proto.Load(), peer.Load())
	}

	// Another CA's bundle: the target's certificate does not verify.
	gw.rewrite(t, cfg(fmt.Sprintf("{ ca: %s, server_name: backend.internal, cert: %s, key: %s }", other.File, gwCert.CertFile, gwCert.KeyFile)))
	if code, body, _ := do(t, http.MethodPost, gw.admin+"/admin/reload", nil); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if code, body, _ = get(t, gw.url+"/x"); code != http.StatusBadGateway || !strings.Contains(body, "upstream_tls") {
		t.Fatalf("unknown authority: %d %s, want 502 upstream_tls", code, body)
	}
	// A wrong server name: refused too.
	gw.rewrite(t, cfg(fmt.Sprintf("{ ca: %s, server_name: elsewhere.internal, cert: %s, key: %s }", ca.File, gwCert.CertFile, gwCert.KeyFile)))
	if code, body, _ := do(t, http.MethodPost, gw.admin+"/admin/reload", nil); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if code, body, _ = get(t, gw.url+"/x"); code != http.StatusBadGateway || !strings.Contains(body, "upstream_tls") {
		t.Fatalf("wrong server name: %d %s, want 502 upstream_tls", code, body)
	}
}

// TestClientTLS: certificates chosen by SNI; reload swaps a certificate
// without a restart; a broken file keeps the old one and the reload says
// why; a client_cert: required route refuses a client without a
// certificate, forwards a verified one's identity and strips a client's
// own X-Forwarded-Client-Cert; a certificate of another CA is refused in
// the handshake.
func TestClientTLS(t *testing.T) {
	ca := testpki.NewCA(t, "front ca")
	clients := testpki.NewCA(t, "client ca")
	stranger := testpki.NewCA(t, "stranger ca")
	api1 := ca.Issue(t, "api-1", "api.example", "127.0.0.1")
	api2 := ca.Issue(t, "api-2", "api.example", "127.0.0.1")
	adm := ca.Issue(t, "admin-cert", "admin.example")
	alice := clients.Issue(t, "alice", "alice.clients.example", "spiffe://example.org/alice")
	mallory := stranger.Issue(t, "alice", "alice.clients.example")

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
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
tls:
  certificates: [{ cert: %s, key: %s }, { cert: %s, key: %s }]
  client_ca: %s
  watch_interval: 1h
upstreams:
  b: { targets: [{ address: %s }] }
routes:
  - { match: { path_prefix: /secure }, upstream: b, client_cert: required }
  - { upstream: b }
`, certFile, keyFile, adm.CertFile, adm.KeyFile, clients.File, be.addr()))
	url := "https://" + gw.g.Addr().String()
	served := func(serverName string) string {
		t.Helper()
		_, _, resp := tlsGet(t, tlsClient(ca.Pool(), serverName), url+"/")
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}

	t.Run("SNI", func(t *testing.T) {
		if got := served("admin.example"); got != "admin-cert" {
			t.Errorf("admin.example: %q", got)
		}
		if got := served("api.example"); got != "api-1" {
			t.Errorf("api.example: %q", got)
		}
		_, _, resp := tlsGet(t, tlsClient(ca.Pool(), "api.example"), url+"/")
		if resp.Proto != "HTTP/2.0" || resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("negotiated %s, TLS %x", resp.Proto, resp.TLS.Version)
		}
	})

	t.Run("client certificate required", func(t *testing.T) {
		code, body, _ := tlsGet(t, tlsClient(ca.Pool(), "api.example"), url+"/secure", tlsconf.HeaderClientCert, "Hash=spoof")
		if code != http.StatusForbidden || !strings.Contains(body, "client_cert_required") {
			t.Fatalf("no certificate: %d %s", code, body)
		}
		code, _, _ = tlsGet(t, tlsClient(ca.Pool(), "api.example", alice.TLS), url+"/secure", "Host", "api.example", tlsconf.HeaderClientCert, "Hash=spoof;CN=\"admin\"")
		vals, _ := seen.Load().([]string)
		if code != 200 || len(vals) != 1 {
			t.Fatalf("with certificate: %d, upstream saw %q", code, vals)
		}
		id, err := tlsconf.ParseClientCert(vals[0])
		if err != nil || id.CN != "alice" || id.URI[0] != "spiffe://example.org/alice" {
			t.Fatalf("identity %q: %+v %v", vals[0], id, err)
		}
		// A request for another host on a connection opened for
		// api.example: 421, so that the client opens one for that host.
		if code, body, _ := tlsGet(t, tlsClient(ca.Pool(), "api.example", alice.TLS), url+"/secure", "Host", "admin.example"); code != http.StatusMisdirectedRequest {
			t.Fatalf("other host on the connection: %d %s, want 421", code, body)
		}
		// A route without client_cert: the client's copy never arrives.
		h1 := tlsClient(ca.Pool(), "api.example")
		h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false // HTTP/2 has no Connection field
		tlsGet(t, h1, url+"/open", "X-Forwarded-Client-Cert", "Hash=spoof", "Connection", "X-Forwarded-Client-Cert")
		tlsGet(t, tlsClient(ca.Pool(), "api.example"), url+"/open", "X-Forwarded-Client-Cert", "Hash=spoof")
		if vals, _ := seen.Load().([]string); len(vals) != 0 {
			t.Fatalf("spoofed identity reached the upstream: %q", vals)
		}
		// A certificate of a CA the gateway does not trust: no handshake.
		// (Go's client only offers a certificate of a CA the server
		// names, so it is forced here, as an attacker's client would.)
		forced := tlsClient(ca.Pool(), "api.example")
		forced.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &mallory.TLS, nil
		}
		resp, err := forced.Get(url + "/secure")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a certificate from an unknown CA was accepted: %d", resp.StatusCode)
		}
	})

	t.Run("reload", func(t *testing.T) {
		copyFile(t, api2.CertFile, certFile)
		copyFile(t, api2.KeyFile, keyFile)
		if code, body, _ := do(t, http.MethodPost, gw.admin+"/admin/reload", nil); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		if got := served("api.example"); got != "api-2" {
			t.Fatalf("after reload: %q, want api-2", got)
		}
		writeConfig(t, keyFile, "-----BEGIN EC PRIVATE KEY-----\ngarbage\n-----END EC PRIVATE KEY-----\n")
		code, body, _ := do(t, http.MethodPost, gw.admin+"/admin/reload", nil)
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, keyFile) {
			t.Fatalf("broken key: reload answered %d %s, want 422 naming %s", code, body, keyFile)
		}
		if got := served("api.example"); got != "api-2" {
			t.Fatalf("after a broken key: %q, want api-2 still", got)
		}
	})
}

// TestHandshakeFlood: many connections that never finish a handshake (or
// send half a ClientHello) do not keep a normal client (HTTP/2 or
// HTTP/1.1) from being served, and each is closed once tls.handshake_timeout has passed.
func TestHandshakeFlood(t *testing.T) {
	ca := testpki.NewCA(t, "flood ca")
	cert := ca.Issue(t, "front", "api.example")
	be := newBackend(t, "b")
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
tls: { cert: %s, key: %s, handshake_timeout: 2s }
upstreams:
  b: { targets: [{ address: %s }] }
routes:
  - { upstream: b }
`, cert.CertFile, cert.KeyFile, be.addr()))
	addr := gw.g.Addr().String()
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			// A TLS record header announcing a ClientHello that never comes.
			if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
				t.Fatal(err)
			}
		}
		flood = append(flood, c)
	}
	for range 5 {
		code, body, _ := tlsGet(t, tlsClient(ca.Pool(), "api.example"), "https://"+addr+"/")
		if code != 200 || body != "b" {
			t.Fatalf("normal client during the flood: %d %s", code, body)
		}
		// HTTP/1.1 connections go to the gateway's own server: not held
		// up either.
		code, body, resp := tlsGet(t, h1Client(ca.Pool(), "api.example"), "https://"+addr+"/")
		if code != 200 || body != "b" || resp.Proto != "HTTP/1.1" {
			t.Fatalf("HTTP/1.1 client during the flood: %d %s %s", code, resp.Proto, body)
		}
	}
	// Each stalled handshake is cut at the timeout.
	for _, c := range []net.Conn{flood[0], flood[1]} {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("a stalled handshake was still open after 20s (handshake_timeout 2s)")
				}
				break
			}
		}
	}
}

func TestTLSConfigErrors(t *testing.T) {
	_, err := ParseConfig([]byte(`
listen: 127.0.0.1:0
tls: { cert: a.pem, min_version: "1.1" }
upstreams:
  a: { protocol: h2c, tls: { ca: ca.pem }, targets: [{ address: 127.0.0.1:1 }] }
  b: { protocol: h3, targets: [{ address: 127.0.0.1:1 }] }
  c: { tls: { cert: c.pem, insecure_skip_verify: true, server_name: x }, targets: [{ address: 127.0.0.1:1 }] }
routes:
  - { match: { path: /y }, upstream: a, client_cert: always }
  - { match: { path: /x }, upstream: b, client_cert: required }
`), "gw.yaml")
	for _, want := range []string{
		"gw.yaml:3:", "tls.key: missing: both cert and key are required",
		`tls.min_version: unknown TLS version "1.1"`,
		`upstreams.a.protocol: protocol "h2c" is cleartext HTTP/2: with tls use h2`,
		`upstreams.b.protocol: unknown protocol "h3"`,
		"upstreams.c.tls.cert: a client certificate needs both cert and key",
		"upstreams.c.tls.insecure_skip_verify:",
		`routes[0].client_cert: unknown client_cert "always"`,
		"routes[1].client_cert: route wants client certificates but the gateway asks for none",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// copyFile writes a copy of the file from to to (writeConfig's way).
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeConfig(t, to, string(b))
}
