package l4_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/l4"
	"github.com/switchyard/switchyard/upstream"
)

// tcpBackend answers each connection with its name, then echoes.
func tcpBackend(t *testing.T, name string, wrap func(net.Conn) net.Conn) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if wrap != nil {
					c = wrap(c)
				}
				fmt.Fprintf(c, "%s\n", name)
				io.Copy(c, c)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func backend(t *testing.T, addrs ...string) *l4.Backend {
	var ts []*upstream.Target
	for i, a := range addrs {
		ts = append(ts, upstream.NewTarget(a, i, 1))
	}
	p, err := balance.New(balance.Config{Policy: "round_robin"}, ts)
	if err != nil {
		t.Fatal(err)
	}
	return &l4.Backend{Name: "b", Policy: p}
}

func serveTCP(t *testing.T, cfg l4.TCPConfig) (string, *l4.TCPServer) {
	t.Helper()
	s, err := l4.NewTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String(), s
}

func hello(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line)
}

func TestTCPBalancesAndCopiesExactly(t *testing.T) {
	a, b := tcpBackend(t, "a", nil), tcpBackend(t, "b", nil)
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, a, b)})
	seen := map[string]int{}
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[hello(t, c)]++
		c.Close()
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("round robin over a, b: %v", seen)
	}
	// 8 MiB each way, with a half-close: the echo ends only after the
	// client's write side closes, and every byte comes back.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	payload := make([]byte, 8<<20)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("echo of %d bytes came back as %d different bytes", len(payload), len(got))
	}
	waitFor(t, "connections to end", func() bool { return s.Stats().Active == 0 })
	if st := s.Stats(); st.BytesIn < 8<<20 || st.BytesOut < 8<<20 {
		t.Fatalf("stats %+v", st)
	}
}

// Small messages, a burst and small messages again arrive whole and in
// order, with keepalive on.
func TestTCPSmallMessagesThenBulk(t *testing.T) {
	addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, tcpBackend(t, "a", nil)), KeepAlive: 30 * time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if hello(t, c) != "a" {
		t.Fatal("no greeting")
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	exchange := func(msg []byte) {
		t.Helper()
		errc := make(chan error, 1)
		go func() { _, err := c.Write(msg); errc <- err }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs", len(msg))
		}
	}
	for i := range 50 {
		exchange([]byte(fmt.Sprintf("message %d\n", i)))
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	exchange(big)
	for i := range 50 {
		exchange([]byte(fmt.Sprintf("after %d\n", i)))
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTCPConnectFailureTriesAnother(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	live := tcpBackend(t, "live", nil)
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, deadAddr, live)})
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := hello(t, c); got != "live" {
			t.Fatalf("got %q", got)
		}
		c.Close()
	}
	if s.Stats().ConnectFailures == 0 {
		t.Fatal("the dead target was never tried")
	}
}

func TestTCPLimits(t *testing.T) {
	a := tcpBackend(t, "a", nil)
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, a), MaxConnectionsPerClient: 2})
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		hello(t, c)
		open = append(open, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("third connection from one client: read %d %v, want it closed", n, err)
	}
	c.Close()
	if s.Stats().Rejected != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
	open[0].Close()
	waitFor(t, "a slot to free", func() bool { return s.Stats().Active == 1 })
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if hello(t, c) != "a" {
		t.Fatal("no greeting after a slot freed")
	}
	c.Close()
	open[1].Close()
}

func TestTCPIdleTimeout(t *testing.T) {
	a := tcpBackend(t, "a", nil)
	addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, a), IdleTimeout: 300 * time.Millisecond})
	busy, _ := net.Dial("tcp", addr)
	defer busy.Close()
	idle, _ := net.Dial("tcp", addr)
	defer idle.Close()
	br := bufio.NewReader(busy)
	br.ReadString('\n')
	hello(t, idle)
	// The busy one talks every 50 ms for a second: never idle.
	for i := range 20 {
		fmt.Fprintf(busy, "ping %d\n", i)
		busy.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("busy connection cut after %d pings: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The idle one is gone by now.
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := idle.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle connection still open: %v", err)
	}
}

func TestProxyProtocol(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			got := make(chan string, 1)
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				if v == "v1" {
					line, _ := r.ReadString('\n')
					got <- line
					return
				}
				hdr := make([]byte, 16)
				io.ReadFull(r, hdr)
				body := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
				io.ReadFull(r, body)
				got <- fmt.Sprintf("%x %x %s:%d", hdr[12:14], body[:4], net.IP(body[:4]), binary.BigEndian.Uint16(body[8:]))
			}()
			addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, ln.Addr().String()), ProxyProtocol: v})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			port := c.LocalAddr().(*net.TCPAddr).Port
			var line string
			select {
			case line = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("no header")
			}
			_, lport, _ := net.SplitHostPort(addr)
			want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %s\r\n", port, lport)
			if v == "v2" {
				want = fmt.Sprintf("2111 7f000001 127.0.0.1:%d", port)
			}
			if line != want {
				t.Fatalf("header %q, want %q", line, want)
			}
		})
	}
}

