package balance

import (
	"net/http"
	"net/url"
	"testing"
)

func TestClientIP(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::1]:80", "::1"},
		{"2001:db8::1", "2001:db8::1"}, // no port
		{"192.0.2.1", "192.0.2.1"},
		{"@", "@"}, // unix socket
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := clientIP(tt.addr); got != tt.want {
				t.Errorf("clientIP(%q) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
		found   bool
	}{
		{"single", []string{"sid=abc"}, "abc", true},
		{"among others", []string{"a=1; sid=abc; b=2"}, "abc", true},
		{"second header", []string{"a=1", "sid=xyz"}, "xyz", true},
		{"quoted", []string{`sid="q"`}, "q", true},
		{"first wins", []string{"sid=1; sid=2"}, "1", true},
		{"prefix is not a match", []string{"sidx=1; xsid=2"}, "", false},
		{"empty value", []string{"sid="}, "", true},
		{"absent", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cookie": tt.headers}
			got, found := cookieValue(h, "sid")
			if got != tt.want || found != tt.found {
				t.Errorf("cookieValue(%q) = %q, %v; want %q, %v", tt.headers, got, found, tt.want, tt.found)
			}
			// Agree with net/http where it finds the cookie.
			if r := (&http.Request{Header: h}); found {
				if c, err := r.Cookie("sid"); err != nil || c.Value != got {
					t.Errorf("net/http reads %v, %v; we read %q", c, err, got)
				}
			}
		})
	}
}

func TestQueryValue(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"user=alice", "alice"},
		{"a=1&user=bob&user=carol", "bob"},
		{"user=a%20b", "a b"},
		{"user=a+b", "a b"},
		{"us%65r=esc", "esc"},
		{"username=x", ""},
		{"user", ""},
		{"", ""},
		{"user=%zz", "%zz"}, // bad escape: raw value
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			if got := queryValue(tt.raw, "user"); got != tt.want {
				t.Errorf("queryValue(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestKeySource(t *testing.T) {
	r := &http.Request{
		RemoteAddr: "[2001:db8::7]:5000",
		Header:     http.Header{"X-User": {"u1"}, "Cookie": {"sid=s1"}},
		URL:        &url.URL{Path: "/a/b", RawQuery: "q=v"},
	}
	tests := []struct {
		hashOn string
		want   string
		ok     bool
	}{
		{"client_ip", "2001:db8::7", true},
		{"header:x-user", "u1", true}, // names are case-insensitive
		{"header:X-Missing", "", false},
		{"cookie:sid", "s1", true},
		{"cookie:nope", "", false},
		{"query:q", "v", true},
		{"query:nope", "", false},
		{"path", "/a/b", true},
	}
	for _, tt := range tests {
		t.Run(tt.hashOn, func(t *testing.T) {
			k, err := parseHashOn(tt.hashOn)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := k.key(r)
			if got != tt.want || ok != tt.ok {
				t.Errorf("key = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestHashStringIsPinned(t *testing.T) {
	// The hash must never change: sticky cookies and key placement of every
	// deployment would change with an upgrade.
	tests := []struct {
		in   string
		want uint64
	}{
		{"", 0xefd01f60ba992926},
		{"10.0.0.1:80", 0x5ed8f8275e47a14a},
	}
	for _, tt := range tests {
		if got := hashString(tt.in); got != tt.want {
			t.Errorf("hashString(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
	if got := cookieID("10.0.0.1:80", 0); got != "5ed8f8275e47a14a" {
		t.Errorf("cookieID = %s, want 5ed8f8275e47a14a", got)
	}
}
