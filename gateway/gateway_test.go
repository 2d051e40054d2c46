package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/admin"
)

func TestRoundRobinAcrossRealBackends(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  web:
    targets:
%sroutes:
  - upstream: web
`, targets(a.addr(), b.addr(), c.addr())))
	var got []string
	for i := 0; i < 6; i++ {
		code, body, _ := get(t, gw.url+"/x")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		got = append(got, body)
	}
	if s := strings.Join(got, ""); s != "abcabc" && s != "bcabca" && s != "cabcab" {
		t.Fatalf("round robin order = %q, want a rotation of abc twice", s)
	}
	for _, be := range []*backend{a, b, c} {
		if n := be.requests.Load(); n != 2 {
			t.Errorf("backend %s got %d requests, want 2", be.name, n)
		}
	}
}

func TestPoliciesThroughTheGateway(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	all := targets(a.addr(), b.addr(), c.addr())
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  sticky:
    balance: cookie
    cookie: { name: sid }
    targets:
%[1]s  hashed:
    balance: consistent_hash
    hash_on: header:X-User-ID
    targets:
%[1]s  weighted:
    balance: weighted_round_robin
    targets:
      - { address: %[2]s, weight: 5 }
      - { address: %[3]s }
      - { address: %[4]s }
routes:
  - { match: { path_prefix: /sticky }, upstream: sticky }
  - { match: { path_prefix: /hashed }, upstream: hashed }
  - { match: { path_prefix: /weighted }, upstream: weighted }
`, all, a.addr(), b.addr(), c.addr()))

	t.Run("cookie pins a client", func(t *testing.T) {
		_, first, h := get(t, gw.url+"/sticky")
		ck := h.Get("Set-Cookie")
		if !strings.HasPrefix(ck, "sid=") {
			t.Fatalf("no sticky cookie set: %q", ck)
		}
		cookie := strings.SplitN(ck, ";", 2)[0]
		for i := 0; i < 5; i++ {
			_, body, h := get(t, gw.url+"/sticky", "Cookie", cookie)
			if body != first {
				t.Fatalf("request %d with cookie went to %q, want %q", i, body, first)
			}
			if h.Get("Set-Cookie") != "" {
				t.Fatalf("cookie re-set although the client carried the right one")
			}
		}
	})
	t.Run("consistent hash is stable per key", func(t *testing.T) {
		seen := map[string]bool{}
		for u := 0; u < 30; u++ {
			user := fmt.Sprintf("user-%d", u)
			_, first, _ := get(t, gw.url+"/hashed", "X-User-ID", user)
			for i := 0; i < 3; i++ {
				if _, body, _ := get(t, gw.url+"/hashed", "X-User-ID", user); body != first {
					t.Fatalf("%s moved from %q to %q", user, first, body)
				}
			}
			seen[first] = true
		}
		if len(seen) < 2 {
			t.Fatalf("30 users all hashed to %v: keys are not spread", seen)
		}
	})
	t.Run("smooth weighted 5:1:1", func(t *testing.T) {
		var got strings.Builder
		for i := 0; i < 7; i++ {
			_, body, _ := get(t, gw.url+"/weighted")
			got.WriteString(body)
		}
		if got.String() != "aabacaa" {
			t.Fatalf("sequence %q, want nginx's smooth sequence aabacaa", got.String())
		}
	})
}

func adminJSON(t *testing.T, method, url string, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decoding %s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

func TestAdminDrainLetsInFlightFinish(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	release := make(chan struct{})
	started := make(chan *backend, 2)
	for _, be := range []*backend{a, b} {
		be := be
		be.handle(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				started <- be
				<-release
			}
			_, _ = w.Write([]byte(be.name))
		})
	}
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
upstreams:
  web:
    targets:
%sroutes:
  - upstream: web
