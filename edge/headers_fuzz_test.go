package edge

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzVary: whatever a response's Vary lines hold, the names kept are
// valid canonical field names, each once, at most MaxVaryFields, and
// Vary: * is never stored.
func FuzzVary(f *testing.F) {
	for _, s := range []string{"Accept-Encoding", "*", "accept-language, Accept-Language", "a,,b , c", "x y", "\x00", strings.Repeat("a,", 40)} {
		f.Add(s, "")
	}
	f.Add("Accept", "*")
	f.Fuzz(func(t *testing.T, a, b string) {
		lines := []string{a}
		if b != "" {
			lines = append(lines, b)
		}
		names, ok := parseVary(lines)
		star := false
		for _, l := range lines {
			for n := range strings.SplitSeq(l, ",") {
				if strings.TrimSpace(n) == "*" {
					star = true
				}
			}
		}
		if star && ok {
			t.Fatalf("Vary %q with * is storable", lines)
		}
		if !ok {
			return
		}
		if len(names) > MaxVaryFields {
			t.Fatalf("%d names", len(names))
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || n != http.CanonicalHeaderKey(n) || seen[n] || strings.ContainsAny(n, " \t,\r\n") {
				t.Fatalf("name %q of %q", n, lines)
			}
			seen[n] = true
		}
	})
}

// FuzzTags: the purge tags kept from any Surrogate-Key and Cache-Tag are
// at most MaxTags distinct words of at most MaxTagLen bytes without
// spaces or control characters, and a Surrogate-Key rebuilt from them
// (as a 304 merge does) reads back the same.
func FuzzTags(f *testing.F) {
	f.Add("a b  c", "x, y ,,z")
	f.Add(strings.Repeat("t ", 100), "")
	f.Add("\x00 \x7f é", "a b, c")
	f.Fuzz(func(t *testing.T, sk, ct string) {
		tags := parseTags([]string{sk}, []string{ct})
		if len(tags) > MaxTags {
			t.Fatalf("%d tags", len(tags))
		}
		seen := map[string]bool{}
		for _, tg := range tags {
			if tg == "" || len(tg) > MaxTagLen || seen[tg] || strings.ContainsFunc(tg, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Fatalf("tag %q from %q / %q", tg, sk, ct)
			}
			seen[tg] = true
		}
		again := parseTags([]string{strings.Join(tags, " ")}, nil)
		if strings.Join(again, " ") != strings.Join(tags, " ") {
			t.Fatalf("round trip: %q became %q", tags, again)
		}
	})
}
