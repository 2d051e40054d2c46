package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// diffConfig has every kind of answer the fast path may cache: static
// records (with glue, a CNAME into a pool, mixed-case owners), pools with
// geo, SRV and the latency policy, and an RRset too big for 512 bytes.
var diffConfig = func() string {
	var b strings.Builder
	b.WriteString(`
max_udp_size: 1232
regions: {eu: [10.0.0.0/8], v6: ["2001:db8::/32"]}
sites:
  - {name: a, addresses: [192.0.2.1, "2001:db8::1"], check: "127.0.0.1:9", host: a.example.test., weight: 3}
  - {name: b, addresses: [192.0.2.2], check: "127.0.0.1:9", host: b.example.test.}
  - {name: c, addresses: [192.0.2.3, 192.0.2.33], check: "127.0.0.1:9", weight: 2}
zones:
  - origin: example.test.
    soa: {ns: ns1.example.test.}
    records:
      - "@ NS ns1"
      - "ns1 A 192.0.2.53"
      - "www CNAME app"
      - "alias CNAME Mail"
      - "@ MX 10 mail"
      - "Mail A 192.0.2.25"
      - "@ TXT hello"
      - "deep.under.tree A 192.0.2.77"
      - "_sip._udp SRV 0 5 5060 mail"
`)
	for i := range 30 {
		fmt.Fprintf(&b, "      - \"big TXT \\\"record %02d of a set too large for a 512-byte answer\\\"\"\n", i)
	}
	b.WriteString(`    pools:
      - {name: app, sites: [a, b, c], answers: 2, geo: {eu: [a], v6: [b]}}
      - {name: near, sites: [a, b], policy: latency}
      - {name: rr, sites: [a, b, c], policy: round_robin, answers: 3}
  - origin: other.test.
    soa: {ns: ns.other.test.}
    records: ["@ NS ns", "ns A 192.0.2.9", "x-y_z A 192.0.2.10"]
`)
	return b.String()
}()

func diffServer(t testing.TB) *Server { return newServer(t, diffConfig, "diff.yaml") }

// diffPair is two identical servers: one answers through the fast path
// (falling back as it decides), the other always through the slow path.
// Fed the same queries in the same order, their pools rotate alike, so
// every response must be byte-identical, rotation included.
type diffPair struct {
	fast  *fastCache
	slow  *Server
	fastS *Server
}

func newDiffPair(t testing.TB) *diffPair {
	a := diffServer(t)
	return &diffPair{fast: newFastCache(a), fastS: a, slow: diffServer(t)}
}

func (d *diffPair) check(t *testing.T, raw []byte, src netip.Addr) (hit bool) {
	t.Helper()
	before := d.fast.hits
	got := d.fast.respond(raw, src, make([]byte, 0, 512))
	want := d.slow.serveSlow(raw, src, true)
	if !bytes.Equal(got, want) {
		t.Fatalf("fast and slow paths differ for query %x from %v\nfast: %s\nslow: %s", raw, src, show(got), show(want))
	}
	return d.fast.hits > before
}

func show(b []byte) string {
	if b == nil {
		return "(no response)"
	}
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		return fmt.Sprintf("%x (does not unpack: %v)", b, err)
	}
	return fmt.Sprintf("%x\n%v", b, m)
}

var diffSources = []netip.Addr{
	netip.MustParseAddr("10.1.2.3"),
	netip.MustParseAddr("2001:db8::7"),
	netip.MustParseAddr("192.0.2.200"),
}

