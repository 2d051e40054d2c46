package dns

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// gslbConfig returns a config with a pool "app" over the given sites
// (name, answered address, check address, weight), plus extra pool keys.
func gslbConfig(sites [][4]string, poolExtra string) string {
	var b strings.Builder
	b.WriteString(`
health: {path: /healthz, interval: 100ms, timeout: 100ms, healthy_after: 1, unhealthy_after: 2}
regions:
  eu: [10.1.0.0/16, 2001:db8:1::/48]
  us: [10.2.0.0/16]
  local: [127.0.0.0/8]
sites:
`)
	for _, s := range sites {
		fmt.Fprintf(&b, "  - {name: %s, addresses: [%s], check: %q, weight: %s, port: 443, host: %s.sites.example.test.}\n", s[0], s[1], s[2], s[3], s[0])
	}
	b.WriteString(`zones:
  - origin: example.test.
    soa: {ns: ns1.example.test.}
    records: ["@ NS ns1", "ns1 A 192.0.2.53"]
    pools:
      - name: app
        sites: [`)
	for i, s := range sites {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s[0])
	}
	b.WriteString("]\n")
	b.WriteString(poolExtra)
	return b.String()
}

// answered returns the A (or AAAA) addresses of a response, joined.
func answered(r *mdns.Msg) string {
	var out []string
	for _, rr := range r.Answer {
		switch a := rr.(type) {
		case *mdns.A:
			out = append(out, a.A.String())
		case *mdns.AAAA:
			out = append(out, a.AAAA.String())
		}
	}
	return strings.Join(out, ",")
}

// TestHealthSteering: a site whose check fails leaves the answers, and
// comes back when it passes again; while every site fails, the answers
// fail open to all of them.
func TestHealthSteering(t *testing.T) {
	a, b := newBackend(t), newBackend(t)
	s, addr := start(t, gslbConfig([][4]string{
		{"a", "192.0.2.1", a.addr(), "1"},
		{"b", "192.0.2.2", b.addr(), "1"},
	}, "        answers: 2\n"))
	waitFor(t, "both sites answered", func() bool {
		got := answered(ask(t, addr, "udp", query("app.example.test.", mdns.TypeA)))
		return strings.Contains(got, "192.0.2.1") && strings.Contains(got, "192.0.2.2")
	})
	r := ask(t, addr, "udp", query("app.example.test.", mdns.TypeA))
	if r.Answer[0].Header().Ttl != 20 || !r.Authoritative {
		t.Errorf("ttl %d aa %v, want the default 20s, authoritative", r.Answer[0].Header().Ttl, r.Authoritative)
	}
	a.fail.Store(true)
	waitFor(t, "site a gone from answers", func() bool {
		return answered(ask(t, addr, "udp", query("app.example.test.", mdns.TypeA))) == "192.0.2.2"
	})
	b.fail.Store(true)
	waitFor(t, "both unhealthy", func() bool { return !s.t.sites[1].target.Healthy() })
	if got := answered(ask(t, addr, "tcp", query("app.example.test.", mdns.TypeA))); strings.Count(got, ",") != 1 {
		t.Errorf("all down, fail open: %q, want both sites", got)
	}
	a.fail.Store(false)
	waitFor(t, "site a back", func() bool {
		return answered(ask(t, addr, "udp", query("app.example.test.", mdns.TypeA))) == "192.0.2.1"
	})
}

