package httpserver

import (
	"testing"

	"golang.org/x/net/http/httpguts"
)

// TestValidTokenIsHttpgutsRule: the hot-path token check must be the RFC
// 9110 rule of httpguts.ValidHeaderFieldName (the one rule every other
// package uses), for every byte and for strings and byte slices alike.
func TestValidTokenIsHttpgutsRule(t *testing.T) {
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), "a" + string([]byte{byte(c)}) + "b"} {
			want := httpguts.ValidHeaderFieldName(s)
			if got := validToken(s); got != want {
				t.Errorf("validToken(%q) = %v, httpguts says %v", s, got, want)
			}
			if got := validToken([]byte(s)); got != want {
				t.Errorf("validToken([]byte(%q)) = %v, httpguts says %v", s, got, want)
			}
		}
	}
	if validToken("") || validToken([]byte{}) {
		t.Error("empty token accepted")
	}
}

func FuzzValidTokenIsHttpgutsRule(f *testing.F) {
	for _, s := range []string{"GET", "X-Request-Id", "a b", "a:b", "\x00", "ü", "!#$%&'*+-.^_`|~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validToken(s), httpguts.ValidHeaderFieldName(s); got != want {
			t.Fatalf("validToken(%q) = %v, httpguts says %v", s, got, want)
		}
	})
}
