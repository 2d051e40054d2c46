package transform

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/httpx"
)

// Request transforms requests before they are forwarded.
type Request struct {
	// Headers edits the request headers. The proxy sets X-Request-Id,
	// Traceparent and X-Forwarded-Host/-Proto after this transform and
	// appends to X-Forwarded-For, so editing those has no lasting effect
	// (X-Forwarded-For excepted: what is set here is sent, with the client
	// address appended).
	Headers Headers `yaml:"headers"`
	// Path rewrites the request path. Default nil: unchanged. It runs
	// before the route's strip_prefix.
	Path *PathRewrite `yaml:"path"`
	// Query edits the query string. Default nil: unchanged.
	Query *Query `yaml:"query"`
}

// PathRewrite rewrites a path: exactly one of Regex and Prefix.
//
// Both work on the escaped path (as sent on the wire, "%2F" stays
// "%2F"), so Replace must be escaped too ("/a%20b", not "/a b").
type PathRewrite struct {
	// Regex is an RE2 regular expression (Go syntax); every match in the
	// path is replaced by Replace, in which $1, ${name} expand to submatches
	// (regexp.Regexp.ReplaceAllString). Anchor it ("^/v1/(.*)$") to rewrite
	// the whole path once.
	Regex string `yaml:"regex"`
	// Prefix is replaced by Replace when the path starts with it at a
	// segment boundary: "/old" rewrites "/old" and "/old/x", not "/older";
	// a prefix ending in "/" matches literally ("/old/" rewrites "/old/x",
	// not "/old"). Must start with "/".
	Prefix string `yaml:"prefix"`
	// Replace is the replacement: with Prefix, a path starting with "/"
	// ("/old/x" with prefix "/old" and replace "/new" becomes "/new/x";
	// replace "/" makes it "/x"); with Regex, a template. Required.
	Replace string `yaml:"replace"`
}

// Query edits the query string, in this order: Remove, Rename, Set. Names
// are case-sensitive and compared after unescaping. Parameters keep their
// order and encoding, and the query string is only rebuilt when an
// operation changed it.
type Query struct {
	// Set gives each named parameter exactly this one value: the first
	// occurrence is replaced in place, later ones dropped, and an absent
	// parameter is appended (in name order). Default none.
	Set map[string]string `yaml:"set"`
	// Remove deletes every occurrence of the named parameters. Default none.
	Remove []string `yaml:"remove"`
	// Rename renames every occurrence of parameter OLD to NEW (map OLD:
	// NEW), keeping values; no chains, one source per target. Default none.
	Rename map[string]string `yaml:"rename"`
}

// Validate reports every problem of r at once; it does not modify r.
func (r Request) Validate() error { return errors.Join(r.validate()...) }

func (r Request) validate() []error {
	errs := r.Headers.validate("headers")
	if p := r.Path; p != nil {
		errs = append(errs, p.validate()...)
	}
	if q := r.Query; q != nil {
		errs = append(errs, q.validate()...)
	}
	return errs
}

func (p *PathRewrite) validate() []error {
	var errs []error
	switch {
	case p.Regex == "" && p.Prefix == "":
		errs = append(errs, errors.New("path: neither regex nor prefix; expected one of them"))
	case p.Regex != "" && p.Prefix != "":
		errs = append(errs, fmt.Errorf("path: both regex %q and prefix %q; expected one of them", p.Regex, p.Prefix))
	case p.Regex != "":
		if _, err := regexp.Compile(p.Regex); err != nil {
			errs = append(errs, fmt.Errorf("path.regex: compiling %q: %w", p.Regex, err))
		}
	case p.Prefix != "":
		if !strings.HasPrefix(p.Prefix, "/") || !validEscapedPath(p.Prefix) {
			errs = append(errs, fmt.Errorf("path.prefix: %q: expected an escaped path starting with \"/\"", p.Prefix))
		}
		if !strings.HasPrefix(p.Replace, "/") {
			errs = append(errs, fmt.Errorf("path.replace: %q: expected a path starting with \"/\"", p.Replace))
		}
	}
	// With a regex, "$" starts an expansion; the literal parts must still
	// be a valid escaped path.
	if !validEscapedPath(strings.ReplaceAll(p.Replace, "$", "")) {
		errs = append(errs, fmt.Errorf("path.replace: %q: expected an escaped path (no spaces, '?' or '#'; %%XX escapes)", p.Replace))
	}
	if p.Regex != "" && p.Replace == "" {
		errs = append(errs, errors.New("path.replace: empty; expected a replacement such as \"/v2/$1\""))
	}
	return errs
}

