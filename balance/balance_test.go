package balance

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

// newTargets returns one target per weight, at 10.0.0.<i+1>:80.
func newTargets(weights ...int) []*upstream.Target {
	ts := make([]*upstream.Target, len(weights))
	for i, w := range weights {
		ts[i] = upstream.NewTarget(fmt.Sprintf("10.0.0.%d:80", i+1), i, w)
	}
	return ts
}

// newReq returns a GET request from the given client address.
func newReq(remote string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.test/app/x?user=u1", nil)
	r.RemoteAddr = remote
	return r
}

func mustNew(t testing.TB, cfg Config, ts []*upstream.Target) Policy {
	t.Helper()
	p, err := New(cfg, ts)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return p
}

// counts picks n times with req(i) and returns picks per target index
// (index len(ts) counts nil picks).
func counts(p Policy, ts []*upstream.Target, n int, req func(i int) *http.Request) []int {
	c := make([]int, len(ts)+1)
	for i := 0; i < n; i++ {
		t := p.Pick(req(i), upstream.Tried{})
		if t == nil {
			c[len(ts)]++
			continue
		}
		c[t.Index]++
	}
	return c
}

// allPolicies is the contract suite's table: every policy, with the
// settings that make it deterministic enough to test.
var allPolicies = []Config{
	{Policy: RoundRobinPolicy},
	{Policy: WeightedRoundRobinPolicy},
	{Policy: LeastConnectionsPolicy},
	{Policy: LeastResponseTimePolicy},
	{Policy: RandomPolicy},
	{Policy: IPHashPolicy},
	{Policy: ConsistentHashPolicy},
	{Policy: CookiePolicy},
	{Policy: IPHashPolicy, HashOn: "header:X-User"},
	{Policy: ConsistentHashPolicy, HashOn: "path"},
	{Policy: ConsistentHashPolicy, HashOn: "cookie:session"},
	{Policy: ConsistentHashPolicy, HashOn: "query:user"},
}

func policyName(cfg Config) string {
	if cfg.HashOn != "" {
		return cfg.Policy + "/" + cfg.HashOn
	}
	return cfg.Policy
}

// reqs are varied requests so hash policies exercise several targets.
func reqs(n int) []*http.Request {
	rs := make([]*http.Request, n)
	for i := range rs {
		r := newReq(fmt.Sprintf("192.0.2.%d:%d", i, 40000+i))
		r.Header.Set("X-User", fmt.Sprintf("user-%d", i))
		r.Header.Set("Cookie", fmt.Sprintf("a=b; session=s%d", i))
		r.URL.Path = fmt.Sprintf("/p/%d", i)
		r.URL.RawQuery = fmt.Sprintf("user=u%d&x=1", i)
		rs[i] = r
	}
	return rs
}

