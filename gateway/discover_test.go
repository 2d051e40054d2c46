package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
)

// startRegistry serves an in-memory registry on 127.0.0.1:0 and returns
// its URL and a client.
func startRegistry(t testing.TB) (string, *discovery.Client) {
	t.Helper()
	r, err := registry.Open(registry.Config{ReapInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.Handler(r))
	t.Cleanup(func() { r.Close(); srv.Close() })
	c, err := discovery.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, c
}

func discoverConfig(registryURL string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
discovery: {registry: %s}
upstreams:
  rides:
    discover: rides
    retry: {attempts: 3, on: [connect_failure, reset, gateway_error], budget: 100%%, base: 1ms}
    outlier: {consecutive_failures: 2}
    circuit_breaker: {}
routes: [{upstream: rides}]
`, registryURL)
}

// adminTargets returns the gateway's view of upstream rides: address →
// target state.
func adminTargets(t *testing.T, gw *running) map[string]admin.Target {
	t.Helper()
	out := map[string]admin.Target{}
	for _, u := range gw.g.Snapshot().Upstreams {
		if u.Name == "rides" {
			for _, tg := range u.Targets {
				out[tg.Address] = tg
			}
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// TestDiscoveredUpstream: instances joining, draining and leaving the
// registry show up in the gateway without a reload; a killed instance
// (no deregistration) is routed around with no failed idempotent request
// and is gone within one heartbeat TTL.
func TestDiscoveredUpstream(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	a, b, cb := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	ttl := time.Second
	register := func(id string, be *backend) *discovery.Lease {
		t.Helper()
		l, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: id, Address: be.addr(), TTL: config.Duration(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	la := register("a", a)
	lb := register("b", b)
	defer lb.Close(ctx)

	gw := startGateway(t, discoverConfig(regURL))
	// Started with the registry's instances already in place.
	if got := adminTargets(t, gw); len(got) != 2 {
		t.Fatalf("targets at start: %v", got)
	}
	seen := func(name string) bool {
		for range 6 {
			if _, body, _ := get(t, gw.url+"/"); body == name {
				return true
			}
		}
		return false
	}

	// Join.
	lc := register("c", cb)
	d := waitUntil(t, "c routable", func() bool { return seen("c") })
	t.Logf("join: c routable %v after registering", d)

	// Drain c: no new requests.
	if err := lc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "c draining in the gateway", func() bool { return adminTargets(t, gw)[cb.addr()].Draining })
	before := cb.requests.Load()
	for range 20 {
		if code, _, _ := get(t, gw.url+"/"); code != 200 {
			t.Fatalf("status %d while c drains", code)
		}
	}
	if n := cb.requests.Load() - before; n != 0 {
		t.Fatalf("draining c got %d requests", n)
	}
	// Leave gracefully.
	if err := lc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "c gone", func() bool { _, ok := adminTargets(t, gw)[cb.addr()]; return !ok })

	// Kill a under load: its server dies and its heartbeats stop.
	var failed, served atomic.Int64
	var errs sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(gw.url + "/")
				if err != nil {
					failed.Add(1)
					errs.Store(err.Error(), true)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					errs.Store(fmt.Sprintf("%d %s", resp.StatusCode, body), true)
					continue
				}
				served.Add(1)
			}
		})
	}
	waitUntil(t, "traffic", func() bool { return served.Load() > 50 })
	killed := time.Now()
	la.Abandon()
	a.srv.CloseClientConnections()
	a.srv.Close()
	waitUntil(t, "a removed from the gateway", func() bool { _, ok := adminTargets(t, gw)[a.addr()]; return !ok })
	gone := time.Since(killed)
	mark := served.Load()
	waitUntil(t, "traffic after the removal", func() bool { return served.Load() > mark+50 })
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		var msgs []string
		errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Fatalf("%d idempotent requests failed: %v", failed.Load(), msgs)
	}
	t.Logf("kill: a removed %v after the kill (TTL %v); %d requests, none failed", gone, ttl, served.Load())
	if got := adminTargets(t, gw); len(got) != 1 || got[b.addr()].Address == "" {
		t.Fatalf("targets after the kill: %v", got)
	}
	if !strings.Contains(gw.logs.String(), "discovered targets changed") {
		t.Error("no log of the target changes")
	}
}

// TestDiscoveredUpstreamSurvivesReload: a config reload keeps the
// discovered targets (and their drain state) without waiting for the
// registry.
func TestDiscoveredUpstreamSurvivesReload(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	a := newBackend(t, "a")
	l, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "a", Address: a.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	gw := startGateway(t, discoverConfig(regURL))
	if err := gw.g.SetDraining("rides", a.addr(), true); err != nil {
		t.Fatal(err)
	}
	if err := gw.g.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	got := adminTargets(t, gw)
	if tg, ok := got[a.addr()]; !ok || !tg.Draining {
		t.Fatalf("after reload: %+v", got)
	}
	if err := gw.g.SetDraining("rides", a.addr(), false); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, gw.url+"/"); code != 200 || body != "a" {
		t.Fatalf("after undrain: %d %s", code, body)
	}
}

func TestDiscoveryConfigErrors(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{"listen: 127.0.0.1:0\nupstreams:\n  rides: {discover: rides}\nroutes: [{upstream: rides}]\n",
			"upstreams.rides.discover: upstream discovers service \"rides\" but the config has no top-level discovery section"},
		{"listen: 127.0.0.1:0\ndiscovery: {registry: http://127.0.0.1:8500}\nupstreams:\n  rides: {discover: Rides}\nroutes: [{upstream: rides}]\n",
			"upstreams.rides.discover: service name \"Rides\""},
		{"listen: 127.0.0.1:0\ndiscovery: {registry: http://127.0.0.1:8500}\nupstreams:\n  rides: {discover: rides, targets: [{address: 127.0.0.1:1}]}\nroutes: [{upstream: rides}]\n",
			"upstreams.rides.discover: an upstream has either targets or discover, not both"},
		{"listen: 127.0.0.1:0\ndiscovery: {registry: 127.0.0.1:8500}\nupstreams:\n  rides: {discover: rides}\nroutes: [{upstream: rides}]\n",
			"discovery.registry: registry URL \"127.0.0.1:8500\""},
		{"listen: 127.0.0.1:0\ndiscovery: {}\nupstreams:\n  rides: {discover: rides}\nroutes: [{upstream: rides}]\n",
			"discovery.registry: missing"},
		{"listen: 127.0.0.1:0\ndiscovery: {registry: http://h:1, regsitry: x}\nupstreams:\n  rides: {discover: rides}\nroutes: [{upstream: rides}]\n",
			"regsitry"},
		{"listen: 127.0.0.1:0\ndiscovery: {registry: http://h:1, wait: 1h}\nupstreams:\n  rides: {discover: rides}\nroutes: [{upstream: rides}]\n",
			"discovery.wait"},
		{"listen: 127.0.0.1:0\nupstreams:\n  rides: {}\nroutes: [{upstream: rides}]\n",
			"or discover: SERVICE"},
	} {
		_, err := ParseConfig([]byte(tc.cfg), "gw.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config:\n%s\nerror %v\nwant it to contain %q", tc.cfg, err, tc.want)
		}
	}
}

// BenchmarkDiscoveryRegisterToRoutable measures how long an instance
// takes from its registration to its first request through the gateway
// (registry long-poll answered, pool rebuilt, a request landing on it).
// Each round registers a new instance beside the current one, sends
// requests until one reaches it, then deregisters the old one and waits
// for the gateway to drop it.
func BenchmarkDiscoveryRegisterToRoutable(b *testing.B) {
	b.ReportAllocs()
	regURL, c := startRegistry(b)
	ctx := context.Background()
	backends := make([]*httptest.Server, 2)
	for i := range backends {
		name := fmt.Sprint(i)
		backends[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		defer backends[i].Close()
	}
	addr := func(i int) string { return strings.TrimPrefix(backends[i%2].URL, "http://") }
	leases := map[int]string{}
	reg := func(i int) {
		in, err := c.RegisterOnce(ctx, discovery.Registration{Service: "rides", ID: fmt.Sprint("i", i), Address: addr(i), TTL: config.Duration(time.Minute)})
		leases[i] = in.Lease
		if err != nil {
			b.Fatal(err)
		}
	}
	reg(0)
	path := b.TempDir() + "/gateway.yaml"
	if err := os.WriteFile(path, []byte(discoverConfig(regURL)), 0o644); err != nil {
		b.Fatal(err)
	}
	g, err := New(Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler), AccessLogWriter: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	<-g.Ready()
	url := "http://" + g.Addr().String() + "/"
	targets := func() int { return len(g.Snapshot().Upstreams[0].Targets) }
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer hc.CloseIdleConnections()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		start := time.Now()
		reg(i)
		want := fmt.Sprint(i % 2)
		for {
			resp, err := hc.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) == want {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatal("instance not routable within 10s")
			}
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err := c.WithLease(leases[i-1]).Deregister(ctx, "rides", fmt.Sprint("i", i-1)); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); targets() != 1; {
			if time.Now().After(deadline) {
				b.Fatal("old instance not dropped within 10s")
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// TestDiscoveredUpstreamHealthChecks: the upstream's active health checks
// run over the discovered targets, including ones that join later: a
// registered instance that fails its checks gets no traffic.
func TestDiscoveredUpstreamHealthChecks(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	good, sick := newBackend(t, "good"), newBackend(t, "sick")
	sick.handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	if _, err := c.RegisterOnce(ctx, discovery.Registration{Service: "rides", ID: "good", Address: good.addr()}); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(discoverConfig(regURL), "    circuit_breaker: {}\n",
		"    circuit_breaker: {}\n    health_check: {path: /healthz, interval: 300ms, timeout: 300ms, unhealthy_after: 2, healthy_after: 1}\n", 1)
	gw := startGateway(t, cfg)
	if _, err := c.RegisterOnce(ctx, discovery.Registration{Service: "rides", ID: "sick", Address: sick.addr()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the joined instance checked and found unhealthy", func() bool {
		tg, ok := adminTargets(t, gw)[sick.addr()]
		return ok && !tg.Healthy
	})
	if !adminTargets(t, gw)[good.addr()].Healthy {
		t.Fatal("good instance unhealthy")
	}
	for range 20 {
		if code, body, _ := get(t, gw.url+"/"); code != 200 || body != "good" {
			t.Fatalf("got %d %q, want the healthy instance", code, body)
		}
	}
}

// TestDiscoveryAcrossRegistryRestart: while the registry is down the
// gateway keeps routing to the instances it knows; once it is back (same
// data directory, same address) the watch resumes and a new instance is
// routed to.
func TestDiscoveryAcrossRegistryRestart(t *testing.T) {
	listen, data := deadAddr(t), t.TempDir()
	serve := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- registry.Serve(ctx, registry.ServeOptions{Listen: listen, Config: registry.Config{Dir: data, ReapInterval: 10 * time.Millisecond},
				Ready: func(net.Addr) { close(ready) }})
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("registry: %v", err)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("registry stopped with %v", err)
			}
		}
	}
	stop := serve()
	c, err := discovery.NewClient("http://"+listen, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := newBackend(t, "a"), newBackend(t, "b")
	if _, err := c.RegisterOnce(ctx, discovery.Registration{Service: "rides", ID: "a", Address: a.addr(), TTL: config.Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, discoverConfig("http://"+listen))
	stop()
	for range 10 {
		if code, body, _ := get(t, gw.url+"/"); code != 200 || body != "a" {
			t.Fatalf("registry down: %d %q", code, body)
		}
	}
	stop = serve()
	defer stop()
	if _, err := c.RegisterOnce(ctx, discovery.Registration{Service: "rides", ID: "b", Address: b.addr(), TTL: config.Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b routable after the registry restart", func() bool {
		_, ok := adminTargets(t, gw)[b.addr()]
		return ok && len(adminTargets(t, gw)) == 2
	})
}

// TestDiscoveredUpstreamHealthURL: a discovered instance's health_url
// gives the path (and query) of its active HTTP check, which wins over
// the upstream's health_check.path; its host never counts: the check
// always goes to the instance's registered address, so a health_url
// naming another host (a Redis port, the cloud metadata address) makes
// the gateway request nothing there (SSRF). An instance without a
// health_url is checked at the upstream's path.
func TestDiscoveredUpstreamHealthURL(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	var decoyHits atomic.Int64
	decoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { decoyHits.Add(1) }))
	t.Cleanup(decoy.Close)
	decoyAddr := decoy.Listener.Addr().String()

	// a answers its own health path (with its query) and fails the
	// upstream's; b fails its own and passes the upstream's; c has no
	// health_url and answers the upstream's path only.
	a, b, cc := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	var aChecks, cChecks atomic.Int64
	a.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RequestURI() == "/ready?deep=1" {
			aChecks.Add(1)
			return
		}
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "a")
	})
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/steal" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "b")
	})
	cc.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			cChecks.Add(1)
			return
		}
		if r.URL.Path != "/" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "c")
	})
	cfg := strings.Replace(discoverConfig(regURL), "    circuit_breaker: {}\n",
		"    circuit_breaker: {}\n    health_check: {path: /healthz, interval: 200ms, timeout: 200ms, unhealthy_after: 2, healthy_after: 1}\n", 1)
	gw := startGateway(t, cfg)
	for _, reg := range []discovery.Registration{
		{Service: "rides", ID: "a", Address: a.addr(), HealthURL: "http://169.254.169.254/ready?deep=1"},
		{Service: "rides", ID: "b", Address: b.addr(), HealthURL: "https://" + decoyAddr + "/steal"},
		{Service: "rides", ID: "c", Address: cc.addr()},
	} {
		if _, err := c.RegisterOnce(ctx, reg); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "b checked at its health path on its own address and found unhealthy", func() bool {
		tg, ok := adminTargets(t, gw)[b.addr()]
		return ok && !tg.Healthy
	})
	waitUntil(t, "a and c checked twice each", func() bool { return aChecks.Load() >= 2 && cChecks.Load() >= 2 })
	ts := adminTargets(t, gw)
	if !ts[a.addr()].Healthy || !ts[cc.addr()].Healthy {
		t.Fatalf("a healthy %v, c healthy %v: want both (each passes its own check)", ts[a.addr()].Healthy, ts[cc.addr()].Healthy)
	}
	if n := decoyHits.Load(); n != 0 {
		t.Fatalf("the host a health_url named got %d requests, want none", n)
	}
	for range 20 {
		if code, body, _ := get(t, gw.url+"/"); code != 200 || (body != "a" && body != "c") {
			t.Fatalf("got %d %q, want a healthy instance (a or c)", code, body)
		}
	}
}
