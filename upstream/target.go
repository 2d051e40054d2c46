// Package upstream holds the live state of the backends a gateway forwards to:
// targets (one address each) grouped into pools.
//
// A Target is shared by the balancer, the health checker, the outlier
// detector, the proxy and the admin API, so all of its mutable state is kept
// in atomics: reading it on the request path takes no lock.
package upstream

import (
	"math"
	"sync/atomic"
	"time"
)

// Target is one backend address of a pool and its live state. The zero value
// is not usable; create targets with NewTarget. Safe for concurrent use.
type Target struct {
	// Address is host:port of the backend. Immutable.
	Address string
	// Index is the target's position in its pool (0-based). Immutable.
	Index int

	weight       atomic.Int32
	inflight     atomic.Int64
	healthy      atomic.Bool  // result of active health checks (true when none are configured)
	draining     atomic.Bool  // admin drain: no new requests
	ejectedUntil atomic.Int64 // unix nanos; passive outlier ejection end, 0 when not ejected
	ejections    atomic.Int64 // times this target was ejected (ejection time grows with it)

	// Peak-EWMA of response latency in nanoseconds (float64 bits), and the
	// time of the last update, for least_response_time.
	ewmaBits atomic.Uint64
	ewmaAt   atomic.Int64

	requests atomic.Uint64 // requests sent (all attempts)
	failures atomic.Uint64 // attempts that failed (connect error, timeout, 5xx)
}

// NewTarget returns a healthy target with the given address, index and
// weight (weights below 1 become 1).
func NewTarget(address string, index, weight int) *Target {
	t := &Target{Address: address, Index: index}
	if weight < 1 {
		weight = 1
	}
	t.weight.Store(int32(weight))
	t.healthy.Store(true)
	return t
}

// Weight returns the target's current weight (>= 1).
func (t *Target) Weight() int { return int(t.weight.Load()) }

// SetWeight changes the weight; values below 1 become 1.
func (t *Target) SetWeight(w int) {
	if w < 1 {
		w = 1
	}
	t.weight.Store(int32(w))
}

// Healthy reports the active health-check state.
func (t *Target) Healthy() bool { return t.healthy.Load() }

// SetHealthy records the active health-check state and reports whether it changed.
func (t *Target) SetHealthy(h bool) bool { return t.healthy.Swap(h) != h }

// Draining reports whether the target has been drained by an operator.
func (t *Target) Draining() bool { return t.draining.Load() }

// SetDraining drains (true) or undrains (false) the target.
func (t *Target) SetDraining(d bool) { t.draining.Store(d) }

// Ejected reports whether passive outlier detection has ejected the target at now.
func (t *Target) Ejected(now time.Time) bool {
	until := t.ejectedUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// EjectedUntil returns the end of the current ejection, or the zero time.
func (t *Target) EjectedUntil() time.Time {
	until := t.ejectedUntil.Load()
	if until == 0 {
		return time.Time{}
	}
	return time.Unix(0, until)
}

// Eject marks the target ejected until the given time and counts the ejection.
func (t *Target) Eject(until time.Time) {
	t.ejectedUntil.Store(until.UnixNano())
	t.ejections.Add(1)
}

// Uneject ends an ejection early.
func (t *Target) Uneject() { t.ejectedUntil.Store(0) }

// Ejections returns how many times the target has been ejected.
func (t *Target) Ejections() int64 { return t.ejections.Load() }

// Available reports whether a balancer may choose the target at now:
// healthy, not draining and not ejected.
func (t *Target) Available(now time.Time) bool {
	return t.healthy.Load() && !t.draining.Load() && !t.Ejected(now)
}

// InFlight returns the number of requests currently sent to the target.
func (t *Target) InFlight() int64 { return t.inflight.Load() }

// Begin counts a request sent to the target; call Done when it completes.
func (t *Target) Begin() {
	t.inflight.Add(1)
	t.requests.Add(1)
}

// Done ends a request started with Begin, recording whether it failed.
func (t *Target) Done(failed bool) {
	t.inflight.Add(-1)
	if failed {
		t.failures.Add(1)
	}
}

// Requests and Failures return lifetime counters.
func (t *Target) Requests() uint64 { return t.requests.Load() }

// Failures returns the number of failed attempts sent to the target.
func (t *Target) Failures() uint64 { return t.failures.Load() }

// ewmaDecay is the time constant of the latency average: samples older than
// about this much weigh little.
const ewmaDecay = 10 * time.Second

// ObserveLatency folds one response latency into the target's peak-EWMA: a
// sample above the average replaces it at once (peak sensitivity), a lower
// one decays it exponentially with the time since the last sample.
func (t *Target) ObserveLatency(now time.Time, d time.Duration) {
	sample := float64(d)
	nowNs := now.UnixNano()
	for {
		oldBits := t.ewmaBits.Load()
		old := math.Float64frombits(oldBits)
		prev := t.ewmaAt.Load()
		var next float64
		switch {
		case oldBits == 0 || sample > old:
			next = sample
		default:
			elapsed := float64(nowNs - prev)
			if elapsed < 0 {
				elapsed = 0
			}
			w := math.Exp(-elapsed / float64(ewmaDecay))
			next = old*w + sample*(1-w)
		}
		if t.ewmaBits.CompareAndSwap(oldBits, math.Float64bits(next)) {
			t.ewmaAt.Store(nowNs)
			return
		}
	}
}

// LatencyEWMA returns the current peak-EWMA latency (0 before any sample).
func (t *Target) LatencyEWMA() time.Duration {
	return time.Duration(math.Float64frombits(t.ewmaBits.Load()))
}

// Cost is the load estimate least_response_time minimises: the latency
// average times the requests in flight plus one. Targets with no samples yet
// cost as little as possible, so new targets get tried.
func (t *Target) Cost() float64 {
	return math.Float64frombits(t.ewmaBits.Load()) * float64(t.inflight.Load()+1)
}

// Tried is a small set of targets already attempted by one request, so a
// retry goes to another target. It is a value type (no allocation); once more
// than its capacity is added, the oldest entries are forgotten.
type Tried struct {
	n   int
	idx [8]int32
}

// Add records a target index.
func (s *Tried) Add(index int) {
	s.idx[s.n%len(s.idx)] = int32(index)
	s.n++
}

// Has reports whether a target index was recorded.
func (s Tried) Has(index int) bool {
	n := s.n
	if n > len(s.idx) {
		n = len(s.idx)
	}
	for i := 0; i < n; i++ {
		if s.idx[i] == int32(index) {
			return true
		}
	}
	return false
}

// Len returns how many targets were recorded.
func (s Tried) Len() int { return s.n }

// CarryStateFrom copies the operator and health state of old (a target with
// the same address in the previous config generation) into t: health,
// drain, ejection and the latency average. Weight and counters are not
// copied: the new config's weight applies and counters start afresh.
func (t *Target) CarryStateFrom(old *Target) {
	t.healthy.Store(old.healthy.Load())
	t.draining.Store(old.draining.Load())
	t.ejectedUntil.Store(old.ejectedUntil.Load())
	t.ejections.Store(old.ejections.Load())
	t.ewmaBits.Store(old.ewmaBits.Load())
	t.ewmaAt.Store(old.ewmaAt.Load())
}
