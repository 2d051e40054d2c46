package l4

import "testing"

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
