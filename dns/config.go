package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/health"
)

// Defaults applied to zero Config fields.
const (
	// DefaultListen is where the server listens, UDP and TCP.
	DefaultListen = "127.0.0.1:5353"
	// DefaultTTL is the TTL of load-balanced answers: short, so resolvers
	// ask again soon after a site fails.
	DefaultTTL = 20 * time.Second
	// DefaultMaxUDPSize is the largest UDP response sent and the EDNS
	// buffer size advertised (the DNS flag day 2020 value, which avoids
	// IP fragmentation on nearly every path).
	DefaultMaxUDPSize = 1232
	// DefaultCheckInterval is the health check interval of sites, shorter
	// than the health package's default so failover stays within about
	// half a minute.
	DefaultCheckInterval = 5 * time.Second
	// DefaultSitePort is a site's service port (SRV answers, default check).
	DefaultSitePort = 80
	// MaxAnswers bounds Pool.Answers.
	MaxAnswers = 8
	// DefaultMaxTCPConnections bounds open TCP connections in total, and
	// DefaultMaxTCPConnectionsPerClient those from one client address
	// (IPv6: one /64). Connections past either are closed at accept.
	DefaultMaxTCPConnections          = 1024
	DefaultMaxTCPConnectionsPerClient = 32
)

// Policy names accepted in PoolConfig.Policy.
const (
	// PolicyWeighted spreads answers over healthy sites in proportion to
	// their weights (smooth weighted round robin, balance package).
	PolicyWeighted = "weighted"
	// PolicyRandom picks healthy sites at random, weighted.
	PolicyRandom = "random"
	// PolicyRoundRobin rotates through healthy sites, ignoring weights.
	PolicyRoundRobin = "round_robin"
	// PolicyLatency answers the healthy sites with the lowest probe round
	// trip time (measured by the health checks from this server).
	PolicyLatency = "latency"
)

// Config is the file schema of `switchyard dns`.
type Config struct {
	// Listen is host:port for both UDP and TCP. Default 127.0.0.1:5353.
	Listen string `yaml:"listen"`
	// TTL is the default TTL of load-balanced answers. Default 20s; keep it
	// short so a failed site leaves caches quickly.
	TTL time.Duration `yaml:"ttl"`
	// MaxUDPSize bounds UDP responses (with the client's EDNS buffer size,
	// whichever is smaller; 512 without EDNS). 512-4096. Default 1232.
	MaxUDPSize int `yaml:"max_udp_size"`
	// MaxTCPConnections bounds the TCP connections open at once; one more
	// is closed as soon as it is accepted. Each connection may stay open
	// for up to 128 queries 8 s apart, so without a bound one client
	// could hold every file descriptor (and starve the health checks).
	// Default 1024.
	MaxTCPConnections int `yaml:"max_tcp_connections"`
	// MaxTCPConnectionsPerClient bounds the TCP connections from one
	// client address (an IPv6 client counts by its /64). Default 32.
	MaxTCPConnectionsPerClient int `yaml:"max_tcp_connections_per_client"`
	// Health configures the active checks of every site (TCP connect
	// without a path, HTTP GET with one). Default interval 5s.
	Health health.CheckConfig `yaml:"health"`
	// Regions maps a region name to the client networks in it (CIDRs). The
	// longest matching prefix wins. The client is the EDNS Client Subnet
	// address when the query carries one, else the resolver's source.
	Regions map[string][]string `yaml:"regions"`
	// Sites are the places a load-balanced name can send clients.
	Sites []SiteConfig `yaml:"sites"`
	// Zones are the zones served with authority.
	Zones []ZoneConfig `yaml:"zones"`
}

