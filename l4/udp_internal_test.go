package l4

import (
	"net"
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/upstream"
)

// UDP has no handshake: every spoofed source address opens a session
// with its own socket, goroutine and 64 KiB buffer. Without a limit in
// the config, the sessions are still bounded.
func TestUDPSessionsBoundedByDefault(t *testing.T) {
	s, err := NewUDP(UDPConfig{Backend: &Backend{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxSessions != DefaultMaxUDPSessions {
		t.Fatalf("MaxSessions = %d with none configured, want %d", s.cfg.MaxSessions, DefaultMaxUDPSessions)
	}
	s, _ = NewUDP(UDPConfig{Backend: &Backend{}, MaxSessions: 7})
	if s.cfg.MaxSessions != 7 {
		t.Fatalf("MaxSessions = %d, want the configured 7", s.cfg.MaxSessions)
	}
}

// Per-client limits count an IPv6 client by its /64, IPv4 by its address.
func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                "192.0.2.7",
		"::ffff:192.0.2.7":         "192.0.2.7",
		"2001:db8:1:2:aaaa::1":     "2001:db8:1:2::",
		"2001:db8:1:2:ffff:ffff::": "2001:db8:1:2::",
		"2001:db8:1:3::1":          "2001:db8:1:3::",
		"::1":                      "::",
	} {
		if got := clientKey(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("clientKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// Ended sessions leave no per-client entry behind. Spoofed sources are
// free over UDP, and IPv6 ones from a new /64 each would otherwise grow
// the per-client table for ever: it was deleted by the client's address,
// not its /64 key, so every IPv6 client left a zero count.
func TestUDPEndedSessionsLeaveNoClientEntry(t *testing.T) {
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	tg := upstream.NewTarget(up.LocalAddr().String(), 0, 1)
	p, err := balance.New(balance.Config{Policy: "round_robin"}, []*upstream.Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewUDP(UDPConfig{Backend: &Backend{Name: "b", Policy: p}, MaxSessionsPerClient: 2})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, a := range []string{"192.0.2.7:1000", "[2001:db8:1:2::1]:1000", "[2001:db8:1:2::2]:1000", "[2001:db8:9::1]:53"} {
		if s.session(pc, netip.MustParseAddrPort(a)) == nil {
			t.Fatalf("no session for %s", a)
		}
	}
	if n := len(s.perClient); n != 3 {
		t.Fatalf("%d per-client entries for 3 clients (one /64 twice)", n)
	}
	s.Close() // ends every session
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) != 0 || len(s.perClient) != 0 {
		t.Fatalf("after every session ended: %d sessions, per-client entries %v; want none", len(s.sessions), s.perClient)
	}
}
