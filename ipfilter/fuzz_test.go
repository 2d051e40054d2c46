package ipfilter

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzClientIP checks that ClientIP never panics and only returns the peer
// or an X-Forwarded-For entry reached through trusted hops.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"", "1.2.3.4", "1.2.3.4, 10.0.0.2", "garbage, 10.0.0.1", "[2001:db8::1]:80,10.0.0.1:1", ",,,", "fe80::1%eth0, 10.1.1.1"} {
		f.Add("10.0.0.1:1234", s)
		f.Add("203.0.113.1:1234", s)
	}
	flt := mustNew(f, Config{TrustedProxies: []string{"10.0.0.0/8", "2001:db8::/32"}})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header["X-Forwarded-For"] = []string{xff}
		got := flt.ClientIP(r)
		peer := parseHost(remote)
		if got == peer {
			return
		}
		if !peer.IsValid() || !flt.trusted.contains(peer) {
			t.Fatalf("untrusted peer %q: ClientIP = %v, want the peer", remote, got)
		}
		// got must be an entry whose right-hand entries are all trusted.
		entries := strings.Split(xff, ",")
		for i := len(entries) - 1; i >= 0; i-- {
			a := parseHost(strings.TrimSpace(entries[i]))
			if a == got {
				return
			}
			if !a.IsValid() || !flt.trusted.contains(a) {
				t.Fatalf("ClientIP = %v crossed untrusted entry %q in %q", got, entries[i], xff)
			}
		}
		t.Fatalf("ClientIP = %v is not in X-Forwarded-For %q nor the peer %q", got, xff, remote)
	})
}
