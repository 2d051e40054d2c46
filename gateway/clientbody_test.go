package gateway

// End-to-end tests of what a client can do to the gateway and its
// upstreams through the request itself: bad or slow request bodies,
// Connection-listed and underscore-spelled headers, CONNECT and the HTTP/2
// preface on an HTTP/1 listener.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the connections a backend accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// acceptBackend is a backend that counts accepted connections and
// answers with the size of the body it read.
type acceptBackend struct {
	srv      *httptest.Server
	accepts  atomic.Int64
	requests atomic.Int64
	lastBody atomic.Pointer[string]
}

func newAcceptBackend(t *testing.T) *acceptBackend {
	t.Helper()
	b := &acceptBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the gateway cut the request; nobody reads this answer
		}
		s := string(body)
		b.lastBody.Store(&s)
		fmt.Fprintf(w, "got %d bytes", len(body))
	}))
	b.srv.Listener = countingListener{b.srv.Listener, &b.accepts}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *acceptBackend) addr() string { return b.srv.Listener.Addr().String() }

// rawConn opens a TCP connection to the gateway.
func rawConn(t *testing.T, url string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn), bufio.NewReader(c)
}

// rawExchange writes req on a new connection, half-closes it when
// closeWrite, and reads one response.
func rawExchange(t *testing.T, url, req string, closeWrite bool) (int, string, http.Header) {
	t.Helper()
	c, br := rawConn(t, url)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = c.CloseWrite()
	}
	return readResponse(t, br)
}

func readResponse(t *testing.T, br *bufio.Reader) (int, string, http.Header) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the gateway's response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

const bodyLimitsConfig = `server: { max_body_buffer: 64 }`

// Bad request bodies are the client's fault: 400, and neither the circuit
// breakers nor outlier detection nor the target's failure count see them.
// Bodies up to max_body_buffer (64 here) are read ahead; the larger ones
// fail while the transport streams them to the target.
func TestClientBodyErrorsDoNotCountAgainstUpstream(t *testing.T) {
	b := newAcceptBackend(t)
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, top: []string{"access_log: off", bodyLimitsConfig},
		upstream: []string{
			"circuit_breaker: {failure_ratio: 0.5, min_requests: 5, window: 10s, open_for: 10s, half_open_probes: 1}",
			"outlier: {consecutive_failures: 3, ejection: 10s, max_ejected: 100%}",
			"retry: {attempts: 3, on: [connect_failure, timeout, reset, 5xx]}",
		}}.String())
	big := strings.Repeat("x", 100)
	bad := []struct {
		name       string
		req        string
		closeWrite bool
	}{
		{"malformed chunk size", "POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello", false},
		{"truncated content-length body", "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nhello", true},
		{"truncated chunked body", "PUT /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true},
		{"malformed chunk after the buffer (streamed)", "POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + big + "\r\nzz\r\n", false},
		{"truncated large body (streamed)", "PUT /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n" + big, true},
	}
	for i := range 25 {
		tc := bad[i%len(bad)]
		code, body, _ := rawExchange(t, r.url, tc.req, tc.closeWrite)
		if code != http.StatusBadRequest || e2eErrorCode(t, body) != "bad_request_body" {
			t.Fatalf("request %d (%s): got %d %s, want 400 bad_request_body", i, tc.name, code, body)
		}
	}
	eventually(t, 2*time.Second, "the bad requests to finish", func() bool { return r.g.handler.InFlight() == 0 })
	if code, body, _ := do(t, http.MethodPost, r.url+"/x", strings.NewReader("good")); code != http.StatusOK || body != "got 4 bytes" {
		t.Fatalf("good request after 25 bad bodies: got %d %q, want 200", code, body)
	}
	u := e2eUpstream(t, r, "u")
	tg := u.Targets[0]
	if u.Circuit != "closed" || tg.Circuit != "closed" {
		t.Errorf("circuit upstream %q target %q, want closed", u.Circuit, tg.Circuit)
	}
	if tg.Ejected || tg.Ejections != 0 || !tg.Available {
		t.Errorf("target ejected %v (ejections %d), available %v: bad client bodies ejected it", tg.Ejected, tg.Ejections, tg.Available)
	}
	if tg.Failures != 0 {
		t.Errorf("target failures = %d, want 0", tg.Failures)
	}
	m := e2eMetrics(t, r)
	for line := range strings.Lines(m) {
		if strings.HasPrefix(line, "switchyard_upstream_errors_total{") && !strings.HasSuffix(strings.TrimSpace(line), " 0") {
			t.Errorf("upstream error recorded for a client body error: %s", strings.TrimSpace(line))
		}
	}
}

// A client too slow to send its body gets 408 when the response timeout
// ends the request; no upstream connection was opened for it and the
// upstream's breaker is untouched.
func TestClientBodyTooSlowIs408AndOpensNoUpstreamConnection(t *testing.T) {
	b := newAcceptBackend(t)
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, top: []string{"access_log: off", bodyLimitsConfig},
		upstream: []string{
			"circuit_breaker: {failure_ratio: 0.5, min_requests: 2, window: 10s, open_for: 10s, half_open_probes: 1}",
			"outlier: {consecutive_failures: 2, ejection: 10s, max_ejected: 100%}",
			"timeout: {response: 300ms}",
		}}.String())
	for i := range 3 {
		c, br := rawConn(t, r.url)
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nhel"); err != nil {
			t.Fatal(err)
		}
		code, body, _ := readResponse(t, br) // the rest of the body never comes
		if code != http.StatusRequestTimeout || e2eErrorCode(t, body) != "request_body_timeout" {
			t.Fatalf("slow body %d: got %d %s, want 408 request_body_timeout", i, code, body)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("slow body %d: connection not closed after the 408 (read: %v)", i, err)
		}
	}
	if n := b.accepts.Load(); n != 0 {
		t.Fatalf("backend accepted %d connections for requests whose body never arrived", n)
	}
	// A body over max_body_buffer is streamed: the target is contacted,
	// but the client's stall is still the client's fault.
	for i := range 3 {
		c, br := rawConn(t, r.url)
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("x", 100)); err != nil {
			t.Fatal(err)
		}
		code, body, _ := readResponse(t, br)
		if code != http.StatusRequestTimeout || e2eErrorCode(t, body) != "request_body_timeout" {
			t.Fatalf("slow streamed body %d: got %d %s, want 408 request_body_timeout", i, code, body)
		}
	}
	eventually(t, 2*time.Second, "the slow requests to finish", func() bool { return r.g.handler.InFlight() == 0 })
	if code, body, _ := do(t, http.MethodPost, r.url+"/x", strings.NewReader("good")); code != http.StatusOK {
		t.Fatalf("good request after slow bodies: got %d %s", code, body)
	}
	u := e2eUpstream(t, r, "u")
	if tg := u.Targets[0]; u.Circuit != "closed" || tg.Circuit != "closed" || tg.Ejected || tg.Failures != 0 {
		t.Errorf("after slow clients: circuit %q/%q ejected %v failures %d, want closed/closed false 0",
			u.Circuit, tg.Circuit, tg.Ejected, tg.Failures)
	}
}

