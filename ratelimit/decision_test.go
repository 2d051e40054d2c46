package ratelimit

import (
	"net/http"
	"testing"
	"time"
)

func TestDecisionSetHeaders(t *testing.T) {
	tests := []struct {
		name string
		d    Decision
		want map[string]string // "" = absent
	}{
		{"allowed", Decision{Allowed: true, Limit: 200, Remaining: 150, ResetAfter: 1500 * time.Millisecond},
			map[string]string{"RateLimit-Limit": "200", "RateLimit-Remaining": "150", "RateLimit-Reset": "2", "Retry-After": ""}},
		{"refused", Decision{Limit: 5, ResetAfter: 500 * time.Millisecond, RetryAfter: 100 * time.Millisecond},
			map[string]string{"RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "1", "Retry-After": "1"}},
		{"refused for a day", Decision{Limit: 3, ResetAfter: untilDayEnd, RetryAfter: untilDayEnd},
			map[string]string{"RateLimit-Reset": "6400", "Retry-After": "6400"}},
		{"whole seconds are not rounded up", Decision{Limit: 1, ResetAfter: 2 * time.Second, RetryAfter: 2 * time.Second},
			map[string]string{"RateLimit-Reset": "2", "Retry-After": "2"}},
		{"nothing to wait for", Decision{Allowed: true, Limit: 1, Remaining: 1},
			map[string]string{"RateLimit-Reset": "0", "Retry-After": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("Retry-After", "stale")
			tc.d.SetHeaders(h)
			if tc.d.Allowed {
				h.Del("Retry-After") // SetHeaders leaves others' Retry-After alone when allowed
			}
			for k, v := range tc.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestDecisionMerge(t *testing.T) {
	ok := func(rem int, reset, delay time.Duration) Decision {
		return Decision{Allowed: true, Limit: 10, Remaining: rem, ResetAfter: reset, Delay: delay}
	}
	no := func(retry time.Duration) Decision { return Decision{Limit: 10, RetryAfter: retry} }
	tests := []struct {
		name    string
		a, b    Decision
		want    Decision
		commute bool
	}{
		{"fewer remaining wins", ok(5, time.Second, 0), ok(2, time.Second, 0), ok(2, time.Second, 0), true},
		{"tie: later reset wins", ok(2, time.Second, 0), ok(2, time.Minute, 0), ok(2, time.Minute, 0), true},
		{"longest delay kept", ok(5, time.Second, 300*time.Millisecond), ok(2, time.Second, 0),
			ok(2, time.Second, 300*time.Millisecond), true},
		{"a refusal wins", ok(5, time.Second, 0), no(time.Second), no(time.Second), true},
		{"longest refusal wins", no(time.Second), no(time.Hour), no(time.Hour), true},
	}
	for _, tc := range tests {
		if got := tc.a.Merge(tc.b); got != tc.want {
			t.Errorf("%s: a.Merge(b) = %+v, want %+v", tc.name, got, tc.want)
		}
		if got := tc.b.Merge(tc.a); tc.commute && got != tc.want {
			t.Errorf("%s: b.Merge(a) = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestStrategy(t *testing.T) {
	for _, s := range []Strategy{StrategyDrop, StrategyQueue, StrategyDegrade} {
		got, err := ParseStrategy(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStrategy(%q) = %v, %v", s, got, err)
		}
		var u Strategy
		b, _ := s.MarshalText()
		if err := u.UnmarshalText(b); err != nil || u != s {
			t.Errorf("text round trip of %v: %v, %v", s, u, err)
		}
	}
	if _, err := ParseStrategy("reject"); err == nil {
		t.Error(`ParseStrategy("reject") succeeded`)
	}
	var zero Strategy
	if zero != StrategyDrop {
		t.Error("the zero Strategy is not drop")
	}
	if Strategy(9).String() != "strategy(9)" || Kind(9).String() != "kind(9)" {
		t.Error("unknown values are not shown with their number")
	}
}

func TestCanonicalHeaderNames(t *testing.T) {
	for have, name := range map[string]string{canonLimit: HeaderLimit, canonRemaining: HeaderRemaining, canonReset: HeaderReset, canonRetryAfter: HeaderRetryAfter} {
		if http.CanonicalHeaderKey(name) != have {
			t.Errorf("canonical form of %q is %q, not %q", name, http.CanonicalHeaderKey(name), have)
		}
	}
}
