package balance

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// keyKind says where a hash key comes from.
type keyKind uint8

const (
	keyClientIP keyKind = iota
	keyHeader
	keyCookie
	keyQuery
	keyPath
)

// keySource extracts the hash key of a request as configured by HashOn.
type keySource struct {
	kind keyKind
	name string // header (canonical form), cookie or query parameter name
}

// parseHashOn parses a Config.HashOn value.
func parseHashOn(s string) (keySource, error) {
	switch s {
	case "client_ip":
		return keySource{kind: keyClientIP}, nil
	case "path":
		return keySource{kind: keyPath}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return keySource{}, fmt.Errorf("invalid hash_on %q: expected client_ip, path, header:NAME, cookie:NAME or query:NAME", s)
	}
	var k keySource
	switch kind {
	case "header":
		if !httpguts.ValidHeaderFieldName(name) {
			return keySource{}, fmt.Errorf("invalid hash_on %q: expected a header name (a token) after \"header:\"", s)
		}
		k = keySource{kind: keyHeader, name: textproto.CanonicalMIMEHeaderKey(name)}
	case "cookie":
		if !httpguts.ValidHeaderFieldName(name) {
			return keySource{}, fmt.Errorf("invalid hash_on %q: expected a cookie name (a token) after \"cookie:\"", s)
		}
		k = keySource{kind: keyCookie, name: name}
	case "query":
		if name == "" {
			return keySource{}, fmt.Errorf("invalid hash_on %q: expected a query parameter name after \"query:\"", s)
		}
		k = keySource{kind: keyQuery, name: name}
	default:
		return keySource{}, fmt.Errorf("invalid hash_on %q: unknown key source %q, expected header, cookie or query before the colon", s, kind)
	}
	return k, nil
}

// key returns the request's hash key, or false when the request has none
// (nil request, or an absent or empty header, cookie or parameter). It does
// not allocate except to unescape a percent-encoded query value.
func (k keySource) key(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	var v string
	switch k.kind {
	case keyClientIP:
		v = clientIP(r.RemoteAddr)
	case keyHeader:
		if vs := r.Header[k.name]; len(vs) > 0 {
			v = vs[0]
		}
	case keyCookie:
		v, _ = cookieValue(r.Header, k.name)
	case keyQuery:
		if r.URL != nil {
			v = queryValue(r.URL.RawQuery, k.name)
		}
	case keyPath:
		if r.URL != nil {
			v = r.URL.Path
		}
	}
	return v, v != ""
}

// clientIP returns the host part of a RemoteAddr ("1.2.3.4:5" → "1.2.3.4",
// "[::1]:5" → "::1"), or addr itself when it has no port.
func clientIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		// An IPv6 address without brackets or port ("::1") has colons but
		// no port; only strip a port after "]" or from a colon-free host.
		host := addr[:i]
		if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
			return host[1 : len(host)-1]
		}
		if strings.IndexByte(host, ':') < 0 {
			return host
		}
	}
	return addr
}

// cookieValue finds the first cookie called name in the Cookie headers
// without allocating (http.Request.Cookie parses every cookie into a new
// slice). Surrounding double quotes are removed as net/http does.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			n, v, ok := strings.Cut(part, "=")
			if !ok || n != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// queryValue returns the first value of the query parameter name in a raw
// query, unescaping it only when it is escaped (which allocates).
func queryValue(raw, name string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		if strings.ContainsAny(v, "%+") {
			if uv, err := url.QueryUnescape(v); err == nil {
				return uv
			}
		}
		return v
	}
	return ""
}

// Hashing. The hash is deterministic (FNV-1a finished with the murmur3
// 64-bit mixer) rather than hash/maphash with a random seed, so that every
// gateway replica and every restart maps a key to the same target: that is
// the point of ip_hash and consistent_hash, and it keeps sticky-cookie ids
// stable. The keys are short (an IP, a header value) and an attacker who
// can choose keys can at worst pile them on one target, which bounded load
// limits.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
	// golden is 2^64/φ, the splitmix64 increment.
	golden = 0x9e3779b97f4a7c15
)

// hashString hashes s without allocating.
func hashString(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return mix64(h)
}

// mix64 is the murmur3 fmix64 finaliser: every input bit affects every
// output bit, which FNV alone does poorly for the high bits used by
// reductions and the ring.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// reduce maps a uniformly distributed h onto [0, n) without division
// (Lemire's multiply-shift on the high 32 bits).
func reduce(h uint64, n int) int {
	return int(((h >> 32) * uint64(n)) >> 32)
}

// rng is a lock-free splitmix64 generator: one atomic add per number, no
// allocation, good enough statistics for load balancing. Safe for
// concurrent use; the state is per policy, never package-level.
type rng struct {
	state atomic.Uint64
}

func newRNG() *rng {
	r := &rng{}
	r.state.Store(rand.Uint64())
	return r
}

// seed resets the generator so tests are reproducible.
func (r *rng) seed(s uint64) { r.state.Store(s) }

// next returns a pseudo-random 64-bit number.
func (r *rng) next() uint64 {
	return mix64(r.state.Add(golden))
}
