package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// runWorker serves pc with one Linux UDP worker until the test ends; the
// returned function stops it and returns the worker (its cache's counters
// are then safe to read).
func runWorker(t *testing.T, s *Server, pc net.PacketConn) func() *udpWorker {
	t.Helper()
	u, ok := ownUDP(pc)
	if !ok {
		t.Fatalf("%T should get the own UDP loop", pc)
	}
	rc, err := u.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	pktinfo, err := setPktinfo(rc, u)
	if err != nil {
		t.Fatal(err)
	}
	w := newUDPWorker(s, rc, pktinfo)
	done := make(chan error, 1)
	go func() { done <- w.run(context.Background()) }()
	stopped := false
	stop := func() *udpWorker {
		if !stopped {
			stopped = true
			pc.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("worker did not stop after its socket was closed")
			}
		}
		return w
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestUDPWildcardAnswersFromQueriedAddress: on a wildcard listen address
// the reply must come from the address the client asked (a client that
// connected its socket to that address drops anything else), and the
// fast path must still answer. Loopback has every 127/8 address, so two
// destinations on one socket show it.
func TestUDPWildcardAnswersFromQueriedAddress(t *testing.T) {
	cases := []struct {
		network, listen string
		dsts            []string
	}{
		{"udp4", "0.0.0.0:0", []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}},
		{"udp", "[::]:0", []string{"::1", "127.0.0.2", "127.0.0.1"}}, // dual-stack: IPv4 arrives v4-mapped
	}
	for _, c := range cases {
		t.Run(c.network+"/"+c.listen, func(t *testing.T) {
			pc, err := net.ListenPacket(c.network, c.listen)
			if err != nil {
				t.Skipf("no %s socket on %s here: %v", c.network, c.listen, err)
			}
			s, ref := diffServer(t), diffServer(t)
			stop := runWorker(t, s, pc)
			port := pc.LocalAddr().(*net.UDPAddr).Port
			const rounds = 3 // from the second on, answered from the cache
			for _, dst := range c.dsts {
				ip := netip.MustParseAddr(dst)
				cn := "udp4"
				if ip.Is6() {
					cn = "udp6"
				}
				cl, err := net.ListenPacket(cn, net.JoinHostPort(dst, "0"))
				if err != nil {
					t.Skipf("no client socket on %s: %v", dst, err)
				}
				for i := range rounds {
					m := query("NS1.example.test.", mdns.TypeA)
					m.Id = uint16(100 + i)
					raw, err := m.Pack()
					if err != nil {
						t.Fatal(err)
					}
					to := &net.UDPAddr{IP: ip.AsSlice(), Port: port}
					if _, err := cl.WriteTo(raw, to); err != nil {
						t.Fatal(err)
					}
					if err := cl.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 4096)
					n, from, err := cl.ReadFrom(buf)
					if err != nil {
						t.Fatalf("query to %s: no answer: %v", to, err)
					}
					got := from.(*net.UDPAddr).AddrPort()
					if got.Addr().Unmap() != ip || int(got.Port()) != port {
						t.Fatalf("query to %s answered from %s, want from the queried address", to, got)
					}
					want := ref.serveSlow(raw, netip.MustParseAddr(dst), true)
					if !bytes.Equal(buf[:n], want) {
						t.Fatalf("query to %s: got %s\nwant %s", to, show(buf[:n]), show(want))
					}
				}
				cl.Close()
			}
			w := stop()
			if want := uint64(len(c.dsts) * (rounds - 1)); w.c.hits < want {
				t.Errorf("%d answers from the cache, want at least %d (the wildcard socket must use the fast path)", w.c.hits, want)
			}
		})
	}
}

// TestSockaddrAddr: the client address the worker hands to the
// answer code is the one the slow path would see (IPv4 unmapped), so geo
// steering is the same either way.
func TestSockaddrAddr(t *testing.T) {
	var sa unix.RawSockaddrInet6
	v4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
	v4.Family = unix.AF_INET
	v4.Addr = [4]byte{10, 1, 2, 3}
	if a, ok := sockaddrAddr(&sa, unix.SizeofSockaddrInet4); !ok || a != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("sockaddr_in: %v %v", a, ok)
	}
	if _, ok := sockaddrAddr(&sa, 4); ok {
		t.Fatal("a cut-off sockaddr_in was accepted")
	}
	sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
	sa.Addr = netip.MustParseAddr("::ffff:10.1.2.3").As16()
	if a, ok := sockaddrAddr(&sa, unix.SizeofSockaddrInet6); !ok || a != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("v4-mapped sockaddr_in6: %v %v, want it unmapped", a, ok)
	}
	sa.Addr = netip.MustParseAddr("fe80::1").As16()
	sa.Scope_id = 1
	if a, ok := sockaddrAddr(&sa, unix.SizeofSockaddrInet6); !ok || a.Zone() == "" || a.WithZone("") != netip.MustParseAddr("fe80::1") {
		t.Fatalf("link-local sockaddr_in6 with scope 1: %v %v, want fe80::1 with a zone", a, ok)
	}
	if _, ok := sockaddrAddr(&sa, unix.SizeofSockaddrInet6-1); ok {
		t.Fatal("a cut-off sockaddr_in6 was accepted")
	}
	sa.Family = unix.AF_UNIX
	if _, ok := sockaddrAddr(&sa, unix.SizeofSockaddrInet6); ok {
		t.Fatal("an AF_UNIX sockaddr was accepted")
	}
}

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, cmsgAlign(unix.SizeofCmsghdr+len(data)))
	putCmsgHeader(b, unix.SizeofCmsghdr+len(data), level, typ)
	copy(b[unix.SizeofCmsghdr:], data)
	return b
}

