package l4

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// PROXY protocol versions an upstream may want (HAProxy's spec,
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
const (
	ProxyNone = ""
	ProxyV1   = "v1"
	ProxyV2   = "v2"
)

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// AppendProxyHeader appends the PROXY protocol header of version v that
// tells an upstream the connection came from src to dst. Addresses that
// are not IP (or mix families) give the "UNKNOWN"/LOCAL form, which tells
// the upstream to use the connection's own addresses. udp selects the
// DGRAM transport in v2.
func AppendProxyHeader(b []byte, v string, src, dst net.Addr, udp bool) ([]byte, error) {
	s, sok := addrPort(src)
	d, dok := addrPort(dst)
	same := sok && dok && s.Addr().Is4() == d.Addr().Is4()
	switch v {
	case ProxyV1:
		if udp {
			return nil, fmt.Errorf("PROXY protocol v1 carries TCP only; use v2 for UDP")
		}
		if !same {
			return append(b, "PROXY UNKNOWN\r\n"...), nil
		}
		fam := "TCP4"
		if !s.Addr().Is4() {
			fam = "TCP6"
		}
		return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", fam, s.Addr(), d.Addr(), s.Port(), d.Port()), nil
	case ProxyV2:
		b = append(b, v2sig...)
		if !same {
			b = append(b, 0x20, 0x00, 0, 0) // LOCAL, UNSPEC
			return b, nil
		}
		b = append(b, 0x21) // version 2, PROXY
		proto := byte(0x1)  // STREAM
		if udp {
			proto = 0x2
		}
		if s.Addr().Is4() {
			b = append(b, 0x10|proto)
			b = binary.BigEndian.AppendUint16(b, 12)
			a, c := s.Addr().As4(), d.Addr().As4()
			b = append(b, a[:]...)
			b = append(b, c[:]...)
		} else {
			b = append(b, 0x20|proto)
			b = binary.BigEndian.AppendUint16(b, 36)
			a, c := s.Addr().As16(), d.Addr().As16()
			b = append(b, a[:]...)
			b = append(b, c[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, s.Port())
		b = binary.BigEndian.AppendUint16(b, d.Port())
		return b, nil
	}
	return nil, fmt.Errorf("PROXY protocol %q: expected v1 or v2", v)
}

// addrPort is a's address, unmapped and without an IPv6 zone (which the
// PROXY protocol cannot carry; per-client limits count the address).
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
	}
	return netip.AddrPort{}, false
}