// diffQueries are well-formed queries of every shape the fast path takes
// and many it must leave alone.
func diffQueries(t testing.TB) [][]byte {
	var out [][]byte
	add := func(m *mdns.Msg) {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	names := []string{
		"app.example.test.", "ApP.ExAmPlE.TeSt.", "www.example.test.", "WWW.example.TEST.", "near.example.test.",
		"rr.example.test.", "example.test.", "ns1.example.test.", "mail.example.test.", "MAIL.example.test.",
		"alias.example.test.", "big.example.test.", "nope.example.test.", "under.tree.example.test.",
		"deep.under.tree.example.test.", "_sip._udp.example.test.", "example.org.", ".", "x-y_z.other.test.",
		"a.example.test.", "A.EXAMPLE.TEST.", "other.test.", "ns.OTHER.test.",
	}
	types := []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeMX, mdns.TypeNS, mdns.TypeTXT,
		mdns.TypeSOA, mdns.TypeCNAME, mdns.TypeANY, mdns.TypeAXFR, mdns.TypeOPT, mdns.TypePTR}
	for _, n := range names {
		for _, ty := range types {
			m := query(n, ty)
			add(m)
			m = query(n, ty)
			m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData = true, true, true
			m.Id = 0xBEEF
			add(m)
			for _, size := range []uint16{512, 1232, 4096, 100} {
				for _, do := range []bool{false, true} {
					m := query(n, ty)
					m.SetEdns0(size, do)
					add(m)
				}
			}
			add(withECS(query(n, ty), "10.1.2.0", 24))
			m = query(n, ty)
			m.Question[0].Qclass = mdns.ClassCHAOS
			add(m)
			m = query(n, ty)
			m.Question[0].Qclass = mdns.ClassANY
			add(m)
		}
	}
	// EDNS options the fast path accepts (cookie, padding) and one it
	// does not (NSID).
	for _, o := range []mdns.EDNS0{
		&mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&mdns.EDNS0_PADDING{Padding: make([]byte, 40)},
		&mdns.EDNS0_NSID{Code: mdns.EDNS0NSID},
	} {
		m := query("app.example.test.", mdns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = append(m.IsEdns0().Option, o)
		add(m)
	}
	// EDNS version 1 (BADVERS), two questions, a response, an update.
	m := query("app.example.test.", mdns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	add(m)
	m = query("app.example.test.", mdns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	add(m)
	m = query("app.example.test.", mdns.TypeA)
	m.Response = true
	add(m)
	m = query("app.example.test.", mdns.TypeA)
	m.Opcode = mdns.OpcodeUpdate
	add(m)
	return out
}

// hostileQueries are packets no client should send.
func hostileQueries(t testing.TB) [][]byte {
	base, err := query("app.example.test.", mdns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	set := func(b []byte, at int, v ...byte) []byte {
		c := bytes.Clone(b)
		copy(c[at:], v)
		return c
	}
	hdr := func(qd, an, ns, ar uint16) []byte {
		h := make([]byte, 12)
		binary.BigEndian.PutUint16(h[0:], 0x1234)
		binary.BigEndian.PutUint16(h[4:], qd)
		binary.BigEndian.PutUint16(h[6:], an)
		binary.BigEndian.PutUint16(h[8:], ns)
		binary.BigEndian.PutUint16(h[10:], ar)
		return h
	}
	var out [][]byte
	for i := range len(base) {
		out = append(out, base[:i]) // every truncation
	}
	out = append(out,
		append(bytes.Clone(base), 0, 0, 0),                    // trailing bytes
		set(base, 4, 0, 0),                                    // QDCOUNT 0
		set(base, 4, 0, 2),                                    // QDCOUNT 2, one question
		set(base, 2, 0x80),                                    // QR set: never answered
		set(base, 2, 0x28),                                    // opcode 5 (update)
		set(base, 10, 0, 1),                                   // ARCOUNT 1, nothing there
		set(base, 6, 0, 1),                                    // ANCOUNT 1, nothing there
		append(hdr(1, 0, 0, 0), 0xC0, 12, 0, 1, 0, 1),         // compression pointer into the header
		append(hdr(1, 0, 0, 0), 0xC0, 12),                     // pointer, no type
		append(hdr(1, 0, 0, 0), 3, 'a', 0xC0, 12, 0, 1, 0, 1), // a loop through the header
		append(hdr(1, 0, 0, 0), 0xC0, 14, 0xC0, 12, 0, 1, 0, 1),
		append(hdr(1, 0, 0, 0), 0x40, 'a', 0, 0, 1, 0, 1),        // reserved label type
		append(hdr(1, 0, 0, 0), 3, 'a', '.', 'b', 0, 0, 1, 0, 1), // a dot inside a label
		append(hdr(1, 0, 0, 0), 1, 0xFF, 0, 0, 1, 0, 1),          // a non-ASCII label byte
		append(hdr(1, 0, 0, 0), 0, 0, 1, 0, 1),                   // the root
	)
	// A name of 63-byte labels over the 255-octet limit, and just under.
	var long []byte
	for range 4 {
		long = append(long, 63)
		long = append(long, bytes.Repeat([]byte{'a'}, 63)...)
	}
	out = append(out, append(append(hdr(1, 0, 0, 0), long...), 0, 0, 1, 0, 1))
	out = append(out, append(append(hdr(1, 0, 0, 0), long[:64*3]...), 61, 'a'))
	// OPT records: huge, two of them, a bad option length, an owner that
	// is not the root, a query with an ECS option with a scope.
	opt := func(name []byte, class uint16, ttl uint32, rdata []byte) []byte {
		b := append([]byte{}, name...)
		b = binary.BigEndian.AppendUint16(b, mdns.TypeOPT)
		b = binary.BigEndian.AppendUint16(b, class)
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
		return append(b, rdata...)
	}
	withAR := func(n uint16, rrs ...[]byte) []byte {
		b := set(base, 10, byte(n>>8), byte(n))
		for _, rr := range rrs {
			b = append(b, rr...)
		}
		return b
	}
	pad := func(n int) []byte {
		return append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, mdns.EDNS0PADDING), uint16(n)), make([]byte, n)...)
	}
	out = append(out,
		withAR(1, opt([]byte{0}, 4096, 0, pad(60000))),
		withAR(2, opt([]byte{0}, 4096, 0, nil), opt([]byte{0}, 4096, 0, nil)),
		withAR(1, opt([]byte{0}, 4096, 0, []byte{0, 12, 0, 9, 1})),
		withAR(1, opt([]byte{1, 'a', 0}, 4096, 0, nil)),
		withAR(1, opt([]byte{0}, 4096, 0, []byte{0, 8, 0, 8, 0, 1, 24, 8, 10, 1, 2, 0})),
		withAR(1, opt([]byte{0}, 4096, 0x8000, nil)),  // DO
		withAR(1, opt([]byte{0}, 4096, 0x18000, nil)), // version 1, DO
		withAR(1, opt([]byte{0}, 4096, 0, nil)[:5]),
	)
	return out
}

// TestFastPathMatchesSlowPath feeds every query to both paths (three
// client addresses, so geo steering differs) and compares the responses
// byte for byte; the plain queries must actually be answered from the
// cache, and the rest must fall back.
func TestFastPathMatchesSlowPath(t *testing.T) {
	d := newDiffPair(t)
	hits, total := 0, 0
	for round := range 3 { // the second and third rounds hit the cache
		for _, src := range diffSources {
			for _, raw := range append(diffQueries(t), hostileQueries(t)...) {
				total++
				if d.check(t, raw, src) {
					hits++
				}
			}
		}
		t.Logf("round %d: %d of %d queries answered from the cache", round, hits, total)
	}
	// Named cases that must be fast (from the second round on).
	for _, c := range []struct {
		m    *mdns.Msg
		fast bool
	}{
		{query("ns1.example.test.", mdns.TypeA), true},
		{query("ApP.ExAmPlE.TeSt.", mdns.TypeA), true},
		{query("nope.example.test.", mdns.TypeA), true},
		{query("example.org.", mdns.TypeA), true},
		{query("www.example.test.", mdns.TypeAAAA), true},
		{query("app.example.test.", mdns.TypeSRV), true},
		{withECS(query("app.example.test.", mdns.TypeA), "10.1.2.0", 24), false},
		{query("big.example.test.", mdns.TypeTXT), false},
	} {
		raw, err := c.m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		for _, src := range diffSources {
			d.check(t, raw, src)
			if hit := d.check(t, raw, src); hit != c.fast {
				t.Errorf("%s %s from %v: answered from the cache = %v, want %v", c.m.Question[0].Name,
					mdns.TypeToString[c.m.Question[0].Qtype], src, hit, c.fast)
			}
		}
	}
}

// TestFastPathFollowsHealthAndWeights: pool answers are chosen per query,
// so a site that fails its checks leaves the very next fast-path answer,
// and a weight change shows in the next SRV answer.
func TestFastPathFollowsHealthAndWeights(t *testing.T) {
	s := diffServer(t)
	c := newFastCache(s)
	eu := netip.MustParseAddr("10.1.2.3")
	ask := func(name string, qtype uint16) *mdns.Msg {
		t.Helper()
		raw, err := query(name, qtype).Pack()
		if err != nil {
			t.Fatal(err)
		}
		b := c.respond(raw, eu, nil)
		m := new(mdns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatalf("response does not unpack: %v", err)
		}
		return m
	}
	addrs := func(m *mdns.Msg) string {
		var out []string
		for _, rr := range m.Answer {
			out = append(out, rr.(*mdns.A).A.String())
		}
		return strings.Join(out, " ")
	}
	site := func(name string) *site {
		for _, st := range s.t.sites {
			if st.name == name {
				return st
			}
		}
		t.Fatalf("no site %s", name)
		return nil
	}
	for range 3 {
		if got := addrs(ask("app.example.test.", mdns.TypeA)); got != "192.0.2.1" {
			t.Fatalf("eu client, all healthy: %q, want its geo site a (192.0.2.1)", got)
		}
	}
	hitsBefore := c.hits
	site("a").target.SetHealthy(false)
	for range 4 {
		if got := addrs(ask("app.example.test.", mdns.TypeA)); strings.Contains(got, "192.0.2.1") || got == "" {
			t.Fatalf("eu client, a down: %q still has a (or is empty)", got)
		}
	}
	site("a").target.SetHealthy(true)
	if got := addrs(ask("app.example.test.", mdns.TypeA)); got != "192.0.2.1" {
		t.Fatalf("eu client, a healthy again: %q", got)
	}
	if c.hits-hitsBefore != 5 {
		t.Errorf("%d of 5 answers came from the cache, want all", c.hits-hitsBefore)
	}
	weight := func() uint16 { return ask("app.example.test.", mdns.TypeSRV).Answer[0].(*mdns.SRV).Weight }
	if w := weight(); w != 3 {
		t.Fatalf("SRV weight of a = %d, want 3", w)
	}
	site("a").target.SetWeight(7)
	if w := weight(); w != 7 {
		t.Fatalf("SRV weight of a after SetWeight(7) = %d, want 7", w)
	}
}

// FuzzFastPath feeds raw packets to the fast path and to the slow path
// of an identical server: the responses must be byte-identical, and
// nothing may panic.
func FuzzFastPath(f *testing.F) {
	d := newDiffPair(f)
	for _, raw := range append(diffQueries(f), hostileQueries(f)...) {
		f.Add(raw, uint8(0))
	}
	f.Fuzz(func(t *testing.T, raw []byte, who uint8) {
		src := diffSources[int(who)%len(diffSources)]
		d.check(t, raw, src)
		d.check(t, raw, src) // the second time from the cache
	})
}

// TestFastPathAdmission: a key is cached the second time it is asked, so
// a flood of names asked once each (random subdomains) fills nothing.
func TestFastPathAdmission(t *testing.T) {
	d := newDiffPair(t)
	src := diffSources[2]
	for i := range 2000 {
		raw, err := query(fmt.Sprintf("r%d.example.test.", i), mdns.TypeA).Pack()
		if err != nil {
			t.Fatal(err)
		}
		if d.check(t, raw, src) {
			t.Fatalf("query %d answered from the cache on first sight", i)
		}
	}
	if n := len(d.fast.entries); n != 0 {
		t.Fatalf("%d cache entries after names asked once, want 0", n)
	}
	raw, err := query("ns1.example.test.", mdns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	if d.check(t, raw, src) || !d.check(t, raw, src) || !d.check(t, raw, src) {
		t.Fatal("want: first sight slow, then answered from the cache")
	}
}

// TestUDPLoopBurst sends a burst of queries over a real socket without
// waiting (so the worker reads and writes them in batches), each with its
// own ID and name case, and checks every response against the slow path
// of an identical server.
func TestUDPLoopBurst(t *testing.T) {
	s := diffServer(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ownUDP(pc); !ok {
		t.Fatal("a loopback UDP socket should get the own loop")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	ref := diffServer(t) // static names only below: no rotation to match
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"ns1.example.test.", "NS1.example.test.", "mail.EXAMPLE.test.", "nope.example.test.", "example.org.", "big.example.test."}
	want := map[uint16][]byte{}
	const n = 120 // a burst the default socket buffers hold (drops would be UDP's, not ours)
	for i := range n {
		m := query(names[i%len(names)], mdns.TypeA)
		if i%len(names) == 5 {
			m.Question[0].Qtype = mdns.TypeTXT // truncated: the slow path
		}
		m.Id = uint16(i + 1)
		if i%3 == 0 {
			m.SetEdns0(1232, i%2 == 0)
		}
		raw, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		want[m.Id] = ref.serveSlow(raw, netip.MustParseAddr("127.0.0.1"), true)
		if _, err := c.WriteTo(raw, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 65535)
	for len(want) > 0 {
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%d responses missing: %v", len(want), err)
		}
		id := binary.BigEndian.Uint16(buf)
		w, ok := want[id]
		if !ok {
			t.Fatalf("response with unknown or repeated id %d", id)
		}
		if !bytes.Equal(buf[:k], w) {
			t.Fatalf("id %d: got %s\nwant %s", id, show(buf[:k]), show(w))
		}
		delete(want, id)
	}
}
