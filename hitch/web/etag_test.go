package web

import (
	"strings"
	"testing"
)

func TestETagMatch(t *testing.T) {
	const tag = `"abc123"`
	for header, want := range map[string]bool{
		`"abc123"`: true, `W/"abc123"`: true, `"x", "abc123"`: true, `*`: true, ` "abc123" `: true,
		``: false, `"abc12"`: false, `abc123`: false, `"ABC123"`: false, `",abc123"`: false,
	} {
		if got := etagMatch(header, tag); got != want {
			t.Errorf("If-None-Match %q: %v, want %v", header, got, want)
		}
	}
}

// If-None-Match comes from the client: any value is safe, and a list that
// names the tag among junk still matches.
func FuzzETagMatch(f *testing.F) {
	for _, s := range []string{`"a"`, `W/"a", "b"`, `*`, `,,,`, "\"a\"\x00", strings.Repeat(`"x",`, 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		_ = etagMatch(header, `"tag"`)
		if !etagMatch(header+`, "tag"`, `"tag"`) {
			t.Fatalf("%q followed by the tag did not match", header)
		}
	})
}
