package l4

import (
	"net/netip"
	"testing"
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
