package balance

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

var (
	_ Policy = (*IPHash)(nil)
	_ Policy = (*ConsistentHash)(nil)
	_ Policy = (*Cookie)(nil)
	_ Sticky = (*Cookie)(nil)
)

// IPHash maps a request key (the client IP by default, see Config.HashOn)
// to target hash(key) mod n, walking forward to the next eligible target
// when that one is out. Simple and stateless, but changing the number of
// targets remaps almost every key, and weights are ignored; consistent_hash
// has neither problem. Create it with New; safe for concurrent use.
type IPHash struct {
	targets []*upstream.Target
	key     keySource

	// Fallback balances requests that carry no key. New sets it to the
	// Config.Fallback policy over the same targets; replace it only before
	// the policy is shared.
	Fallback Policy
}

// Pick implements Policy.
func (p *IPHash) Pick(r *http.Request, tried upstream.Tried) *upstream.Target {
	n := len(p.targets)
	if n == 0 {
		return nil
	}
	key, ok := p.key.key(r)
	if !ok {
		return p.Fallback.Pick(r, tried)
	}
	now := time.Now()
	start := reduce(hashString(key), n)
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		if t := p.targets[i]; eligible(t, now, tried) {
			return t
		}
	}
	return nil
}

// ConsistentHash maps a request key (Config.HashOn) onto a hash ring with
// Config.VirtualNodes points per unit of weight for each target, placed by
// hashing the target's address: removing one of N targets moves only the
// keys it owned, about 1/N of them. It bounds load (Mirrokni, Thorup and
// Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2017): a target
// with at least ceil(c × (total in-flight + 1) × weight/total weight)
// requests in flight is passed over and the key walks clockwise to the next
// target, so one hot key cannot overload a target.
//
// Pick reads every target's in-flight count to compute the bound, so its
// cost is O(targets + log ring). Weight changes (SetWeight) are noticed at
// most once a second and rebuild the ring off the lock-free path. Create it
// with New; safe for concurrent use.
type ConsistentHash struct {
	targets      []*upstream.Target
	key          keySource
	loadFactor   float64
	virtualNodes int

	// Fallback balances requests that carry no key. New sets it to the
	// Config.Fallback policy over the same targets; replace it only before
	// the policy is shared.
	Fallback Policy

	ring        atomic.Pointer[hashRing]
	reweighAt   atomic.Int64  // unix nanos of the next weight check
	reweighMu   sync.Mutex    // one rebuild at a time
	reweighTick time.Duration // interval between weight checks; 0 checks every pick
}

// hashRing is an immutable snapshot of the ring: sorted point hashes and,
// at the same index, the slot in targets owning the point.
type hashRing struct {
	points  []uint64
	owners  []int32
	weights []int // the target weights the ring was built from
}

func newConsistentHash(cfg Config, ts []*upstream.Target, key keySource, fb Policy) *ConsistentHash {
	p := &ConsistentHash{
		targets:      ts,
		key:          key,
		loadFactor:   cfg.LoadFactor,
		virtualNodes: cfg.VirtualNodes,
		Fallback:     fb,
		reweighTick:  time.Second,
	}
	p.ring.Store(buildRing(ts, cfg.VirtualNodes))
	return p
}

// buildRing places perWeight points per unit of weight for every target
// (see placePoints).
func buildRing(ts []*upstream.Target, perWeight int) *hashRing {
	names := make([]string, len(ts))
	weights := make([]int, len(ts))
	for i, t := range ts {
		names[i], weights[i] = t.Address, t.Weight()
	}
	points, owners := placePoints(names, weights, perWeight)
	return &hashRing{points: points, owners: owners, weights: weights}
}