// SiteConfig is one site: the addresses given out for it and how its
// health and latency are probed.
type SiteConfig struct {
	// Name identifies the site in pools. Required, unique.
	Name string `yaml:"name"`
	// Addresses are the IPv4 and IPv6 addresses answered for the site (A
	// and AAAA). At least one.
	Addresses []string `yaml:"addresses"`
	// Weight is the site's share in weighted policies. Default 1.
	Weight int `yaml:"weight"`
	// Port is the service port given in SRV answers and, without Check,
	// the port checked. Default 80.
	Port int `yaml:"port"`
	// Host is the target name of SRV answers for the site (a fully
	// qualified name). Without it the site is left out of SRV answers.
	// When it lies in a served zone, the server answers its A and AAAA
	// queries with Addresses (at the pool TTL, whatever the health).
	Host string `yaml:"host"`
	// Check is host:port probed by the health check. Default: the first
	// address and Port.
	Check string `yaml:"check"`
}

// ZoneConfig is one authoritative zone.
type ZoneConfig struct {
	// Origin is the zone's name, for example "example.test.". Required.
	Origin string `yaml:"origin"`
	// SOA is the zone's start of authority.
	SOA SOAConfig `yaml:"soa"`
	// Records are static records in zone-file syntax, one a line, with
	// names relative to Origin ("@" for the origin itself) and the SOA TTL
	// as default TTL: "@ NS ns1", "www 300 CNAME app", "@ MX 10 mail",
	// "@ TXT \"v=spf1 -all\"". Types: A, AAAA, CNAME, TXT, MX, NS (at the
	// origin only: no delegations), SRV, PTR, CAA.
	Records []string `yaml:"records"`
	// Pools are the load-balanced names of the zone.
	Pools []PoolConfig `yaml:"pools"`
}

// SOAConfig is a zone's SOA record. Durations are written as Go durations.
type SOAConfig struct {
	// NS is the primary name server. Required.
	NS string `yaml:"ns"`
	// Mbox is the responsible mailbox as a name ("hostmaster.example.test.").
	// Default hostmaster.<origin>.
	Mbox string `yaml:"mbox"`
	// Serial is the zone's serial number. Default 1.
	Serial uint32 `yaml:"serial"`
	// Refresh, Retry and Expire are for secondaries. Defaults 1h, 10m, 168h.
	Refresh time.Duration `yaml:"refresh"`
	Retry   time.Duration `yaml:"retry"`
	Expire  time.Duration `yaml:"expire"`
	// Minimum is the negative-caching TTL (RFC 2308): NXDOMAIN and NODATA
	// answers are cached for min(TTL, Minimum). Default 60s.
	Minimum time.Duration `yaml:"minimum"`
	// TTL is the SOA record's TTL and the default TTL of static records.
	// Default 1h.
	TTL time.Duration `yaml:"ttl"`
}

// PoolConfig is a load-balanced name.
type PoolConfig struct {
	// Name is the owner name, relative to the zone origin or fully
	// qualified. Required. It answers A, AAAA and SRV.
	Name string `yaml:"name"`
	// Sites are the names of the pool's sites. At least one.
	Sites []string `yaml:"sites"`
	// Policy chooses among healthy sites: weighted (default), random,
	// round_robin or latency.
	Policy string `yaml:"policy"`
	// Answers is how many sites one answer names, 1-8. Default 1.
	Answers int `yaml:"answers"`
	// TTL of the answers. Default Config.TTL.
	TTL time.Duration `yaml:"ttl"`
	// Geo maps a region (Config.Regions) to the sites its clients prefer,
	// chosen among with Policy. When none of them is healthy, or the
	// client's region is not listed, every site of the pool is a
	// candidate.
	Geo map[string][]string `yaml:"geo"`
}

