package edge

import (
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxDelta is the value a delta-seconds larger than 2^31 is read as
// (RFC 9111 section 1.2.2).
const maxDelta = 1 << 31

// maxFields bounds the header names a qualified private or no-cache
// directive may list; more are ignored.
const maxFields = 32

// Directives are the parsed directives of a Cache-Control field (or of a
// targeted field: CDN-Cache-Control, Surrogate-Control). Delta-seconds
// values are -1 when the directive is absent.
type Directives struct {
	// MaxAge, SMaxAge, MaxStale, MinFresh, StaleWhileRevalidate and
	// StaleIfError are in seconds; -1 when absent.
	MaxAge, SMaxAge, MaxStale, MinFresh, StaleWhileRevalidate, StaleIfError int64
	// MaxStaleAny is a max-stale without a value: any staleness.
	MaxStaleAny bool
	// The boolean directives.
	NoStore, NoCache, Private, Public, MustRevalidate, ProxyRevalidate, OnlyIfCached, NoTransform, Immutable, MustUnderstand bool
	// PrivateFields are the header names of a qualified private
	// (private="Set-Cookie"): a shared cache stores the response without them.
	PrivateFields []string
	// Invalid is set when max-age or s-maxage had a malformed value or
	// appeared twice with different values: the response is stale
	// (RFC 9111 sections 1.2.2 and 4.2.1).
	Invalid bool
}

// ParseDirectives parses the field lines of a Cache-Control (or targeted)
// field. Unknown directives are ignored, names are case-insensitive, and
// values may be tokens or quoted strings. It never fails: malformed
// freshness values make the response stale (Invalid), malformed request
// directives are ignored.
func ParseDirectives(lines []string) Directives {
	d := Directives{MaxAge: -1, SMaxAge: -1, MaxStale: -1, MinFresh: -1, StaleWhileRevalidate: -1, StaleIfError: -1}
	for _, s := range lines {
		d.parseLine(s)
	}
	return d
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// isTokenChar reports whether c is an RFC 9110 tchar; the one rule is
// httpguts's.
func isTokenChar(c byte) bool { return httpguts.IsTokenRune(rune(c)) }

// parseLine reads one field line: #( token [ "=" ( token / quoted-string ) ] ).
func (d *Directives) parseLine(s string) {
	i := 0
	for i < len(s) {
		for i < len(s) && (isOWS(s[i]) || s[i] == ',') {
			i++
		}
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		name := s[start:i]
		for i < len(s) && isOWS(s[i]) {
			i++
		}
		var val string
		hasVal, quoted := false, false
		if i < len(s) && s[i] == '=' {
			hasVal = true
			i++
			for i < len(s) && isOWS(s[i]) {
				i++
			}
			if i < len(s) && s[i] == '"' {
				quoted = true
				var ok bool
				val, i, ok = readQuoted(s, i)
				if !ok { // unterminated: the rest of the line is garbage
					d.apply(name, "", true, false)
					return
				}
			} else {
				vs := i
				for i < len(s) && isTokenChar(s[i]) {
					i++
				}
				val = s[vs:i]
			}
		}
		if name != "" {
			d.apply(name, val, hasVal, quoted)
		}
		// Skip anything up to the next comma (garbage after a value).
		for i < len(s) && s[i] != ',' {
			if s[i] == '"' {
				_, j, ok := readQuoted(s, i)
				if !ok {
					return
				}
				i = j
				continue
			}
			i++
		}
	}
}

// readQuoted reads a quoted-string starting at s[i] == '"', returning its
// unescaped value and the index after the closing quote.
func readQuoted(s string, i int) (string, int, bool) {
	i++ // opening quote
	start := i
	escaped := false
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			v := s[start:j]
			if escaped {
				var b strings.Builder
				for k := 0; k < len(v); k++ {
					if v[k] == '\\' && k+1 < len(v) {
						k++
					}
					b.WriteByte(v[k])
				}
				v = b.String()
			}
			return v, j + 1, true
		}
	}
	return "", len(s), false
}

// parseDelta reads delta-seconds: digits only; larger than 2^31 reads as 2^31.
func parseDelta(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

func (d *Directives) apply(name, val string, hasVal, quoted bool) {
	var buf [32]byte
	if len(name) > len(buf) {
		return // no directive we know is that long
	}
	lower := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower) {
	case "max-age":
		d.freshness(&d.MaxAge, val, hasVal)
	case "s-maxage":
		d.freshness(&d.SMaxAge, val, hasVal)
	case "max-stale":
		if !hasVal {
			d.MaxStaleAny = true
		} else if n, ok := parseDelta(val); ok && d.MaxStale < 0 {
			d.MaxStale = n
		}
	case "min-fresh":
		if n, ok := parseDelta(val); ok && d.MinFresh < 0 {
			d.MinFresh = n
		}
	case "stale-while-revalidate":
		if n, ok := parseDelta(val); ok && d.StaleWhileRevalidate < 0 {
			d.StaleWhileRevalidate = n
		}
	case "stale-if-error":
		if n, ok := parseDelta(val); ok && d.StaleIfError < 0 {
			d.StaleIfError = n
		}
	case "no-store":
		d.NoStore = true
	case "no-cache":
		// A qualified no-cache (no-cache="Set-Cookie") is treated as the
		// unqualified form: every reuse is validated. That is stricter
		// than required and always correct.
		d.NoCache = true
	case "private":
		if hasVal && quoted && val != "" {
			for f := range strings.SplitSeq(val, ",") {
				if f = strings.TrimSpace(f); f != "" && len(d.PrivateFields) < maxFields {
					d.PrivateFields = append(d.PrivateFields, f)
				}
			}
			if len(d.PrivateFields) > 0 {
				return
			}
		}
		d.Private = true
	case "public":
		d.Public = true
	case "must-revalidate":
		d.MustRevalidate = true
	case "proxy-revalidate":
		d.ProxyRevalidate = true
	case "only-if-cached":
		d.OnlyIfCached = true
	case "no-transform":
		d.NoTransform = true
	case "immutable":
		d.Immutable = true
	case "must-understand":
		d.MustUnderstand = true
	}
}

// freshness sets a response freshness directive; a malformed or
// conflicting value makes the response stale.
func (d *Directives) freshness(dst *int64, val string, hasVal bool) {
	n, ok := parseDelta(val)
	if !hasVal || !ok {
		d.Invalid = true
		return
	}
	if *dst >= 0 && *dst != n {
		d.Invalid = true
	}
	if *dst < 0 || n < *dst {
		*dst = n
	}
}
