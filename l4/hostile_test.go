package l4_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/l4"
)

// readProxyHeader reads one PROXY protocol header (v1 line or v2 binary)
// from r, strictly as an upstream that trusts its load balancer would, and
// returns the source address it announces.
func readProxyHeader(r *bufio.Reader) (netip.AddrPort, error) {
	sig, err := r.Peek(12)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if bytes.Equal(sig, []byte("\r\n\r\n\x00\r\nQUIT\n")) {
		hdr := make([]byte, 16)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return netip.AddrPort{}, err
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
		if _, err := io.ReadFull(r, body); err != nil {
			return netip.AddrPort{}, err
		}
		if hdr[12] == 0x20 {
			return netip.AddrPort{}, nil // LOCAL
		}
		switch hdr[13] >> 4 {
		case 1:
			if len(body) < 12 {
				return netip.AddrPort{}, errors.New("short v2 ipv4 body")
			}
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[:4])), binary.BigEndian.Uint16(body[8:])), nil
		case 2:
			if len(body) < 36 {
				return netip.AddrPort{}, errors.New("short v2 ipv6 body")
			}
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[:16])), binary.BigEndian.Uint16(body[32:])), nil
		}
		return netip.AddrPort{}, fmt.Errorf("v2 family %x", hdr[13])
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, err
	}
	f := strings.Fields(strings.TrimSuffix(line, "\r\n"))
	if len(f) == 2 && f[1] == "UNKNOWN" {
		return netip.AddrPort{}, nil
	}
	if len(f) != 6 || f[0] != "PROXY" {
		return netip.AddrPort{}, fmt.Errorf("v1 header %q", line)
	}
	a, err := netip.ParseAddr(f[2])
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(f[4], 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

type proxied struct {
	src  netip.AddrPort
	rest []byte
	err  error
}

// proxyUpstream accepts connections, reads the PROXY header and then
// everything else until the client's side closes.
func proxyUpstream(t *testing.T) (string, <-chan proxied) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan proxied, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(c)
				src, err := readProxyHeader(r)
				rest, _ := io.ReadAll(r)
				got <- proxied{src, rest, err}
			}()
		}
	}()
	return ln.Addr().String(), got
}

// A client that starts its stream with a PROXY header of its own cannot
// make the upstream believe another source: the listener's header comes
// first, and the client's forged one arrives as payload, byte for byte.
// (An upstream that accepts the PROXY protocol must only accept it from
// the load balancer; then the first header is always the listener's.)
func TestProxyHeaderFromClientIsOnlyPayload(t *testing.T) {
	forged := map[string][]byte{
		"v1": []byte("PROXY TCP4 6.6.6.6 127.0.0.1 4444 80\r\n"),
		"v2": append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), 6, 6, 6, 6, 127, 0, 0, 1, 0x11, 0x5c, 0, 80),
	}
	for _, v := range []string{"v1", "v2"} {
		for fv, spoof := range forged {
			t.Run(v+"/forged-"+fv, func(t *testing.T) {
				up, got := proxyUpstream(t)
				addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, up), ProxyProtocol: v})
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				payload := append(append([]byte(nil), spoof...), "GET / HTTP/1.0\r\n\r\n"...)
				if _, err := c.Write(payload); err != nil {
					t.Fatal(err)
				}
				c.(*net.TCPConn).CloseWrite()
				var p proxied
				select {
				case p = <-got:
				case <-time.After(20 * time.Second):
					t.Fatal("upstream got nothing")
				}
				if p.err != nil {
					t.Fatal(p.err)
				}
				want := c.LocalAddr().(*net.TCPAddr).AddrPort()
				if p.src != want {
					t.Fatalf("upstream was told the client is %v, want %v", p.src, want)
				}
				if !bytes.Equal(p.rest, payload) {
					t.Fatalf("payload after the header: %q, want the client's bytes %q", p.rest, payload)
				}
			})
		}
	}
	// An SNI listener forwards nothing that does not start with a TLS
	// ClientHello, so a forged header in front of a hello gets nowhere.
	t.Run("sni", func(t *testing.T) {
		up, accepted := countingUpstream(t)
		addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, up), ProxyProtocol: "v1",
			SNIRoutes: []l4.SNIRoute{{Names: []string{"api.test"}, Backend: backend(t, up)}}})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(append(forged["v1"], clientHello(t, "api.test")...))
		closedWithoutUpstream(t, c, accepted)
	})
}

