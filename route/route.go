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
	if m.Path != "" && m.PathPrefix != "" {
		errs = append(errs, errors.New("path and path_prefix are exclusive"))
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
