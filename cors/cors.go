// Package cors answers CORS preflight requests at the gateway and adds CORS
// response headers to actual requests, per route, following the Fetch
// standard (https://fetch.spec.whatwg.org/#http-cors-protocol).
//
// YAML shape (per route), defaults in comments:
//
//	cors:
//	  allow_origins: ["https://app.example.com", "https://*.example.com"]   # required; or ["*"]
//	  allow_methods: [GET, POST, PUT]    # default [GET, HEAD, POST]; ["*"] = any
//	  allow_headers: [Content-Type, Authorization]   # default none beyond the CORS-safelisted; ["*"] = any
//	  expose_headers: [X-Request-Id]     # default none
//	  allow_credentials: false           # cookies / Authorization from browsers
//	  max_age: 10m                       # preflight cache; default 0 = header omitted (browser default 5s)
//
// On a route with CORS the gateway owns the CORS response headers: any
// Access-Control-* header from the upstream is dropped so browsers never
// see two conflicting values.
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/httpx"
	"golang.org/x/net/http/httpguts"
)

// Defaults applied to zero fields of Config.
var (
	// DefaultAllowMethods are the CORS-safelisted methods.
	DefaultAllowMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
)

// MaxMaxAge bounds Config.MaxAge: browsers cap it anyway (Chromium at 2h,
// Firefox at 24h).
const MaxMaxAge = 24 * time.Hour

// Config is one route's CORS policy.
type Config struct {
	// AllowOrigins lists the origins allowed to read responses:
	// exact origins ("https://app.example.com", "http://localhost:3000";
	// scheme://host[:port], no path), wildcard subdomains
	// ("https://*.example.com" matches https://a.example.com and
	// https://a.b.example.com, not https://example.com; the port must match
	// too), or "*" alone for any origin. Matching is case-insensitive.
	// "null" is refused (sandboxed documents and file: pages share it).
	// Required.
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowMethods are the methods a preflight may ask for. "*" alone
	// allows any method. Default GET, HEAD, POST.
	AllowMethods []string `yaml:"allow_methods"`
	// AllowHeaders are the request headers (beyond the CORS-safelisted
	// ones, which need no permission) a preflight may ask for,
	// case-insensitive. "*" alone allows any header, including
	// Authorization (the requested list is echoed). Default none.
	AllowHeaders []string `yaml:"allow_headers"`
	// ExposeHeaders are response headers, beyond the CORS-safelisted
	// ones, that scripts may read (Access-Control-Expose-Headers).
	// Default none.
	ExposeHeaders []string `yaml:"expose_headers"`
	// AllowCredentials lets browsers send cookies and HTTP auth and read
	// the response (Access-Control-Allow-Credentials: true). Cannot be
	// combined with AllowOrigins "*". Default false: the header is never
	// sent. Hazard: every allowed origin can then act as the user.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long browsers may cache a preflight answer, a Go
	// duration such as "10m", whole seconds, at most 24h. Default 0: no
	// Access-Control-Max-Age header (browsers cache for 5s).
	MaxAge time.Duration `yaml:"max_age"`
}