func selfSigned(t *testing.T, names ...string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSNIPassthroughAndTermination(t *testing.T) {
	tlsBackend := func(name string) string {
		cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t, name)}}
		return tcpBackend(t, name, func(c net.Conn) net.Conn { return tls.Server(c, cfg) })
	}
	api, web := tlsBackend("api.test"), tlsBackend("www.shop.test")
	addr, _ := serveTCP(t, l4.TCPConfig{SNIRoutes: []l4.SNIRoute{
		{Names: []string{"api.test"}, Backend: backend(t, api)},
		{Names: []string{"*.shop.test"}, Backend: backend(t, web)},
	}})
	for name, want := range map[string]string{"api.test": "api.test", "www.shop.test": "www.shop.test", "API.TEST": "api.test"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The certificate is the backend's own: TLS passed through.
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != want {
			t.Fatalf("%s: certificate of %s", name, cn)
		}
		if got := hello(t, c); got != want {
			t.Fatalf("%s: answered by %s", name, got)
		}
		c.Close()
	}
	// No route, no default: closed.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("a name without a route was served")
	}
	// Not TLS at all: closed, nothing forwarded.
	c, _ := net.Dial("tcp", addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if n, _ := c.Read(make([]byte, 10)); n != 0 {
		t.Fatal("plain text was forwarded by an SNI listener")
	}
	c.Close()

	// Termination: the listener's certificate, plain bytes upstream.
	plain := tcpBackend(t, "plain", nil)
	taddr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, plain), TLS: &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "edge.test")}}})
	tc, err := tls.Dial("tcp", taddr, &tls.Config{ServerName: "edge.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "edge.test" || hello(t, tc) != "plain" {
		t.Fatalf("termination: cert %s", cn)
	}
}

func TestUDPSessions(t *testing.T) {
	echo := func(name string) string {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(name+":"), buf[:n]...), from)
			}
		}()
		return pc.LocalAddr().String()
	}
	a, b := echo("a"), echo("b")
	s, err := l4.NewUDP(l4.UDPConfig{Backend: backend(t, a, b), IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	go s.Serve(pc)
	defer func() { s.Close(); pc.Close() }()
	var wg sync.WaitGroup
	seen := make(chan string, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", pc.LocalAddr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			// Several datagrams of one client stay on one target and
			// come back to this client only.
			var first string
			for k := range 5 {
				msg := fmt.Sprintf("c%d-%d", i, k)
				c.Write([]byte(msg))
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 100)
				n, err := c.Read(buf)
				if err != nil {
					t.Error(err)
					return
				}
				name, body, _ := strings.Cut(string(buf[:n]), ":")
				if body != msg {
					t.Errorf("client %d got %q", i, buf[:n])
				}
				if first == "" {
					first = name
				} else if name != first {
					t.Errorf("client %d moved from %s to %s within a session", i, first, name)
				}
			}
			seen <- first
		}()
	}
	wg.Wait()
	close(seen)
	per := map[string]int{}
	for n := range seen {
		per[n]++
	}
	if per["a"] != 2 || per["b"] != 2 {
		t.Fatalf("sessions per target: %v", per)
	}
	waitFor(t, "idle sessions to end", func() bool { return s.Stats().Active == 0 })
	if st := s.Stats(); st.Accepted != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func FuzzPeekSNI(f *testing.F) {
	// A real ClientHello as a seed.
	first := make(chan []byte, 1)
	c := tls.Client(&recorder{first: first}, &tls.Config{ServerName: "seed.test"})
	go c.Handshake()
	seed := <-first
	f.Add(seed)
	// The same hello naming "seed\x00test": crypto/tls passes the NUL
	// through; PeekSNI must refuse it (found by CI's fuzzing).
	f.Add(bytes.Replace(seed, []byte("seed.test"), []byte("seed\x00test"), 1))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		name, read, err := l4.PeekSNI(bytes.NewReader(data))
		if !bytes.HasPrefix(data, read) {
			t.Fatalf("read %d bytes that are not the input's prefix", len(read))
		}
		if err == nil && strings.IndexFunc(name, func(r rune) bool {
			return !(r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) >= 0 {
			t.Fatalf("server name %q", name)
		}
	})
}

// recorder is a conn that records writes and never answers.
type recorder struct {
	net.Conn
	first chan []byte
}

func (r *recorder) Write(p []byte) (int, error) {
	select {
	case r.first <- bytes.Clone(p):
	default:
	}
	return len(p), nil
}
func (r *recorder) Read(p []byte) (int, error)      { select {} }
func (r *recorder) SetDeadline(time.Time) error     { return nil }
func (r *recorder) SetReadDeadline(time.Time) error { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error {
	return nil
}
