package proxy

import (
	"bufio"
	"context"
	"errors"
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

func newTestH1(headerTimeout time.Duration) *h1Transport {
	d := &net.Dialer{Timeout: time.Second}
	return newH1Transport(&http.Transport{DialContext: d.DialContext}, d, headerTimeout, 8)
}

func roundTrip(t *testing.T, tr http.RoundTripper, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestH1ReusesConnectionsAndHandlesBodies(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			fmt.Fprint(w, "part1-")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "part2")
			w.Header().Set("X-Sum", "42")
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			fmt.Fprint(w, "after hints")
		default:
			fmt.Fprint(w, "hello")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := newTestH1(0)
	defer tr.CloseIdleConnections()

	for i := 0; i < 5; i++ {
		if _, body := roundTrip(t, tr, "GET", srv.URL+"/"); body != "hello" {
			t.Fatalf("body %q", body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 sequential GETs used %d connections, want 1 (keep-alive)", n)
	}
	resp, body := roundTrip(t, tr, "GET", srv.URL+"/chunked")
	if body != "part1-part2" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("chunked: %q trailer %v", body, resp.Trailer)
	}
	resp, body = roundTrip(t, tr, "HEAD", srv.URL+"/")
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	resp, body = roundTrip(t, tr, "GET", srv.URL+"/hints")
	if resp.StatusCode != 200 || body != "after hints" {
		t.Fatalf("103 then 200: %d %q", resp.StatusCode, body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("all requests should share one connection, used %d", n)
	}
}

// A server that closes a keep-alive connection after each response (as an
// idle timeout would) makes the next GET fail on the stale connection; the
// transport retries it once on a new connection.
func TestH1RetriesStaleKeepAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				served.Add(1)
				// Claim keep-alive, then close anyway: the next request on
				// this connection finds it dead.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	tr := newTestH1(0)
	defer tr.CloseIdleConnections()
	for i := 0; i < 3; i++ {
		if _, body := roundTrip(t, tr, "GET", "http://"+ln.Addr().String()+"/"); body != "ok" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	if served.Load() != 3 {
		t.Fatalf("served %d", served.Load())
	}
}

func TestH1FallbackForBodiesAndNonIdempotent(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := newTestH1(0)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader("payload"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST payload" {
		t.Fatalf("POST with body: %q", b)
	}
	if _, body := roundTrip(t, tr, "POST", srv.URL+"/"); body != "POST " {
		t.Fatalf("bodiless POST: %q", body)
	}
	if _, body := roundTrip(t, tr, "GET", srv.URL+"/"); body != "GET " {
		t.Fatalf("GET: %q", body)
	}
	// The fallback transport keeps its own connection; the fast path opened one.
	if n := conns.Load(); n != 2 {
		t.Fatalf("connections %d, want 2 (one per transport)", n)
	}
}

func TestH1TimeoutsAndCancel(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	tr := newTestH1(50 * time.Millisecond)
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	_, err := tr.RoundTrip(req)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("header timeout: err %v, want a timeout", err)
	}

	tr = newTestH1(0)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
	done := make(chan error, 1)
	go func() { _, err := tr.RoundTrip(req); done <- err }()
	for i := 0; i < 2; i++ { // the header-timeout request, then this one
		select {
		case <-arrived:
		case <-done:
			t.Fatal("request ended before reaching the server")
		case <-time.After(5 * time.Second):
			t.Fatal("request did not reach the server within 5s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("cancelled request succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not abort the blocked read")
	}

	if _, err := tr.RoundTrip(mustReq(t, "GET", "http://"+deadAddrH1(t)+"/")); err == nil || !isDialError(err) {
		t.Fatalf("dial to a closed port: %v, want a dial error", err)
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func deadAddrH1(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestH1CloseKeepsNoNewIdleConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "x") }))
	defer srv.Close()
	tr := newTestH1(0)
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close() // the pool is retired while a response is still open
	io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.mu.Lock()
	n := len(tr.idle[req.URL.Host])
	tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d idle connections kept after Close", n)
	}
}

// When the server closes every idle keep-alive connection at once, the
// retry must dial instead of taking another dead idle connection.
func TestH1RetryDialsAfterAllIdleConnectionsDied(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived.Add(1)
			<-release
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	tr := newTestH1(0)
	defer tr.CloseIdleConnections()
	// Three concurrent requests leave three idle connections behind.
	done := make(chan struct{}, 3)
	for i := 0; i < 3; i++ {
		go func() {
			roundTrip(t, tr, "GET", srv.URL+"/hold")
			done <- struct{}{}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for arrived.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 requests reached the server within 5s", arrived.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for i := 0; i < 3; i++ {
		<-done
	}
	tr.mu.Lock()
	idle := len(tr.idle[srv.Listener.Addr().String()])
	tr.mu.Unlock()
	if idle != 3 {
		t.Fatalf("%d idle connections, want 3", idle)
	}
	srv.CloseClientConnections()
	if _, body := roundTrip(t, tr, "GET", srv.URL+"/"); body != "ok" {
		t.Fatalf("after the server dropped all idle connections: %q", body)
	}
}

// An idle connection the server closed is noticed before reuse (every
// reuse is probed), so the request is not sent on it at all.
func TestH1ProbesLongIdleConnections(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Config.IdleTimeout = 20 * time.Millisecond
	srv.Start()
	defer srv.Close()
	tr := newTestH1(0)
	defer tr.CloseIdleConnections()
	roundTrip(t, tr, "GET", srv.URL+"/")
	addr := srv.Listener.Addr().String()

	// Still open: the probe keeps it.
	c, reused, err := tr.get(context.Background(), addr, true)
	if err != nil || !reused {
		t.Fatalf("live idle connection not reused: reused %v err %v", reused, err)
	}
	tr.put(addr, c)

	deadline := time.Now().Add(5 * time.Second)
	for {
		c, reused, err := tr.get(context.Background(), addr, true)
		if err != nil {
			t.Fatal(err)
		}
		if !reused {
			c.nc.Close()
			return // the closed connection was detected and a new one dialed
		}
		if time.Now().After(deadline) {
			t.Fatal("a connection closed by the server's idle timeout kept being reused")
		}
		tr.put(addr, c)
		time.Sleep(10 * time.Millisecond)
	}
}

// A target that sends an endless response header gets an error after the
// 1 MiB limit instead of the gateway buffering it all.
func TestH1LimitsResponseHeader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for i := 0; i < 4096; i++ { // 4 MiB of header, never ended
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	}()
	tr := newTestH1(5 * time.Second)
	defer tr.Close()
	_, err = tr.RoundTrip(mustReq(t, "GET", "http://"+ln.Addr().String()+"/"))
	if !errors.Is(err, errResponseHeaderTooLarge) {
		t.Fatalf("RoundTrip error %v, want %v", err, errResponseHeaderTooLarge)
	}
}