// TestContract runs the behaviour every Policy must have against each one.
func TestContract(t *testing.T) {
	rs := reqs(64)
	for _, cfg := range allPolicies {
		t.Run(policyName(cfg), func(t *testing.T) {
			t.Run("all available", func(t *testing.T) {
				ts := newTargets(1, 1, 1, 1)
				p := mustNew(t, cfg, ts)
				seen := map[int]bool{}
				for _, r := range rs {
					got := p.Pick(r, upstream.Tried{})
					if got == nil {
						t.Fatal("Pick returned nil with every target available")
					}
					seen[got.Index] = true
				}
				if len(seen) < 2 {
					t.Errorf("64 varied requests all went to %v; expected a spread", seen)
				}
			})
			t.Run("skips unhealthy draining ejected and tried", func(t *testing.T) {
				ts := newTargets(1, 1, 1, 1, 1)
				p := mustNew(t, cfg, ts)
				ts[0].SetHealthy(false)
				ts[1].SetDraining(true)
				ts[2].Eject(time.Now().Add(time.Hour))
				var tried upstream.Tried
				tried.Add(3)
				for _, r := range rs {
					if got := p.Pick(r, tried); got != ts[4] {
						t.Fatalf("Pick = %v, want the only eligible target %s", got, ts[4].Address)
					}
				}
				tried.Add(4)
				for _, r := range rs {
					if got := p.Pick(r, tried); got != nil {
						t.Fatalf("Pick = %s with every target out, want nil", got.Address)
					}
				}
				// An expired ejection and an undrain make targets eligible again.
				ts[2].Eject(time.Now().Add(-time.Second))
				ts[1].SetDraining(false)
				for _, r := range rs {
					got := p.Pick(r, tried)
					if got == nil || got.Index == 0 || got.Index >= 3 {
						t.Fatalf("Pick = %v, want target 1 or 2", got)
					}
				}
			})
			t.Run("no targets", func(t *testing.T) {
				p := mustNew(t, cfg, nil)
				if got := p.Pick(rs[0], upstream.Tried{}); got != nil {
					t.Fatalf("Pick over no targets = %v, want nil", got)
				}
			})
			t.Run("nil request", func(t *testing.T) {
				ts := newTargets(1, 1)
				p := mustNew(t, cfg, ts)
				if got := p.Pick(nil, upstream.Tried{}); got == nil {
					t.Fatal("Pick(nil request) = nil, want a target")
				}
			})
			t.Run("allocation free", func(t *testing.T) {
				if testing.Short() {
					t.Skip("short")
				}
				ts := newTargets(1, 2, 3, 1, 1, 2, 1, 1)
				p := mustNew(t, cfg, ts)
				r := rs[5]
				if cfg.Policy == CookiePolicy {
					pin := p.Pick(r, upstream.Tried{})
					r = r.Clone(r.Context())
					r.Header.Set("Cookie", p.(Sticky).StickyCookie(r, pin).String())
				}
				var tried upstream.Tried
				tried.Add(1)
				p.Pick(r, tried) // warm up (consistent_hash checks weights once)
				allocs := testing.AllocsPerRun(1000, func() {
					if p.Pick(r, tried) == nil {
						panic("nil pick")
					}
				})
				if allocs != 0 {
					t.Errorf("Pick allocates %v times per call, want 0", allocs)
				}
			})
			t.Run("concurrent", func(t *testing.T) {
				ts := newTargets(1, 2, 3, 4)
				p := mustNew(t, cfg, ts)
				var wg sync.WaitGroup
				stop := make(chan struct{})
				wg.Add(1)
				go func() { // an admin and a health checker changing state
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ts[i%4].SetWeight(1 + i%5)
						ts[(i+1)%4].SetHealthy(i%3 != 0)
						ts[(i+2)%4].ObserveLatency(time.Now(), time.Duration(i%7)*time.Millisecond)
					}
				}()
				var pickers sync.WaitGroup
				for g := 0; g < 8; g++ {
					pickers.Add(1)
					go func() {
						defer pickers.Done()
						for i := 0; i < 2000; i++ {
							if got := p.Pick(rs[(g*7+i)%len(rs)], upstream.Tried{}); got != nil {
								got.Begin()
								got.Done(false)
							}
						}
					}()
				}
				pickers.Wait()
				close(stop)
				wg.Wait()
			})
		})
	}
}

func TestNewRejectsNilTarget(t *testing.T) {
	_, err := New(Config{}, []*upstream.Target{upstream.NewTarget("a:1", 0, 1), nil})
	if err == nil {
		t.Fatal("New accepted a nil target")
	}
}

func TestNewReturnsPolicyType(t *testing.T) {
	tests := []struct {
		policy string
		want   string
	}{
		{"", "*balance.RoundRobin"},
		{RoundRobinPolicy, "*balance.RoundRobin"},
		{WeightedRoundRobinPolicy, "*balance.WeightedRoundRobin"},
		{LeastConnectionsPolicy, "*balance.LeastConnections"},
		{LeastResponseTimePolicy, "*balance.LeastResponseTime"},
		{RandomPolicy, "*balance.Random"},
		{IPHashPolicy, "*balance.IPHash"},
		{ConsistentHashPolicy, "*balance.ConsistentHash"},
		{CookiePolicy, "*balance.Cookie"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			p := mustNew(t, Config{Policy: tt.policy}, newTargets(1))
			if got := fmt.Sprintf("%T", p); got != tt.want {
				t.Errorf("New(%q) = %s, want %s", tt.policy, got, tt.want)
			}
		})
	}
}
