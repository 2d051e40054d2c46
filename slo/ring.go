package slo

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Counting. An SLO counts good and total requests in time buckets held in
// two rings, so memory is bounded whatever the traffic:
//
//   - the coarse ring has buckets of window/672 (1h for 28d) and covers
//     the SLO window: the SLI, the budget, and alert windows of at least
//     20 coarse buckets (3d for 28d) are summed there, to within one
//     bucket (under 5%);
//   - the fine ring has buckets of a tenth of the shortest alert window
//     (30s for 5m; wider when it would need over 2,000 buckets) and
//     covers the longer alert windows the coarse ring would measure too
//     roughly (6h for the defaults).
//
// A bucket is 24 bytes (its number and two counters); the defaults use
// 673 + 721 buckets, 33 KiB per SLO. A window's sum covers the current,
// partial bucket and the whole buckets before it: between the window less
// one bucket and the window.
//
// Bucket numbers are absolute (Unix time / width), so persisted buckets
// are restored in place after a restart, and buckets older than the ring
// simply no longer count.

// coarseBuckets is how many coarse buckets cover the SLO window.
const coarseBuckets = 672

// maxFine bounds the fine ring's buckets (its width grows instead).
const maxFine = 2000

// ringSpec is the shape of a ring.
type ringSpec struct {
	width time.Duration
	n     int
}

// layout is an SLO's pair of rings; fine.n is 0 when every window is
// counted on the coarse ring.
type layout struct {
	coarse, fine ringSpec
	// fineMax is the longest window summed on the fine ring.
	fineMax time.Duration
}

func (l layout) buckets() int { return l.coarse.n + l.fine.n }

// onFine reports whether a window is summed on the fine ring.
func (l layout) onFine(w time.Duration) bool { return l.fine.n > 0 && w <= l.fineMax }

func (l layout) String() string {
	return fmt.Sprintf("coarse=%s*%d,fine=%s*%d", l.coarse.width, l.coarse.n, l.fine.width, l.fine.n)
}

func ceilDiv(a, b time.Duration) int { return int((a + b - 1) / b) }

// layout computes the rings of a valid config.
func (c *Config) layout() layout {
	w := c.EffectiveWindow()
	cw := (w / coarseBuckets).Truncate(time.Millisecond)
	if cw < time.Millisecond {
		cw = time.Millisecond
	}
	l := layout{coarse: ringSpec{width: cw, n: ceilDiv(w, cw) + 1}}
	shortest, fineMax := time.Duration(0), time.Duration(0)
	for _, a := range c.EffectiveAlerts() {
		for _, aw := range []time.Duration{time.Duration(a.ShortWindow), time.Duration(a.LongWindow)} {
			if aw <= 0 {
				continue
			}
			if shortest == 0 || aw < shortest {
				shortest = aw
			}
			if aw < 20*cw && aw > fineMax {
				fineMax = aw
			}
		}
	}
	if fineMax == 0 {
		return l
	}
	fw := max((shortest / 10).Truncate(time.Millisecond), (fineMax / maxFine).Truncate(time.Millisecond), time.Millisecond)
	if fw >= cw {
		return l
	}
	l.fine = ringSpec{width: fw, n: ceilDiv(fineMax, fw) + 1}
	l.fineMax = fineMax
	return l
}

// bucket counts the requests of one time slot. num is the slot's number
// (time / width); a bucket holding an older slot is reset before use.
type bucket struct {
	num   atomic.Int64
	good  atomic.Uint64
	total atomic.Uint64
}

// ring is a fixed array of buckets reused in turn. Safe for concurrent
// use: adds are atomic; moving a bucket to a new slot takes mu.
type ring struct {
	width int64 // nanoseconds
	b     []bucket
	mu    sync.Mutex
}

const noSlot = -1 << 63

func newRing(s ringSpec) *ring {
	r := &ring{width: int64(s.width), b: make([]bucket, s.n)}
	for i := range r.b {
		r.b[i].num.Store(noSlot)
	}
	return r
}

// slot is t's slot number (floor division, for times before 1970 too).
func (r *ring) slot(t int64) int64 {
	q := t / r.width
	if t%r.width < 0 {
		q--
	}
	return q
}

func (r *ring) at(slot int64) *bucket {
	i := slot % int64(len(r.b))
	if i < 0 {
		i += int64(len(r.b))
	}
	return &r.b[i]
}

// add counts one request at time t (Unix nanoseconds). It allocates
// nothing; it drops a request whose slot the ring has already reused
// (a clock that went back further than the ring).
func (r *ring) add(t int64, good bool) {
	s := r.slot(t)
	b := r.at(s)
	if n := b.num.Load(); n != s {
		if n > s || !r.advance(b, s) {
			return
		}
	}
	// total before good: a reader that loads good before total never
	// sees more good than total.
	b.total.Add(1)
	if good {
		b.good.Add(1)
	}
}

// advance resets b for slot s unless it already holds s or a later one.
func (r *ring) advance(b *bucket, s int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch n := b.num.Load(); {
	case n == s:
		return true
	case n > s:
		return false
	}
	b.good.Store(0)
	b.total.Store(0)
	b.num.Store(s)
	return true
}

// sum returns the counts of the slots of the span ending at t: the
// current slot and the whole ones before it, span/width slots in all.
func (r *ring) sum(t int64, span time.Duration) (good, total uint64) {
	cur := r.slot(t)
	k := int64(ceilDiv(span, time.Duration(r.width)))
	if k > int64(len(r.b)) {
		k = int64(len(r.b))
	}
	for s := cur - k + 1; s <= cur; s++ {
		b := r.at(s)
		if b.num.Load() != s {
			continue
		}
		g := b.good.Load()
		tt := b.total.Load()
		if b.num.Load() != s { // reused while being read
			continue
		}
		good += min(g, tt)
		total += tt
	}
	return good, total
}

// slotCount is one persisted bucket.
type slotCount struct {
	Slot  int64  `json:"s"`
	Good  uint64 `json:"g"`
	Total uint64 `json:"t"`
}

// snapshot returns the ring's non-empty buckets that are still within
// its span at t.
func (r *ring) snapshot(t int64) []slotCount {
	cur := r.slot(t)
	var out []slotCount
	for s := cur - int64(len(r.b)) + 1; s <= cur; s++ {
		b := r.at(s)
		if b.num.Load() != s {
			continue
		}
		g, tt := b.good.Load(), b.total.Load()
		if tt == 0 {
			continue
		}
		out = append(out, slotCount{Slot: s, Good: min(g, tt), Total: tt})
	}
	return out
}

// restore puts persisted buckets back, adding to what the ring counted
// since (restore runs at start, before traffic, so normally nothing).
// Buckets outside the ring's span at t are skipped.
func (r *ring) restore(t int64, counts []slotCount) {
	cur := r.slot(t)
	for _, c := range counts {
		if c.Slot > cur || c.Slot <= cur-int64(len(r.b)) || c.Good > c.Total {
			continue
		}
		b := r.at(c.Slot)
		if b.num.Load() != c.Slot && !r.advance(b, c.Slot) {
			continue
		}
		b.total.Add(c.Total)
		b.good.Add(c.Good)
	}
}