`, targets(a.addr(), b.addr())))

	// A slow request holds one target; that one is drained.
	slowDone := make(chan string, 1)
	go func() {
		resp, err := client.Get(gw.url + "/slow")
		if err != nil {
			slowDone <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 8)
		n, _ := resp.Body.Read(buf)
		slowDone <- string(buf[:n])
	}()
	var held, other *backend
	select {
	case held = <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request did not reach a backend")
	}
	other = a
	if held == a {
		other = b
	}

	drainURL := fmt.Sprintf("%s/admin/upstreams/web/targets/%s/drain", gw.admin, held.addr())
	var tgt admin.Target
	if code := adminJSON(t, "POST", drainURL, "", &tgt); code != 200 || !tgt.Draining || tgt.InFlight != 1 {
		t.Fatalf("drain: status %d, target %+v; want draining with 1 in flight", code, tgt)
	}
	before := held.requests.Load()
	for i := 0; i < 10; i++ {
		if _, body, _ := get(t, gw.url+"/x"); body != other.name {
			t.Fatalf("request %d went to %q while %s drains", i, body, held.name)
		}
	}
	if held.requests.Load() != before {
		t.Fatalf("drained target got new requests")
	}
	// A drain with ?wait blocks until in-flight reach zero: release the slow one.
	waitDone := make(chan admin.Target, 1)
	go func() {
		var tg admin.Target
		adminJSON(t, "POST", drainURL+"?wait=5s", "", &tg)
		waitDone <- tg
	}()
	close(release)
	if got := <-slowDone; got != held.name {
		t.Fatalf("in-flight request on the drained target: got %q, want it to finish with %s", got, held.name)
	}
	select {
	case tg := <-waitDone:
		if tg.InFlight != 0 || !tg.Draining {
			t.Fatalf("drain?wait returned %+v, want draining with 0 in flight", tg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain?wait did not return")
	}
	// Undrain: the target serves again.
	adminJSON(t, "POST", fmt.Sprintf("%s/admin/upstreams/web/targets/%s/undrain", gw.admin, held.addr()), "", nil)
	hits := map[string]int{}
	for i := 0; i < 6; i++ {
		_, body, _ := get(t, gw.url+"/x")
		hits[body]++
	}
	if hits[held.name] != 3 || hits[other.name] != 3 {
		t.Fatalf("after undrain 6 requests split %v, want 3:3", hits)
	}
}

func TestAdminWeightAndErrors(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
upstreams:
  web:
    balance: weighted_round_robin
    targets:
%sroutes:
  - upstream: web
`, targets(a.addr(), b.addr())))
	url := fmt.Sprintf("%s/admin/upstreams/web/targets/%s/weight", gw.admin, a.addr())
	var tgt admin.Target
	if code := adminJSON(t, "PUT", url, `{"weight": 3}`, &tgt); code != 200 || tgt.Weight != 3 {
		t.Fatalf("set weight: %d %+v", code, tgt)
	}
	hits := map[string]int{}
	for i := 0; i < 8; i++ {
		_, body, _ := get(t, gw.url+"/")
		hits[body]++
	}
	if hits["a"] != 6 || hits["b"] != 2 {
		t.Fatalf("after weight 3:1, 8 requests split %v, want a:6 b:2", hits)
	}
	var e map[string]any
	for _, tc := range []struct {
		method, url, body string
		want              int
	}{
		{"PUT", url, `{"weight": 0}`, 400},
		{"PUT", url, `{"wieght": 2}`, 400},
		{"PUT", url, `nope`, 400},
		{"PUT", gw.admin + "/admin/upstreams/nope/targets/x:1/weight", `{"weight": 2}`, 404},
		{"POST", gw.admin + "/admin/upstreams/web/targets/127.0.0.1:1/drain", ``, 404},
		{"POST", gw.admin + "/admin/upstreams/web/targets/" + a.addr() + "/drain?wait=forever", ``, 400},
		{"GET", gw.admin + "/admin/upstreams/nope", ``, 404},
		{"GET", gw.admin + "/admin/nothing", ``, 404},
	} {
		if code := adminJSON(t, tc.method, tc.url, tc.body, &e); code != tc.want || e["error"] == "" {
			t.Errorf("%s %s %s: status %d body %v, want %d with an error message", tc.method, tc.url, tc.body, code, e, tc.want)
		}
	}
}

