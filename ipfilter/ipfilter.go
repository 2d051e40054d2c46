// Package ipfilter admits or refuses requests by client IP address, with
// allow and deny lists of CIDR prefixes and an X-Forwarded-For walk that
// believes only trusted proxies.
//
// YAML shape (per route; every key optional):
//
//	ip_filter:
//	  allow: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]   # empty = every address
//	  deny: [10.1.0.0/16]                                # wins over allow
//	  trusted_proxies: [172.16.0.0/12]                   # default none: the TCP peer is the client
package ipfilter

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/httpx"
)

// Config is one route's IP filter. The zero value admits every request
// whose peer address parses.
type Config struct {
	// Allow lists the admitted client addresses: CIDR prefixes
	// ("10.0.0.0/8", "2001:db8::/32") or single addresses ("192.0.2.7",
	// "::1"), IPv4 and IPv6. Prefixes must have no host bits set. Default
	// empty: every address not denied is admitted.
	Allow []string `yaml:"allow"`
	// Deny lists refused client addresses, in the same forms as Allow. A
	// denied address is refused even when Allow also lists it. Default
	// empty.
	Deny []string `yaml:"deny"`
	// TrustedProxies lists the peers (load balancers, CDNs) whose
	// X-Forwarded-For header is believed, in the same forms as Allow.
	// Default empty: X-Forwarded-For is ignored and the TCP peer address is
	// the client. Hazard: list only proxies you run; a trusted prefix that
	// covers clients lets them choose the address the filter sees.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Validate reports every malformed address or prefix at once. It does not
// modify c.
func (c Config) Validate() error {
	var errs []error
	for _, l := range c.lists() {
		for _, s := range l.values {
			if _, err := parsePrefix(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", l.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

type namedList struct {
	name   string
	values []string
}

func (c Config) lists() []namedList {
	return []namedList{{"allow", c.Allow}, {"deny", c.Deny}, {"trusted_proxies", c.TrustedProxies}}
}

// parsePrefix reads a CIDR prefix or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parsing CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("CIDR %q: IPv4-mapped IPv6 prefix; expected the IPv4 form", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("CIDR %q: host bits set; expected %s", s, m)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parsing address %q: expected an IP address or a CIDR prefix such as 10.0.0.0/8", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q: zones are not supported; expected an address without %%zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Filter is a compiled Config. Safe for concurrent use; it holds no
// mutable state.
type Filter struct {
	allow, deny, trusted rangeSet
}

// New validates cfg and compiles it.
func New(cfg Config) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	compile := func(ss []string) rangeSet {
		ps := make([]netip.Prefix, 0, len(ss))
		for _, s := range ss {
			p, _ := parsePrefix(s) // validated above
			ps = append(ps, p)
		}
		return newRangeSet(ps)
	}
	return &Filter{allow: compile(cfg.Allow), deny: compile(cfg.Deny), trusted: compile(cfg.TrustedProxies)}, nil
}

// Allowed reports whether ip is admitted: not denied, and allowed (an
// empty allow list allows everything). IPv4-mapped IPv6 addresses are
// matched as IPv4 and zones are ignored. The invalid (zero) Addr is never
// allowed. It does not allocate.
func (f *Filter) Allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	if f.deny.contains(ip) {
		return false
	}
	return len(f.allow) == 0 || f.allow.contains(ip)
}

// ClientIP returns the address of the client that sent r, or the invalid
// Addr when the peer address does not parse.
//
// Without trusted proxies, or when the TCP peer (r.RemoteAddr) is not a
// trusted proxy, it is the peer. Otherwise X-Forwarded-For is walked from
// right to left (all header lines, the last line last): each entry was
// appended by the hop to its right, so entries are believed only while
// that hop is trusted. The first entry that is not a trusted proxy is the
// client. An entry that is not an IP address stops the walk and the last
// trusted hop is returned (never a value a client could have forged);
// when every entry is trusted the leftmost one is returned. Entries may
// carry a port ("192.0.2.1:4711", "[2001:db8::1]:4711"). Spoofed entries
// to the left of the first untrusted address are never read.
func (f *Filter) ClientIP(r *http.Request) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !peer.IsValid() || len(f.trusted) == 0 || !f.trusted.contains(peer) {
		return peer
	}
	client := peer
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			a := parseHost(strings.TrimSpace(entry))
			if !a.IsValid() {
				return client
			}
			client = a
			if !f.trusted.contains(a) {
				return client
			}
		}
	}
	return client
}

// parseHost reads "ip", "ip:port" or "[ip]:port", unmapped and without
// zone; the invalid Addr when s is none of these.
func parseHost(s string) netip.Addr {
	// Pick the parser by shape: a failed parse allocates its error.
	if s != "" && s[0] == '[' || strings.Count(s, ":") == 1 {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().WithZone("")
		}
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// Middleware refuses requests whose ClientIP is not Allowed with
// 403 {"code": "ip_forbidden"} and passes the others on.
func (f *Filter) Middleware() httpx.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ip := f.ClientIP(r)
			if !f.Allowed(ip) {
				msg := "client address not allowed"
				if ip.IsValid() {
					msg = "client address " + ip.String() + " not allowed"
				}
				httpx.WriteError(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "ip_forbidden", Msg: msg})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// rangeSet is a sorted list of disjoint, non-adjacent address ranges,
// searched by bisection: O(log n) and allocation-free.
type rangeSet []addrRange

type addrRange struct{ lo, hi netip.Addr }

func newRangeSet(ps []netip.Prefix) rangeSet {
	rs := make(rangeSet, 0, len(ps))
	for _, p := range ps {
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.hi.Next() // invalid after the family's last address
			if r.lo.Compare(last.hi) <= 0 || next.IsValid() && next == r.lo {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// contains reports whether a (unmapped, zoneless) is in the set.
func (rs rangeSet) contains(a netip.Addr) bool {
	// Find the last range with lo <= a.
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].lo.Compare(a) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && a.Compare(rs[lo-1].hi) <= 0
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 1 << (7 - i%8)
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom16(b)
}
