package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/kit/discovery"
)

// TestDiscoveredHealthURLNeverLeavesTheInstance: registrations whose
// health_url tries every way to aim the gateway's active checks at
// another host (a decoy on 127.0.0.1 and, where the machine has it,
// [::1]): absolute URLs, scheme-relative "//host", backslashes, CR/LF
// (raw and percent-encoded), userinfo '@' on either side, fragments,
// percent-encoded hosts, IPv4-mapped IPv6, a very long path, a query
// naming the decoy, and an instance that answers its check with a
// redirect to the decoy. Every instance is checked (at its own address, or
// the check fails there), and the decoys get no request at all.
func TestDiscoveredHealthURLNeverLeavesTheInstance(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	var decoyHits atomic.Int64
	var decoyMu sync.Mutex
	var decoyURIs []string
	decoyH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		decoyHits.Add(1)
		decoyMu.Lock()
		decoyURIs = append(decoyURIs, r.Host+r.RequestURI)
		decoyMu.Unlock()
	})
	decoy := httptest.NewServer(decoyH)
	t.Cleanup(decoy.Close)
	d := decoy.Listener.Addr().String()
	_, dport, _ := net.SplitHostPort(d)
	decoys := []string{d, "localhost:" + dport}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		d6 := httptest.NewUnstartedServer(decoyH)
		d6.Listener.Close()
		d6.Listener = ln
		d6.Start()
		t.Cleanup(d6.Close)
		decoys = append(decoys, d6.Listener.Addr().String())
	}

	type inst struct {
		b      *backend
		checks atomic.Int64
	}
	var urls []func(self string) string
	for _, dc := range decoys {
		urls = append(urls,
			func(string) string { return "http://" + dc + "/x" },
			func(string) string { return "https://" + dc + "/x" },
			func(string) string { return "//" + dc + "/x" },
			func(string) string { return `\\` + dc + `\x` },
			func(string) string { return `http:\\` + dc + `\x` },
			func(string) string { return `http:/\` + dc + `/x` },
			func(self string) string { return "http://" + self + "@" + dc + "/x" },
			func(self string) string { return "http://" + dc + "@" + self + "/x" },
			func(self string) string { return "http://" + dc + "#@" + self + "/x" },
			func(self string) string { return "http://" + self + "//" + dc + "/x" },
			func(self string) string { return "http://" + self + "/x\r\nHost: " + dc },
			func(self string) string { return "http://" + self + "/x%0d%0aHost:%20" + dc },
			func(self string) string { return "http://" + self + "/?next=http://" + dc + "/" },
			func(self string) string { return "http://" + self + "/" + strings.Repeat("a", 1500) + "@" + dc },
		)
	}
	urls = append(urls,
		func(string) string { return "http://%31%32%37.0.0.1:" + dport + "/x" },
		func(string) string { return "http://[::ffff:127.0.0.1]:" + dport + "/x" },
		func(string) string { return "http://2130706433:" + dport + "/x" }, // 127.0.0.1 as one number
		func(string) string { return "/redirect" },                         // no host: the upstream's path
		func(self string) string { return "http://" + self + "/redirect" }, // answered with a redirect to the decoy
	)
	insts := make([]*inst, len(urls))
	cfg := strings.Replace(discoverConfig(regURL), "    circuit_breaker: {}\n",
		"    circuit_breaker: {}\n    health_check: {path: /redirect, interval: 200ms, timeout: 200ms, unhealthy_after: 1, healthy_after: 1}\n", 1)
	gw := startGateway(t, cfg)
	registered := 0
	for i, u := range urls {
		in := &inst{b: newBackend(t, fmt.Sprint(i))}
		insts[i] = in
		in.b.handle(func(w http.ResponseWriter, r *http.Request) {
			in.checks.Add(1)
			http.Redirect(w, r, "http://"+d+"/stolen", http.StatusFound)
		})
		reg := discovery.Registration{Service: "rides", ID: fmt.Sprintf("i%02d", i), Address: in.b.addr(), HealthURL: u(in.b.addr())}
		if _, err := c.RegisterOnce(ctx, reg); err != nil {
			t.Logf("health_url %q refused at registration: %v", reg.HealthURL, err)
			insts[i] = nil
			continue
		}
		registered++
	}
	if registered < len(urls)/2 {
		t.Fatalf("only %d of %d hostile registrations accepted: the test checks little", registered, len(urls))
	}
	waitUntil(t, "every instance checked at its own address (or its check failed there)", func() bool {
		ts := adminTargets(t, gw)
		for _, in := range insts {
			if in == nil {
				continue
			}
			tg, ok := ts[in.b.addr()]
			if !ok || (in.checks.Load() < 2 && tg.Healthy) {
				return false
			}
		}
		return true
	})
	if n := decoyHits.Load(); n != 0 {
		decoyMu.Lock()
		defer decoyMu.Unlock()
		t.Fatalf("the decoy got %d requests: %v", n, decoyURIs)
	}
}

// TestAdminUpstreamsEmptyTargets: a discovered upstream whose service has
// no instance lists "targets": [], not null (docs/discovery.md's
// python3 one-liners iterate over it and failed with TypeError once the
// example's instances had expired).
func TestAdminUpstreamsEmptyTargets(t *testing.T) {
	regURL, _ := startRegistry(t)
	gw := startGateway(t, discoverConfig(regURL))
	code, body, _ := get(t, gw.admin+"/admin/upstreams")
	var ups []struct {
		Targets *[]json.RawMessage `json:"targets"`
	}
	if err := json.Unmarshal([]byte(body), &ups); code != 200 || err != nil || len(ups) != 1 || ups[0].Targets == nil || len(*ups[0].Targets) != 0 {
		t.Fatalf("%d %v %s", code, err, body)
	}
}