// placePoints is the ring's geometry, shared by the gateway's consistent
// hash and Ring: perWeight points per unit of weight for every member.
// Point k of a member hashes its name and k (splitmix64 over the name
// hash), so a member's points do not depend on its slot or its
// neighbours, and adding a member moves only the keys it takes over.
func placePoints(names []string, weights []int, perWeight int) ([]uint64, []int32) {
	total := 0
	for _, w := range weights {
		total += w
	}
	// Points per member: perWeight per unit of weight, scaled down in
	// proportion when the ring would exceed maxRingSize (at least one each),
	// so large weights cannot make the ring large.
	counts := make([]int, len(names))
	n := 0
	for i, w := range weights {
		c := w * perWeight
		if total > 0 && total*perWeight > maxRingSize {
			c = max(1, int(int64(w)*maxRingSize/int64(total)))
		}
		counts[i] = c
		n += c
	}
	type point struct {
		h     uint64
		owner int32
	}
	pts := make([]point, 0, n)
	for i, name := range names {
		base := hashString(name)
		for k := 0; k < counts[i]; k++ {
			pts = append(pts, point{mix64(base + uint64(k+1)*golden), int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		// Equal hashes (vanishingly rare): order by name so the ring
		// does not depend on slot order.
		if names[a.owner] < names[b.owner] {
			return -1
		}
		return 1
	})
	points, owners := make([]uint64, len(pts)), make([]int32, len(pts))
	for i, pt := range pts {
		points[i], owners[i] = pt.h, pt.owner
	}
	return points, owners
}

// Pick implements Policy.
func (p *ConsistentHash) Pick(r *http.Request, tried upstream.Tried) *upstream.Target {
	if len(p.targets) == 0 {
		return nil
	}
	key, ok := p.key.key(r)
	if !ok {
		return p.Fallback.Pick(r, tried)
	}
	now := time.Now()
	ring := p.maybeReweigh(now)

	// The bound needs the load of the whole available pool. Tried targets
	// count towards it (they are still serving) but cannot be chosen.
	var inflight, weight int64
	candidates := 0
	for _, t := range p.targets {
		if !t.Available(now) {
			continue
		}
		inflight += t.InFlight()
		weight += int64(t.Weight())
		if !tried.Has(t.Index) {
			candidates++
		}
	}
	if candidates == 0 || len(ring.points) == 0 {
		return nil
	}
	// capPerWeight × weight is a target's bound; ceil is applied per target.
	capPerWeight := p.loadFactor * float64(inflight+1) / float64(weight)

	h := hashString(key)
	start, _ := slices.BinarySearch(ring.points, h) // first point >= h
	np := len(ring.points)
	var spill *upstream.Target // first eligible target, used if all are full
	for k := 0; k < np; k++ {
		i := start + k
		if i >= np {
			i -= np
		}
		t := p.targets[ring.owners[i]]
		if !eligible(t, now, tried) {
			continue
		}
		limit := int64(math.Ceil(capPerWeight * float64(t.Weight())))
		if t.InFlight() < limit {
			return t
		}
		if spill == nil {
			spill = t
		}
	}
	// Every candidate is at its bound (possible only when tried excludes
	// the others): serve the key's first eligible target regardless.
	return spill
}

// maybeReweigh returns the ring, rebuilding it first when a target weight
// changed since it was built. Weights are compared at most once per
// reweighTick; the rebuild allocates but happens only after SetWeight.
func (p *ConsistentHash) maybeReweigh(now time.Time) *hashRing {
	ring := p.ring.Load()
	at := p.reweighAt.Load()
	if now.UnixNano() < at || !p.reweighAt.CompareAndSwap(at, now.Add(p.reweighTick).UnixNano()) {
		return ring
	}
	changed := false
	for i, t := range p.targets {
		if t.Weight() != ring.weights[i] {
			changed = true
			break
		}
	}
	if !changed || !p.reweighMu.TryLock() {
		return ring
	}
	defer p.reweighMu.Unlock()
	ring = buildRing(p.targets, p.virtualNodes)
	p.ring.Store(ring)
	return ring
}

// Cookie pins a client to a target with a cookie the gateway sets (see
// StickyCookie). A request whose cookie names an eligible target goes
// there; any other request (no cookie, unknown id, target out or already
// tried) goes to Fallback. The cookie value is an opaque id, 16 hex digits
// of a hash of the target's address: it does not reveal the address, and
// it is the same on every gateway replica and across restarts and reloads.
// Create it with New; safe for concurrent use.
type Cookie struct {
	targets []*upstream.Target
	ids     []string       // cookie value per target slot
	bySlot  map[string]int // cookie value -> target slot
	name    string
	maxAge  int // seconds; 0 for a session cookie

	// Fallback picks a target for requests that cannot be pinned. New sets
	// it to the Config.Fallback policy over the same targets; replace it
	// only before the policy is shared.
	Fallback Policy
}

func newCookie(cfg Config, ts []*upstream.Target, fb Policy) *Cookie {
	p := &Cookie{
		targets:  ts,
		ids:      make([]string, len(ts)),
		bySlot:   make(map[string]int, len(ts)),
		name:     cfg.Cookie.Name,
		Fallback: fb,
	}
	if cfg.Cookie.TTL > 0 {
		p.maxAge = int((cfg.Cookie.TTL + time.Second - 1) / time.Second)
	}
	for i, t := range ts {
		id := cookieID(t.Address, 0)
		for n := 1; ; n++ {
			// Two targets with one address (config rejects it, but New
			// does not) or a 64-bit collision: keep ids distinct.
			if _, dup := p.bySlot[id]; !dup {
				break
			}
			id = cookieID(t.Address, n)
		}
		p.ids[i] = id
		p.bySlot[id] = i
	}
	return p
}

// cookieID is the sticky-cookie value of an address.
func cookieID(address string, salt int) string {
	h := hashString(address)
	if salt > 0 {
		h = mix64(h + uint64(salt)*golden)
	}
	s := strconv.FormatUint(h, 16)
	for len(s) < 16 {
		s = "0" + s
	}
	return s
}

// Pick implements Policy.
func (p *Cookie) Pick(r *http.Request, tried upstream.Tried) *upstream.Target {
	if r != nil {
		if v, ok := cookieValue(r.Header, p.name); ok {
			if i, ok := p.bySlot[v]; ok {
				if t := p.targets[i]; eligible(t, time.Now(), tried) {
					return t
				}
			}
		}
	}
	return p.Fallback.Pick(r, tried)
}

// StickyCookie implements Sticky: it returns the cookie pinning the client
// to t (HttpOnly, Path=/, SameSite=Lax, Secure when r came over TLS,
// Max-Age from Config.Cookie.TTL), or nil when r already carries it or t is
// not one of the policy's targets.
func (p *Cookie) StickyCookie(r *http.Request, t *upstream.Target) *http.Cookie {
	slot := p.slotOf(t)
	if slot < 0 {
		return nil
	}
	id := p.ids[slot]
	if r != nil {
		if v, ok := cookieValue(r.Header, p.name); ok && v == id {
			return nil
		}
	}
	return &http.Cookie{
		Name:     p.name,
		Value:    id,
		Path:     "/",
		MaxAge:   p.maxAge,
		HttpOnly: true,
		Secure:   r != nil && r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	}
}

// slotOf returns t's position in p.targets, or -1.
func (p *Cookie) slotOf(t *upstream.Target) int {
	if t == nil {
		return -1
	}
	if i := t.Index; i >= 0 && i < len(p.targets) && p.targets[i] == t {
		return i
	}
	for i, u := range p.targets {
		if u == t {
			return i
		}
	}
	return -1
}