// The gateway reads a small body before it picks a target and dials: a
// client that trickles its body holds no upstream connection meanwhile.
func TestClientBodyReadAheadBeforeDial(t *testing.T) {
	b := newAcceptBackend(t)
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, top: []string{"access_log: off"}}.String())

	t.Run("expect 100-continue", func(t *testing.T) {
		// The gateway asks for the body (100 Continue) before it contacts
		// the upstream, so at that moment no connection may exist.
		before := b.accepts.Load()
		c, br := rawConn(t, r.url)
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("gateway answered %q before the body was sent, want 100 Continue (it went upstream first)", line)
		}
		if _, err := br.ReadString('\n'); err != nil { // the blank line after 100 Continue
			t.Fatal(err)
		}
		if n := b.accepts.Load() - before; n != 0 {
			t.Fatalf("upstream connections opened before the body arrived: %d", n)
		}
		if _, err := io.WriteString(c, "hello"); err != nil {
			t.Fatal(err)
		}
		if code, body, _ := readResponse(t, br); code != 200 || body != "got 5 bytes" {
			t.Fatalf("got %d %q, want 200 \"got 5 bytes\"", code, body)
		}
	})

	t.Run("trickled body", func(t *testing.T) {
		before, reqsBefore := b.accepts.Load(), b.requests.Load()
		c, br := rawConn(t, r.url)
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, "the request to reach the proxy", func() bool { return r.g.handler.InFlight() == 1 })
		for range 10 { // a few more chunks, each while the gateway waits for the rest
			if _, err := io.WriteString(c, "1\r\nx\r\n"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			if n := b.accepts.Load() - before; n != 0 {
				t.Fatalf("upstream connection opened while the body was still trickling in (%d)", n)
			}
		}
		if _, err := io.WriteString(c, "0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if code, body, _ := readResponse(t, br); code != 200 || body != "got 13 bytes" {
			t.Fatalf("got %d %q, want 200 \"got 13 bytes\"", code, body)
		}
		if n := b.requests.Load() - reqsBefore; n != 1 {
			t.Fatalf("backend got %d requests, want 1", n)
		}
	})
}