// TestWeights: smooth weighted round robin over many queries gives each
// site exactly its share.
func TestWeights(t *testing.T) {
	a, b, c := newBackend(t), newBackend(t), newBackend(t)
	cfg := gslbConfig([][4]string{
		{"a", "192.0.2.1", a.addr(), "5"},
		{"b", "192.0.2.2", b.addr(), "3"},
		{"c", "192.0.2.3", c.addr(), "2"},
	}, "")
	// Slow checks that tolerate a hiccup: a flap would skew the counts.
	cfg = strings.Replace(cfg, "interval: 100ms, timeout: 100ms", "interval: 10s, timeout: 5s", 1)
	_, addr := start(t, cfg)
	counts := map[string]int{}
	for range 500 {
		counts[answered(ask(t, addr, "udp", query("app.example.test.", mdns.TypeA)))]++
	}
	if counts["192.0.2.1"] != 250 || counts["192.0.2.2"] != 150 || counts["192.0.2.3"] != 100 {
		t.Errorf("500 answers by weight 5:3:2 = %v, want 250/150/100", counts)
	}
}

func withECS(m *mdns.Msg, ip string, bits uint8) *mdns.Msg {
	m.SetEdns0(1232, false)
	a := net.ParseIP(ip)
	fam := uint16(1)
	if a.To4() != nil {
		a = a.To4()
	} else {
		fam = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: fam, SourceNetmask: bits, Address: a})
	return m
}

// TestGeo: the ECS address, else the resolver's source address, picks the
// region and its preferred sites; a region whose sites are all down falls
// back to the rest of the pool.
func TestGeo(t *testing.T) {
	eu, us, ap := newBackend(t), newBackend(t), newBackend(t)
	_, addr := start(t, gslbConfig([][4]string{
		{"eu1", "192.0.2.1, 2001:db8::1", eu.addr(), "1"},
		{"us1", "192.0.2.2", us.addr(), "1"},
		{"ap1", "192.0.2.3", ap.addr(), "100"},
	}, "        geo: {eu: [eu1], us: [us1], local: [ap1]}\n"))
	cases := []struct {
		ip   string
		bits uint8
		want string
	}{
		{"10.1.7.0", 24, "192.0.2.1"},
		{"10.2.0.0", 16, "192.0.2.2"},
		{"2001:db8:1:5::", 56, "192.0.2.1"},
	}
	for _, c := range cases {
		for range 5 {
			r := ask(t, addr, "udp", withECS(query("app.example.test.", mdns.TypeA), c.ip, c.bits))
			if got := answered(r); got != c.want {
				t.Fatalf("ECS %s/%d: %q, want %q", c.ip, c.bits, got, c.want)
			}
			e := r.IsEdns0()
			if e == nil || len(e.Option) != 1 {
				t.Fatalf("ECS %s: no ECS option echoed", c.ip)
			}
			if sub := e.Option[0].(*mdns.EDNS0_SUBNET); sub.SourceNetmask != c.bits || sub.SourceScope != c.bits {
				t.Errorf("ECS echo %v, want source and scope %d", sub, c.bits)
			}
		}
	}
	// Without ECS, the source 127.0.0.1 is in region "local": ap1.
	if got := answered(ask(t, addr, "tcp", query("app.example.test.", mdns.TypeA))); got != "192.0.2.3" {
		t.Errorf("by source address: %q, want ap1", got)
	}
	// ECS /0 means the resolver opted out: its source address decides.
	if got := answered(ask(t, addr, "udp", withECS(query("app.example.test.", mdns.TypeA), "0.0.0.0", 0))); got != "192.0.2.3" {
		t.Errorf("ECS /0: %q, want ap1 (by source)", got)
	}
	// An unmapped client gets the whole pool by weight: mostly ap1 (100 of 102).
	seen := map[string]bool{}
	for range 102 {
		seen[answered(ask(t, addr, "udp", withECS(query("app.example.test.", mdns.TypeA), "198.51.100.0", 24)))] = true
	}
	if !seen["192.0.2.1"] || !seen["192.0.2.2"] || !seen["192.0.2.3"] {
		t.Errorf("unmapped client over 102 answers saw %v, want every site", seen)
	}
	// AAAA for the eu client: eu1's IPv6 address.
	if got := answered(ask(t, addr, "udp", withECS(query("app.example.test.", mdns.TypeAAAA), "10.1.7.0", 24))); got != "2001:db8::1" {
		t.Errorf("AAAA eu: %q", got)
	}
	// eu1 fails: eu clients fall back to the rest of the pool.
	eu.fail.Store(true)
	waitFor(t, "eu falls back", func() bool {
		got := answered(ask(t, addr, "udp", withECS(query("app.example.test.", mdns.TypeA), "10.1.7.0", 24)))
		return got != "192.0.2.1"
	})
	// us1 has no IPv6: an AAAA query from us is NODATA with the SOA.
	r := ask(t, addr, "udp", withECS(query("app.example.test.", mdns.TypeAAAA), "10.2.0.0", 16))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("AAAA for an IPv4-only site: %v, want NODATA", r)
	}
}

