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
				r := s.answer(c.m, src, true)
				if _, err := r.PackBuffer(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