// LoadConfig reads and parses the YAML file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading dns config: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig strictly decodes and validates a config document; name is
// used in errors, which are located at file:line:col and key path.
func ParseConfig(data []byte, name string) (*Config, error) {
	var cfg Config
	src, err := config.DecodeYAML(data, name, &cfg)
	if errors.Is(err, config.ErrEmpty) {
		return nil, &config.Error{File: name, Msg: "config is empty: expected a YAML mapping with at least zones", Err: config.ErrEmpty}
	}
	if err != nil {
		return nil, err
	}
	if _, err := compile(&cfg, src); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// withDefaults returns c with zero fields set.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = DefaultMaxUDPSize
	}
	if c.MaxTCPConnections == 0 {
		c.MaxTCPConnections = DefaultMaxTCPConnections
	}
	if c.MaxTCPConnectionsPerClient == 0 {
		c.MaxTCPConnectionsPerClient = DefaultMaxTCPConnectionsPerClient
	}
	if c.Health.Interval == 0 {
		c.Health.Interval = DefaultCheckInterval
	}
	c.Health = c.Health.WithDefaults()
	return c
}

// errorer locates validation errors; a nil *config.Source gives errors
// without position (a Config built in Go).
type errorer struct {
	src  *config.Source
	errs []error
}

func (e *errorer) add(path, format string, args ...any) {
	if e.src != nil {
		e.errs = append(e.errs, e.src.Errorf(path, format, args...))
		return
	}
	e.errs = append(e.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (e *errorer) wrap(path string, err error) {
	if err == nil {
		return
	}
	if e.src != nil {
		e.errs = append(e.errs, e.src.Wrap(path, err))
		return
	}
	e.errs = append(e.errs, fmt.Errorf("%s: %w", path, err))
}

// fqdn makes name absolute under origin ("@" is the origin itself) and
// lower-cases it.
func fqdn(name, origin string) string {
	switch {
	case name == "@":
		name = origin
	case !mdns.IsFqdn(name):
		name = name + "." + origin
	}
	return mdns.CanonicalName(name)
}

func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s < 0 {
		return 0
	}
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	return uint32(s)
}

// allowedTypes are the static record types.
var allowedTypes = map[uint16]bool{
	mdns.TypeA: true, mdns.TypeAAAA: true, mdns.TypeCNAME: true, mdns.TypeTXT: true,
	mdns.TypeMX: true, mdns.TypeNS: true, mdns.TypeSRV: true, mdns.TypePTR: true, mdns.TypeCAA: true,
}

// compile validates cfg (after defaults) and builds the lookup tables,
// reporting every problem at once.
func compile(in *Config, src *config.Source) (*tables, error) {
	c := in.withDefaults()
	e := &errorer{src: src}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		e.add("listen", "%q: expected host:port", c.Listen)
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		e.add("ttl", "%v: expected 1s to 24h", c.TTL)
	}
	if c.MaxUDPSize < 512 || c.MaxUDPSize > 4096 {
		e.add("max_udp_size", "%d: expected 512-4096 bytes", c.MaxUDPSize)
	}
	if c.MaxTCPConnections < 1 {
		e.add("max_tcp_connections", "%d: expected at least 1", c.MaxTCPConnections)
	}
	if c.MaxTCPConnectionsPerClient < 1 || c.MaxTCPConnectionsPerClient > c.MaxTCPConnections {
		e.add("max_tcp_connections_per_client", "%d: expected 1 to max_tcp_connections (%d)", c.MaxTCPConnectionsPerClient, c.MaxTCPConnections)
	}
	e.wrap("health", c.Health.Validate())

	t := &tables{listen: c.Listen, maxUDP: c.MaxUDPSize, maxTCP: c.MaxTCPConnections, maxTCPPerClient: c.MaxTCPConnectionsPerClient,
		check: c.Health, zones: map[string]*zone{}}

	// Regions.
	for name, cidrs := range c.Regions {
		if name == "" {
			e.add("regions", "empty region name")
		}
		for i, s := range cidrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				e.add(fmt.Sprintf("regions.%s[%d]", name, i), "parsing CIDR %q: expected a prefix like 10.0.0.0/8 or 2001:db8::/32", s)
				continue
			}
			t.regions = append(t.regions, regionPrefix{prefix: p.Masked(), region: name})
		}
	}
	sortRegions(t.regions)

	// Sites.
	siteIdx := map[string]int{}
	for i, s := range c.Sites {
		path := fmt.Sprintf("sites[%d]", i)
		st := &site{name: s.Name, port: s.Port, host: s.Host}
		if s.Name == "" {
			e.add(path+".name", "missing: expected a site name")
		} else if _, dup := siteIdx[s.Name]; dup {
			e.add(path+".name", "%q: duplicate site name", s.Name)
		}
		if st.port == 0 {
			st.port = DefaultSitePort
		}
		if st.port < 1 || st.port > 65535 {
			e.add(path+".port", "%d: expected 1-65535", s.Port)
		}
		if s.Weight < 0 || s.Weight > 1000 {
			e.add(path+".weight", "%d: expected 1-1000", s.Weight)
		}
		if len(s.Addresses) == 0 {
			e.add(path+".addresses", "missing: expected at least one IPv4 or IPv6 address")
		}
		for j, a := range s.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				e.add(fmt.Sprintf("%s.addresses[%d]", path, j), "%q: expected an IPv4 or IPv6 address", a)
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() {
				st.v4 = append(st.v4, net.IP(ip.AsSlice()))
			} else {
				st.v6 = append(st.v6, net.IP(ip.AsSlice()))
			}
		}
		if s.Host != "" {
			if _, ok := mdns.IsDomainName(s.Host); !ok || !mdns.IsFqdn(s.Host) {
				e.add(path+".host", "%q: expected a fully qualified name ending in \".\"", s.Host)
			}
			st.host = mdns.CanonicalName(s.Host)
		}
		check := s.Check
		if check == "" && len(s.Addresses) > 0 {
			check = net.JoinHostPort(s.Addresses[0], strconv.Itoa(st.port))
		}
		if _, port, err := net.SplitHostPort(check); err != nil || port == "" {
			if s.Check != "" {
				e.add(path+".check", "%q: expected host:port", s.Check)
			}
		}
		st.target = newTarget(check, i, s.Weight)
		siteIdx[s.Name] = i
		t.sites = append(t.sites, st)
	}

	// Zones.
	for i, z := range c.Zones {
		compileZone(t, e, fmt.Sprintf("zones[%d]", i), z, siteIdx, c)
	}
	if len(c.Zones) == 0 {
		e.add("zones", "missing: expected at least one zone")
	}
	siteHosts(t, e, c)
	if len(e.errs) > 0 {
		return nil, errors.Join(e.errs...)
	}
	return t, nil
}