// TestSRV: SRV answers name the sites' hosts and ports, with their
// addresses as additional records.
func TestSRV(t *testing.T) {
	a, b := newBackend(t), newBackend(t)
	cfg := gslbConfig([][4]string{
		{"a", "192.0.2.1", a.addr(), "1"},
		{"b", "192.0.2.2", b.addr(), "1"},
	}, "        answers: 2\n")
	_, addr := start(t, strings.Replace(cfg, "interval: 100ms, timeout: 100ms", "interval: 10s, timeout: 5s", 1))
	r := ask(t, addr, "udp", query("app.example.test.", mdns.TypeSRV))
	if len(r.Answer) != 2 || len(r.Extra) != 2 {
		t.Fatalf("SRV: %v", r)
	}
	srv := r.Answer[0].(*mdns.SRV)
	if srv.Port != 443 || !strings.HasSuffix(srv.Target, ".sites.example.test.") {
		t.Errorf("SRV record %v", srv)
	}
	// The SRV target resolves here too, to the site's addresses.
	r = ask(t, addr, "udp", query(srv.Target, mdns.TypeA))
	if got := answered(r); !r.Authoritative || (got != "192.0.2.1" && got != "192.0.2.2") {
		t.Errorf("SRV target %s A: %v", srv.Target, r)
	}
}

// slowBackend answers health checks after a settable delay.
type slowBackend struct {
	srv   *httptest.Server
	delay atomic.Int64
}

func newSlowBackend(t *testing.T, d time.Duration) *slowBackend {
	b := &slowBackend{}
	b.delay.Store(int64(d))
	b.srv = httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(time.Duration(b.delay.Load()))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// TestLatency: the latency policy answers the site whose probes are
// fastest, and moves when that changes.
func TestLatency(t *testing.T) {
	fast, slow := newSlowBackend(t, 0), newSlowBackend(t, 60*time.Millisecond)
	cfg := gslbConfig([][4]string{
		{"fast", "192.0.2.1", strings.TrimPrefix(fast.srv.URL, "http://"), "1"},
		{"slow", "192.0.2.2", strings.TrimPrefix(slow.srv.URL, "http://"), "1"},
	}, "        policy: latency\n")
	cfg = strings.Replace(cfg, "interval: 100ms, timeout: 100ms", "interval: 200ms, timeout: 180ms", 1)
	s, addr := start(t, cfg)
	waitFor(t, "both sites measured", func() bool {
		return s.t.sites[0].target.LatencyEWMA() > 0 && s.t.sites[1].target.LatencyEWMA() > 0
	})
	for range 10 {
		if got := answered(ask(t, addr, "udp", query("app.example.test.", mdns.TypeA))); got != "192.0.2.1" {
			t.Fatalf("latency: %q, want the fast site", got)
		}
	}
	// The fast site slows down (a peak is taken at once) and the slow one
	// speeds up: the answer moves.
	fast.delay.Store(int64(120 * time.Millisecond))
	slow.delay.Store(0)
	waitFor(t, "answer moves to the now faster site", func() bool {
		return answered(ask(t, addr, "udp", query("app.example.test.", mdns.TypeA))) == "192.0.2.2"
	})
}