// validEscapedPath reports whether p may appear as an escaped URL path:
// no spaces, controls, '?' or '#', and every '%' starts a %XX escape.
func validEscapedPath(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c <= ' ' || c == 0x7f || c == '?' || c == '#' || c >= 0x80:
			return false
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// maxQuerySet bounds Query.Set.
const maxQuerySet = 64

func (q *Query) validate() []error {
	var errs []error
	if len(q.Set) > maxQuerySet {
		errs = append(errs, fmt.Errorf("query.set: %d parameters; expected at most %d", len(q.Set), maxQuerySet))
	}
	for _, k := range sortedKeys(q.Set) {
		if k == "" {
			errs = append(errs, errors.New("query.set: empty parameter name"))
		}
	}
	for _, k := range q.Remove {
		if k == "" {
			errs = append(errs, errors.New("query.remove: empty parameter name"))
		}
	}
	targets := map[string]string{}
	for _, from := range sortedKeys(q.Rename) {
		to := q.Rename[from]
		switch {
		case from == "" || to == "":
			errs = append(errs, fmt.Errorf("query.rename: %q to %q: expected non-empty names", from, to))
		case from == to:
			errs = append(errs, fmt.Errorf("query.rename: %q to %q: expected a different name", from, to))
		}
		if _, chained := q.Rename[to]; chained && to != from {
			errs = append(errs, fmt.Errorf("query.rename: %q is renamed to %q, which is itself renamed; expected no chains", from, to))
		}
		if prev, dup := targets[to]; dup {
			errs = append(errs, fmt.Errorf("query.rename: %q and %q both renamed to %q; expected one source per target", prev, from, to))
		}
		targets[to] = from
	}
	return errs
}

// RequestTransform is a compiled Request. Safe for concurrent use; it
// holds no mutable state.
type RequestTransform struct {
	headers headerOps
	// path
	re            *regexp.Regexp
	prefix        string
	replace       string
	rewritesPaths bool
	// query
	query *queryOps
}

// NewRequest validates cfg and compiles it (regular expressions once).
func NewRequest(cfg Request) (*RequestTransform, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &RequestTransform{headers: compileHeaders(cfg.Headers)}
	if p := cfg.Path; p != nil {
		t.rewritesPaths = true
		t.prefix, t.replace = p.Prefix, p.Replace
		if p.Regex != "" {
			t.re = regexp.MustCompile(p.Regex) // validated
		}
	}
	if q := cfg.Query; q != nil {
		t.query = compileQuery(*q)
	}
	return t, nil
}

// Apply transforms r in place: headers, then path, then query. URL.Path
// and URL.RawPath stay consistent (RawPath is kept only when the escaped
// form is not the default encoding of Path), and RawQuery is rewritten
// only when an operation changed it. A rewritten path that would not be a
// valid escaped path (possible only with a regex whose submatches split
// a %XX escape) is left unchanged.
func (t *RequestTransform) Apply(r *http.Request) {
	t.headers.apply(r.Header)
	if t.rewritesPaths {
		t.rewritePath(r.URL)
	}
	if t.query != nil {
		if q, changed := t.query.apply(r.URL.RawQuery); changed {
			r.URL.RawQuery = q
		}
	}
}

func (t *RequestTransform) rewritePath(u *url.URL) {
	esc := u.EscapedPath()
	var out string
	if t.re != nil {
		out = t.re.ReplaceAllString(esc, t.replace)
	} else {
		rest, ok := strings.CutPrefix(esc, t.prefix)
		if !ok || rest != "" && rest[0] != '/' && !strings.HasSuffix(t.prefix, "/") {
			return
		}
		switch {
		case strings.HasSuffix(t.replace, "/") && strings.HasPrefix(rest, "/"):
			rest = rest[1:]
		case rest != "" && rest[0] != '/' && !strings.HasSuffix(t.replace, "/"):
			rest = "/" + rest // the prefix ended with "/": keep the boundary
		}
		out = t.replace + rest
	}
	if out == esc {
		return
	}
	if !strings.HasPrefix(out, "/") {
		out = "/" + out
	}
	if !validEscapedPath(out) {
		return
	}
	p, err := url.PathUnescape(out)
	if err != nil {
		return
	}
	u.Path, u.RawPath = p, ""
	if u.EscapedPath() != out {
		u.RawPath = out
	}
}

// Middleware applies the transform to each request before passing it on.
// The request is shallow-copied first, with its own URL and Header, so
// the caller's view of the incoming request (access logs, metrics) keeps
// the original path and headers.
func (t *RequestTransform) Middleware() httpx.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r2 := new(http.Request)
			*r2 = *r
			u := *r.URL
			r2.URL = &u
			r2.Header = r.Header.Clone()
			t.Apply(r2)
			next.ServeHTTP(w, r2)
		})
	}
}

