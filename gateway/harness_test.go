package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a real HTTP server on loopback that counts its requests and
// answers with its name unless a handler is given.
type backend struct {
	name     string
	srv      *httptest.Server
	requests atomic.Int64
	handler  atomic.Pointer[http.HandlerFunc]
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		if h := b.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		w.Header().Set("X-Backend", name)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// handle replaces the backend's behaviour.
func (b *backend) handle(h http.HandlerFunc) { b.handler.Store(&h) }

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// deadAddr returns a loopback address with nothing listening.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// running is a gateway started by startGateway.
type running struct {
	g       *Gateway
	url     string // proxy base URL
	admin   string // admin base URL
	cfgPath string
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testHTTP2, when set, is server.http2 of every gateway startGateway
// starts (TestNetHTTPHTTP2 runs the HTTP/2 tests again with net/http).
var testHTTP2 string

// startGateway writes cfg (listen/admin may use 127.0.0.1:0) to a file and
// runs a gateway on it until the test ends.
func startGateway(t testing.TB, cfg string) *running {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	g, err := New(Options{ConfigPath: path, Logger: slog.New(slog.NewJSONHandler(logs, nil)), AccessLogWriter: logs})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	if testHTTP2 != "" {
		g.current.Load().cfg.Server.HTTP2 = testHTTP2
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{g: g, cfgPath: path, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-r.done:
		t.Fatalf("gateway.Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not start within 5s")
	}
	r.url = "http://" + g.Addr().String()
	if a := g.AdminAddr(); a != nil {
		r.admin = "http://" + a.String()
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10s")
		}
	})
	return r
}

// rewrite replaces the config file (for reload tests).
func (r *running) rewrite(t *testing.T, cfg string) {
	t.Helper()
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

// get performs a request and returns status, body and headers.
func do(t *testing.T, method, url string, body io.Reader, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func get(t *testing.T, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	return do(t, http.MethodGet, url, nil, hdr...)
}

// eventually polls cond every 10ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pool renders a targets list for a config.
func targets(bs ...string) string {
	var b strings.Builder
	for _, a := range bs {
		fmt.Fprintf(&b, "      - { address: %s }\n", a)
	}
	return b.String()
}

func writeConfig(t *testing.T, path, cfg string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