// Validate reports every problem of c at once; it does not modify c.
func (c Config) Validate() error {
	var errs []error
	if len(c.AllowOrigins) == 0 {
		errs = append(errs, errors.New("allow_origins: empty; expected at least one origin such as \"https://app.example.com\", or \"*\""))
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			if len(c.AllowOrigins) > 1 {
				errs = append(errs, errors.New("allow_origins: \"*\" with other origins; expected \"*\" alone"))
			}
			if c.AllowCredentials {
				errs = append(errs, errors.New("allow_origins: \"*\" with allow_credentials; browsers refuse credentials for a wildcard origin, list the origins instead"))
			}
			continue
		}
		if _, err := parseOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("allow_origins: %w", err))
		}
	}
	errs = append(errs, checkTokens("allow_methods", c.AllowMethods, "method")...)
	errs = append(errs, checkTokens("allow_headers", c.AllowHeaders, "header name")...)
	for _, h := range c.ExposeHeaders {
		if h == "*" {
			errs = append(errs, errors.New("expose_headers: \"*\"; expected header names (a wildcard is ignored by browsers for credentialed requests)"))
		} else if !httpguts.ValidHeaderFieldName(h) {
			errs = append(errs, fmt.Errorf("expose_headers: %q: expected a header name", h))
		}
	}
	switch {
	case c.MaxAge < 0:
		errs = append(errs, fmt.Errorf("max_age: %v: expected a non-negative duration", c.MaxAge))
	case c.MaxAge > MaxMaxAge:
		errs = append(errs, fmt.Errorf("max_age: %v: expected at most %v", c.MaxAge, MaxMaxAge))
	case c.MaxAge%time.Second != 0:
		errs = append(errs, fmt.Errorf("max_age: %v: expected whole seconds", c.MaxAge))
	}
	return errors.Join(errs...)
}

func checkTokens(key string, vs []string, what string) []error {
	var errs []error
	for _, v := range vs {
		if v == "*" {
			if len(vs) > 1 {
				errs = append(errs, fmt.Errorf("%s: \"*\" with other values; expected \"*\" alone", key))
			}
			continue
		}
		if !httpguts.ValidHeaderFieldName(v) {
			errs = append(errs, fmt.Errorf("%s: %q: expected a %s", key, v, what))
		}
	}
	return errs
}

// origin is a parsed AllowOrigins entry, lower case.
type origin struct {
	exact  string // "https://app.example.com"; empty for a wildcard
	prefix string // "https://" of a wildcard
	suffix string // ".example.com" or ".example.com:8443" of a wildcard
}

