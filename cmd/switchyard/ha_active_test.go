package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
)

// TestHAActiveActive runs two gateway processes side by side, sharing a
// Redis-backed rate limit and taking their upstream from one registry,
// and a client that knows both addresses (as a client resolving a name
// with two A records does) and tries the other on a refused connection.
// It checks the limit is global (burst allowed across both, not twice the
// burst), that both follow the registry, and counts the requests that
// fail when one gateway is killed with SIGKILL.
func TestHAActiveActive(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second); err != nil {
		t.Skipf("skipped: Redis not reachable at 127.0.0.1:6379 (%v); CI starts it", err)
	} else {
		c.Close()
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(registry.Config{ReapInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	regSrv := httptest.NewServer(registry.Handler(reg))
	t.Cleanup(func() { regSrv.Close(); reg.Close() })
	dc, err := discovery.NewClient(regSrv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hits [3]atomic.Int64
	register := func(i int) {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			fmt.Fprintf(w, "backend-%d\n", i)
		}))
		t.Cleanup(be.Close)
		if _, err := dc.RegisterOnce(context.Background(), discovery.Registration{Service: "hello", ID: fmt.Sprint("be", i),
			Address: be.Listener.Addr().String(), TTL: config.Duration(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	register(0)
	register(1)

	run := fmt.Sprint(time.Now().UnixNano()) // the rate limit's key: fresh every run
	const burst = 20
	var gws [2]*netnsProc
	var addrs [2]string
	for i := range gws {
		addrs[i] = freeAddr(t)
		cfg := fmt.Sprintf(`listen: %s
admin: %s
access_log: off
rate_limit_store: redis://127.0.0.1:6379/0
discovery: {registry: %s, initial_wait: 5s}
upstreams:
  hello: {discover: hello}
routes:
  - match: {path_prefix: /limited}
    upstream: hello
    rate_limit: {on_limit: drop, limits: [{key: "header:X-Run", rate: 1/h, burst: %d}]}
  - upstream: hello
`, addrs[i], freeAddr(t), regSrv.URL, burst)
		path := filepath.Join(t.TempDir(), "gw.yaml")
		os.WriteFile(path, []byte(cfg), 0o644)
		gws[i] = startInNetns(t, "", fmt.Sprint("gateway ", i), []string{"SWITCHYARD_MAIN=1"}, exe, "gateway", "--config", path)
	}
	for i, g := range gws {
		waitFor(t, fmt.Sprint("gateway ", i), 60*time.Second, func() bool { return strings.Contains(g.output(), "gateway listening") })
	}

	direct := &http.Client{Timeout: 5 * time.Second}
	get := func(addr, path string, hdr ...string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := direct.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Shared discovery: both gateways reach both registered instances,
	// and an instance registered later reaches both.
	for i, a := range addrs {
		seen := map[string]bool{}
		waitFor(t, fmt.Sprintf("gateway %d to reach both instances", i), 10*time.Second, func() bool {
			_, body := get(a, "/")
			seen[strings.TrimSpace(body)] = true
			return seen["backend-0"] && seen["backend-1"]
		})
	}
	register(2)
	for i, a := range addrs {
		waitFor(t, fmt.Sprintf("gateway %d to reach the instance registered later", i), 10*time.Second, func() bool {
			_, body := get(a, "/")
			return strings.TrimSpace(body) == "backend-2"
		})
	}

	// Shared rate limit: 2×burst requests alternating between the
	// gateways; with one Redis behind both exactly burst get through.
	allowed := [2]int{}
	for n := 0; n < 2*burst; n++ {
		code, body := get(addrs[n%2], "/limited", "X-Run", run)
		switch code {
		case 200:
			allowed[n%2]++
		case 429:
		default:
			t.Fatalf("request %d via gateway %d: %d %s", n, n%2, code, body)
		}
	}
	t.Logf("active-active: rate limit burst %d, %d requests alternating over 2 gateways: %d allowed (%d + %d)",
		burst, 2*burst, allowed[0]+allowed[1], allowed[0], allowed[1])
	if allowed[0]+allowed[1] != burst || allowed[0] == 0 || allowed[1] == 0 {
		t.Fatalf("allowed %v across the two gateways; want %d in all, some through each (a per-process limit would allow %d)",
			allowed, burst, 2*burst)
	}

	// Failover: a client that dials the addresses in turn and moves to
	// the next one when a connection is refused, as a resolver's client
	// does with two A records.
	var next atomic.Uint32
	var dials [2]atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			first := int(next.Add(1)) % 2
			var errs []error
			for k := 0; k < 2; k++ {
				i := (first + k) % 2
				c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addrs[i])
				if err == nil {
					dials[i].Add(1)
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		MaxIdleConnsPerHost: 4,
	}}
	const workers, perWorker = 4, 150
	var done, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < perWorker; n++ {
				resp, err := client.Get("http://gateways.test/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				}
				done.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitFor(t, "half the requests", 60*time.Second, func() bool { return done.Load() >= workers*perWorker/2 })
	gws[0].kill()
	killedAt := done.Load()
	wg.Wait()
	t.Logf("active-active: %d requests from %d workers, gateway 0 killed (SIGKILL) after %d: %d failed %v; dials to gateway 0/1: %d/%d",
		workers*perWorker, workers, killedAt, failed.Load(), failures, dials[0].Load(), dials[1].Load())
	// Only a request in flight on the killed gateway can fail: at most
	// one per worker.
	if failed.Load() > workers {
		t.Fatalf("%d requests failed, more than the %d that could have been in flight", failed.Load(), workers)
	}
	if code, _ := get(addrs[1], "/"); code != 200 {
		t.Fatalf("the surviving gateway answers %d", code)
	}
}
