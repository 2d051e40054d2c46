package ipfilter

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func mustNew(t testing.TB, cfg Config) *Filter {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none = valid
	}{
		{"zero", Config{}, nil},
		{"good", Config{Allow: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "::1"}, Deny: []string{"0.0.0.0/0"}, TrustedProxies: []string{"172.16.0.0/12"}}, nil},
		{"bad cidr", Config{Allow: []string{"10.0.0.0/33"}}, []string{`allow: parsing CIDR "10.0.0.0/33"`}},
		{"host bits", Config{Deny: []string{"10.0.0.1/8"}}, []string{`deny: CIDR "10.0.0.1/8": host bits set; expected 10.0.0.0/8`}},
		{"not an ip", Config{TrustedProxies: []string{"lb.internal"}}, []string{`trusted_proxies: parsing address "lb.internal"`}},
		{"zone", Config{Allow: []string{"fe80::1%eth0"}}, []string{`zones are not supported`}},
		{"mapped prefix", Config{Allow: []string{"::ffff:10.0.0.0/104"}}, []string{`IPv4-mapped`}},
		{"all joined", Config{Allow: []string{"x"}, Deny: []string{"y"}, TrustedProxies: []string{"z/1"}}, []string{`allow: parsing address "x"`, `deny: parsing address "y"`, `trusted_proxies: parsing CIDR "z/1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	f := mustNew(t, Config{
		Allow: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.0.0.0/16", "11.0.0.0/8"},
		Deny:  []string{"10.1.0.0/16", "2001:db8:dead::/48"},
	})
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"11.1.2.3", true}, // adjacent range merged
		{"12.0.0.0", false},
		{"9.255.255.255", false},
		{"10.1.2.3", false}, // deny wins
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"::ffff:10.0.0.1", true}, // mapped matched as IPv4
		{"::ffff:10.1.0.1", false},
		{"2001:db8::1", true},
		{"2001:db8:dead::1", false},
		{"2001:db9::1", false},
		{"fe80::1%eth0", false},
		{"::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := f.Allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("Allowed(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
	if f.Allowed(netip.Addr{}) {
		t.Error("the invalid Addr is allowed")
	}

	open := mustNew(t, Config{Deny: []string{"0.0.0.0/0"}})
	if !open.Allowed(netip.MustParseAddr("2001:db8::1")) || open.Allowed(netip.MustParseAddr("8.8.8.8")) {
		t.Error("empty allow list: want everything not denied")
	}
	if !mustNew(t, Config{}).Allowed(netip.MustParseAddr("203.0.113.9")) {
		t.Error("zero config refused an address")
	}
}

func TestRangeSetMatchesLinearScan(t *testing.T) {
	ps := []string{"10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24", "0.0.0.0/1", "128.0.0.0/1", "::/0", "2001:db8::/127", "255.255.255.255/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}
	var prefixes []netip.Prefix
	for _, s := range ps {
		p, err := parsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		prefixes = append(prefixes, p)
	}
	for n := 0; n <= len(prefixes); n++ {
		rs := newRangeSet(prefixes[:n])
		for _, s := range []string{"0.0.0.0", "9.9.9.9", "10.0.0.5", "10.0.2.1", "127.255.255.255", "128.0.0.0", "255.255.255.255", "::", "2001:db8::1", "2001:db8::2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
			a := netip.MustParseAddr(s)
			want := false
			for _, p := range prefixes[:n] {
				want = want || p.Contains(a)
			}
			if got := rs.contains(a); got != want {
				t.Errorf("%d prefixes: contains(%s) = %v, want %v (set %v)", n, s, got, want, rs)
			}
		}
	}
}

func TestClientIP(t *testing.T) {
	f := mustNew(t, Config{TrustedProxies: []string{"10.0.0.0/8", "2001:db8::/32"}})
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"no xff", "203.0.113.1:5000", nil, "203.0.113.1"},
		{"untrusted peer ignores xff", "203.0.113.1:5000", []string{"1.2.3.4"}, "203.0.113.1"},
		{"one trusted hop", "10.0.0.1:5000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"spoofed left part ignored", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.7, 10.0.0.2"}, "198.51.100.7"},
		{"multiple lines, last is nearest", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.7", "10.0.0.3"}, "198.51.100.7"},
		{"all trusted: leftmost", "10.0.0.1:5000", []string{"10.0.0.9, 10.0.0.2"}, "10.0.0.9"},
		{"trusted peer without xff", "10.0.0.1:5000", nil, "10.0.0.1"},
		{"garbage stops at last trusted", "10.0.0.1:5000", []string{"198.51.100.7, bogus, 10.0.0.2"}, "10.0.0.2"},
		{"empty entry stops", "10.0.0.1:5000", []string{"198.51.100.7,,"}, "10.0.0.1"},
		{"entry with port", "10.0.0.1:5000", []string{"198.51.100.7:4711"}, "198.51.100.7"},
		{"v6 entry with port", "[2001:db8::1]:443", []string{"[2001:db8:1::5]:1, 2001:db9::9"}, "2001:db9::9"},
		{"mapped peer", "[::ffff:10.0.0.1]:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"spaces", "10.0.0.1:1", []string{"  198.51.100.7  ,   10.0.0.4 "}, "198.51.100.7"},
		{"peer without port", "10.0.0.1", []string{"198.51.100.7"}, "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != nil {
				r.Header["X-Forwarded-For"] = tt.xff
			}
			if got := f.ClientIP(r); got != netip.MustParseAddr(tt.want) {
				t.Errorf("ClientIP = %v, want %s", got, tt.want)
			}
		})
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "@"
	if got := f.ClientIP(r); got.IsValid() {
		t.Errorf("unparseable peer: ClientIP = %v, want invalid", got)
	}
}

func TestClientIPWithoutTrustedProxies(t *testing.T) {
	f := mustNew(t, Config{})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := f.ClientIP(r); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("ClientIP = %v, want the peer", got)
	}
}

// TestMiddleware runs the filter in front of a real server: the peer is
// 127.0.0.1, a trusted proxy, so X-Forwarded-For decides.
func TestMiddleware(t *testing.T) {
	f := mustNew(t, Config{
		Allow:          []string{"198.51.100.0/24", "127.0.0.1"},
		Deny:           []string{"198.51.100.66"},
		TrustedProxies: []string{"127.0.0.0/8", "::1"},
	})
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewServer(f.Middleware()(backend))
	defer srv.Close()

	tests := []struct {
		xff      string
		status   int
		clientIP string
	}{
		{"", 200, ""},
		{"198.51.100.7", 200, ""},
		{"198.51.100.66", 403, "198.51.100.66"},
		{"203.0.113.5", 403, "203.0.113.5"},
		{"198.51.100.7, 203.0.113.5", 403, "203.0.113.5"}, // the nearest untrusted hop counts
		{"203.0.113.5, 198.51.100.7", 200, ""},            // a forged left part cannot help or hurt
	}
	for _, tt := range tests {
		t.Run(tt.xff, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.status != 403 {
				return
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if e.Code != "ip_forbidden" || !strings.Contains(e.Error, tt.clientIP) {
				t.Errorf("body %+v, want code ip_forbidden naming %s", e, tt.clientIP)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestAllowedAllocs(t *testing.T) {
	f := benchFilter(t)
	ip := netip.MustParseAddr("10.50.3.4")
	if n := testing.AllocsPerRun(100, func() { f.Allowed(ip) }); n != 0 {
		t.Errorf("Allowed allocates %v times", n)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, 10.0.0.2, 10.0.0.3")
	if n := testing.AllocsPerRun(100, func() { f.ClientIP(r) }); n != 0 {
		t.Errorf("ClientIP allocates %v times", n)
	}
}

// TestConfigTags checks every Config field has a snake_case yaml tag.
func TestConfigTags(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("yaml"); !snake.MatchString(tag) {
			t.Errorf("field %s: yaml tag %q", typ.Field(i).Name, tag)
		}
	}
}

// benchFilter has 100 allow prefixes (half IPv4, half IPv6), 100 deny
// prefixes and a trusted proxy range.
func benchFilter(tb testing.TB) *Filter {
	var cfg Config
	for i := range 50 {
		cfg.Allow = append(cfg.Allow, fmt.Sprintf("10.%d.0.0/16", i*2), fmt.Sprintf("2001:db8:%x::/48", i*2))
		cfg.Deny = append(cfg.Deny, fmt.Sprintf("10.%d.1.0/24", i*2), fmt.Sprintf("2001:db8:%x:1::/64", i*2))
	}
	cfg.TrustedProxies = []string{"10.0.0.0/24"}
	return mustNew(tb, cfg)
}

func BenchmarkAllowed(b *testing.B) {
	f := benchFilter(b)
	for _, s := range []string{"10.50.3.4", "10.51.3.4", "2001:db8:62::1", "203.0.113.1"} {
		ip := netip.MustParseAddr(s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.Allowed(ip)
			}
		})
	}
}

func BenchmarkLinearScan100(b *testing.B) {
	// The alternative the range set replaced, for comparison.
	var ps []netip.Prefix
	for i := range 50 {
		ps = append(ps, netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", i*2)), netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", i*2)))
	}
	ip := netip.MustParseAddr("203.0.113.1")
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range ps {
			if p.Contains(ip) {
				break
			}
		}
	}
}

func BenchmarkMiddleware(b *testing.B) {
	f := benchFilter(b)
	h := f.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "10.50.3.4, 10.0.0.2")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
