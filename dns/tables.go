package dns

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/upstream"
)

// tables is the compiled, immutable configuration the server answers
// from. Only the sites' targets change (health and latency, atomics).
type tables struct {
	listen string
	maxUDP int
	// maxTCP and maxTCPPerClient bound open TCP connections.
	maxTCP, maxTCPPerClient int
	check                   health.CheckConfig
	regions                 []regionPrefix // longest prefix first
	sites                   []*site
	zones                   map[string]*zone // by canonical origin
}

type regionPrefix struct {
	prefix netip.Prefix
	region string
}

func sortRegions(r []regionPrefix) {
	sort.SliceStable(r, func(i, j int) bool { return r[i].prefix.Bits() > r[j].prefix.Bits() })
}

// regionOf returns the region of addr, or "" when no prefix matches.
func (t *tables) regionOf(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, r := range t.regions {
		if r.prefix.Contains(addr) {
			return r.region
		}
	}
	return ""
}

// zoneOf returns the zone that is authoritative for the canonical name,
// the one with the longest origin, or nil.
func (t *tables) zoneOf(name string) *zone {
	for off := 0; ; {
		if z, ok := t.zones[name[off:]]; ok {
			return z
		}
		next, end := mdns.NextLabel(name, off)
		if end {
			return nil
		}
		off = next
	}
}

// site is a place clients may be sent, with its live target.
type site struct {
	name   string
	v4, v6 []net.IP
	port   int
	host   string // canonical; "" when the site has no SRV target
	target *upstream.Target
}

func newTarget(address string, index, weight int) *upstream.Target {
	return upstream.NewTarget(address, index, weight)
}

// zone is one authoritative zone.
type zone struct {
	origin string
	soa    *mdns.SOA
	negTTL uint32 // min(SOA TTL, SOA minimum), RFC 2308
	nodes  map[string]*node
}

// node returns the node of the canonical name, creating it and the empty
// non-terminals between it and the origin.
func (z *zone) node(name string) *node {
	n, ok := z.nodes[name]
	if !ok {
		n = &node{rrs: map[uint16][]mdns.RR{}}
		z.nodes[name] = n
		// Ancestors exist (as empty non-terminals) so they answer NODATA,
		// not NXDOMAIN (RFC 8020).
		for off := 0; name[off:] != z.origin; {
			next, end := mdns.NextLabel(name, off)
			if end {
				break
			}
			off = next
			if _, ok := z.nodes[name[off:]]; !ok {
				z.nodes[name[off:]] = &node{rrs: map[uint16][]mdns.RR{}}
			}
		}
	}
	return n
}

// node is the data at one owner name.
type node struct {
	rrs  map[uint16][]mdns.RR
	pool *pool
}

func (n *node) add(rr mdns.RR) {
	ty := rr.Header().Rrtype
	n.rrs[ty] = append(n.rrs[ty], rr)
}

// pool is a load-balanced name.
type pool struct {
	name    string
	answers int
	ttl     uint32
	policy  string
	all     *tier
	geo     map[string]*tier
}

// tier is a set of candidate sites and the policy choosing among them.
type tier struct {
	sites   []*site
	byIndex map[int]*site
	pick    balance.Policy // nil for the latency policy
	next    atomic.Uint64  // rotation for the fail-open answer
}

func newTier(policy string, sites []*site) (*tier, error) {
	t := &tier{sites: sites, byIndex: map[int]*site{}}
	targets := make([]*upstream.Target, len(sites))
	for i, s := range sites {
		targets[i] = s.target
		t.byIndex[s.target.Index] = s
	}
	var bp string
	switch policy {
	case PolicyWeighted:
		bp = balance.WeightedRoundRobinPolicy
	case PolicyRandom:
		bp = balance.RandomPolicy
	case PolicyRoundRobin:
		bp = balance.RoundRobinPolicy
	case PolicyLatency:
		return t, nil
	default:
		return nil, fmt.Errorf("%q: unknown policy", policy)
	}
	p, err := balance.New(balance.Config{Policy: bp}, targets)
	if err != nil {
		return nil, fmt.Errorf("building %s policy: %w", bp, err)
	}
	t.pick = p
	return t, nil
}

// choose appends up to n healthy sites of the tier to out.
func (t *tier) choose(out []*site, n int) []*site {
	if t.pick != nil {
		var tried upstream.Tried
		for len(out) < n {
			tg := t.pick.Pick(nil, tried)
			if tg == nil {
				break
			}
			tried.Add(tg.Index)
			out = append(out, t.byIndex[tg.Index])
		}
		return out
	}
	// Latency: the n available sites with the lowest probe RTT; sites not
	// measured yet come after measured ones, in configured order.
	now := time.Now()
	start := len(out)
	for _, s := range t.sites {
		if !s.target.Available(now) {
			continue
		}
		if len(out)-start < n {
			out = append(out, s)
		} else if !faster(s, out[len(out)-1]) {
			continue
		} else {
			out[len(out)-1] = s
		}
		// Insertion step: keep out[start:] sorted by RTT.
		for i := len(out) - 1; i > start && faster(out[i], out[i-1]); i-- {
			out[i], out[i-1] = out[i-1], out[i]
		}
	}
	return out
}

// faster reports whether a's probe RTT is below b's (unmeasured is slowest).
func faster(a, b *site) bool {
	la, lb := a.target.LatencyEWMA(), b.target.LatencyEWMA()
	switch {
	case la == 0:
		return false
	case lb == 0:
		return true
	}
	return la < lb
}

// failOpen appends n sites of the tier regardless of health, rotating: when
// every site fails its checks, answering something beats answering nothing
// (the checks may be what is broken).
func (t *tier) failOpen(out []*site, n int) []*site {
	k := len(t.sites)
	start := int(t.next.Add(1) % uint64(k))
	for i := 0; i < min(n, k); i++ {
		out = append(out, t.sites[(start+i)%k])
	}
	return out
}

// selectSites picks the sites of one answer for a client in region.
func (p *pool) selectSites(region string, out []*site) (sites []*site, geo bool) {
	gt := p.geo[region]
	if gt != nil {
		if out = gt.choose(out, p.answers); len(out) > 0 {
			return out, true
		}
	}
	if out = p.all.choose(out, p.answers); len(out) > 0 {
		return out, gt != nil || len(p.geo) > 0
	}
	if gt != nil {
		return gt.failOpen(out, p.answers), true
	}
	return p.all.failOpen(out, p.answers), len(p.geo) > 0
}