func parseOrigin(s string) (origin, error) {
	l := strings.ToLower(s)
	scheme, rest, ok := strings.Cut(l, "://")
	if !ok || scheme == "" || !isScheme(scheme) {
		return origin{}, fmt.Errorf("origin %q: expected scheme://host[:port]", s)
	}
	if l == "null" {
		return origin{}, fmt.Errorf("origin %q: refused; any sandboxed page can send it", s)
	}
	if strings.ContainsAny(rest, "/?#@ ") || rest == "" {
		return origin{}, fmt.Errorf("origin %q: expected scheme://host[:port] without path, query, user or trailing slash", s)
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return origin{}, fmt.Errorf("origin %q: port %q: expected 1-65535", s, port)
		}
	}
	if wild, ok := strings.CutPrefix(host, "*."); ok {
		if !isHostname(wild) || !strings.Contains(wild, ".") {
			return origin{}, fmt.Errorf("origin %q: expected a wildcard like https://*.example.com (at least two labels after \"*.\")", s)
		}
		return origin{prefix: scheme + "://", suffix: rest[1:]}, nil
	}
	if strings.Contains(host, "*") {
		return origin{}, fmt.Errorf("origin %q: a wildcard is only allowed as a leading \"*.\" of the host", s)
	}
	if !isHostname(host) && !(strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")) {
		return origin{}, fmt.Errorf("origin %q: host %q: expected a host name or IP address", s, host)
	}
	return origin{exact: l}, nil
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// isHostname accepts dot-separated non-empty labels of [a-z0-9-_].
func isHostname(s string) bool {
	if s == "" {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// match reports whether o (as sent by a browser) matches the entry.
func (e origin) match(o string) bool {
	if e.exact != "" {
		return strings.EqualFold(o, e.exact)
	}
	if len(o) <= len(e.prefix)+len(e.suffix) ||
		!strings.EqualFold(o[:len(e.prefix)], e.prefix) ||
		!strings.EqualFold(o[len(o)-len(e.suffix):], e.suffix) {
		return false
	}
	// The part the wildcard covers: one or more labels, nothing else.
	sub := o[len(e.prefix) : len(o)-len(e.suffix)]
	if sub[0] == '.' || sub[len(sub)-1] == '.' {
		return false
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i] | 0x20 // ASCII lower case
		if !('a' <= c && c <= 'z' || '0' <= sub[i] && sub[i] <= '9' || sub[i] == '-' || sub[i] == '_' || sub[i] == '.' && sub[i-1] != '.') {
			return false
		}
	}
	return true
}

// CORS is a compiled Config. Safe for concurrent use; it holds no mutable
// state.
type CORS struct {
	anyOrigin   bool
	origins     []origin
	anyMethod   bool
	methods     []string // upper case as configured; methods are case-sensitive
	anyHeader   bool
	headers     []string // lower case
	credentials bool

	// Precomputed header values, shared by all responses: stored into
	// headers as is (saving an allocation each) and never modified.
	valTrue, valStar          []string
	varyOrigin, varyPreflight []string
	allowMethods              []string
	exposeHeaders             []string
	maxAge                    []string
}

const (
	varyOrigin    = "Origin"
	varyPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// New validates cfg, applies defaults and compiles it.
func New(cfg Config) (*CORS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &CORS{credentials: cfg.AllowCredentials, valTrue: []string{"true"}, valStar: []string{"*"},
		varyOrigin: []string{varyOrigin}, varyPreflight: []string{varyPreflight}}
	for _, o := range cfg.AllowOrigins {
		if o == "*" {
			c.anyOrigin = true
			continue
		}
		p, _ := parseOrigin(o) // validated
		c.origins = append(c.origins, p)
	}
	methods := cfg.AllowMethods
	if len(methods) == 0 {
		methods = DefaultAllowMethods
	}
	if methods[0] == "*" {
		c.anyMethod = true
	} else {
		// Browsers upper-case the standard methods they send; say them
		// the same way.
		for _, m := range methods {
			if isStandardMethod(m) {
				m = strings.ToUpper(m)
			}
			c.methods = append(c.methods, m)
		}
		c.allowMethods = []string{strings.Join(c.methods, ", ")}
	}
	if len(cfg.AllowHeaders) > 0 && cfg.AllowHeaders[0] == "*" {
		c.anyHeader = true
	} else {
		for _, h := range cfg.AllowHeaders {
			c.headers = append(c.headers, strings.ToLower(h))
		}
	}
	if len(cfg.ExposeHeaders) > 0 {
		c.exposeHeaders = []string{strings.Join(cfg.ExposeHeaders, ", ")}
	}
	if cfg.MaxAge > 0 {
		c.maxAge = []string{strconv.Itoa(int(cfg.MaxAge / time.Second))}
	}
	return c, nil
}

// OriginAllowed reports whether a request from origin may read responses.
func (c *CORS) OriginAllowed(origin string) bool {
	if origin == "" {
		return false
	}
	if c.anyOrigin {
		return true
	}
	for _, o := range c.origins {
		if o.match(origin) {
			return true
		}
	}
	return false
}

func (c *CORS) methodAllowed(m string) bool {
	if c.anyMethod {
		return true
	}
	// Methods are case-sensitive; New upper-cased the standard ones.
	return slices.Contains(c.methods, m)
}

func isStandardMethod(m string) bool {
	switch strings.ToUpper(m) {
	case "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT":
		return true
	}
	return false
}

// headersAllowed reports whether every name of an
// Access-Control-Request-Headers value is allowed, and the first refused
// one.
func (c *CORS) headersAllowed(list string) (string, bool) {
	if c.anyHeader {
		return "", true
	}
	for list != "" {
		var name string
		name, list, _ = strings.Cut(list, ",")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		ok := false
		for _, h := range c.headers {
			if strings.EqualFold(h, name) {
				ok = true
				break
			}
		}
		if !ok {
			return name, false
		}
	}
	return "", true
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// Middleware applies the policy:
//
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
//     is answered by the gateway and never forwarded: 204 with
//     Access-Control-Allow-Origin, -Methods, -Headers (the requested list,
//     when allowed), -Credentials (only when configured) and -Max-Age
//     (when configured); 403 {"code": "cors_forbidden"} when the origin,
//     the method or a header is not allowed.
//   - Any other request is forwarded. When its Origin is allowed the
//     response gets Access-Control-Allow-Origin (the request's origin, or
//     "*" when AllowOrigins is "*" without credentials),
//     Access-Control-Allow-Credentials when configured and
//     Access-Control-Expose-Headers when configured; otherwise no CORS
//     header (the browser then withholds the response from the script).
//   - Upstream Access-Control-* response headers are dropped; responses
//     that depend on Origin carry Vary: Origin.
func (c *CORS) Middleware() httpx.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				if !c.anyOrigin || c.credentials {
					addVary(w.Header(), c.varyOrigin)
				}
				next.ServeHTTP(w, r)
				return
			}
			if isPreflight(r) {
				c.preflight(w, r, origin)
				return
			}
			cw := &corsWriter{ResponseWriter: w, c: c, origin: origin}
			next.ServeHTTP(cw, r)
			if !cw.wrote {
				cw.setHeaders() // the handler wrote nothing: net/http sends 200
			}
		})
	}
}