// clientHello is the first flight crypto/tls sends for server name name.
func clientHello(t *testing.T, name string) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c2.Close()
	go func() {
		tls.Client(c1, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
		c1.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// fragConn rewrites the first TLS record it writes (the ClientHello) as
// records of at most size bytes of handshake data each, and writes the
// result one byte per write: a hello split across TLS records and TCP
// segments, as middleboxes and some clients (and evasion tools) send it.
type fragConn struct {
	net.Conn
	size int
	done bool
}

func (c *fragConn) Write(p []byte) (int, error) {
	if c.done || len(p) < 5 || p[0] != 0x16 {
		return c.Conn.Write(p)
	}
	c.done = true
	n := 5 + int(binary.BigEndian.Uint16(p[3:]))
	var out []byte
	for body := p[5:n]; len(body) > 0; {
		k := min(c.size, len(body))
		out = append(out, p[0], p[1], p[2], byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	for i := range out {
		if _, err := c.Conn.Write(out[i : i+1]); err != nil {
			return 0, err
		}
	}
	if _, err := c.Conn.Write(p[n:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// A ClientHello fragmented into many TLS records and TCP segments is
// still routed by its server name (crypto/tls reassembles it), and the
// target completes the handshake from the replayed bytes.
func TestSNIFragmentedHello(t *testing.T) {
	tlsBackend := func(name string) string {
		cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t, name)}}
		return tcpBackend(t, name, func(c net.Conn) net.Conn { return tls.Server(c, cfg) })
	}
	api, web := tlsBackend("api.test"), tlsBackend("www.test")
	addr, _ := serveTCP(t, l4.TCPConfig{SNIRoutes: []l4.SNIRoute{
		{Names: []string{"api.test"}, Backend: backend(t, api)},
		{Names: []string{"www.test"}, Backend: backend(t, web)},
	}})
	for _, size := range []int{1, 7, 100} {
		for _, name := range []string{"api.test", "www.test"} {
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(&fragConn{Conn: raw, size: size}, &tls.Config{ServerName: name, InsecureSkipVerify: true})
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if err := c.Handshake(); err != nil {
				t.Fatalf("records of %d bytes, %s: %v", size, name, err)
			}
			if got := hello(t, c); got != name {
				t.Fatalf("records of %d bytes, %s: answered by %s", size, name, got)
			}
			c.Close()
		}
	}
}

// closedWithoutUpstream requires that c is closed by the listener (a read
// ends without data and without hitting the test's own deadline) and that
// the upstream ln accepted nothing.
func closedWithoutUpstream(t *testing.T, c net.Conn, accepted <-chan struct{}) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read %d bytes, %v: want the listener to close the connection", n, err)
	}
	select {
	case <-accepted:
		t.Fatal("the upstream got a connection")
	default:
	}
}

// countingUpstream counts accepted connections on a channel.
func countingUpstream(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- struct{}{}
			c.Close()
		}
	}()
	return ln.Addr().String(), ch
}

// Hostile first flights on an SNI listener are closed and never reach an
// upstream: a hello that claims to be larger than the 16 KiB peek bound
// (and keeps coming), a truncated hello followed by a close, a hello
// whose length fields disagree, and a server name that is not a host name.
func TestSNIHostileHellos(t *testing.T) {
	up, accepted := countingUpstream(t)
	addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, up),
		SNIRoutes: []l4.SNIRoute{{Names: []string{"api.test"}, Backend: backend(t, up)}}})
	good := clientHello(t, "api.test")

	oversized := func() []byte {
		// A handshake message announcing 60,000 bytes, sent as full records.
		var b []byte
		msg := append([]byte{1, 0, 0xea, 0x60}, bytes.Repeat([]byte{0x41}, 60000)...)
		for len(msg) > 0 {
			k := min(16384, len(msg))
			b = append(b, 0x16, 3, 1, byte(k>>8), byte(k))
			b = append(b, msg[:k]...)
			msg = msg[k:]
		}
		return b
	}()
	badLen := append([]byte(nil), good...)
	badLen[7], badLen[8] = 0xff, 0xff // handshake length beyond the record
	nulName := bytes.Replace(good, []byte("api.test"), []byte("api\x00test"), 1)

	cases := map[string]struct {
		data       []byte
		closeWrite bool
	}{
		"oversized":            {oversized, false},
		"truncated then close": {good[:len(good)/2], true},
		"length mismatch":      {badLen, true},
		"NUL in server name":   {nulName, false},
		"empty record":         {[]byte{0x16, 3, 1, 0, 0}, false},
		"alert record":         {[]byte{0x15, 3, 1, 0, 2, 2, 40}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				c.Write(tc.data) // may fail once the listener closes: that is the point
				if tc.closeWrite {
					c.(*net.TCPConn).CloseWrite()
				}
			}()
			closedWithoutUpstream(t, c, accepted)
		})
	}
}

