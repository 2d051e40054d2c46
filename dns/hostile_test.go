package dns

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// closedByServer reports how a read on c ended: true when the server
// closed it (EOF or reset), false when the test's own deadline passed.
func closedByServer(t *testing.T, c net.Conn, within time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // an answer (FORMERR and the like); keep reading
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// TCP slowloris: a connection that sends part of a length prefix, or a
// length prefix and then its message one byte at a time for ever, is
// closed by the server: the read timeout bounds a whole message, not each
// read. The test trickles until the server closes, and would trickle to
// its 60 s deadline if a byte reset the clock.
func TestTCPTrickledQueryIsClosed(t *testing.T) {
	_, addr := start(t, staticZone)
	t.Run("half a length prefix", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0})
		if !closedByServer(t, c, 60*time.Second) {
			t.Fatal("a connection with one byte of a length prefix is still open after 60 s")
		}
	})
	t.Run("trickled message", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x3f, 0xff}) // a 16 KiB message, never finished
		closed := make(chan bool, 1)
		go func() { closed <- closedByServer(t, c, 60*time.Second) }()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for sent := 0; ; sent++ {
			select {
			case ok := <-closed:
				if !ok {
					t.Fatalf("still open after 60 s of one byte per 50 ms (%d bytes)", sent)
				}
				t.Logf("closed after %d trickled bytes", sent)
				return
			case <-tick.C:
				c.Write([]byte{0})
			}
		}
	})
	// The server still answers.
	if r := ask(t, addr, "tcp", query("web.example.test.", mdns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("after the trickles: %v", r)
	}
}

// Hostile packets over real sockets (the fast-path tests feed them to the
// handler directly): every truncation of a query, compression pointers
// into the header and in loops, reserved label types, overlong names,
// a 60,000-byte OPT, two OPTs, bad option lengths — over UDP and framed
// over TCP. Each gets nothing, or a reply no larger than the UDP limit it
// is owed (512 bytes without EDNS, max_udp_size with it); over TCP the
// connection is answered or closed, never left hanging; and the server
// answers a good query afterwards on both transports.
func TestHostilePacketsOverSockets(t *testing.T) {
	_, addr := start(t, staticZone)
	pkts := hostileQueries(t)
	pkts = append(pkts, nil) // an empty datagram, a zero-length TCP frame

	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, p := range pkts {
		if _, err := u.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// Collect replies until a sentinel query's answer arrives (sent last,
	// so the server has read every hostile datagram before it, in order
	// per worker); each reply must respect the size limit.
	sentinel := query("web.example.test.", mdns.TypeA)
	sentinel.Id = 0xbeef
	sp, _ := sentinel.Pack()
	u.Write(sp)
	u.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 65535)
	replies, largest := 0, 0
	for {
		n, err := u.Read(buf)
		if err != nil {
			t.Fatalf("no answer to a good query after %d hostile datagrams (%d replies): %v", len(pkts), replies, err)
		}
		if n >= 2 && binary.BigEndian.Uint16(buf) == 0xbeef {
			break
		}
		replies++
		largest = max(largest, n)
		if n > 1232 {
			t.Fatalf("a %d-byte reply to a hostile datagram: over max_udp_size", n)
		}
	}
	t.Logf("udp: %d hostile datagrams, %d replies, largest %d bytes", len(pkts), replies, largest)

	for i, p := range pkts {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(p)))
		c.Write(append(frame, p...))
		c.(*net.TCPConn).CloseWrite()
		if !closedByServer(t, c, 30*time.Second) {
			t.Fatalf("tcp packet %d (%x): connection neither answered to the end nor closed in 30 s", i, p)
		}
		c.Close()
	}
	for _, nw := range []string{"udp", "tcp"} {
		if r := ask(t, addr, nw, query("web.example.test.", mdns.TypeA)); len(r.Answer) != 1 {
			t.Fatalf("%s after hostile packets: %v", nw, r)
		}
	}
}

// Amplification without RRL: a spoofed-source query draws at most the
// UDP limit (512 bytes without EDNS; the smaller of the asker's EDNS size
// and max_udp_size with it), and ANY gets the RFC 8482 one-record answer,
// not every record set. The ratios are logged (docs/dns.md states them).
func TestAmplificationIsBounded(t *testing.T) {
	var recs strings.Builder
	for i := range 12 {
		recs.WriteString("      - \"big TXT \\\"a long text record to make the record set large, number " + string(rune('A'+i%26)) + string(rune('a'+i/26)) + "\\\"\"\n")
	}
	_, addr := start(t, strings.Replace(staticZone, "    records:\n", "    records:\n"+recs.String(), 1))
	for _, c := range []struct {
		name  string
		qtype uint16
		edns  uint16
		limit int
	}{
		{"big.example.test.", mdns.TypeTXT, 0, 512},
		{"big.example.test.", mdns.TypeTXT, 4096, 1232},
		{"big.example.test.", mdns.TypeTXT, 800, 800},
		{"example.test.", mdns.TypeANY, 4096, 1232},
		{"example.test.", mdns.TypeMX, 4096, 1232},
		{"nope.example.test.", mdns.TypeA, 4096, 1232},
	} {
		m := query(c.name, c.qtype)
		if c.edns > 0 {
			m.SetEdns0(c.edns, true)
		}
		q, _ := m.Pack()
		raw := rawExchange(t, addr, q, 5*time.Second)
		if raw == nil {
			t.Fatalf("%s %s: no answer", c.name, mdns.TypeToString[c.qtype])
		}
		if len(raw) > c.limit {
			t.Errorf("%s %s (EDNS %d): %d bytes, over the %d-byte limit", c.name, mdns.TypeToString[c.qtype], c.edns, len(raw), c.limit)
		}
		r := new(mdns.Msg)
		if err := r.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		if c.qtype == mdns.TypeANY && (len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != mdns.TypeHINFO) {
			t.Errorf("ANY: %v, want one HINFO (RFC 8482)", r.Answer)
		}
		t.Logf("%s %s EDNS %d: %d-byte query, %d-byte answer (%.1fx), tc %v", c.name, mdns.TypeToString[c.qtype], c.edns, len(q), len(raw), float64(len(raw))/float64(len(q)), r.Truncated)
	}
}
