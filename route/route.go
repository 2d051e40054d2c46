// Package route matches requests to routes by host, path, method and
// headers. Routes are tried in order and the first match wins.
package route

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Match is a conjunction of request conditions; the zero Match matches
// every request.
type Match struct {
	// Host is an exact host name (case-insensitive, port ignored) or a
	// wildcard "*.example.com" matching any subdomain (not the apex).
	Host string
	// Path matches the request path exactly.
	Path string
	// PathPrefix matches a path prefix at a segment boundary: "/v1" matches
	// "/v1", "/v1/" and "/v1/x" but not "/v10". A prefix ending in "/"
	// matches anything below it.
	PathPrefix string
	// PathPattern matches the path segment by segment: a "*" segment
	// stands for exactly one non-empty segment, any other segment must be
	// equal. "/v1/rides/*/receipt" matches "/v1/rides/42/receipt" but not
	// "/v1/rides/receipt", "/v1/rides//receipt", "/v1/rides/4/2/receipt"
	// or "/v1/rides/42/receipt/". Segments are compared as the request
	// path has them (percent-decoded by the server), without cleaning.
	PathPattern string
	// Methods accepted; empty accepts all.
	Methods []string
	// Headers that must be present with exactly these values.
	Headers map[string]string
	// Client is a client type (mobile, desktop or other; see ClientType),
	// for backends-for-frontends routing.
	Client string
}

// Validate reports every malformed condition.
func (m Match) Validate() error {
	var errs []error
	if n := btoi(m.Path != "") + btoi(m.PathPrefix != "") + btoi(m.PathPattern != ""); n > 1 {
		errs = append(errs, errors.New("path, path_prefix and path_pattern are exclusive"))
	}
	if m.PathPattern != "" {
		if err := ValidPattern(m.PathPattern); err != nil {
			errs = append(errs, err)
		}
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q must start with /", m.Path))
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		errs = append(errs, fmt.Errorf("path_prefix %q must start with /", m.PathPrefix))
	}
	switch m.Client {
	case "", ClientMobile, ClientDesktop, ClientOther:
	default:
		errs = append(errs, fmt.Errorf("client %q: expected mobile, desktop or other", m.Client))
	}
	if strings.Contains(strings.TrimPrefix(m.Host, "*."), "*") {
		errs = append(errs, fmt.Errorf("host %q: a wildcard is only allowed as a leading \"*.\"", m.Host))
	}
	return errors.Join(errs...)
}

// compiled is a Match prepared for fast evaluation.
type compiled struct {
	host     string // lower case, without "*." for wildcards
	wildcard bool
	path     string
	prefix   string
	pattern  []string // segments of PathPattern, "*" for any one
	methods  []string
	headers  []header
	client   string
}

type header struct{ key, value string } // key canonicalised

// Table is an ordered list of routes of any payload type V. It is
// immutable once built and safe for concurrent use.
type Table[V any] struct {
	matches []compiled
	values  []V
}

// Add appends a route; the first added route is tried first.
func (t *Table[V]) Add(m Match, v V) error {
	if err := m.Validate(); err != nil {
		return err
	}
	c := compiled{path: m.Path, prefix: m.PathPrefix, methods: m.Methods, client: m.Client}
	if m.PathPattern != "" {
		c.pattern = strings.Split(m.PathPattern[1:], "/")
	}
	c.host = strings.ToLower(m.Host)
	if h, ok := strings.CutPrefix(c.host, "*."); ok {
		c.host, c.wildcard = "."+h, true
	}
	for k, v := range m.Headers {
		c.headers = append(c.headers, header{http.CanonicalHeaderKey(k), v})
	}
	t.matches = append(t.matches, c)
	t.values = append(t.values, v)
	return nil
}

// Len returns the number of routes.
func (t *Table[V]) Len() int { return len(t.matches) }

// Lookup returns the payload of the first route matching r.
// A fully qualified host's trailing dot is ignored ("api.example.com." is
// api.example.com), as DNS and most servers' virtual hosts ignore it.
func (t *Table[V]) Lookup(r *http.Request) (v V, ok bool) {
	host := strings.TrimSuffix(hostOnly(r.Host), ".")
	for i := range t.matches {
		if t.matches[i].match(r, host) {
			return t.values[i], true
		}
	}
	return v, false
}

