package gateway

// End-to-end tests of what the gateway does to the protocol: forwarding
// headers, request ids and trace context, routing, streaming (SSE and
// WebSocket), HTTP/2 (h2c and TLS) and large streamed bodies.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	requestIDRe   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	traceparentRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)
)

// headerRecorder is a backend handler that keeps the last request's headers.
type headerRecorder struct{ last atomic.Pointer[http.Header] }

func (h *headerRecorder) handler(w http.ResponseWriter, r *http.Request) {
	hdr := r.Header.Clone()
	hdr.Set("X-Seen-Host", r.Host)
	h.last.Store(&hdr)
	w.Header().Set("X-Request-Id", "set-by-backend") // the gateway's id must win
	_, _ = io.WriteString(w, "ok")
}

func (h *headerRecorder) get(t *testing.T) http.Header {
	t.Helper()
	p := h.last.Load()
	if p == nil {
		t.Fatal("backend saw no request")
	}
	return *p
}

func TestProtocolForwardingHeaders(t *testing.T) {
	b := newBackend(t, "b")
	var rec headerRecorder
	b.handle(rec.handler)
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())

	t.Run("generated", func(t *testing.T) {
		code, _, hdr := get(t, r.url+"/x", "X-Forwarded-For", "1.2.3.4", "X-Forwarded-Proto", "https")
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		in := rec.get(t)
		if got := in.Get("X-Forwarded-For"); got != "1.2.3.4, 127.0.0.1" {
			t.Errorf("backend X-Forwarded-For %q, want %q", got, "1.2.3.4, 127.0.0.1")
		}
		if got := in.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("backend X-Forwarded-Proto %q, want http (a client's claim must not pass)", got)
		}
		if got, want := in.Get("X-Forwarded-Host"), strings.TrimPrefix(r.url, "http://"); got != want {
			t.Errorf("backend X-Forwarded-Host %q, want %q", got, want)
		}
		id := hdr.Values("X-Request-Id")
		if len(id) != 1 || !requestIDRe.MatchString(id[0]) {
			t.Fatalf("response X-Request-Id %q, want one 32-hex id", id)
		}
		if got := in.Get("X-Request-Id"); got != id[0] {
			t.Errorf("backend X-Request-Id %q, want the response's %q", got, id[0])
		}
		m := traceparentRe.FindStringSubmatch(in.Get("Traceparent"))
		if m == nil || m[1] == strings.Repeat("0", 32) || m[2] == strings.Repeat("0", 16) {
			t.Errorf("backend traceparent %q, want a new valid one", in.Get("Traceparent"))
		}
	})

	t.Run("kept", func(t *testing.T) {
		const (
			traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
			parentID = "00f067aa0ba902b7"
		)
		_, _, hdr := get(t, r.url+"/x", "X-Request-Id", "client-id-42", "Traceparent", "00-"+traceID+"-"+parentID+"-01")
		if got := hdr.Values("X-Request-Id"); len(got) != 1 || got[0] != "client-id-42" {
			t.Errorf("response X-Request-Id %q, want the client's", got)
		}
		in := rec.get(t)
		if got := in.Get("X-Request-Id"); got != "client-id-42" {
			t.Errorf("backend X-Request-Id %q, want the client's", got)
		}
		m := traceparentRe.FindStringSubmatch(in.Get("Traceparent"))
		if m == nil || m[1] != traceID || m[2] == parentID || m[2] == strings.Repeat("0", 16) || m[3] != "01" {
			t.Errorf("backend traceparent %q, want trace %s, a new parent id and flags 01", in.Get("Traceparent"), traceID)
		}
	})

	t.Run("invalid traceparent restarts the trace", func(t *testing.T) {
		bad := "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01"
		get(t, r.url+"/x", "Traceparent", bad)
		m := traceparentRe.FindStringSubmatch(rec.get(t).Get("Traceparent"))
		if m == nil || m[1] == strings.Repeat("0", 32) {
			t.Errorf("backend traceparent %q for invalid %q, want a new valid trace", rec.get(t).Get("Traceparent"), bad)
		}
	})
}

