package dns

import (
	"encoding/binary"
	"net"
	"testing"

	mdns "github.com/miekg/dns"
)

// recorder is a ResponseWriter that keeps what is written.
type recorder struct {
	remote net.Addr
	msg    *mdns.Msg
}

func (r *recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *mdns.Msg) error {
	r.msg = m
	return nil
}
func (r *recorder) Write([]byte) (int, error) { panic("Write not used") }
func (r *recorder) Close() error              { return nil }
func (r *recorder) TsigStatus() error         { return nil }
func (r *recorder) TsigTimersOnly(bool)       {}
func (r *recorder) Hijack()                   {}
func (r *recorder) Network() string           { return "udp" }

// serveRaw runs a raw packet through the path miekg/dns's server takes
// (header, accept func, unpack, FORMERR on failure) and then ServeDNS, and
// returns the response (nil when none is sent).
func serveRaw(s *Server, raw []byte, remote net.Addr) *mdns.Msg {
	if len(raw) < 12 {
		return nil
	}
	dh := mdns.Header{
		Id: binary.BigEndian.Uint16(raw), Bits: binary.BigEndian.Uint16(raw[2:]),
		Qdcount: binary.BigEndian.Uint16(raw[4:]), Ancount: binary.BigEndian.Uint16(raw[6:]),
		Nscount: binary.BigEndian.Uint16(raw[8:]), Arcount: binary.BigEndian.Uint16(raw[10:]),
	}
	req := new(mdns.Msg)
	switch accept(dh) {
	case mdns.MsgIgnore:
		return nil
	case mdns.MsgAccept:
		if err := req.Unpack(raw); err == nil {
			w := &recorder{remote: remote}
			s.ServeDNS(w, req)
			return w.msg
		}
	}
	req.Id = dh.Id
	resp := new(mdns.Msg)
	resp.SetRcodeFormatError(req)
	return resp
}

const fuzzConfig = `
regions: {eu: [10.0.0.0/8], v6: ["2001:db8::/32"]}
sites:
  - {name: a, addresses: [192.0.2.1, "2001:db8::1"], check: "127.0.0.1:9", host: a.example.test., weight: 3}
  - {name: b, addresses: [192.0.2.2], check: "127.0.0.1:9", host: b.example.test.}
zones:
  - origin: example.test.
    soa: {ns: ns1.example.test.}
    records: ["@ NS ns1", "ns1 A 192.0.2.53", "www CNAME app", "@ MX 10 mail", "mail A 192.0.2.25", "@ TXT hello"]
    pools:
      - {name: app, sites: [a, b], answers: 2, geo: {eu: [a], v6: [b]}}
      - {name: near, sites: [a, b], policy: latency}
`

func fuzzServer(t testing.TB) *Server { return newServer(t, fuzzConfig, "fuzz.yaml") }

// FuzzServeDNS feeds raw packets to the request path. It must never panic;
// every response must pack, carry the query's ID, and fit the UDP limit.
func FuzzServeDNS(f *testing.F) {
	s := fuzzServer(f)
	add := func(m *mdns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"app.example.test.", mdns.TypeA}, {"app.example.test.", mdns.TypeSRV}, {"www.example.test.", mdns.TypeAAAA},
		{"example.test.", mdns.TypeMX}, {"nope.example.test.", mdns.TypeA}, {"example.org.", mdns.TypeA},
		{"example.test.", mdns.TypeANY}, {"near.example.test.", mdns.TypeA},
	} {
		m := query(q.name, q.qtype)
		add(m)
		add(withECS(query(q.name, q.qtype), "10.1.2.0", 24))
		add(withECS(query(q.name, q.qtype), "2001:db8::", 48))
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, false)
	f.Fuzz(func(t *testing.T, raw []byte, udp bool) {
		var remote net.Addr = &net.UDPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5300}
		if !udp {
			remote = &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 5300}
		}
		resp := serveRaw(s, raw, remote)
		if resp == nil {
			return
		}
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("response does not pack: %v\n%v", err, resp)
		}
		if binary.BigEndian.Uint16(out) != binary.BigEndian.Uint16(raw) {
			t.Fatalf("response id differs from the query's")
		}
		if !resp.Response || resp.RecursionAvailable {
			t.Fatalf("QR %v RA %v", resp.Response, resp.RecursionAvailable)
		}
		if udp && len(out) > s.t.maxUDP {
			t.Fatalf("udp response of %d bytes exceeds %d", len(out), s.t.maxUDP)
		}
	})
}
