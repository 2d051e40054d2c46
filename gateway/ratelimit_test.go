package gateway

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRateLimitStrategies(t *testing.T) {
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "degraded=%s consumer=%s", r.Header.Get("X-Degraded"), r.Header.Get("X-Consumer"))
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
auth:
  consumers:
    - { name: alice, tier: premium, api_keys: [{key: alice-key-0123456789}] }
    - { name: bob, tier: free, api_keys: [{key: bob-key-0123456789}] }
    - { name: eve, tier: free, api_keys: [{key: eve-key-0123456789}] }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /drop }
    upstream: u
    rate_limit: { limits: [{ rate: 1/h, burst: 3 }] }
  - match: { path_prefix: /degrade }
    upstream: u
    rate_limit: { on_limit: degrade, limits: [{ rate: 1/h, burst: 2 }] }
  - match: { path_prefix: /queue }
    upstream: u
    rate_limit: { on_limit: queue, queue: { max_length: 10, max_wait: 2s }, limits: [{ rate: 20/s, burst: 1 }] }
  - match: { path_prefix: /tiers }
    upstream: u
    auth: [api_key]
    rate_limit:
      limits:
        - { key: consumer, rate: 1/h, burst: 2, tiers: [free] }
        - { key: tier, rate: 1/h, burst: 3, tiers: [free] }
  - match: { path_prefix: /quota }
    upstream: u
    rate_limit: { limits: [{ key: ip, quota: 2/day }] }
`, be.addr()))

	t.Run("drop", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			code, _, h := get(t, gw.url+"/drop")
			if code != 200 || h.Get("RateLimit-Limit") != "3" || h.Get("RateLimit-Remaining") != fmt.Sprint(3-i) {
				t.Fatalf("request %d: %d limit %q remaining %q", i, code, h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"))
			}
		}
		before := be.requests.Load()
		code, body, h := get(t, gw.url+"/drop")
		if code != 429 || !strings.Contains(body, `"code":"rate_limited"`) || h.Get("Retry-After") == "" ||
			h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-Reset") == "" {
			t.Fatalf("4th request: %d %s %v", code, body, h)
		}
		if be.requests.Load() != before {
			t.Fatal("a dropped request reached the backend")
		}
	})
	t.Run("degrade", func(t *testing.T) {
		var got []string
		for i := 0; i < 4; i++ {
			code, body, _ := get(t, gw.url+"/degrade", "X-Degraded", "1") // a client cannot self-degrade
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			got = append(got, strings.Fields(body)[0])
		}
		if strings.Join(got, ",") != "degraded=,degraded=,degraded=1,degraded=1" {
			t.Fatalf("degrade sequence %v", got)
		}
	})
	t.Run("queue", func(t *testing.T) {
		// Burst 1 at 20/s: 6 concurrent requests all pass, spaced 50ms
		// apart, so the last waits at least ~250ms.
		start := time.Now()
		var wg sync.WaitGroup
		codes := make([]int, 6)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _, _ = get(t, gw.url+"/queue")
			}()
		}
		wg.Wait()
		for i, c := range codes {
			if c != 200 {
				t.Fatalf("queued request %d: status %d", i, c)
			}
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Fatalf("6 requests at 20/s with burst 1 finished in %v: they were not queued", el)
		}
	})
	t.Run("per consumer and tier", func(t *testing.T) {
		key := func(k string) []string { return []string{"X-API-Key", k} }
		status := func(k string) int { c, _, _ := get(t, gw.url+"/tiers", key(k)...); return c }
		// bob: 2 of his own, then his consumer limit refuses.
		if a, b, c := status("bob-key-0123456789"), status("bob-key-0123456789"), status("bob-key-0123456789"); a != 200 || b != 200 || c != 429 {
			t.Fatalf("bob: %d %d %d", a, b, c)
		}
		// eve: the free tier's shared bucket (3) has 1 left after bob's 2.
		if a, b := status("eve-key-0123456789"), status("eve-key-0123456789"); a != 200 || b != 429 {
			t.Fatalf("eve: %d %d", a, b)
		}
		// alice is premium: no limit applies.
		for i := 0; i < 5; i++ {
			if c := status("alice-key-0123456789"); c != 200 {
				t.Fatalf("premium request %d: %d", i, c)
			}
		}
	})
	t.Run("quota", func(t *testing.T) {
		a, _, _ := get(t, gw.url+"/quota")
		b, _, _ := get(t, gw.url+"/quota")
		c, _, h := get(t, gw.url+"/quota")
		if a != 200 || b != 200 || c != 429 || h.Get("RateLimit-Limit") != "2" {
			t.Fatalf("quota: %d %d %d %v", a, b, c, h)
		}
	})
}

func TestMaxInFlight(t *testing.T) {
	be := newBackend(t, "be")
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  u: { targets: [{address: %s}], max_in_flight: 2 }
routes: [{ upstream: u }]
`, be.addr()))
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, gw.url+"/") }()
		<-started
	}
	code, body, _ := get(t, gw.url+"/")
	close(release)
	wg.Wait()
	if code != 503 || !strings.Contains(body, "upstream_busy") {
		t.Fatalf("third concurrent request: %d %s", code, body)
	}
	if c, _, _ := get(t, gw.url+"/"); c != 200 {
		t.Fatalf("after the in-flight ones finished: %d", c)
	}
}

func TestRateLimitSharedThroughRedis(t *testing.T) {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second)
	if err != nil {
		t.Skipf("redis not reachable at 127.0.0.1:6379 (%v): the shared-limit test needs it", err)
	}
	conn.Close()
	be := newBackend(t, "be")
	// A unique route name keeps this run's keys apart from earlier runs.
	name := fmt.Sprintf("shared%d", time.Now().UnixNano())
	cfg := fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
rate_limit_store: redis://127.0.0.1:6379/0
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - { name: %s, upstream: u, rate_limit: { limits: [{ rate: 1/h, burst: 4 }] } }
`, be.addr(), name)
	g1, g2 := startGateway(t, cfg), startGateway(t, cfg)
	var codes []int
	for i := 0; i < 6; i++ {
		gw := g1
		if i%2 == 1 {
			gw = g2
		}
		c, _, _ := get(t, gw.url+"/")
		codes = append(codes, c)
	}
	if fmt.Sprint(codes) != "[200 200 200 200 429 429]" {
		t.Fatalf("two replicas sharing burst 4: %v", codes)
	}
}

func TestRateLimitConfigErrors(t *testing.T) {
	path := t.TempDir() + "/g.yaml"
	writeConfig(t, path, `
listen: 127.0.0.1:0
rate_limit_store: memcached://x
upstreams:
  u: { targets: [{address: 127.0.0.1:1}] }
routes:
  - { upstream: u, rate_limit: { on_limit: explode, limits: [{ rate: 10/fortnight }, { key: user, rate: 1/s }, { rate: 1/s, quota: 1/day }] } }
`)
	_, err := New(Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "rate_limit_store") {
		t.Fatalf("err = %v", err)
	}
	writeConfig(t, path, strings.Replace(mustRead(t, path), "rate_limit_store: memcached://x\n", "", 1))
	_, err = New(Options{ConfigPath: path})
	for _, want := range []string{"routes[0].rate_limit.on_limit", "routes[0].rate_limit.limits[0].rate", "routes[0].rate_limit.limits[1].key", "routes[0].rate_limit.limits[2]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