// queryOps is a compiled Query.
type queryOps struct {
	remove []string
	rename map[string]queryName
	// set, in name order, with the encoded "name=value" pair.
	set []querySet
}

type querySet struct{ name, value, escValue, pair string }

type queryName struct{ name, escaped string }

func compileQuery(q Query) *queryOps {
	ops := &queryOps{remove: slices.Clone(q.Remove), rename: map[string]queryName{}}
	for k, v := range q.Rename {
		ops.rename[k] = queryName{v, url.QueryEscape(v)}
	}
	for _, k := range sortedKeys(q.Set) {
		ev := url.QueryEscape(q.Set[k])
		ops.set = append(ops.set, querySet{k, q.Set[k], ev, url.QueryEscape(k) + "=" + ev})
	}
	return ops
}

// apply edits a raw query string and reports whether it changed. It
// scans once to decide and, only when something changes, a second time to
// build the new string; an unchanged query costs no allocation.
func (o *queryOps) apply(raw string) (string, bool) {
	if raw == "" && len(o.set) == 0 {
		return raw, false
	}
	if !o.scan(raw, nil) {
		return raw, false
	}
	var b strings.Builder
	b.Grow(len(raw) + 16)
	o.scan(raw, &b)
	return b.String(), true
}

// scan walks the pairs of raw, writing the edited query to b when b is not
// nil (empty pairs are then dropped), and reports whether any operation
// changes the query. Pairs whose name does not unescape are kept as is.
func (o *queryOps) scan(raw string, b *strings.Builder) bool {
	var (
		changed bool
		done    uint64 // bit i: set[i] written (Validate caps set at 64)
	)
	write := func(s string) {
		if b == nil || s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(s)
	}
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		rawName, rawValue, hasValue := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if pair == "" || err != nil {
			write(pair)
			continue
		}
		if slices.Contains(o.remove, name) {
			changed = true
			continue
		}
		if to, ok := o.rename[name]; ok {
			changed = true
			name = to.name
			pair = to.escaped
			if hasValue {
				pair += "=" + rawValue
			}
		}
		i := slices.IndexFunc(o.set, func(s querySet) bool { return s.name == name })
		switch {
		case i < 0:
			write(pair)
		case done&(1<<i) != 0:
			changed = true // a later occurrence: dropped
		default:
			done |= 1 << i
			same := hasValue && rawValue == o.set[i].escValue
			if hasValue && !same {
				v, err := url.QueryUnescape(rawValue)
				same = err == nil && v == o.set[i].value
			}
			if same {
				write(pair) // already as wanted: keep its encoding
			} else {
				changed = true
				write(o.set[i].pair)
			}
		}
	}
	for i, s := range o.set {
		if done&(1<<i) == 0 {
			changed = true
			write(s.pair)
		}
	}
	return changed
}