// Slowloris on the peek and the TLS handshake: a client that sends its
// first flight one byte at a time, forever, is closed once HelloTimeout
// has passed since it connected. The bound is on the whole hello, not per
// read, so trickling cannot extend it; the test drips until the listener
// closes, and would drip until its 60 s deadline if the bound were per read.
func TestHelloTimeoutBoundsTrickle(t *testing.T) {
	up, accepted := countingUpstream(t)
	cert := selfSigned(t, "edge.test")
	modes := map[string]l4.TCPConfig{
		"sni":       {SNIRoutes: []l4.SNIRoute{{Names: []string{"api.test"}, Backend: backend(t, up)}}},
		"terminate": {Backend: backend(t, up), TLS: &tls.Config{Certificates: []tls.Certificate{cert}}},
	}
	for mode, cfg := range modes {
		t.Run(mode, func(t *testing.T) {
			cfg.HelloTimeout = 300 * time.Millisecond
			addr, _ := serveTCP(t, cfg)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A record header announcing a full record, then one byte
			// of it every 20 ms.
			if _, err := c.Write([]byte{0x16, 3, 1, 0x40, 0, 1, 0, 0x3f, 0xfc}); err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			go func() {
				c.SetReadDeadline(time.Now().Add(60 * time.Second))
				_, err := c.Read(make([]byte, 1))
				closed <- err
			}()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for sent := 0; ; sent++ {
				select {
				case err := <-closed:
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("still open after 60 s of trickling (%d bytes): the hello timeout is extended per read", sent)
					}
					t.Logf("%s: closed after %d trickled bytes", mode, sent)
					select {
					case <-accepted:
						t.Fatal("the upstream got a connection")
					default:
					}
					return
				case <-tick.C:
					c.Write([]byte{0x41}) // errors once closed; the read reports it
				}
			}
		})
	}
}

// FuzzProxyHeader: whatever addresses a connection has (any IPv4, IPv6,
// v4-mapped, with any zone), the header the listener writes is one the
// spec's strict parser reads back as exactly that source, a v1 line is
// one line of at most 107 bytes (the spec's bound), and a v2 header's
// length field covers exactly its body: nothing a peer's address holds
// can end the header early or smuggle a second one.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}, uint16(1234), uint16(80), "", false, false)
	f.Add([]byte(net.ParseIP("fe80::1").To16()), []byte(net.ParseIP("::1").To16()), uint16(1), uint16(443), "eth0\r\nPROXY TCP4 6.6.6.6 1.1.1.1 1 1", true, false)
	f.Add([]byte(net.ParseIP("::ffff:10.0.0.1").To16()), []byte{10, 0, 0, 2}, uint16(65535), uint16(0), "", true, true)
	f.Fuzz(func(t *testing.T, src, dst []byte, sport, dport uint16, zone string, v2, udp bool) {
		sa, ok1 := netip.AddrFromSlice(src)
		da, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 {
			return
		}
		if sa.Is6() && !sa.Is4In6() {
			sa = sa.WithZone(zone)
		}
		v := l4.ProxyV1
		if v2 {
			v = l4.ProxyV2
		}
		mk := func(a netip.Addr, p uint16) net.Addr {
			if udp {
				return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, p))
			}
			return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, p))
		}
		hdr, err := l4.AppendProxyHeader(nil, v, mk(sa, sport), mk(da, dport), udp)
		if v == l4.ProxyV1 && udp {
			if err == nil {
				t.Fatal("v1 for udp accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if v == l4.ProxyV1 && (len(hdr) > 107 || bytes.Index(hdr, []byte("\r\n")) != len(hdr)-2) {
			t.Fatalf("v1 header %q: not one line of at most 107 bytes", hdr)
		}
		if v == l4.ProxyV2 && int(binary.BigEndian.Uint16(hdr[14:16])) != len(hdr)-16 {
			t.Fatalf("v2 header %x: length field %d, body %d", hdr, binary.BigEndian.Uint16(hdr[14:16]), len(hdr)-16)
		}
		r := bufio.NewReader(bytes.NewReader(append(hdr, "payload"...)))
		got, err := readProxyHeader(r)
		if err != nil {
			t.Fatalf("header %q: %v", hdr, err)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "payload" {
			t.Fatalf("header %q: left %q after it, want the payload only", hdr, rest)
		}
		s, d := sa.Unmap().WithZone(""), da.Unmap()
		want := netip.AddrPortFrom(s, sport)
		if s.Is4() != d.Is4() {
			want = netip.AddrPort{} // mixed families: UNKNOWN / LOCAL
		}
		if got != want {
			t.Fatalf("header %q announces %v, want %v", hdr, got, want)
		}
	})
}