func (c *CORS) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	h := w.Header()
	addVary(h, c.varyPreflight)
	if !c.OriginAllowed(origin) {
		forbid(w, r, "origin "+strconv.Quote(origin)+" is not allowed")
		return
	}
	method := r.Header.Get("Access-Control-Request-Method")
	if !c.methodAllowed(method) {
		forbid(w, r, "method "+strconv.Quote(method)+" is not allowed for cross-origin requests")
		return
	}
	reqHeaders := strings.Join(r.Header.Values("Access-Control-Request-Headers"), ",")
	if name, ok := c.headersAllowed(reqHeaders); !ok {
		forbid(w, r, "header "+strconv.Quote(name)+" is not allowed for cross-origin requests")
		return
	}
	c.setAllowOrigin(h, origin)
	if c.anyMethod {
		h.Set("Access-Control-Allow-Methods", method)
	} else {
		h["Access-Control-Allow-Methods"] = c.allowMethods
	}
	if reqHeaders != "" {
		h.Set("Access-Control-Allow-Headers", reqHeaders)
	}
	if c.maxAge != nil {
		h["Access-Control-Max-Age"] = c.maxAge
	}
	httpx.RecordStatus(r, http.StatusNoContent)
	w.WriteHeader(http.StatusNoContent)
}

func forbid(w http.ResponseWriter, r *http.Request, msg string) {
	httpx.WriteError(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "cors_forbidden", Msg: msg})
}

// addVary adds a shared Vary value, without allocating when h has none.
func addVary(h http.Header, v []string) {
	if old, ok := h["Vary"]; ok {
		h["Vary"] = append(old, v[0])
		return
	}
	h["Vary"] = v
}

// setAllowOrigin sets Access-Control-Allow-Origin and -Credentials for an
// allowed origin.
func (c *CORS) setAllowOrigin(h http.Header, origin string) {
	if c.anyOrigin && !c.credentials {
		h["Access-Control-Allow-Origin"] = c.valStar
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if c.credentials {
		h["Access-Control-Allow-Credentials"] = c.valTrue
	}
}

// corsWriter sets the CORS headers of an actual request's response when
// its header is written, after the upstream's headers were copied in.
type corsWriter struct {
	http.ResponseWriter
	c      *CORS
	origin string
	wrote  bool
}

func (w *corsWriter) setHeaders() {
	w.wrote = true
	h := w.ResponseWriter.Header()
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
	c := w.c
	if !c.anyOrigin || c.credentials {
		addVary(h, c.varyOrigin)
	}
	if !c.OriginAllowed(w.origin) {
		return
	}
	c.setAllowOrigin(h, w.origin)
	if c.exposeHeaders != nil {
		h["Access-Control-Expose-Headers"] = c.exposeHeaders
	}
}

// WriteHeader sets the CORS headers on the final (non-1xx) response.
func (w *corsWriter) WriteHeader(code int) {
	if !w.wrote && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.setHeaders()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *corsWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.setHeaders()
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (w *corsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