// When the total read-ahead budget is in use, further bodies are streamed
// to the upstream as before rather than buffered.
func TestClientBodyReadAheadTotalBudget(t *testing.T) {
	b := newAcceptBackend(t)
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, top: []string{"access_log: off",
		"server: { max_body_buffer: 64, max_body_buffer_total: 64 }"}}.String())

	// The first client takes the whole budget and trickles.
	c1, br1 := rawConn(t, r.url)
	if _, err := io.WriteString(c1, "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 64\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the first request to reach the proxy", func() bool { return r.g.handler.InFlight() == 1 })
	// The second is streamed: its upstream connection opens while its
	// body is still incomplete.
	c2, br2 := rawConn(t, r.url)
	if _, err := io.WriteString(c2, "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 6\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the streamed request to open an upstream connection", func() bool { return b.accepts.Load() == 1 })
	_, _ = io.WriteString(c2, "def")
	if code, body, _ := readResponse(t, br2); code != 200 || body != "got 6 bytes" {
		t.Fatalf("streamed request: got %d %q", code, body)
	}
	if n := b.requests.Load(); n != 1 {
		t.Fatalf("backend got %d requests while the buffered body is incomplete, want 1 (the streamed one)", n)
	}
	_, _ = io.WriteString(c1, strings.Repeat("x", 61))
	if code, body, _ := readResponse(t, br1); code != 200 || body != "got 64 bytes" {
		t.Fatalf("buffered request: got %d %q", code, body)
	}
	eventually(t, 2*time.Second, "the budget to be given back", func() bool { return r.g.handler.BufferedBodyBytes() == 0 })
}

// Headers the gateway sets reach the upstream whatever the client lists in
// its Connection header; the client's own fields it lists there do not
// (its X-Forwarded-For chain included: the gateway's entry remains).
func TestConnectionHeaderCannotStripGatewayHeaders(t *testing.T) {
	rec := &headerRecorder{}
	be := newBackend(t, "be")
	be.handle(rec.handler)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
auth:
  consumers:
    - { name: alice, tier: premium, scopes: [rides:read], api_keys: [{key: alice-key-0123456789}] }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /degrade }
    upstream: u
    rate_limit: { on_limit: degrade, limits: [{ rate: 1/h, burst: 1 }] }
  - match: { path_prefix: /transformed }
    upstream: u
    transform: { request: { headers: { set: { X-Api-Version: "2" } } } }
  - upstream: u
    auth: [api_key]
