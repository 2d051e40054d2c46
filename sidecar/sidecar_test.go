package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
)

func startRegistry(t testing.TB) (string, *discovery.Client) {
	t.Helper()
	r, err := registry.Open(registry.Config{ReapInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.Handler(r))
	t.Cleanup(func() { srv.Close(); r.Close() })
	c, err := discovery.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, c
}

// app is an httptest app that knows nothing of switchyard: it answers its
// name, records the traceparent it got and fails /healthz on demand.
type app struct {
	srv       *httptest.Server
	name      string
	unhealthy atomic.Bool
	mu        sync.Mutex
	traces    []string
	paths     []string
}

func newApp(t testing.TB, name string) *app {
	a := &app{name: name}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if a.unhealthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		a.mu.Lock()
		a.traces = append(a.traces, r.Header.Get("Traceparent"))
		a.paths = append(a.paths, r.URL.Path)
		a.mu.Unlock()
		fmt.Fprint(w, a.name)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// runSidecar starts a sidecar for cfgYAML (listeners on port 0) and
// returns it and its stop function (which waits for Run to return).
func runSidecar(t testing.TB, cfgYAML string) (*Sidecar, func() error) {
	t.Helper()
	cfg, err := ParseConfig([]byte(cfgYAML), t.Name()+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), AccessLogWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("sidecar stopped: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("sidecar not ready within 10s")
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

func sidecarYAML(service, appAddr, registryURL, extra string) string {
	return fmt.Sprintf(`service: %s
app: %s
listen: 127.0.0.1:0
outbound: 127.0.0.1:0
admin: 127.0.0.1:0
registry: %s
ttl: 1h
app_health: {path: /healthz, interval: 100ms, timeout: 100ms, healthy_after: 1, unhealthy_after: 3}
%s`, service, appAddr, registryURL, extra)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func instances(t testing.TB, c *discovery.Client, service string) []discovery.Instance {
	t.Helper()
	snap, err := c.Service(context.Background(), service, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return snap.Instances
}

func get(t *testing.T, url, traceparent string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestDiscoverableAndReachableThroughAnotherSidecar: an app behind a
// sidecar is registered under the sidecar's inbound address, and another
// app reaches it through its own sidecar's outbound port, the trace id
// carried end to end.
func TestDiscoverableAndReachableThroughAnotherSidecar(t *testing.T) {
	regURL, c := startRegistry(t)
	payments := newApp(t, "payments-1")
	sb, _ := runSidecar(t, sidecarYAML("payments", payments.addr(), regURL, ""))
	waitFor(t, "payments registered", func() bool { return len(instances(t, c, "payments")) == 1 })
	in := instances(t, c, "payments")[0]
	if in.Address != sb.Addr().String() {
		t.Fatalf("registered address %s, want the sidecar's inbound %s", in.Address, sb.Addr())
	}
	if in.HealthURL != "http://"+sb.Addr().String()+"/healthz" || in.TTL.Std() != time.Hour {
		t.Fatalf("registration %+v", in)
	}

	// The gateway finds it by name too.
	gcfg, err := gateway.ParseConfig([]byte("listen: 127.0.0.1:0\naccess_log: off\ndiscovery: {registry: "+regURL+"}\n"+
		"upstreams: {payments: {discover: payments}}\nroutes: [{upstream: payments}]\n"), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Config: gcfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stopGW := context.WithCancel(context.Background())
	gdone := make(chan error, 1)
	go func() { gdone <- gw.Run(gctx) }()
	defer func() { stopGW(); <-gdone }()
	<-gw.Ready()
	if code, body := get(t, "http://"+gw.Addr().String()+"/refund", ""); code != 200 || body != "payments-1" {
		t.Fatalf("through the gateway: %d %q", code, body)
	}

	rides := newApp(t, "rides-1")
	sa, _ := runSidecar(t, sidecarYAML("rides", rides.addr(), regURL, "dependencies: {payments: {}}\n"))
	// The app's inbound traffic goes through its sidecar.
	if code, body := get(t, "http://"+sa.Addr().String()+"/ride/7", ""); code != 200 || body != "rides-1" {
		t.Fatalf("inbound: %d %q", code, body)
	}
	// The app calls its dependency through the outbound port.
	const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	code, body := get(t, "http://"+sa.OutboundAddr().String()+"/payments/charge/9", trace)
	if code != 200 || body != "payments-1" {
		t.Fatalf("outbound: %d %q", code, body)
	}
	payments.mu.Lock()
	gotPath, gotTrace := payments.paths[len(payments.paths)-1], payments.traces[len(payments.traces)-1]
	payments.mu.Unlock()
	if gotPath != "/charge/9" {
		t.Fatalf("payments got path %q, want /charge/9 (prefix stripped)", gotPath)
	}
	if !strings.HasPrefix(gotTrace, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || gotTrace == trace {
		t.Fatalf("payments got traceparent %q, want a child span of trace 4bf92f35...", gotTrace)
	}
	// An unknown dependency is the outbound gateway's 404, not the app's.
	if code, _ := get(t, "http://"+sa.OutboundAddr().String()+"/search/x", ""); code != http.StatusNotFound {
		t.Fatalf("unknown dependency: %d, want 404", code)
	}

	// Admin: status, metrics of both sides, the gateways' admin APIs.
	admin := "http://" + sa.AdminAddr().String()
	// rides registers after its first passing check, on the agent's
	// goroutine: nothing above waited for it.
	waitFor(t, "rides registered", func() bool {
		_, body := get(t, admin+"/sidecar/status", "")
		return strings.Contains(body, `"registered":true`)
	})
	if code, body := get(t, admin+"/sidecar/status", ""); code != 200 || !strings.Contains(body, `"registered":true`) || !strings.Contains(body, `"app_healthy":true`) {
		t.Fatalf("status: %d %s", code, body)
	}
	_, metrics := get(t, admin+"/metrics", "")
	for _, want := range []string{`side="inbound"`, `side="outbound"`, "switchyard_sidecar_registered 1", "switchyard_sidecar_app_healthy 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, body := get(t, admin+"/outbound/admin/upstreams/payments", ""); code != 200 || !strings.Contains(body, sb.Addr().String()) {
		t.Fatalf("outbound admin: %d %s", code, body)
	}
}

// TestUnhealthyAppLeavesRegistry: a failing app health check deregisters
// the instance (the TTL is an hour, so only that can remove it), and a
// passing one registers it again.
func TestUnhealthyAppLeavesRegistry(t *testing.T) {
	regURL, c := startRegistry(t)
	a := newApp(t, "rides-1")
	s, _ := runSidecar(t, sidecarYAML("rides", a.addr(), regURL, ""))
	waitFor(t, "registered", func() bool { return len(instances(t, c, "rides")) == 1 })
	a.unhealthy.Store(true)
	waitFor(t, "deregistered", func() bool { return len(instances(t, c, "rides")) == 0 })
	if s.Registered() {
		t.Fatal("sidecar says registered")
	}
	a.unhealthy.Store(false)
	waitFor(t, "registered again", func() bool { return len(instances(t, c, "rides")) == 1 })
}

// TestUnhealthyAppExpiresWithoutRegistry: when the registry cannot be
// told, the heartbeats stop anyway and the instance expires within its
// TTL.
func TestHeartbeatsStopWhileUnhealthy(t *testing.T) {
	r, err := registry.Open(registry.Config{ReapInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var refuseDeletes atomic.Bool
	h := registry.Handler(r)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodDelete && refuseDeletes.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, req)
	}))
	defer srv.Close()
	c, _ := discovery.NewClient(srv.URL, nil)
	a := newApp(t, "rides-1")
	_, _ = runSidecar(t, strings.Replace(sidecarYAML("rides", a.addr(), srv.URL, ""), "ttl: 1h", "ttl: 300ms", 1))
	waitFor(t, "registered", func() bool { return len(instances(t, c, "rides")) == 1 })
	// Heartbeats keep it registered over several TTLs while healthy.
	first := instances(t, c, "rides")[0].Expires
	waitFor(t, "a heartbeat", func() bool {
		in := instances(t, c, "rides")
		return len(in) == 1 && in[0].Expires.After(first)
	})
	refuseDeletes.Store(true)
	a.unhealthy.Store(true)
	waitFor(t, "expired", func() bool { return len(instances(t, c, "rides")) == 0 })
}

// TestRetryAroundKilledInstance: app A calls B through its outbound port
// while one of B's two instances dies (its app first, then its sidecar):
// no request fails.
func TestRetryAroundKilledInstance(t *testing.T) {
	regURL, c := startRegistry(t)
	b1, b2 := newApp(t, "b1"), newApp(t, "b2")
	_, stopB1 := runSidecar(t, sidecarYAML("b", b1.addr(), regURL, ""))
	_, _ = runSidecar(t, sidecarYAML("b", b2.addr(), regURL, ""))
	waitFor(t, "two instances", func() bool { return len(instances(t, c, "b")) == 2 })
	sa, _ := runSidecar(t, sidecarYAML("a", newApp(t, "a").addr(), regURL, `dependencies:
  b:
    retry: {attempts: 3, on: [connect_failure, reset, gateway_error], budget: 100%, base: 1ms}
`))
	out := "http://" + sa.OutboundAddr().String() + "/b/x"
	seen := map[string]int{}
	call := func() {
		t.Helper()
		code, body := get(t, out, "")
		if code != 200 {
			t.Fatalf("request failed: %d %s", code, body)
		}
		seen[body]++
	}
	waitFor(t, "both instances answering", func() bool { call(); return seen["b1"] > 0 && seen["b2"] > 0 })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	failures := atomic.Int64{}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(out)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		})
	}
	b1.srv.CloseClientConnections()
	b1.srv.Close() // the app dies: its sidecar answers 502 until its check fails
	waitFor(t, "b1 deregistered", func() bool { return len(instances(t, c, "b")) == 1 })
	if err := stopB1(); err != nil { // then its sidecar goes too
		t.Fatal(err)
	}
	for range 20 {
		call()
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d requests failed while an instance died", n)
	}
}

// TestShutdownDeregisters: a stopping sidecar has deregistered its app
// by the time Run returns.
func TestShutdownDeregisters(t *testing.T) {
	regURL, c := startRegistry(t)
	a := newApp(t, "rides-1")
	s, stop := runSidecar(t, sidecarYAML("rides", a.addr(), regURL, ""))
	waitFor(t, "registered", func() bool { return s.Registered() })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if in := instances(t, c, "rides"); len(in) != 0 {
		t.Fatalf("still registered after shutdown: %+v", in)
	}
}

// The app's own SLOs: requests through the sidecar's inbound listener
// count, the app's 500s as bad, and the SLO's SLI and error budget are on
// the admin listener; an error names the SLO's key at its line.
func TestInboundSLOs(t *testing.T) {
	regURL, _ := startRegistry(t)
	appSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(appSrv.Close)
	s, _ := runSidecar(t, sidecarYAML("rides", strings.TrimPrefix(appSrv.URL, "http://"), regURL, `state_dir: `+t.TempDir()+`
slos:
  - {name: rides-availability, objective: 99%}
  - {name: rides-latency, kind: latency, threshold: 10s, objective: 99%}
`))
	for i := range 20 {
		path := "/ok"
		if i%4 == 0 {
			path = "/fail"
		}
		if code, _ := get(t, "http://"+s.Addr().String()+path, ""); (code == 500) != (path == "/fail") {
			t.Fatalf("%s: %d", path, code)
		}
	}
	type status struct {
		Name            string  `json:"name"`
		Route           string  `json:"route"`
		Good            uint64  `json:"good"`
		Total           uint64  `json:"total"`
		SLI             float64 `json:"sli"`
		BudgetRemaining float64 `json:"budget_remaining"`
	}
	var st status
	read := func(name string) {
		t.Helper()
		code, body := get(t, "http://"+s.AdminAddr().String()+"/inbound/admin/slos/"+name, "")
		if code != 200 {
			t.Fatalf("GET /inbound/admin/slos/%s: %d %s", name, code, body)
		}
		st = status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}
	waitFor(t, "the SLO to count 20 requests", func() bool { read("rides-availability"); return st.Total == 20 })
	if st.Route != "inbound" || st.SLI != 0.75 || st.BudgetRemaining >= 0 {
		t.Fatalf("availability SLO after 5 failures in 20: %+v", st)
	}
	read("rides-latency")
	if st.Total != 20 || st.SLI != 1 {
		t.Fatalf("latency SLO: %+v", st)
	}

	// The gateway admin paths without their prefix, the root and a wrong
	// method are problem details saying where things are.
	for _, c := range []struct {
		method, path string
		status       int
		code, says   string
	}{
		{"GET", "/admin/slos", 404, "not_found", "/inbound/admin/slos"},
		{"GET", "/", 404, "not_found", "/sidecar/status"},
		{"GET", "/nope?x=1", 404, "not_found", "no sidecar admin endpoint GET /nope"},
		{"POST", "/healthz", 405, "method_not_allowed", "expected GET or HEAD"},
		{"GET", "/outbound/admin/status", 404, "not_found", "/inbound/admin/..."},
		{"GET", "/inbound/admin/nope", 404, "not_found", "no admin endpoint GET /admin/nope"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+s.AdminAddr().String()+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p map[string]any
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(body, &p) != nil || p["code"] != c.code || p["status"] != float64(c.status) ||
			!strings.Contains(p["detail"].(string), c.says) {
			t.Errorf("%s %s: %d %s %s, want %d %s saying %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.code, c.says)
		}
	}

	_, err := ParseConfig([]byte("service: a\napp: 127.0.0.1:1\nslos:\n  - {name: x, route: api, objective: 99%}\n"), "sc.yaml")
	if err == nil || !strings.Contains(err.Error(), "sc.yaml:4:") || !strings.Contains(err.Error(), "slos[0].route") {
		t.Fatalf("error %v, want one located at sc.yaml:4 naming slos[0].route", err)
	}
}