func compileZone(t *tables, e *errorer, path string, z ZoneConfig, siteIdx map[string]int, c Config) {
	if z.Origin == "" {
		e.add(path+".origin", "missing: expected the zone name, like example.test.")
		return
	}
	if _, ok := mdns.IsDomainName(z.Origin); !ok || !mdns.IsFqdn(z.Origin) {
		e.add(path+".origin", "%q: expected a fully qualified name ending in \".\"", z.Origin)
		return
	}
	origin := mdns.CanonicalName(z.Origin)
	if _, dup := t.zones[origin]; dup {
		e.add(path+".origin", "%q: zone listed twice", z.Origin)
		return
	}
	zn := &zone{origin: origin, nodes: map[string]*node{}}
	t.zones[origin] = zn

	s := z.SOA
	if s.NS == "" {
		e.add(path+".soa.ns", "missing: expected the primary name server's name")
	}
	if s.Mbox == "" {
		s.Mbox = "hostmaster." + origin
	}
	if s.Serial == 0 {
		s.Serial = 1
	}
	s.Refresh = orDur(s.Refresh, time.Hour)
	s.Retry = orDur(s.Retry, 10*time.Minute)
	s.Expire = orDur(s.Expire, 168*time.Hour)
	s.Minimum = orDur(s.Minimum, time.Minute)
	s.TTL = orDur(s.TTL, time.Hour)
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"refresh", s.Refresh}, {"retry", s.Retry}, {"expire", s.Expire}, {"minimum", s.Minimum}, {"ttl", s.TTL}} {
		if d.v < 0 || d.v > 1<<31*time.Second {
			e.add(path+".soa."+d.key, "%v: expected a duration from 0s to 68y", d.v)
		}
	}
	zn.soa = &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: origin, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: seconds(s.TTL)},
		Ns:      fqdn(s.NS, origin),
		Mbox:    fqdn(s.Mbox, origin),
		Serial:  s.Serial,
		Refresh: seconds(s.Refresh),
		Retry:   seconds(s.Retry),
		Expire:  seconds(s.Expire),
		Minttl:  seconds(s.Minimum),
	}
	zn.negTTL = min(zn.soa.Hdr.Ttl, zn.soa.Minttl)
	zn.node(origin).add(zn.soa)

	for i, line := range z.Records {
		rp := fmt.Sprintf("%s.records[%d]", path, i)
		zp := mdns.NewZoneParser(strings.NewReader(line), origin, "")
		zp.SetDefaultTTL(zn.soa.Hdr.Ttl)
		rr, ok := zp.Next()
		if err := zp.Err(); err != nil {
			e.add(rp, "parsing record %q: %v", line, err)
			continue
		}
		if !ok {
			e.add(rp, "%q: expected a record like \"www A 192.0.2.1\"", line)
			continue
		}
		if _, more := zp.Next(); more {
			e.add(rp, "%q: expected exactly one record", line)
			continue
		}
		h := rr.Header()
		if !allowedTypes[h.Rrtype] {
			e.add(rp, "%q: type %s not served: expected A, AAAA, CNAME, TXT, MX, NS, SRV, PTR or CAA (the SOA comes from soa)", line, mdns.TypeToString[h.Rrtype])
			continue
		}
		if h.Class != mdns.ClassINET {
			e.add(rp, "%q: expected class IN", line)
			continue
		}
		h.Name = mdns.CanonicalName(h.Name)
		if !mdns.IsSubDomain(origin, h.Name) {
			e.add(rp, "%q: name %s is outside the zone %s", line, h.Name, origin)
			continue
		}
		if h.Rrtype == mdns.TypeNS && h.Name != origin {
			e.add(rp, "%q: NS records only at the zone origin (delegations are not served)", line)
			continue
		}
		if h.Rrtype == mdns.TypeCNAME && h.Name == origin {
			e.add(rp, "%q: a CNAME cannot be at the zone origin", line)
			continue
		}
		n := zn.node(h.Name)
		if h.Rrtype == mdns.TypeCNAME && len(n.rrs) > 0 || h.Rrtype != mdns.TypeCNAME && len(n.rrs[mdns.TypeCNAME]) > 0 {
			e.add(rp, "%q: a CNAME cannot share its name with other records", line)
			continue
		}
		n.add(rr)
	}
	if len(zn.nodes[origin].rrs[mdns.TypeNS]) == 0 {
		e.add(path+".records", "missing NS records at the zone origin: expected a line like \"@ NS ns1\"")
	}

	for i, p := range z.Pools {
		pp := fmt.Sprintf("%s.pools[%d]", path, i)
		if p.Name == "" {
			e.add(pp+".name", "missing: expected the load-balanced name")
			continue
		}
		name := fqdn(p.Name, origin)
		if _, ok := mdns.IsDomainName(name); !ok || !mdns.IsSubDomain(origin, name) {
			e.add(pp+".name", "%q: expected a name inside the zone %s", p.Name, origin)
			continue
		}
		n := zn.node(name)
		if n.pool != nil {
			e.add(pp+".name", "%q: two pools for one name", p.Name)
			continue
		}
		for _, ty := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeCNAME} {
			if len(n.rrs[ty]) > 0 {
				e.add(pp+".name", "%q: the name also has static %s records; a pool answers A, AAAA and SRV itself", p.Name, mdns.TypeToString[ty])
			}
		}
		pl := &pool{name: name, answers: p.Answers, ttl: seconds(orDur(p.TTL, c.TTL)), policy: p.Policy}
		if pl.answers == 0 {
			pl.answers = 1
		}
		if pl.answers < 1 || pl.answers > MaxAnswers {
			e.add(pp+".answers", "%d: expected 1-%d", p.Answers, MaxAnswers)
		}
		if p.TTL < 0 || p.TTL > 24*time.Hour {
			e.add(pp+".ttl", "%v: expected up to 24h", p.TTL)
		}
		if pl.policy == "" {
			pl.policy = PolicyWeighted
		}
		resolve := func(key string, names []string) []*site {
			var out []*site
			seen := map[string]bool{}
			for j, sn := range names {
				k, ok := siteIdx[sn]
				if !ok {
					e.add(fmt.Sprintf("%s[%d]", key, j), "%q: no such site in sites", sn)
					continue
				}
				if seen[sn] {
					e.add(fmt.Sprintf("%s[%d]", key, j), "%q: site listed twice", sn)
					continue
				}
				seen[sn] = true
				out = append(out, t.sites[k])
			}
			return out
		}
		all := resolve(pp+".sites", p.Sites)
		if len(p.Sites) == 0 {
			e.add(pp+".sites", "missing: expected at least one site")
		}
		policyOK := true
		switch pl.policy {
		case PolicyWeighted, PolicyRandom, PolicyRoundRobin, PolicyLatency:
		default:
			e.add(pp+".policy", "%q: expected weighted, random, round_robin or latency", p.Policy)
			policyOK = false
		}
		if policyOK {
			allTier, err := newTier(pl.policy, all)
			if err != nil {
				e.add(pp+".policy", "%v", err)
				continue
			}
			pl.all = allTier
		}
		pl.geo = map[string]*tier{}
		for region, names := range p.Geo {
			gp := pp + ".geo." + region
			if _, ok := c.Regions[region]; !ok {
				e.add(gp, "%q: no such region in regions", region)
				continue
			}
			ss := resolve(gp, names)
			for _, st := range ss {
				in := false
				for _, a := range all {
					in = in || a == st
				}
				if !in {
					e.add(gp, "site %q is not in the pool's sites", st.name)
				}
			}
			if len(ss) == 0 || !policyOK {
				continue
			}
			gt, err := newTier(pl.policy, ss)
			if err != nil {
				e.add(gp, "%v", err)
				continue
			}
			pl.geo[region] = gt
		}
		n.pool = pl
	}
}

func orDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// siteHosts gives each site whose SRV host lies in a served zone that
// name's A and AAAA records (the site's addresses, at the pool TTL), so a
// resolver following an SRV answer finds the target here.
func siteHosts(t *tables, e *errorer, c Config) {
	for i, st := range t.sites {
		if st.host == "" {
			continue
		}
		z := t.zoneOf(st.host)
		if z == nil {
			continue
		}
		n := z.node(st.host)
		if n.pool != nil || len(n.rrs[mdns.TypeA]) > 0 || len(n.rrs[mdns.TypeAAAA]) > 0 || len(n.rrs[mdns.TypeCNAME]) > 0 {
			e.add(fmt.Sprintf("sites[%d].host", i), "%q: the name already has a pool or A, AAAA or CNAME records; the site's host gets its addresses from the site", st.host)
			continue
		}
		hdr := func(ty uint16) mdns.RR_Header {
			return mdns.RR_Header{Name: st.host, Rrtype: ty, Class: mdns.ClassINET, Ttl: seconds(c.TTL)}
		}
		for _, ip := range st.v4 {
			n.add(&mdns.A{Hdr: hdr(mdns.TypeA), A: ip})
		}
		for _, ip := range st.v6 {
			n.add(&mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: ip})
		}
	}
}
