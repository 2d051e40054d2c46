package dns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// listenBoth binds UDP and TCP on the same free loopback port.
func listenBoth(t *testing.T) (net.PacketConn, net.Listener, string) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, pc.LocalAddr().String()
		}
		pc.Close()
	}
	t.Fatal("no free port for both udp and tcp")
	return nil, nil, ""
}

// newServer parses yaml (named name in errors) and builds its server.
func newServer(t testing.TB, yaml, name string) *Server {
	t.Helper()
	cfg, err := ParseConfig([]byte(yaml), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(*cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start parses yaml, serves it on loopback and returns the address.
func start(t *testing.T, yaml string) (*Server, string) {
	t.Helper()
	s := newServer(t, yaml, "test.yaml")
	pc, l, addr := listenBoth(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	// Wait until both transports answer.
	waitFor(t, "server answering", func() bool {
		for _, nw := range []string{"udp", "tcp"} {
			c := &mdns.Client{Net: nw, Timeout: 200 * time.Millisecond}
			m := new(mdns.Msg)
			m.SetQuestion("nowhere.invalid.", mdns.TypeA)
			if _, _, err := c.Exchange(m, addr); err != nil {
				return false
			}
		}
		return true
	})
	return s, addr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ask sends one query over network nw ("udp" or "tcp").
func ask(t *testing.T, addr, nw string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: nw, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %v: %v", nw, m.Question, err)
	}
	if r == nil {
		t.Fatalf("%s query %v: no response", nw, m.Question)
	}
	if r.Id != m.Id {
		t.Fatalf("response id %d, want %d", r.Id, m.Id)
	}
	return r
}

func query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// backend is a health-check target that can be made to fail.
type backend struct {
	srv  *httptest.Server
	fail atomic.Bool
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if b.fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

const staticZone = `
zones:
  - origin: example.test.
    soa: {ns: ns1.example.test., serial: 7, minimum: 30s, ttl: 1h}
    records:
      - "@ NS ns1"
      - "ns1 A 192.0.2.53"
      - "@ MX 10 mail"
      - "mail A 192.0.2.25"
      - "@ TXT \"v=spf1 -all\""
      - "www 300 CNAME web"
      - "web A 192.0.2.80"
      - "web AAAA 2001:db8::80"
      - "a.b.deep A 192.0.2.99"
      - "out CNAME elsewhere.other.test."
`

func TestStaticRecords(t *testing.T) {
	_, addr := start(t, staticZone)
	for _, nw := range []string{"udp", "tcp"} {
		t.Run(nw, func(t *testing.T) {
			r := ask(t, addr, nw, query("web.example.test.", mdns.TypeA))
			if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || r.RecursionAvailable || len(r.Answer) != 1 {
				t.Fatalf("web A: %v", r)
			}
			if a := r.Answer[0].(*mdns.A); a.A.String() != "192.0.2.80" || a.Hdr.Ttl != 3600 {
				t.Errorf("web A = %v", a)
			}
			r = ask(t, addr, nw, query("www.example.test.", mdns.TypeAAAA))
			if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != mdns.TypeCNAME || r.Answer[0].Header().Ttl != 300 ||
				r.Answer[1].(*mdns.AAAA).AAAA.String() != "2001:db8::80" {
				t.Errorf("www AAAA (CNAME chased): %v", r.Answer)
			}
			r = ask(t, addr, nw, query("example.test.", mdns.TypeMX))
			if len(r.Answer) != 1 || r.Answer[0].(*mdns.MX).Mx != "mail.example.test." || len(r.Extra) != 1 {
				t.Errorf("MX with glue: %v / %v", r.Answer, r.Extra)
			}
			r = ask(t, addr, nw, query("example.test.", mdns.TypeTXT))
			if len(r.Answer) != 1 || r.Answer[0].(*mdns.TXT).Txt[0] != "v=spf1 -all" {
				t.Errorf("TXT: %v", r.Answer)
			}
			r = ask(t, addr, nw, query("example.test.", mdns.TypeSOA))
			if len(r.Answer) != 1 || r.Answer[0].(*mdns.SOA).Serial != 7 {
				t.Errorf("SOA: %v", r.Answer)
			}
			r = ask(t, addr, nw, query("example.test.", mdns.TypeNS))
			if len(r.Answer) != 1 || r.Answer[0].(*mdns.NS).Ns != "ns1.example.test." {
				t.Errorf("NS: %v", r.Answer)
			}
			r = ask(t, addr, nw, query("out.example.test.", mdns.TypeA))
			if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || len(r.Ns) != 0 {
				t.Errorf("CNAME out of zone: not followed: %v", r)
			}
		})
	}
}

// TestNegativeAnswers: NXDOMAIN for names that do not exist, NODATA for
// names without the type (and empty non-terminals), both with the SOA in
// the authority section at min(SOA TTL, minimum) (RFC 2308).
func TestNegativeAnswers(t *testing.T) {
	_, addr := start(t, staticZone)
	cases := []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"nope.example.test.", mdns.TypeA, mdns.RcodeNameError},
		{"x.web.example.test.", mdns.TypeA, mdns.RcodeNameError},
		{"web.example.test.", mdns.TypeMX, mdns.RcodeSuccess},
		{"deep.example.test.", mdns.TypeA, mdns.RcodeSuccess}, // empty non-terminal
		{"b.deep.example.test.", mdns.TypeTXT, mdns.RcodeSuccess},
	}
	for _, c := range cases {
		r := ask(t, addr, "udp", query(c.name, c.qtype))
		if r.Rcode != c.rcode || !r.Authoritative || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Errorf("%s %s: rcode %s, aa %v, %d answers, %d authority; want %s with SOA",
				c.name, mdns.TypeToString[c.qtype], mdns.RcodeToString[r.Rcode], r.Authoritative, len(r.Answer), len(r.Ns), mdns.RcodeToString[c.rcode])
			continue
		}
		soa, ok := r.Ns[0].(*mdns.SOA)
		if !ok || soa.Hdr.Ttl != 30 || soa.Hdr.Name != "example.test." {
			t.Errorf("%s: authority %v, want the SOA with TTL 30", c.name, r.Ns[0])
		}
	}
}

// TestRefusedAndRecursion: other zones are refused (with or without RD);
// RD on a query for our zone is answered authoritatively, never with RA.
func TestRefusedAndRecursion(t *testing.T) {
	_, addr := start(t, staticZone)
	m := query("example.org.", mdns.TypeA)
	m.RecursionDesired = true
	r := ask(t, addr, "udp", m)
	if r.Rcode != mdns.RcodeRefused || r.Authoritative || r.RecursionAvailable || len(r.Answer) != 0 {
		t.Errorf("other zone: %v", r)
	}
	r = ask(t, addr, "udp", query("test.", mdns.TypeSOA)) // parent of our zone
	if r.Rcode != mdns.RcodeRefused {
		t.Errorf("parent zone: rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
	m = query("web.example.test.", mdns.TypeA)
	m.RecursionDesired = true
	r = ask(t, addr, "udp", m)
	if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || !r.RecursionDesired || r.RecursionAvailable {
		t.Errorf("RD in zone: %v", r)
	}
	ch := query("version.bind.", mdns.TypeTXT)
	ch.Question[0].Qclass = mdns.ClassCHAOS
	if r := ask(t, addr, "udp", ch); r.Rcode != mdns.RcodeRefused {
		t.Errorf("CHAOS class: rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
	if r := ask(t, addr, "tcp", query("example.test.", mdns.TypeAXFR)); r.Rcode != mdns.RcodeRefused {
		t.Errorf("AXFR: rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
}

// Test0x20: the question comes back with the asker's exact case, and names
// match case-insensitively.
func Test0x20(t *testing.T) {
	_, addr := start(t, staticZone)
	r := ask(t, addr, "udp", query("wEb.ExAmPlE.tEsT.", mdns.TypeA))
	if r.Question[0].Name != "wEb.ExAmPlE.tEsT." || len(r.Answer) != 1 || r.Answer[0].Header().Name != "wEb.ExAmPlE.tEsT." {
		t.Errorf("0x20: question %v, answer %v", r.Question, r.Answer)
	}
}

// rawExchange sends a raw packet over UDP and returns the raw reply, or
// nil when none comes within the timeout.
func rawExchange(t *testing.T, addr string, pkt []byte, timeout time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestFormErrAndNotImp(t *testing.T) {
	_, addr := start(t, staticZone)
	good := query("web.example.test.", mdns.TypeA)
	two := good.Copy()
	two.Question = append(two.Question, mdns.Question{Name: "ns1.example.test.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET})
	none := good.Copy()
	none.Question = nil
	withAnswer := good.Copy()
	withAnswer.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: "x.", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	twoOPT := good.Copy()
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	badECS := good.Copy()
	badECS.SetEdns0(1232, false)
	badECS.IsEdns0().Option = append(badECS.IsEdns0().Option, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 24, Address: net.IPv4(10, 1, 2, 0).To4()})
	update := good.Copy()
	update.Opcode = mdns.OpcodeUpdate
	cases := []struct {
		name  string
		m     *mdns.Msg
		rcode int
	}{
		{"two questions", two, mdns.RcodeFormatError},
		{"no question", none, mdns.RcodeFormatError},
		{"answer in query", withAnswer, mdns.RcodeFormatError},
		{"two OPT", twoOPT, mdns.RcodeFormatError},
		{"ECS scope in query", badECS, mdns.RcodeFormatError},
		{"UPDATE", update, mdns.RcodeNotImplemented},
	}
	for _, c := range cases {
		pkt, err := c.m.Pack()
		if err != nil {
			t.Fatalf("%s: pack: %v", c.name, err)
		}
		raw := rawExchange(t, addr, pkt, 2*time.Second)
		r := new(mdns.Msg)
		if raw == nil || r.Unpack(raw) != nil {
			t.Errorf("%s: no parsable response", c.name)
			continue
		}
		if r.Rcode != c.rcode || r.Id != c.m.Id || !r.Response {
			t.Errorf("%s: rcode %s, want %s", c.name, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
		}
	}
	// A truncated question is malformed: FORMERR with the ID.
	pkt, _ := good.Pack()
	raw := rawExchange(t, addr, pkt[:len(pkt)-3], 2*time.Second)
	if r := new(mdns.Msg); raw == nil || r.Unpack(raw) != nil && len(raw) < 12 || raw[3]&0xF != mdns.RcodeFormatError {
		t.Errorf("cut question: response %x, want FORMERR", raw)
	}
	// A response or a packet shorter than a header gets no answer at all
	// (answering would make the server an amplifier).
	resp := good.Copy()
	resp.Response = true
	pkt, _ = resp.Pack()
	if raw := rawExchange(t, addr, pkt, 200*time.Millisecond); raw != nil {
		t.Errorf("answered a response: %x", raw)
	}
	if raw := rawExchange(t, addr, []byte{1, 2, 3}, 200*time.Millisecond); raw != nil {
		t.Errorf("answered 3 bytes: %x", raw)
	}
	// BADVERS for EDNS version 1.
	v1 := good.Copy()
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	if r := ask(t, addr, "udp", v1); r.Rcode != mdns.RcodeBadVers || r.IsEdns0() == nil {
		t.Errorf("EDNS version 1: rcode %s, want BADVERS with OPT", mdns.RcodeToString[r.Rcode])
	}
}

// TestTruncation: an answer bigger than the client's EDNS buffer comes back
// with TC set and no partial RRset over UDP, and whole over TCP.
func TestTruncation(t *testing.T) {
	var recs strings.Builder
	for i := range 60 {
		fmt.Fprintf(&recs, "      - \"big TXT \\\"record number %02d padded to make the answer large enough\\\"\"\n", i)
	}
	_, addr := start(t, strings.Replace(staticZone, "    records:\n", "    records:\n"+recs.String(), 1))
	m := query("big.example.test.", mdns.TypeTXT)
	m.SetEdns0(1232, false)
	r := ask(t, addr, "udp", m)
	if !r.Truncated || len(r.Answer) != 0 || r.IsEdns0() == nil {
		t.Fatalf("udp with 1232 buffer: tc %v, %d answers, opt %v; want TC, none, OPT kept", r.Truncated, len(r.Answer), r.IsEdns0() != nil)
	}
	noEDNS := query("big.example.test.", mdns.TypeTXT)
	pkt, _ := noEDNS.Pack()
	if raw := rawExchange(t, addr, pkt, 2*time.Second); len(raw) > 512 || raw[2]&0x02 == 0 {
		t.Errorf("udp without EDNS: %d bytes, tc bit %v; want at most 512 and TC", len(raw), raw[2]&0x02 != 0)
	}
	r = ask(t, addr, "tcp", m)
	if r.Truncated || len(r.Answer) != 60 {
		t.Errorf("tcp retry: tc %v, %d answers, want 60", r.Truncated, len(r.Answer))
	}
	// A small answer fits a small buffer untouched.
	small := query("web.example.test.", mdns.TypeA)
	small.SetEdns0(512, false)
	if r := ask(t, addr, "udp", small); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("small answer: %v", r)
	}
}
