package balance

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

// sequence picks n times and returns the targets as letters a, b, c ...
func sequence(p Policy, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		t := p.Pick(nil, upstream.Tried{})
		if t == nil {
			b.WriteByte('-')
			continue
		}
		b.WriteByte(byte('a' + t.Index))
	}
	return b.String()
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name  string
		setup func(ts []*upstream.Target)
		want  string
	}{
		{"exact cycle", func([]*upstream.Target) {}, "abcdabcdabcd"},
		{"skips unhealthy without doubling the next", func(ts []*upstream.Target) { ts[1].SetHealthy(false) }, "acdacdacdacd"},
		{"skips a run", func(ts []*upstream.Target) { ts[1].SetDraining(true); ts[2].SetDraining(true) }, "adadadadadad"},
		{"ignores weights", func(ts []*upstream.Target) { ts[0].SetWeight(10) }, "abcdabcdabcd"},
		{"all out", func(ts []*upstream.Target) {
			for _, x := range ts {
				x.SetHealthy(false)
			}
		}, "------------"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTargets(1, 1, 1, 1)
			p := mustNew(t, Config{Policy: RoundRobinPolicy}, ts)
			tt.setup(ts)
			if got := sequence(p, 12); got != tt.want {
				t.Errorf("sequence = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string
	}{
		// nginx's documented example (ngx_http_upstream_round_robin.c).
		{"nginx 5 1 1", []int{5, 1, 1}, "aabacaa" + "aabacaa"},
		{"equal weights", []int{1, 1, 1}, "abcabcabc"},
		{"4 2 1", []int{4, 2, 1}, "abacaba" + "abacaba"},
		{"single", []int{3}, "aaaa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{Policy: WeightedRoundRobinPolicy}, newTargets(tt.weights...))
			if got := sequence(p, len(tt.want)); got != tt.want {
				t.Errorf("sequence = %s, want %s", got, tt.want)
			}
		})
	}

	t.Run("SetWeight takes effect", func(t *testing.T) {
		ts := newTargets(5, 1, 1)
		p := mustNew(t, Config{Policy: WeightedRoundRobinPolicy}, ts)
		sequence(p, 3) // mid-cycle
		ts[1].SetWeight(5)
		ts[0].SetWeight(1)
		c := counts(p, ts, 1400, func(int) *http.Request { return nil })
		want := []int{200, 1000, 200} // weights 1, 5, 1
		for i := range want {
			if d := c[i] - want[i]; d < -3 || d > 3 {
				t.Errorf("after SetWeight, target %d got %d of 1400 picks, want %d±3 (counts %v)", i, c[i], want[i], c)
			}
		}
	})

	t.Run("unavailable target leaves the rest in proportion", func(t *testing.T) {
		ts := newTargets(5, 1, 2)
		p := mustNew(t, Config{Policy: WeightedRoundRobinPolicy}, ts)
		ts[0].SetHealthy(false)
		if got := sequence(p, 9); got != "cbccbccbc" {
			t.Errorf("sequence = %s, want cbccbccbc", got)
		}
	})
}

func TestLeastConnections(t *testing.T) {
	begin := func(t *upstream.Target, n int) {
		for i := 0; i < n; i++ {
			t.Begin()
		}
	}
	t.Run("prefers fewer in flight", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := mustNew(t, Config{Policy: LeastConnectionsPolicy}, ts)
		begin(ts[0], 3)
		begin(ts[1], 1)
		begin(ts[2], 2)
		for i := 0; i < 10; i++ {
			if got := p.Pick(nil, upstream.Tried{}); got != ts[1] {
				t.Fatalf("Pick = %s, want %s (1 in flight vs 3 and 2)", got.Address, ts[1].Address)
			}
		}
	})
	t.Run("in flight per weight", func(t *testing.T) {
		ts := newTargets(4, 1)
		p := mustNew(t, Config{Policy: LeastConnectionsPolicy}, ts)
		begin(ts[0], 3) // 0.75 per weight
		begin(ts[1], 1) // 1 per weight
		if got := p.Pick(nil, upstream.Tried{}); got != ts[0] {
			t.Fatalf("Pick = %s, want the weight-4 target with 3 in flight", got.Address)
		}
	})
	t.Run("ties rotate", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1)
		p := mustNew(t, Config{Policy: LeastConnectionsPolicy}, ts)
		c := counts(p, ts, 400, func(int) *http.Request { return nil })
		for i := 0; i < 4; i++ {
			if c[i] != 100 {
				t.Errorf("idle target %d got %d of 400 picks, want 100 (counts %v)", i, c[i], c)
			}
		}
	})
	t.Run("load converges to weights", func(t *testing.T) {
		ts := newTargets(1, 3, 2)
		p := mustNew(t, Config{Policy: LeastConnectionsPolicy}, ts)
		for i := 0; i < 600; i++ { // requests that never finish
			p.Pick(nil, upstream.Tried{}).Begin()
		}
		for i, want := range []int64{100, 300, 200} {
			if got := ts[i].InFlight(); got < want-3 || got > want+3 {
				t.Errorf("target %d (weight %d) has %d in flight, want %d±3", i, ts[i].Weight(), got, want)
			}
		}
	})
	t.Run("SetWeight takes effect", func(t *testing.T) {
		ts := newTargets(1, 1)
		p := mustNew(t, Config{Policy: LeastConnectionsPolicy}, ts)
		ts[1].SetWeight(4)
		for i := 0; i < 500; i++ {
			p.Pick(nil, upstream.Tried{}).Begin()
		}
		if a, b := ts[0].InFlight(), ts[1].InFlight(); b < 4*a-4 || b > 4*a+4 {
			t.Errorf("in flight %d and %d, want 1:4 after SetWeight(4)", a, b)
		}
	})
}

