package gateway

// End-to-end tests of what operators rely on: Prometheus metrics, the JSON
// access log and graceful shutdown.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is a backend handler that signals when a request arrives and holds
// it until the test opens the gate (or the request is cancelled).
type gate struct {
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{arrived: make(chan struct{}, 16), open: make(chan struct{})}
	t.Cleanup(g.release)
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) handler(w http.ResponseWriter, r *http.Request) {
	g.arrived <- struct{}{}
	select {
	case <-g.open:
		_, _ = io.WriteString(w, "done")
	case <-r.Context().Done():
	}
}

func (g *gate) waitArrived(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(3 * time.Second):
		t.Fatal("request did not reach the backend within 3s")
	}
}

type response struct {
	code int
	body string
	err  error
}

// goGet starts a GET through c and returns where its outcome arrives.
func goGet(c *http.Client, url string) <-chan response {
	ch := make(chan response, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			ch <- response{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- response{code: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

func TestOpsMetrics(t *testing.T) {
	b := newBackend(t, "b")
	g := newGate(t)
	b.handle(g.handler)
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())

	done := goGet(client, r.url+"/x")
	g.waitArrived(t)
	m := e2eMetrics(t, r)
	if v, ok := e2eMetric(t, m, "switchyard_target_inflight_requests", "upstream", "u", "target", b.addr()); !ok || v != 1 {
		t.Errorf("switchyard_target_inflight_requests during a request = %v (present %v), want 1", v, ok)
	}
	if v, ok := e2eMetric(t, m, "switchyard_route_inflight_requests", "route", "api"); !ok || v != 1 {
		t.Errorf("switchyard_route_inflight_requests during a request = %v (present %v), want 1", v, ok)
	}
	g.release()
	if res := <-done; res.err != nil || res.code != http.StatusOK {
		t.Fatalf("request: %d %v", res.code, res.err)
	}
	get(t, r.url+"/x")
	// The handler records the request after the response is written.
	eventually(t, 2*time.Second, "switchyard_requests_total to count both requests", func() bool {
		v, _ := e2eMetric(t, e2eMetrics(t, r), "switchyard_requests_total", "route", "api", "upstream", "u", "code", "200")
		return v == 2
	})
	m = e2eMetrics(t, r)
	if v, ok := e2eMetric(t, m, "switchyard_target_inflight_requests", "upstream", "u", "target", b.addr()); !ok || v != 0 {
		t.Errorf("switchyard_target_inflight_requests after the requests = %v (present %v), want 0", v, ok)
	}
	if v, _ := e2eMetric(t, m, "switchyard_upstream_attempts_total", "upstream", "u", "target", b.addr(), "code", "200"); v != 2 {
		t.Errorf("switchyard_upstream_attempts_total{code=200} = %v, want 2", v)
	}

}

// accessRecord is one access log line.
type accessRecord struct {
	Msg       string  `json:"msg"`
	RequestID string  `json:"request_id"`
	Method    string  `json:"method"`
	Path      string  `json:"path"`
	Route     string  `json:"route"`
	Upstream  string  `json:"upstream"`
	Target    string  `json:"target"`
	Status    int     `json:"status"`
	Attempts  int     `json:"attempts"`
	Duration  float64 `json:"duration_ms"`
}

// accessLine finds the access log record of request id.
func accessLine(t *testing.T, r *running, id string) (accessRecord, bool) {
	t.Helper()
	for line := range strings.Lines(r.logs.String()) {
		var rec accessRecord
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" && rec.RequestID == id {
			return rec, true
		}
	}
	return accessRecord{}, false
}

func TestOpsAccessLog(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	ff := newFailFirst(1, http.StatusServiceUnavailable)
	a.handle(ff.handler("a"))
	b.handle(ff.handler("b"))
	r := startGateway(t, e2eConfig{addrs: []string{a.addr(), b.addr()},
		upstream: []string{"retry: {attempts: 3, on: [503], base: 1ms}"}}.String())

	code, _, hdr := get(t, r.url+"/orders/7")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	answered := map[string]string{"a": a.addr(), "b": b.addr()}[hdr.Get("X-Backend")]
	id := hdr.Get("X-Request-Id")
	var rec accessRecord
	eventually(t, 2*time.Second, "the access log line of "+id, func() bool {
		var ok bool
		rec, ok = accessLine(t, r, id)
		return ok
	})
	want := accessRecord{Msg: "request", RequestID: id, Method: "GET", Path: "/orders/7", Route: "api",
		Upstream: "u", Target: answered, Status: 200, Attempts: 2, Duration: rec.Duration}
	if rec != want {
		t.Errorf("access log\n got %+v\nwant %+v", rec, want)
	}

}

func TestOpsGracefulShutdown(t *testing.T) {
	b := newBackend(t, "b")
	g := newGate(t)
	b.handle(g.handler)
	r := startGateway(t, "server: { shutdown_timeout: 5s }\n"+e2eConfig{addrs: []string{b.addr()}}.String())
	addr := r.g.Addr().String()

	// Its own client, so no idle connection of another test is involved.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	done := goGet(&http.Client{Transport: tr, Timeout: 10 * time.Second}, r.url+"/slow")
	g.waitArrived(t)

	r.cancel()
	waitListenerClosed(t, addr)
	select {
	case res := <-done:
		t.Fatalf("in-flight request ended before its backend answered: %+v", res)
	case err := <-r.done:
		r.done <- err // for the harness cleanup
		t.Fatalf("Run returned with a request in flight: %v", err)
	default:
	}

	g.release() // the backend answers after shutdown began
	select {
	case res := <-done:
		if res.err != nil || res.code != http.StatusOK || res.body != "done" {
			t.Fatalf("in-flight request: %d %q %v, want 200 \"done\"", res.code, res.body, res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not complete")
	}
	select {
	case err := <-r.done:
		r.done <- err // for the harness cleanup
		if err != nil {
			t.Fatalf("Run: %v, want a clean shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last request finished")
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("new connection accepted after shutdown")
	}
}

// waitListenerClosed waits (up to 2 s) until addr refuses connections.
func waitListenerClosed(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 2*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}
