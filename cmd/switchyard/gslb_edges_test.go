package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// portFreeOn returns a TCP port free on every one of the loopback
// addresses ips (each edge listens on its own address, same port, as
// sites behind one name do).
func portFreeOn(t *testing.T, ips ...string) string {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Skipf("skipped: cannot listen on %s (%v): the test needs 127.0.0.0/8 on lo", ips[0], err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		held := []net.Listener{ln}
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on all of", ips)
	return ""
}

// TestGSLBEdgesFailover is the topology of docs/dns.md: an origin, two
// edge gateways with caches as the sites of a pool (each on its own
// loopback address, checked on its admin /healthz), `switchyard dns` in
// front. Killing an edge with SIGKILL takes it out of new answers within
// one health interval (and so out of clients within one TTL more), and
// the remaining edge answers from its cache without asking the origin.
func TestGSLBEdgesFailover(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var originHits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originHits.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "origin copy of %s\n", r.URL.Path)
	}))
	t.Cleanup(origin.Close)

	ips := []string{"127.0.0.2", "127.0.0.3"}
	port, adminPort := portFreeOn(t, ips...), portFreeOn(t, ips...)
	edges := map[string]*netnsProc{}
	for _, ip := range ips {
		cfg := fmt.Sprintf(`listen: %s:%s
admin: %s:%s
access_log: off
caches:
  edge: {memory: 8MiB}
upstreams:
  origin: {targets: [{address: %s}]}
routes:
  - {upstream: origin, cache: edge}
`, ip, port, ip, adminPort, origin.Listener.Addr())
		path := filepath.Join(t.TempDir(), "edge.yaml")
		os.WriteFile(path, []byte(cfg), 0o644)
		edges[ip] = startInNetns(t, "", "edge "+ip, []string{"SWITCHYARD_MAIN=1"}, exe, "gateway", "--config", path)
	}

	const ttl, interval = 2 * time.Second, 500 * time.Millisecond
	dnsAddr := freeAddr(t)
	dnsCfg := filepath.Join(t.TempDir(), "dns.yaml")
	os.WriteFile(dnsCfg, []byte(fmt.Sprintf(`listen: %s
ttl: %s
health: {path: /healthz, interval: %s, timeout: 300ms, unhealthy_after: 1, healthy_after: 1}
sites:
  - {name: edge-a, addresses: [%s], port: %s, check: "%s:%s"}
  - {name: edge-b, addresses: [%s], port: %s, check: "%s:%s"}
zones:
  - origin: cdn.test.
    soa: {ns: ns1.cdn.test.}
    records: ["@ NS ns1", "ns1 A 127.0.0.1"]
    pools:
      - {name: www, sites: [edge-a, edge-b], answers: 2}
`, dnsAddr, ttl, interval, ips[0], port, ips[0], adminPort, ips[1], port, ips[1], adminPort)), 0o644)
	dnsProc := startInNetns(t, "", "dns", []string{"SWITCHYARD_MAIN=1"}, exe, "dns", "--config", dnsCfg)
	for name, p := range edges {
		waitFor(t, "edge "+name, 60*time.Second, func() bool { return strings.Contains(p.output(), "gateway listening") })
	}
	waitFor(t, "the dns server", 60*time.Second, func() bool { return strings.Contains(dnsProc.output(), "dns listening") })

	// lookup resolves www.cdn.test. A as a client would.
	lookup := func() ([]string, uint32) {
		m := new(mdns.Msg)
		m.SetQuestion("www.cdn.test.", mdns.TypeA)
		r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(m, dnsAddr)
		if err != nil || r.Rcode != mdns.RcodeSuccess {
			return nil, 0
		}
		var out []string
		var ttl uint32
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				out = append(out, a.A.String())
				ttl = a.Hdr.Ttl
			}
		}
		slices.Sort(out)
		return out, ttl
	}
	waitFor(t, "both edges healthy in the answers", 30*time.Second, func() bool {
		got, _ := lookup()
		return slices.Equal(got, ips)
	})

	get := func(ip, path string) (string, string) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort(ip, port) + path)
		if err != nil {
			t.Fatalf("GET %s via %s: %v", path, ip, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s via %s: %d %s", path, ip, resp.StatusCode, b)
		}
		return resp.Header.Get("Cache-Status"), string(b)
	}
	// Warm both edges: one miss each, then hits.
	for _, ip := range ips {
		get(ip, "/app.css")
		if cs, _ := get(ip, "/app.css"); cs != "switchyard; hit" {
			t.Fatalf("second GET via %s: Cache-Status %q, want a hit", ip, cs)
		}
	}
	if n := originHits.Load(); n != 2 {
		t.Fatalf("origin saw %d requests warming two edges, want 2", n)
	}

	killed := time.Now()
	edges[ips[0]].kill()
	// New lookups exclude the dead edge once 10 in a row leave it out.
	var movedAt time.Time
	streak := 0
	waitFor(t, "lookups to leave out the killed edge", 30*time.Second, func() bool {
		got, _ := lookup()
		if len(got) > 0 && !slices.Contains(got, ips[0]) {
			if streak == 0 {
				movedAt = time.Now()
			}
			streak++
		} else {
			streak = 0
		}
		return streak >= 10
	})
	got, answerTTL := lookup()
	moved := movedAt.Sub(killed)
	t.Logf("gslb: killed edge %s; new lookups answered %v without it after %v (health interval %v, TTL %ds: a client caching the old answer moves within %v)",
		ips[0], got, moved.Round(time.Millisecond), interval, answerTTL, (moved + time.Duration(answerTTL)*time.Second).Round(time.Millisecond))
	if answerTTL != uint32(ttl/time.Second) {
		t.Errorf("answer TTL %d, want %d", answerTTL, ttl/time.Second)
	}
	// A client following the new answer gets the cached copy.
	if cs, body := get(got[0], "/app.css"); cs != "switchyard; hit" || body != "origin copy of /app.css\n" {
		t.Fatalf("via the remaining edge: Cache-Status %q body %q, want a hit", cs, body)
	}
	if n := originHits.Load(); n != 2 {
		t.Fatalf("origin saw %d requests; the remaining edge should have answered from its cache", n)
	}
}