`, be.addr()))
	conn := "X-Consumer, X-Consumer-Tier, X-Scopes, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, Traceparent, X-Client-Hop"
	code, body, _ := get(t, gw.url+"/rides", "X-Api-Key", "alice-key-0123456789", "Connection", conn,
		"X-Forwarded-For", "203.0.113.7", "X-Client-Hop", "secret", "X-Request-Id", "req-1")
	if code != 200 {
		t.Fatalf("got %d %s", code, body)
	}
	h := rec.get(t)
	for k, want := range map[string]string{"X-Consumer": "alice", "X-Consumer-Tier": "premium", "X-Scopes": "rides:read",
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Request-Id": "req-1"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q upstream, want %q (Connection: %s must not strip it)", k, got, want, conn)
		}
	}
	for _, k := range []string{"X-Forwarded-Host", "Traceparent"} {
		if h.Get(k) == "" {
			t.Errorf("%s missing upstream (Connection: %s must not strip it)", k, conn)
		}
	}
	if v := h.Get("X-Client-Hop"); v != "" {
		t.Errorf("X-Client-Hop = %q upstream: a header the client listed in Connection must not be forwarded", v)
	}
	if v := h.Get("Connection"); v != "" {
		t.Errorf("Connection = %q forwarded upstream", v)
	}

	// X-Degraded, set by the rate limiter, too.
	for i := range 2 {
		if code, body, _ := get(t, gw.url+"/degrade", "Connection", "X-Degraded"); code != 200 {
			t.Fatalf("degrade %d: %d %s", i, code, body)
		}
	}
	if v := rec.get(t).Get("X-Degraded"); v != "1" {
		t.Errorf("X-Degraded = %q upstream after the limit, want 1 despite Connection: X-Degraded", v)
	}

	// And headers a request transform sets.
	if code, body, _ := get(t, gw.url+"/transformed", "Connection", "X-Api-Version", "X-Api-Version", "2"); code != 200 {
		t.Fatalf("transformed: %d %s", code, body)
	}
	if v := rec.get(t).Values("X-Api-Version"); len(v) != 1 || v[0] != "2" {
		t.Errorf("X-Api-Version = %q upstream, want the transform's [2] despite Connection: X-Api-Version", v)
	}
}

// Underscore spellings of the gateway's headers (which many backends read
// as the dashed name) never reach the upstream; neither does a client's
// own X-Degraded.
func TestUnderscoreSpellingsOfGatewayHeadersAreDropped(t *testing.T) {
	rec := &headerRecorder{}
	be := newBackend(t, "be")
	be.handle(rec.handler)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
auth:
  consumers:
    - { name: bob, tier: free, scopes: [rides:read], api_keys: [{key: bob-key-0123456789}] }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /open }
    upstream: u
  - upstream: u
    auth: [api_key]
`, be.addr()))
	spoof := []string{"X_Consumer", "admin", "X_Consumer_Tier", "premium", "X_Scopes", "admin:all",
		"X_Forwarded_For", "10.0.0.1", "X_Forwarded_Host", "evil.example", "X_Forwarded_Proto", "https",
		"X_Degraded", "1", "X_Request_Id", "spoofed", "X-Degraded", "1"}
	for _, path := range []string{"/rides", "/open"} {
		hdr := append([]string{"X-Api-Key", "bob-key-0123456789", "X-Custom_Ok", "kept"}, spoof...)
		// Go's client would canonicalize; send the names as written.
		c, br := rawConn(t, gw.url)
		var req strings.Builder
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: gw\r\n", path)
		for i := 0; i+1 < len(hdr); i += 2 {
			fmt.Fprintf(&req, "%s: %s\r\n", hdr[i], hdr[i+1])
		}
		req.WriteString("\r\n")
		if _, err := io.WriteString(c, req.String()); err != nil {
			t.Fatal(err)
		}
		if code, body, _ := readResponse(t, br); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		h := rec.get(t)
		for k, v := range h {
			if strings.Contains(k, "_") && !strings.EqualFold(k, "X-Custom_Ok") {
				t.Errorf("%s: %s: %q reached the upstream", path, k, v)
			}
		}
		if v := h.Get("X-Degraded"); v != "" {
			t.Errorf("%s: client's X-Degraded = %q reached the upstream", path, v)
		}
		if v := h.Get("X-Forwarded-For"); v != "127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For = %q, want 127.0.0.1", path, v)
		}
		if path == "/rides" && h.Get("X-Consumer") != "bob" {
			t.Errorf("%s: X-Consumer = %q, want bob", path, h.Get("X-Consumer"))
		}
		if h.Get("X-Custom_Ok") != "kept" {
			t.Errorf("%s: unrelated header X-Custom_Ok dropped: %v", path, h)
		}
	}
}

// CONNECT and the HTTP/2 connection preface are not proxied on HTTP/1
// listeners, with either HTTP/1 server, whichever the HTTP/2 server (a
// plain listener without h2c serves no HTTP/2: with http1: net/http and
// http2: switchyard it did, prior knowledge h2c nobody asked for).
func TestConnectAndHTTP2PrefaceAreRefused(t *testing.T) {
	for _, server := range []string{"switchyard", "net/http", "net/http, http2: switchyard", "net/http, http2: net/http"} {
		t.Run(strings.NewReplacer("/", "_", ", ", "_", ": ", "_").Replace(server), func(t *testing.T) {
			b := newAcceptBackend(t)
			r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, top: []string{"access_log: off",
				"server: { http1: " + server + " }"}}.String())
			code, body, hdr := rawExchange(t, r.url, "CONNECT "+b.addr()+" HTTP/1.1\r\nHost: "+b.addr()+"\r\n\r\n", false)
			if code != http.StatusMethodNotAllowed || hdr.Get("Allow") == "" || strings.Contains(hdr.Get("Allow"), "CONNECT") {
				t.Errorf("CONNECT: got %d Allow %q %s, want 405 with an Allow without CONNECT", code, hdr.Get("Allow"), body)
			}
			code, body, _ = rawExchange(t, r.url, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false)
			// The own server refuses the version itself (505); net/http
			// passes it to the gateway, which refuses the method (400).
			if code != http.StatusBadRequest && code != http.StatusHTTPVersionNotSupported {
				t.Errorf("PRI * HTTP/2.0: got %d %s, want 400 or 505", code, body)
			}
			if n := b.accepts.Load(); n != 0 {
				t.Errorf("backend accepted %d connections", n)
			}
		})
	}
}