func TestReloadSwapsConfigAndRefusesInvalid(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfgFor := func(addr string) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
upstreams:
  web:
    targets:
%sroutes:
  - upstream: web
`, targets(addr))
	}
	gw := startGateway(t, cfgFor(a.addr()))
	if _, body, _ := get(t, gw.url+"/"); body != "a" {
		t.Fatalf("before reload: %q", body)
	}

	// A request in flight during the reload finishes on the old config.
	release := make(chan struct{})
	a.handle(func(w http.ResponseWriter, r *http.Request) { <-release; _, _ = w.Write([]byte("a-slow")) })
	var wg sync.WaitGroup
	wg.Add(1)
	var slowBody string
	go func() {
		defer wg.Done()
		_, slowBody, _ = get(t, gw.url+"/")
	}()
	eventually(t, 5*time.Second, "slow request in flight", func() bool { return gw.g.Snapshot().InFlight == 1 })

	gw.rewrite(t, cfgFor(b.addr()))
	var res map[string]any
	if code := adminJSON(t, "POST", gw.admin+"/admin/reload", "", &res); code != 200 {
		t.Fatalf("reload: %d %v", code, res)
	}
	if _, body, _ := get(t, gw.url+"/"); body != "b" {
		t.Fatalf("after reload: %q, want b", body)
	}
	close(release)
	wg.Wait()
	if slowBody != "a-slow" {
		t.Fatalf("in-flight request during reload: %q", slowBody)
	}

	// An invalid config is refused with the file and key path; b keeps serving.
	gw.rewrite(t, strings.Replace(cfgFor(b.addr()), "upstream: web", "upstream: nope", 1))
	var e struct{ Error string }
	if code := adminJSON(t, "POST", gw.admin+"/admin/reload", "", &e); code != 422 ||
		!strings.Contains(e.Error, "routes[0].upstream") || !strings.Contains(e.Error, gw.cfgPath) {
		t.Fatalf("invalid reload: %d %v", code, e)
	}
	gw.rewrite(t, strings.Replace(cfgFor(b.addr()), "balance", "balance", 1)+"\nbogus: 1\n")
	if err := gw.g.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown key accepted on reload: %v", err)
	}
	if _, body, _ := get(t, gw.url+"/"); body != "b" {
		t.Fatalf("after refused reload: %q, want b still", body)
	}
}

func TestReloadKeepsDrainState(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
upstreams:
  web:
    targets:
%sroutes:
  - upstream: web
`, targets(a.addr(), b.addr()))
	gw := startGateway(t, cfg)
	if err := gw.g.SetDraining("web", a.addr(), true); err != nil {
		t.Fatal(err)
	}
	if err := gw.g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, body, _ := get(t, gw.url+"/"); body != "b" {
			t.Fatalf("drained target served after reload")
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, tc := range map[string]struct{ cfg, want string }{
		"unknown policy": {`
listen: 127.0.0.1:0
upstreams:
  web:
    balance: fastest
    targets: [{address: 127.0.0.1:1}]
routes: [{upstream: web}]`, "upstreams.web.balance"},
		"bad retry condition": {`
listen: 127.0.0.1:0
upstreams:
  web:
    targets: [{address: 127.0.0.1:1}]
    retry: {attempts: 3, on: [sometimes]}
routes: [{upstream: web}]`, "upstreams.web.retry"},
		"bad breaker ratio": {`
listen: 127.0.0.1:0
upstreams:
  web:
    targets: [{address: 127.0.0.1:1}]
    circuit_breaker: {failure_ratio: 2}
routes: [{upstream: web}]`, "upstreams.web.circuit_breaker"},
		"bad hash_on": {`
listen: 127.0.0.1:0
upstreams:
  web:
    balance: consistent_hash
    hash_on: header
    targets: [{address: 127.0.0.1:1}]
routes: [{upstream: web}]`, "upstreams.web.hash_on"},
		"bad wildcard host": {`
listen: 127.0.0.1:0
upstreams:
  web:
    targets: [{address: 127.0.0.1:1}]
routes: [{upstream: web, match: {host: "a.*.com"}}]`, "routes[0].match"},
	} {
		t.Run(name, func(t *testing.T) {
			path := t.TempDir() + "/bad.yaml"
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{ConfigPath: path})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and %q", err, path, tc.want)
			}
		})
	}
}

