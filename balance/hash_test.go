package balance

import (
	"crypto/tls"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

// keyReq returns a request whose X-Key header is key.
func keyReq(key string) *http.Request {
	r := newReq("192.0.2.1:1234")
	r.Header.Set("X-Key", key)
	return r
}

func TestIPHash(t *testing.T) {
	t.Run("stable per client and spread over clients", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1)
		p := mustNew(t, Config{Policy: IPHashPolicy}, ts)
		c := make([]int, len(ts))
		for i := 0; i < 1000; i++ {
			ip := fmt.Sprintf("198.51.%d.%d", i/256, i%256)
			first := p.Pick(newReq(ip+":1000"), upstream.Tried{})
			for port := 1001; port < 1005; port++ { // new connections, same client
				if got := p.Pick(newReq(fmt.Sprintf("%s:%d", ip, port)), upstream.Tried{}); got != first {
					t.Fatalf("client %s went to %s then %s", ip, first.Address, got.Address)
				}
			}
			c[first.Index]++
		}
		for i, n := range c {
			if n < 180 || n > 320 {
				t.Errorf("target %d got %d of 1000 clients, want about 250 (counts %v)", i, n, c)
			}
		}
	})
	t.Run("walks forward past unavailable", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1)
		p := mustNew(t, Config{Policy: IPHashPolicy}, ts)
		r := newReq("203.0.113.9:5555")
		home := p.Pick(r, upstream.Tried{})
		home.SetHealthy(false)
		next := ts[(home.Index+1)%len(ts)]
		if got := p.Pick(r, upstream.Tried{}); got != next {
			t.Fatalf("with home %d down Pick = %d, want the next target %d", home.Index, got.Index, next.Index)
		}
		home.SetHealthy(true)
		if got := p.Pick(r, upstream.Tried{}); got != home {
			t.Fatalf("after recovery Pick = %d, want home %d", got.Index, home.Index)
		}
	})
	t.Run("missing key uses fallback", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := mustNew(t, Config{Policy: IPHashPolicy, HashOn: "header:X-Key"}, ts)
		r := newReq("203.0.113.9:5555") // no X-Key
		if got := sequence1(p, r, 6); got != "abcabc" {
			t.Errorf("requests without the key went %s, want round robin abcabc", got)
		}
	})
}

// sequence1 is sequence with a fixed request.
func sequence1(p Policy, r *http.Request, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(byte('a' + p.Pick(r, upstream.Tried{}).Index))
	}
	return b.String()
}

// homes maps each of n keys to the address of the target p picks for it.
func homes(p Policy, n int) []string {
	out := make([]string, n)
	r := keyReq("")
	for i := range out {
		r.Header.Set("X-Key", fmt.Sprintf("key-%d", i))
		out[i] = p.Pick(r, upstream.Tried{}).Address
	}
	return out
}