func TestProtocolRouting(t *testing.T) {
	echo := func(b *backend) {
		b.handle(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, b.name+" "+r.URL.RequestURI()) })
	}
	h, c, d, p := newBackend(t, "host"), newBackend(t, "canary"), newBackend(t, "delete"), newBackend(t, "prefix")
	for _, b := range []*backend{h, c, d, p} {
		echo(b)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
upstreams:
  h: { targets: [ { address: %s } ] }
  c: { targets: [ { address: %s } ] }
  d: { targets: [ { address: %s } ] }
  p: { targets: [ { address: %s } ] }
routes:
  - { name: byhost, match: { host: api.example.com }, upstream: h }
  - { name: canary, match: { headers: { X-Canary: "1" } }, upstream: c }
  - { name: deletes, match: { methods: [DELETE] }, upstream: d }
  - { name: v1, match: { path_prefix: /v1 }, upstream: p, strip_prefix: /v1 }
`, h.addr(), c.addr(), d.addr(), p.addr())
	r := startGateway(t, cfg)

	for _, tc := range []struct {
		name, method, path string
		hdr                []string
		want               string // backend answer; "" means 404 no_route
	}{
		{"strip prefix", "GET", "/v1/rides?x=1", nil, "prefix /rides?x=1"},
		{"strip to root", "GET", "/v1", nil, "prefix /"},
		{"prefix at a segment boundary only", "GET", "/v10/rides", nil, ""},
		{"host", "GET", "/anything", []string{"Host", "api.example.com"}, "host /anything"},
		{"host ignores port and case", "GET", "/v1/x", []string{"Host", "API.example.com:8443"}, "host /v1/x"},
		{"other host", "GET", "/anything", []string{"Host", "www.example.com"}, ""},
		{"header", "GET", "/v1/x", []string{"X-Canary", "1"}, "canary /v1/x"},
		{"header value must match", "GET", "/x", []string{"X-Canary", "2"}, ""},
		{"method", "DELETE", "/v1/x", nil, "delete /v1/x"},
		{"no route", "POST", "/nothing", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := do(t, tc.method, r.url+tc.path, nil, tc.hdr...)
			if tc.want != "" {
				if code != http.StatusOK || body != tc.want {
					t.Fatalf("got %d %q, want 200 %q", code, body, tc.want)
				}
				return
			}
			if code != http.StatusNotFound || e2eErrorCode(t, body) != "no_route" {
				t.Fatalf("got %d %q, want 404 no_route", code, body)
			}
			if !strings.Contains(body, hdr.Get("X-Request-Id")) {
				t.Errorf("no_route body %q lacks the request id %q", body, hdr.Get("X-Request-Id"))
			}
		})
	}
	for _, b := range []*backend{h, c, d, p} {
		if b.requests.Load() == 0 {
			t.Errorf("backend %s got no request", b.name)
		}
	}
}

// readLine reads one line or fails the test after d.
func readLine(t *testing.T, br *bufio.Reader, d time.Duration) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() { s, err := br.ReadString('\n'); ch <- res{s, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("reading stream: %v", r.err)
		}
		return r.s
	case <-time.After(d):
		t.Fatalf("no line within %v: the stream is buffered or stuck", d)
		return ""
	}
}

func TestProtocolSSEIsNotBuffered(t *testing.T) {
	b := newBackend(t, "b")
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())

	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := client.Get(r.url + "/events")
		ch <- result{resp, err}
	}()
	var resp *http.Response
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatal(res.err)
		}
		resp = res.resp
	case <-time.After(3 * time.Second):
		t.Fatal("no response headers while the backend holds the stream open: the proxy buffers")
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	if got := readLine(t, br, 3*time.Second); got != "data: one\n" {
		t.Fatalf("first event %q", got)
	}
	releaseOnce() // only now may the backend finish
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest of stream %q (err %v)", rest, err)
	}
}

func TestProtocolSSEOutlivesResponseTimeout(t *testing.T) {
	b := newBackend(t, "b")
	const events = 6
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range events {
			if i > 0 {
				select {
				case <-time.After(100 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			_ = rc.Flush()
		}
	})
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, upstream: []string{"timeout: {response: 200ms}"}}.String())

	start := time.Now()
	code, body, _ := get(t, r.url+"/events")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	var want strings.Builder
	for i := range events {
		fmt.Fprintf(&want, "data: %d\n\n", i)
	}
	if body != want.String() {
		t.Fatalf("after %v got stream %q, want all %d events: the response timeout cut a started stream", time.Since(start), body, events)
	}
}

// wsAccept is the Sec-WebSocket-Accept value for key (RFC 6455).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func TestProtocolWebSocketPassthrough(t *testing.T) {
	b := newBackend(t, "b")
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "expected an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + wsAccept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw.Reader) // echo until the gateway closes
	})
	// The response timeout must not cut an upgraded connection.
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, upstream: []string{"timeout: {response: 200ms}"}}.String())

	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(r.url, "http://"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake: %d, Upgrade %q; want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
	}
	echo := func(msg string) {
		t.Helper()
		// A masked text frame, as a browser would send; the proxy is
		// byte-transparent, so the backend echoes the same bytes.
		frame := []byte{0x81, 0x80 | byte(len(msg)), 1, 2, 3, 4}
		for i := range len(msg) {
			frame = append(frame, msg[i]^[]byte{1, 2, 3, 4}[i%4])
		}
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(frame))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reading echo of %q: %v", msg, err)
		}
		if string(got) != string(frame) {
			t.Fatalf("echo %x, want %x", got, frame)
		}
	}
	echo("hello")
	time.Sleep(300 * time.Millisecond) // past the 200ms response timeout
	echo("still open")
}

func TestProtocolH2C(t *testing.T) {
	b := newBackend(t, "b")
	r := startGateway(t, "h2c: true\n"+e2eConfig{addrs: []string{b.addr()}}.String())

	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get(r.url + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || string(body) != "b" {
		t.Fatalf("got %s %d %q, want HTTP/2.0 200 \"b\"", resp.Proto, resp.StatusCode, body)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key to
// dir and returns their paths and the parsed certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchyard test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestProtocolTLSNegotiatesHTTP2(t *testing.T) {
	b := newBackend(t, "b")
	var rec headerRecorder
	b.handle(rec.handler)
	certFile, keyFile, cert := selfSigned(t, t.TempDir())
	r := startGateway(t, fmt.Sprintf("tls: { cert: %s, key: %s }\n", certFile, keyFile)+e2eConfig{addrs: []string{b.addr()}}.String())

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, tc := range []struct {
		name  string
		h2    bool
		major int
	}{{"h2 via ALPN", true, 2}, {"HTTP/1.1", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			// Verifying against the generated root (rather than skipping
			// verification) also proves the configured certificate is served.
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: tc.h2}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			resp, err := c.Get("https://" + r.g.Addr().String() + "/x")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != tc.major || resp.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Fatalf("got %s %d %q, want HTTP/%d 200 \"ok\"", resp.Proto, resp.StatusCode, body, tc.major)
			}
			if got := rec.get(t).Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("backend X-Forwarded-Proto %q, want https", got)
			}
		})
	}
}

// hashBody answers with the SHA-256 of the request body.
func hashBody(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	if _, err := io.Copy(h, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
}

func TestProtocolLargeBodyStreamed(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	r := startGateway(t, e2eConfig{
		top:      []string{"server: { max_body_buffer: 65536 }"},
		addrs:    []string{a.addr(), b.addr()},
		upstream: []string{"retry: {attempts: 3, on: [503], base: 1ms}"},
	}.String())

	data := make([]byte, 5<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])

	t.Run("delivered intact", func(t *testing.T) {
		a.handle(hashBody)
		b.handle(hashBody)
		code, body, _ := do(t, http.MethodPost, r.url+"/upload", strings.NewReader(string(data)), "Idempotency-Key", "k1")
		if code != http.StatusOK || body != want {
			t.Fatalf("got %d %q, want 200 and sha256 %s", code, body, want)
		}
		if n := a.requests.Load() + b.requests.Load(); n != 1 {
			t.Fatalf("backend requests %d, want 1", n)
		}
	})

	t.Run("not retried once sent", func(t *testing.T) {
		before := a.requests.Load() + b.requests.Load()
		a.handle(status(http.StatusServiceUnavailable))
		b.handle(status(http.StatusServiceUnavailable))
		// Retry-safe (Idempotency-Key) but too large to keep: the body was
		// streamed and cannot be sent again.
		code, _, _ := do(t, http.MethodPost, r.url+"/upload", strings.NewReader(string(data)), "Idempotency-Key", "k2")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want the backend's 503", code)
		}
		if n := a.requests.Load() + b.requests.Load() - before; n != 1 {
			t.Fatalf("backend requests %d, want 1", n)
		}
	})
}