// TestReloadKeepsAdminWeights: a weight set through the admin API survives
// a reload while its target stays in the config; DELETE drops it.
func TestReloadKeepsAdminWeights(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	cfgFor := func(ts ...string) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
upstreams:
  web:
    balance: weighted_round_robin
    targets:
%sroutes:
  - upstream: web
`, targets(ts...))
	}
	gw := startGateway(t, cfgFor(a.addr(), b.addr()))
	wurl := func(addr string) string {
		return fmt.Sprintf("%s/admin/upstreams/web/targets/%s/weight", gw.admin, addr)
	}
	var tgt admin.Target
	if code := adminJSON(t, "PUT", wurl(a.addr()), `{"weight": 7}`, &tgt); code != 200 || tgt.Weight != 7 || !tgt.WeightOverride {
		t.Fatalf("set weight: %d %+v", code, tgt)
	}
	if code := adminJSON(t, "PUT", wurl(b.addr()), `{"weight": 5}`, &tgt); code != 200 {
		t.Fatalf("set weight: %d %+v", code, tgt)
	}
	weights := func() map[string]admin.Target {
		out := map[string]admin.Target{}
		for _, t := range gw.g.Snapshot().Upstreams[0].Targets {
			out[t.Address] = t
		}
		return out
	}
	// Reload with c added and b removed: a keeps 7, c gets its config weight.
	gw.rewrite(t, cfgFor(a.addr(), c.addr()))
	if code := adminJSON(t, "POST", gw.admin+"/admin/reload", "", nil); code != 200 {
		t.Fatalf("reload: %d", code)
	}
	w := weights()
	if w[a.addr()].Weight != 7 || !w[a.addr()].WeightOverride || w[c.addr()].Weight != 1 || w[c.addr()].WeightOverride {
		t.Fatalf("after reload: %+v", w)
	}
	hits := map[string]int{}
	for i := 0; i < 8; i++ {
		_, body, _ := get(t, gw.url+"/")
		hits[body]++
	}
	if hits["a"] != 7 || hits["c"] != 1 {
		t.Fatalf("8 requests at 7:1 split %v", hits)
	}
	// b left the config: its override is gone when it comes back.
	gw.rewrite(t, cfgFor(a.addr(), b.addr(), c.addr()))
	if err := gw.g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := weights(); w[b.addr()].Weight != 1 || w[b.addr()].WeightOverride {
		t.Fatalf("removed target's override came back: %+v", w[b.addr()])
	}
	// DELETE restores the config's weight, and it stays restored.
	var reset admin.Target
	if code := adminJSON(t, "DELETE", wurl(a.addr()), "", &reset); code != 200 || reset.Weight != 1 || reset.WeightOverride {
		t.Fatalf("reset weight: %d %+v", code, reset)
	}
	if err := gw.g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := weights(); w[a.addr()].Weight != 1 {
		t.Fatalf("after reset and reload: %+v", w[a.addr()])
	}
	var e map[string]any
	if code := adminJSON(t, "PUT", wurl(a.addr()), `{"weight": 1000001}`, &e); code != 400 {
		t.Fatalf("weight over the bound: %d %v", code, e)
	}
	if admin.MaxWeight != MaxWeight {
		t.Fatalf("admin.MaxWeight %d != MaxWeight %d", admin.MaxWeight, MaxWeight)
	}
}
