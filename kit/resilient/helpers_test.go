package resilient

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a real HTTP server on 127.0.0.1 that counts requests and open
// connections.
type backend struct {
	*httptest.Server
	hits atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]http.ConnState
}

func newBackend(t testing.TB, h func(n int64, w http.ResponseWriter, r *http.Request)) *backend {
	t.Helper()
	b := &backend{conns: make(map[net.Conn]http.ConnState)}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(b.hits.Add(1), w, r)
	}))
	b.Config.ConnState = func(c net.Conn, s http.ConnState) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if s == http.StateClosed || s == http.StateHijacked {
			delete(b.conns, c)
		} else {
			b.conns[c] = s
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

// openConns returns the connections the server has not seen closed.
func (b *backend) openConns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// newTransport returns a fresh transport, its idle connections closed at
// the end of the test.
func newTransport(t testing.TB) *http.Transport {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// leakCheck records the goroutine count now and returns a func that, after
// the test's calls, closes the transport's idle connections and waits until
// every backend connection is closed and the goroutine count is back to
// where it was: an attempt whose body was never closed holds its
// connection (and two transport goroutines) and fails the check.
func leakCheck(t *testing.T, tr *http.Transport, backends ...*backend) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		tr.CloseIdleConnections()
		for _, b := range backends {
			waitFor(t, "backend connections to close (a response body left open?)", func() bool {
				tr.CloseIdleConnections()
				return b.openConns() == 0
			})
		}
		waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	}
}

// get sends a GET through rt and returns status and body.
func get(t *testing.T, rt http.RoundTripper, url string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(rt, req)
}

func do(rt http.RoundTripper, req *http.Request) (int, string, error) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

var (
	errCanceled = context.Canceled
	errDeadline = context.DeadlineExceeded
)

func contextWithCancel(req *http.Request) (context.Context, context.CancelFunc) {
	return context.WithCancel(req.Context())
}

func mustGet(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// recv waits for ch to be closed (or to deliver), failing the test after 10
// seconds.
func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