func TestQueryDstAndReply(t *testing.T) {
	in4 := make([]byte, 12)
	copy(in4[4:], []byte{192, 0, 2, 9}) // ipi_spec_dst: the route's, not the header's
	copy(in4[8:], []byte{192, 0, 2, 53})
	a6 := netip.MustParseAddr("2001:db8::53").As16()
	in6 := append(a6[:], 0, 0, 0, 0)
	mapped := netip.MustParseAddr("::ffff:192.0.2.54").As16()
	in6m := append(mapped[:], 0, 0, 0, 0)
	other := cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16))
	for _, c := range []struct {
		name string
		oob  []byte
		want string // "" when none must be found
	}{
		{"ip_pktinfo", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4), "192.0.2.53"},
		{"ipv6_pktinfo", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6), "2001:db8::53"},
		{"v4-mapped", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6m), "::ffff:192.0.2.54"},
		{"after another message", append(other, cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4)...), "192.0.2.53"},
		{"empty", nil, ""},
		{"short data", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4[:8]), ""},
		{"length past the buffer", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4)[:unix.SizeofCmsghdr+4], ""},
		{"only another message", other, ""},
		{"zero length", make([]byte, 64), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst, ok := queryDst(c.oob)
			if c.want == "" {
				if ok {
					t.Fatalf("found %v, want nothing", dst)
				}
				var out [48]byte
				if n := replyOOB(c.oob, &out); n != 0 {
					t.Fatalf("reply control of %d bytes, want none", n)
				}
				return
			}
			if !ok || dst != netip.MustParseAddr(c.want) {
				t.Fatalf("destination %v %v, want %s", dst, ok, c.want)
			}
			checkReplyOOB(t, c.oob, dst)
		})
	}
}

// checkReplyOOB: the reply's control message is one well-formed message
// that sets dst as the source (IPv4 as IP_PKTINFO's ipi_spec_dst, IPv6 as
// IPV6_PKTINFO's address), interface 0.
func checkReplyOOB(t *testing.T, oob []byte, dst netip.Addr) {
	t.Helper()
	var out [48]byte
	n := replyOOB(oob, &out)
	msgs, err := syscall.ParseSocketControlMessage(out[:n])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("reply control %x: %v, %d messages, want one", out[:n], err, len(msgs))
	}
	m := msgs[0]
	if dst.Is4() || dst.Is4In6() {
		a := dst.Unmap().As4()
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_PKTINFO || len(m.Data) != 12 ||
			binary.NativeEndian.Uint32(m.Data) != 0 || !bytes.Equal(m.Data[4:8], a[:]) {
			t.Fatalf("reply control for %v: %+v %x", dst, m.Header, m.Data)
		}
		return
	}
	a := dst.As16()
	if m.Header.Level != unix.IPPROTO_IPV6 || m.Header.Type != unix.IPV6_PKTINFO || len(m.Data) != 20 ||
		!bytes.Equal(m.Data[:16], a[:]) || binary.NativeEndian.Uint32(m.Data[16:]) != 0 {
		t.Fatalf("reply control for %v: %+v %x", dst, m.Header, m.Data)
	}
}

// FuzzControlMessages feeds arbitrary control-message bytes (what a
// query's recvmmsg slot holds) to the destination parser: no panic, and
// whatever it finds yields one well-formed reply control message.
func FuzzControlMessages(f *testing.F) {
	in4 := make([]byte, 12)
	copy(in4[8:], []byte{127, 0, 0, 2})
	f.Add(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4))
	a6 := netip.MustParseAddr("::1").As16()
	f.Add(cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, append(a6[:], 1, 0, 0, 0)))
	f.Add(append(cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16)), cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4)...))
	f.Add([]byte{})
	f.Add(make([]byte, oobSize))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if len(oob) > oobSize {
			oob = oob[:oobSize] // the kernel never writes more than the slot
		}
		if dst, ok := queryDst(oob); ok {
			checkReplyOOB(t, oob, dst)
		}
	})
}

// TestUDPBatchHistogram: every datagram a worker reads is counted once in
// its batch-size histogram (what the debug log reports on stop), and the
// summary adds the sizes up.
func TestUDPBatchHistogram(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, diffServer(t), pc)
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := query("ns1.example.test.", mdns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for range n {
		if _, err := c.WriteTo(raw, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 512)
	for i := range n {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := c.ReadFrom(buf); err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, n, err)
		}
	}
	w := stop()
	var dgrams uint64
	for size, calls := range w.batches {
		dgrams += uint64(size) * calls
	}
	if dgrams != n {
		t.Errorf("histogram counts %d datagrams, want %d: %v", dgrams, n, w.batches)
	}
	a := batchSummary([]uint64{0, 3, 0, 2})
	if got, want := a.Value.String(), "[calls=5 datagrams=9 mean=1.80 sizes=1:3 3:2]"; got != want {
		t.Errorf("summary %s, want %s", got, want)
	}
}
