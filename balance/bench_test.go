package balance

import (
	"testing"

	"github.com/switchyard/switchyard/upstream"
)

// BenchmarkPick measures one Pick over 8 targets with mixed weights, one
// of them unhealthy, and a request like a real one (header, cookie, query).
func BenchmarkPick(b *testing.B) {
	for _, cfg := range allPolicies {
		b.Run(policyName(cfg), func(b *testing.B) {
			ts := newTargets(1, 2, 3, 1, 1, 2, 1, 1)
			ts[3].SetHealthy(false)
			p := mustNew(b, cfg, ts)
			r := reqs(1)[0]
			if cfg.Policy == CookiePolicy {
				c := p.(Sticky).StickyCookie(nil, ts[2])
				r.Header.Set("Cookie", "a=b; "+c.Name+"="+c.Value)
			}
			b.ReportAllocs()
			for b.Loop() {
				if p.Pick(r, upstream.Tried{}) == nil {
					b.Fatal("nil pick")
				}
			}
		})
	}
}

// BenchmarkPickParallel measures contention: every P picking at once.
func BenchmarkPickParallel(b *testing.B) {
	for _, cfg := range allPolicies[:8] {
		b.Run(policyName(cfg), func(b *testing.B) {
			ts := newTargets(1, 2, 3, 1, 1, 2, 1, 1)
			p := mustNew(b, cfg, ts)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := reqs(1)[0]
				for pb.Next() {
					if t := p.Pick(r, upstream.Tried{}); t != nil {
						t.Begin()
						t.Done(false)
					}
				}
			})
		})
	}
}