func (c *compiled) match(r *http.Request, host string) bool {
	if c.host != "" {
		if c.wildcard {
			if len(host) <= len(c.host) || !strings.EqualFold(host[len(host)-len(c.host):], c.host) {
				return false
			}
		} else if !strings.EqualFold(host, c.host) {
			return false
		}
	}
	p := r.URL.Path
	if c.path != "" && p != c.path {
		return false
	}
	if c.prefix != "" && !HasPathPrefix(p, c.prefix) {
		return false
	}
	if c.pattern != nil && !matchSegments(c.pattern, p) {
		return false
	}
	if len(c.methods) > 0 {
		found := false
		for _, m := range c.methods {
			if m == r.Method {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, h := range c.headers {
		vs := r.Header[h.key]
		found := false
		for _, v := range vs {
			if v == h.value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if c.client != "" && ClientType(r) != c.client {
		return false
	}
	return true
}

// Client types for backends-for-frontends routing.
const (
	ClientMobile  = "mobile"
	ClientDesktop = "desktop"
	ClientOther   = "other"
)

// ClientTypeHeader lets a client state its type explicitly.
const ClientTypeHeader = "X-Client-Type"

// ClientType classifies the client of r: the X-Client-Type header when it
// names a known type, else the User-Agent: phones and tablets (Mobile,
// Android, iPhone, iPad) are mobile, other browsers (Mozilla/...) desktop,
// anything else (curl, SDKs, services) other.
func ClientType(r *http.Request) string {
	if v := r.Header.Get(ClientTypeHeader); v != "" {
		switch strings.ToLower(v) {
		case ClientMobile:
			return ClientMobile
		case ClientDesktop:
			return ClientDesktop
		case ClientOther:
			return ClientOther
		}
	}
	ua := r.Header.Get("User-Agent")
	switch {
	case strings.Contains(ua, "Mobile"), strings.Contains(ua, "Android"),
		strings.Contains(ua, "iPhone"), strings.Contains(ua, "iPad"):
		return ClientMobile
	case strings.HasPrefix(ua, "Mozilla/"):
		return ClientDesktop
	}
	return ClientOther
}

// HasPathPrefix reports whether path starts with prefix at a segment boundary.
func HasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// StripPrefix removes prefix from path at a segment boundary, keeping a
// leading slash ("/v1/rides" minus "/v1" is "/rides", "/v1" becomes "/").
func StripPrefix(path, prefix string) string {
	if prefix == "" || !HasPathPrefix(path, prefix) {
		return path
	}
	rest := path[len(prefix):]
	if rest == "" || rest[0] != '/' {
		return "/" + rest
	}
	return rest
}

// hostOnly strips a port from a Host header value, keeping IPv6 brackets off.
func hostOnly(h string) string {
	if len(h) > 0 && h[0] == '[' {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ValidPattern reports a problem with a path pattern, or nil: it must
// start with "/" and consist of non-empty segments, each "*" or a literal
// without "*".
func ValidPattern(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path_pattern %q must start with /", p)
	}
	for i, seg := range strings.Split(p[1:], "/") {
		switch {
		case seg == "":
			return fmt.Errorf("path_pattern %q: segment %d is empty: expected a name or *", p, i+1)
		case seg != "*" && strings.Contains(seg, "*"):
			return fmt.Errorf("path_pattern %q: segment %q: * must be a whole segment", p, seg)
		}
	}
	return nil
}

// MatchPattern reports whether path matches the path pattern p (see
// Match.PathPattern). p must be valid (ValidPattern).
func MatchPattern(p, path string) bool {
	if len(p) == 0 || p[0] != '/' || len(path) == 0 || path[0] != '/' {
		return false
	}
	p, path = p[1:], path[1:]
	for {
		var seg, cur string
		seg, p, _ = strings.Cut(p, "/")
		i := strings.IndexByte(path, '/')
		if i < 0 {
			cur, path = path, ""
		} else {
			cur, path = path[:i], path[i:]
		}
		if cur == "" || (seg != "*" && seg != cur) {
			return false
		}
		if p == "" {
			return path == ""
		}
		if path == "" {
			return false
		}
		path = path[1:]
	}
}

// matchSegments is MatchPattern over a pattern split into segments.
func matchSegments(segs []string, path string) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	path = path[1:]
	for i, seg := range segs {
		j := strings.IndexByte(path, '/')
		cur := path
		if j >= 0 {
			cur = path[:j]
		}
		if cur == "" || (seg != "*" && seg != cur) {
			return false
		}
		if i == len(segs)-1 {
			return j < 0
		}
		if j < 0 {
			return false
		}
		path = path[j+1:]
	}
	return false
}

// Covers reports whether every request b matches is also matched by a, so
// that a route b placed after a route a is never reached. It is
// conservative: false when it cannot tell (a wildcard host against another
// host, say), never true wrongly. Both must be valid.
func Covers(a, b Match) bool {
	if a.Host != "" && !strings.EqualFold(strings.TrimSuffix(a.Host, "."), strings.TrimSuffix(b.Host, ".")) {
		return false
	}
	if a.Client != "" && a.Client != b.Client {
		return false
	}
	if len(a.Methods) > 0 {
		if len(b.Methods) == 0 {
			return false
		}
		for _, m := range b.Methods {
			found := false
			for _, am := range a.Methods {
				found = found || am == m
			}
			if !found {
				return false
			}
		}
	}
	for k, v := range a.Headers {
		found := false
		for bk, bv := range b.Headers {
			found = found || (http.CanonicalHeaderKey(bk) == http.CanonicalHeaderKey(k) && bv == v)
		}
		if !found {
			return false
		}
	}
	// A pattern without "*" is an exact path.
	bPath, bPattern := b.Path, b.PathPattern
	if bPattern != "" && !strings.Contains(bPattern, "*") {
		bPath, bPattern = bPattern, ""
	}
	aPath, aPattern := a.Path, a.PathPattern
	if aPattern != "" && !strings.Contains(aPattern, "*") {
		aPath, aPattern = aPattern, ""
	}
	switch {
	case aPath == "" && a.PathPrefix == "" && aPattern == "":
		return true
	case aPath != "":
		return bPath == aPath
	case a.PathPrefix != "":
		switch {
		case bPath != "":
			return HasPathPrefix(bPath, a.PathPrefix)
		case b.PathPrefix != "":
			return HasPathPrefix(b.PathPrefix, a.PathPrefix)
		case bPattern != "":
			// Every match of b starts with its literal segments before the
			// first "*", then "/" and a non-empty segment.
			lit := bPattern[:strings.Index(bPattern, "*")]
			return HasPathPrefix(lit, a.PathPrefix)
		}
		return false
	default: // aPattern
		switch {
		case bPath != "":
			return MatchPattern(aPattern, bPath)
		case bPattern != "":
			as, bs := strings.Split(aPattern, "/"), strings.Split(bPattern, "/")
			if len(as) != len(bs) {
				return false
			}
			for i := range as {
				if as[i] != "*" && as[i] != bs[i] {
					return false
				}
			}
			return true
		}
		return false
	}
}
