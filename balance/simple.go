package balance

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

var (
	_ Policy = (*RoundRobin)(nil)
	_ Policy = (*WeightedRoundRobin)(nil)
	_ Policy = (*LeastConnections)(nil)
	_ Policy = (*LeastResponseTime)(nil)
	_ Policy = (*Random)(nil)
)

// eligible reports whether t may serve this attempt.
func eligible(t *upstream.Target, now time.Time, tried upstream.Tried) bool {
	return t.Available(now) && !tried.Has(t.Index)
}

// RoundRobin hands requests to the targets in turn, skipping those that are
// not eligible. Weights are ignored. Create it with New; safe for
// concurrent use.
type RoundRobin struct {
	targets []*upstream.Target
	next    atomic.Uint64
}

// Pick implements Policy.
func (p *RoundRobin) Pick(_ *http.Request, tried upstream.Tried) *upstream.Target {
	n := len(p.targets)
	if n == 0 {
		return nil
	}
	now := time.Now()
	start := p.next.Add(1) - 1
	for k := 0; k < n; k++ {
		t := p.targets[(start+uint64(k))%uint64(n)]
		if eligible(t, now, tried) {
			if k > 0 {
				// Continue after the chosen target, so the one following
				// a skipped run does not get two turns in a row.
				p.next.Add(uint64(k))
			}
			return t
		}
	}
	return nil
}

// WeightedRoundRobin is nginx's smooth weighted round robin: on every pick
// each eligible target's current weight grows by its weight, the largest
// wins and loses the total. Weights 5, 1, 1 give a a b a c a a, spreading a
// heavy target's turns instead of bunching them. Weights are read at pick
// time, so SetWeight takes effect on the next pick. Create it with New;
// safe for concurrent use (a short mutex, as nginx holds per worker).
type WeightedRoundRobin struct {
	targets []*upstream.Target

	mu      sync.Mutex
	current []int64 // current weight per target slot; guarded by mu
}

// Pick implements Policy.
func (p *WeightedRoundRobin) Pick(_ *http.Request, tried upstream.Tried) *upstream.Target {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	best := -1
	for i, t := range p.targets {
		if !eligible(t, now, tried) {
			continue
		}
		w := int64(t.Weight())
		p.current[i] += w
		total += w
		if best < 0 || p.current[i] > p.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	p.current[best] -= total
	return p.targets[best]
}

// LeastConnections sends a request to the eligible target with the fewest
// requests in flight per unit of weight. Ties are broken by a rotating
// start, so idle targets share the load instead of the first one taking
// it all. Create it with New; safe for concurrent use.
type LeastConnections struct {
	targets []*upstream.Target
	next    atomic.Uint64
}

// Pick implements Policy.
func (p *LeastConnections) Pick(_ *http.Request, tried upstream.Tried) *upstream.Target {
	n := len(p.targets)
	if n == 0 {
		return nil
	}
	now := time.Now()
	start := int((p.next.Add(1) - 1) % uint64(n))
	var best *upstream.Target
	var bestLoad, bestWeight int64
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		t := p.targets[i]
		if !eligible(t, now, tried) {
			continue
		}
		load, w := t.InFlight(), int64(t.Weight())
		// load/w < bestLoad/bestWeight, without division.
		if best == nil || load*bestWeight < bestLoad*w {
			best, bestLoad, bestWeight = t, load, w
		}
	}
	return best
}

// LeastResponseTime is "power of two choices" over peak-EWMA cost (latency
// average × (in-flight + 1), see upstream.Target.Cost) divided by weight:
// it draws two distinct targets at random and takes the cheaper, so the
// fastest targets get most requests while slower ones still get some and
// their latency estimate stays fresh. When neither draw is eligible it
// scans all targets for the cheapest. Create it with New; safe for
// concurrent use.
type LeastResponseTime struct {
	targets []*upstream.Target
	rng     *rng
}

// Pick implements Policy.
func (p *LeastResponseTime) Pick(_ *http.Request, tried upstream.Tried) *upstream.Target {
	n := len(p.targets)
	now := time.Now()
	switch n {
	case 0:
		return nil
	case 1:
		if t := p.targets[0]; eligible(t, now, tried) {
			return t
		}
		return nil
	}
	r := p.rng.next()
	i := reduce(r, n)
	j := reduce(r<<32, n-1) // a second index from the low bits
	if j >= i {
		j++ // distinct from i, still uniform
	}
	a, b := p.targets[i], p.targets[j]
	okA, okB := eligible(a, now, tried), eligible(b, now, tried)
	switch {
	case okA && okB:
		if cheaper(b, a) {
			return b
		}
		return a
	case okA:
		return a
	case okB:
		return b
	}
	// Both draws are out: scan from a random start for the cheapest.
	var best *upstream.Target
	for k := 0; k < n; k++ {
		t := p.targets[(i+k)%n]
		if eligible(t, now, tried) && (best == nil || cheaper(t, best)) {
			best = t
		}
	}
	return best
}

// cheaper reports whether a's cost per unit of weight is below b's; with
// equal costs (for example two targets without latency samples, whose cost
// is 0) the one with fewer in-flight requests per weight is cheaper.
func cheaper(a, b *upstream.Target) bool {
	wa, wb := float64(a.Weight()), float64(b.Weight())
	ca, cb := a.Cost()*wb, b.Cost()*wa
	if ca != cb {
		return ca < cb
	}
	return float64(a.InFlight())*wb < float64(b.InFlight())*wa
}

// Random picks an eligible target at random with probability proportional
// to its weight. Create it with New; safe for concurrent use.
type Random struct {
	targets []*upstream.Target
	rng     *rng
}

// Pick implements Policy.
func (p *Random) Pick(_ *http.Request, tried upstream.Tried) *upstream.Target {
	now := time.Now()
	var total uint64
	for _, t := range p.targets {
		if eligible(t, now, tried) {
			total += uint64(t.Weight())
		}
	}
	if total == 0 {
		return nil
	}
	x := p.rng.next() % total
	var last *upstream.Target
	for _, t := range p.targets {
		if !eligible(t, now, tried) {
			continue
		}
		// Weights and state are re-read: a concurrent change may leave x
		// past the end, in which case the last eligible target is taken.
		last = t
		w := uint64(t.Weight())
		if x < w {
			return t
		}
		x -= w
	}
	return last
}