func TestLeastResponseTime(t *testing.T) {
	newLRT := func(t *testing.T, ts []*upstream.Target) *LeastResponseTime {
		p := mustNew(t, Config{Policy: LeastResponseTimePolicy}, ts).(*LeastResponseTime)
		p.rng.seed(42)
		return p
	}
	t.Run("prefers lower cost and still explores", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1)
		now := time.Now()
		for i, x := range ts {
			x.ObserveLatency(now, time.Duration(i+1)*10*time.Millisecond)
		}
		p := newLRT(t, ts)
		const n = 12000
		c := counts(p, ts, n, func(int) *http.Request { return nil })
		// Two distinct draws of four: the cheapest wins whenever drawn
		// (1/2), the second unless paired with the first (1/3), the third
		// only against the fourth (1/6), the dearest never.
		want := []float64{1.0 / 2, 1.0 / 3, 1.0 / 6, 0}
		for i, w := range want {
			got := float64(c[i]) / n
			if math.Abs(got-w) > 0.03 {
				t.Errorf("target %d (latency %dms) got %.3f of picks, want %.3f±0.03 (counts %v)", i, (i+1)*10, got, w, c)
			}
		}
	})
	t.Run("in flight raises cost", func(t *testing.T) {
		ts := newTargets(1, 1)
		now := time.Now()
		ts[0].ObserveLatency(now, 10*time.Millisecond)
		ts[1].ObserveLatency(now, 30*time.Millisecond)
		p := newLRT(t, ts)
		if got := p.Pick(nil, upstream.Tried{}); got != ts[0] {
			t.Fatalf("Pick = %s, want the faster target", got.Address)
		}
		for i := 0; i < 3; i++ { // cost 10ms×4 = 40ms > 30ms×1
			ts[0].Begin()
		}
		if got := p.Pick(nil, upstream.Tried{}); got != ts[1] {
			t.Fatalf("Pick = %s, want the slower but idle target", got.Address)
		}
	})
	t.Run("new targets without samples spread by in flight", func(t *testing.T) {
		ts := newTargets(1, 1, 1)
		p := newLRT(t, ts)
		for i := 0; i < 300; i++ {
			p.Pick(nil, upstream.Tried{}).Begin()
		}
		for i, x := range ts {
			if got := x.InFlight(); got < 95 || got > 105 {
				t.Errorf("target %d has %d in flight, want about 100", i, got)
			}
		}
	})
	t.Run("falls back to scanning", func(t *testing.T) {
		ts := newTargets(1, 1, 1, 1, 1, 1, 1, 1)
		p := newLRT(t, ts)
		for _, x := range ts[:7] {
			x.SetHealthy(false)
		}
		for i := 0; i < 200; i++ {
			if got := p.Pick(nil, upstream.Tried{}); got != ts[7] {
				t.Fatalf("Pick = %v, want the only healthy target", got)
			}
		}
	})
}

func TestRandom(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"uniform", []int{1, 1, 1, 1}},
		{"weighted", []int{1, 2, 3, 4}},
		{"one heavy", []int{10, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTargets(tt.weights...)
			p := mustNew(t, Config{Policy: RandomPolicy}, ts).(*Random)
			p.rng.seed(7)
			const n = 100000
			c := counts(p, ts, n, func(int) *http.Request { return nil })
			total := 0
			for _, w := range tt.weights {
				total += w
			}
			for i, w := range tt.weights {
				// Binomial: allow 4 standard deviations.
				pr := float64(w) / float64(total)
				mean, sd := n*pr, math.Sqrt(n*pr*(1-pr))
				if d := math.Abs(float64(c[i]) - mean); d > 4*sd {
					t.Errorf("target %d (weight %d) got %d picks, want %.0f±%.0f (counts %v)", i, w, c[i], mean, 4*sd, c)
				}
			}
		})
	}
	t.Run("SetWeight takes effect", func(t *testing.T) {
		ts := newTargets(1, 1)
		p := mustNew(t, Config{Policy: RandomPolicy}, ts).(*Random)
		p.rng.seed(9)
		ts[0].SetWeight(9)
		c := counts(p, ts, 10000, func(int) *http.Request { return nil })
		if c[0] < 8800 || c[0] > 9200 {
			t.Errorf("weight-9 target got %d of 10000 picks, want about 9000", c[0])
		}
	})
}