func TestConsistentHash(t *testing.T) {
	cfg := Config{Policy: ConsistentHashPolicy, HashOn: "header:X-Key"}
	const keys = 10000

	t.Run("stable and even", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
		p := mustNew(t, cfg, ts)
		a, b := homes(p, keys), homes(p, keys)
		share := map[string]int{}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("key-%d went to %s then %s", i, a[i], b[i])
			}
			share[a[i]]++
		}
		for addr, n := range share {
			if f := float64(n) / keys; f < 0.5/10 || f > 1.5/10 {
				t.Errorf("%s owns %.3f of keys, want about 0.1", addr, f)
			}
		}
		// Another policy over equal targets agrees: the ring depends only
		// on addresses, so every gateway replica routes alike.
		p2 := mustNew(t, cfg, newTargets(1, 1, 1, 1, 1, 1, 1, 1, 1, 1))
		c := homes(p2, keys)
		for i := range a {
			if a[i] != c[i] {
				t.Fatalf("key-%d: %s on one policy, %s on an identical one", i, a[i], c[i])
			}
		}
	})

	for _, n := range []int{3, 5, 10, 20} {
		t.Run(fmt.Sprintf("removing one of %d moves about 1/%d", n, n), func(t *testing.T) {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = 1
			}
			ts := newTargets(weights...)
			before := homes(mustNew(t, cfg, ts), keys)
			gone := n / 2
			var rest []*upstream.Target
			for i, x := range ts {
				if i != gone {
					rest = append(rest, upstream.NewTarget(x.Address, len(rest), 1))
				}
			}
			after := homes(mustNew(t, cfg, rest), keys)
			moved := 0
			for i := range before {
				if before[i] == after[i] {
					continue
				}
				moved++
				if before[i] != ts[gone].Address {
					t.Fatalf("key-%d moved from %s to %s, but only %s was removed", i, before[i], after[i], ts[gone].Address)
				}
			}
			f, fair := float64(moved)/keys, 1/float64(n)
			if f < 0.5*fair || f > 1.6*fair {
				t.Errorf("moved %.4f of keys, want within [%.4f, %.4f]", f, 0.5*fair, 1.6*fair)
			}
		})
	}

	t.Run("weights", func(t *testing.T) {
		ts := newTargets(1, 3)
		share := map[string]int{}
		for _, h := range homes(mustNew(t, cfg, ts), keys) {
			share[h]++
		}
		if f := float64(share[ts[1].Address]) / keys; f < 0.70 || f > 0.80 {
			t.Errorf("weight-3 target owns %.3f of keys, want about 0.75", f)
		}
	})

	t.Run("SetWeight rebuilds the ring", func(t *testing.T) {
		ts := newTargets(1, 1)
		p := mustNew(t, cfg, ts).(*ConsistentHash)
		p.reweighTick = 0
		homes(p, 1)
		ts[0].SetWeight(4)
		share := map[string]int{}
		for _, h := range homes(p, keys) {
			share[h]++
		}
		if f := float64(share[ts[0].Address]) / keys; f < 0.75 || f > 0.85 {
			t.Errorf("after SetWeight(4) the target owns %.3f of keys, want about 0.8", f)
		}
	})

	t.Run("unavailable home walks clockwise", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1, 1)
		p := mustNew(t, cfg, ts)
		before := homes(p, keys)
		ts[2].SetHealthy(false)
		after := homes(p, keys)
		for i := range before {
			if before[i] != ts[2].Address && after[i] != before[i] {
				t.Fatalf("key-%d moved from healthy %s to %s", i, before[i], after[i])
			}
			if after[i] == ts[2].Address {
				t.Fatalf("key-%d still on unhealthy %s", i, after[i])
			}
		}
	})

	t.Run("bounded load", func(t *testing.T) {
		tests := []struct {
			name    string
			weights []int
			key     func(i int) string
		}{
			{"one hot key", []int{1, 1, 1, 1, 1}, func(int) string { return "hot" }},
			{"skewed keys", []int{1, 1, 1, 1, 1, 1, 1, 1}, func(i int) string { return fmt.Sprintf("k%d", i%3) }},
			{"many keys", []int{1, 1, 1, 1}, func(i int) string { return fmt.Sprintf("k%d", i) }},
			{"weighted hot key", []int{1, 2, 1}, func(int) string { return "hot" }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ts := newTargets(tt.weights...)
				const c = 1.25
				p := mustNew(t, Config{Policy: ConsistentHashPolicy, HashOn: "header:X-Key", LoadFactor: c}, ts)
				var wsum int
				for _, w := range tt.weights {
					wsum += w
				}
				r := keyReq("")
				var total int64
				for i := 0; i < 1000; i++ { // requests that never finish
					r.Header.Set("X-Key", tt.key(i))
					got := p.Pick(r, upstream.Tried{})
					limit := int64(math.Ceil(c * float64(total+1) * float64(got.Weight()) / float64(wsum)))
					if got.InFlight()+1 > limit {
						t.Fatalf("request %d: %s would have %d in flight, bound is %d", i, got.Address, got.InFlight()+1, limit)
					}
					got.Begin()
					total++
				}
				for _, x := range ts {
					limit := int64(math.Ceil(c * float64(total) * float64(x.Weight()) / float64(wsum)))
					if x.InFlight() > limit {
						t.Errorf("%s has %d in flight, above ceil(c × avg) = %d", x.Address, x.InFlight(), limit)
					}
				}
			})
		}
		t.Run("without load a hot key stays home", func(t *testing.T) {
			ts := newTargets(1, 1, 1, 1, 1)
			p := mustNew(t, Config{Policy: ConsistentHashPolicy, HashOn: "header:X-Key"}, ts)
			r := keyReq("hot")
			home := p.Pick(r, upstream.Tried{})
			for i := 0; i < 100; i++ {
				got := p.Pick(r, upstream.Tried{})
				if got != home {
					t.Fatalf("idle hot key moved from %s to %s", home.Address, got.Address)
				}
				got.Begin()
				got.Done(false)
			}
		})
	})
}

