package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// BenchmarkAnswer measures building one response (no sockets): a static
// record, a weighted pool answer, and a geo answer steered by ECS.
func BenchmarkAnswer(b *testing.B) {
	s := fuzzServer(b)
	src := netip.MustParseAddr("192.0.2.200")
	for _, c := range []struct {
		name string
		m    *mdns.Msg
	}{
		{"static", query("ns1.example.test.", mdns.TypeA)},
		{"pool", query("app.example.test.", mdns.TypeA)},
		{"geo-ecs", withECS(query("app.example.test.", mdns.TypeA), "10.1.2.0", 24)},
		{"nxdomain", query("nope.example.test.", mdns.TypeA)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 1500)
			for b.Loop() {
				r := s.answer(c.m, src, true, nil)
				if _, err := r.PackBuffer(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUDPQuery measures one UDP query from raw packet to raw
// response (no sockets): "slow" is the path every query took before the
// fast path (miekg/dns unpack, answer, pack), "fast" is the worker's path
// (cache hit; falls back like the slow path when it must). The bench/dns.sh
// query shapes: a static A record and a pool answer (geo + weights).
func BenchmarkUDPQuery(b *testing.B) {
	s := fuzzServer(b)
	src := netip.MustParseAddr("10.1.2.3")
	for _, c := range []struct {
		name string
		m    *mdns.Msg
	}{
		{"static", query("ns1.example.test.", mdns.TypeA)},
		{"pool", query("app.example.test.", mdns.TypeA)},
		{"nxdomain", query("nope.example.test.", mdns.TypeA)},
		{"static-edns", func() *mdns.Msg { m := query("ns1.example.test.", mdns.TypeA); m.SetEdns0(1232, true); return m }()},
	} {
		raw, err := c.m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/slow", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s.serveSlow(raw, src, true) == nil {
					b.Fatal("no response")
				}
			}
		})
		b.Run(c.name+"/fast", func(b *testing.B) {
			b.ReportAllocs()
			fc := newFastCache(s)
			out := make([]byte, 0, 512)
			for b.Loop() {
				if out = fc.respond(raw, src, out); out == nil {
					b.Fatal("no response")
				}
			}
			if fc.hits == 0 {
				b.Fatal("never answered from the cache")
			}
		})
	}
}