func TestCookie(t *testing.T) {
	newCookiePolicy := func(t *testing.T, ts []*upstream.Target, ttl time.Duration) *Cookie {
		return mustNew(t, Config{Policy: CookiePolicy, Cookie: CookieConfig{TTL: ttl}}, ts).(*Cookie)
	}
	withCookie := func(c *http.Cookie) *http.Request {
		r := newReq("192.0.2.7:999")
		r.AddCookie(&http.Cookie{Name: "other", Value: "x"})
		r.AddCookie(c)
		return r
	}

	t.Run("first request falls back and gets a cookie", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := newCookiePolicy(t, ts, 90*time.Minute+time.Millisecond)
		r := newReq("192.0.2.7:999")
		if got := sequence1(p, r, 6); got != "abcabc" {
			t.Errorf("cookie-less requests went %s, want the round robin fallback abcabc", got)
		}
		c := p.StickyCookie(r, ts[1])
		if c == nil {
			t.Fatal("StickyCookie = nil for a request without the cookie")
		}
		want := http.Cookie{Name: "sy_sticky", Value: c.Value, Path: "/", MaxAge: 5401, HttpOnly: true, SameSite: http.SameSiteLaxMode}
		if c.Name != want.Name || c.Value != want.Value || c.Path != want.Path || c.MaxAge != want.MaxAge ||
			c.HttpOnly != want.HttpOnly || c.SameSite != want.SameSite || c.Secure {
			t.Errorf("cookie = %+v, want %+v", *c, want)
		}
		if len(c.Value) != 16 || strings.Contains(c.Value, "10.0.0") {
			t.Errorf("cookie value %q: want 16 opaque hex digits", c.Value)
		}
	})

	t.Run("sticks and needs no new cookie", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := newCookiePolicy(t, ts, 0)
		c := p.StickyCookie(nil, ts[2])
		r := withCookie(c)
		for i := 0; i < 20; i++ {
			if got := p.Pick(r, upstream.Tried{}); got != ts[2] {
				t.Fatalf("pick %d with the cookie went to %s, want %s", i, got.Address, ts[2].Address)
			}
		}
		if got := p.StickyCookie(r, ts[2]); got != nil {
			t.Errorf("StickyCookie = %v, want nil when the request has the right cookie", got)
		}
		if c.MaxAge != 0 {
			t.Errorf("MaxAge = %d with CookieTTL 0, want a session cookie", c.MaxAge)
		}
	})

	t.Run("unavailable pinned target falls back and re-pins", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := newCookiePolicy(t, ts, time.Hour)
		r := withCookie(p.StickyCookie(nil, ts[0]))
		ts[0].SetDraining(true)
		got := p.Pick(r, upstream.Tried{})
		if got == nil || got == ts[0] {
			t.Fatalf("Pick = %v with the pinned target draining, want another", got)
		}
		c := p.StickyCookie(r, got)
		if c == nil || c.Value != p.StickyCookie(nil, got).Value {
			t.Fatalf("StickyCookie = %v, want a cookie naming %s", c, got.Address)
		}
		// The client follows the new cookie from now on.
		r2 := withCookie(c)
		ts[0].SetDraining(false)
		for i := 0; i < 5; i++ {
			if again := p.Pick(r2, upstream.Tried{}); again != got {
				t.Fatalf("re-pinned client went to %s, want %s", again.Address, got.Address)
			}
		}
	})

	t.Run("retry avoids the tried pinned target", func(t *testing.T) {
		ts := newTargets(1, 1)
		p := newCookiePolicy(t, ts, 0)
		r := withCookie(p.StickyCookie(nil, ts[0]))
		var tried upstream.Tried
		tried.Add(0)
		if got := p.Pick(r, tried); got != ts[1] {
			t.Fatalf("retry Pick = %v, want %s", got, ts[1].Address)
		}
	})

	t.Run("unknown or forged value falls back", func(t *testing.T) {
		ts := newTargets(1, 1)
		p := newCookiePolicy(t, ts, 0)
		for _, v := range []string{"10.0.0.1:80", "0000000000000000", ""} {
			r := withCookie(&http.Cookie{Name: "sy_sticky", Value: v})
			if got := sequence1(p, r, 4); got != "abab" {
				t.Errorf("cookie %q: picks went %s, want the fallback abab", v, got)
			}
			if p.StickyCookie(r, ts[0]) == nil {
				t.Errorf("cookie %q: StickyCookie = nil, want a replacement", v)
			}
		}
	})

	t.Run("secure over tls", func(t *testing.T) {
		ts := newTargets(1)
		p := newCookiePolicy(t, ts, 0)
		r := newReq("192.0.2.7:999")
		r.TLS = &tls.ConnectionState{}
		if c := p.StickyCookie(r, ts[0]); c == nil || !c.Secure {
			t.Errorf("cookie over TLS = %+v, want Secure", c)
		}
	})

	t.Run("foreign target", func(t *testing.T) {
		p := newCookiePolicy(t, newTargets(1), 0)
		if c := p.StickyCookie(nil, upstream.NewTarget("x:1", 0, 1)); c != nil {
			t.Errorf("StickyCookie for a target outside the pool = %v, want nil", c)
		}
	})

	t.Run("ids stable and distinct", func(t *testing.T) {
		a := newCookiePolicy(t, newTargets(1, 1, 1), 0)
		b := newCookiePolicy(t, newTargets(1, 1, 1), 0)
		dup := newCookiePolicy(t, []*upstream.Target{upstream.NewTarget("h:1", 0, 1), upstream.NewTarget("h:1", 1, 1)}, 0)
		for i := range a.ids {
			if a.ids[i] != b.ids[i] {
				t.Errorf("target %d: id %s on one policy, %s on another", i, a.ids[i], b.ids[i])
			}
		}
		if dup.ids[0] == dup.ids[1] {
			t.Errorf("two targets share id %s", dup.ids[0])
		}
	})

	t.Run("custom fallback", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := newCookiePolicy(t, ts, 0)
		p.Fallback = fixed{ts[2]}
		if got := p.Pick(newReq("192.0.2.7:999"), upstream.Tried{}); got != ts[2] {
			t.Errorf("Pick = %v, want the custom fallback's choice", got)
		}
	})
}

// fixed is a Policy that always returns one target.
type fixed struct{ t *upstream.Target }

func (f fixed) Pick(*http.Request, upstream.Tried) *upstream.Target { return f.t }
