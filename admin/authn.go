package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/switchyard/switchyard/config"
)

// Roles an admin caller can hold.
const (
	// RoleRead may read: GET and HEAD on every admin path except the Go
	// profiles (/debug/pprof, which expose memory contents).
	RoleRead = "read"
	// RoleOperator may do everything: drain, weights, reload, purge,
	// rollouts, faults, profiles.
	RoleOperator = "operator"
)

// MinTokenLen is the shortest admin token accepted: 16 bytes, so a token
// cannot be guessed by trying (the comparison is constant-time).
const MinTokenLen = 16

// AuthConfig says who may use the admin API and with which role. Without
// it the admin API is open to anyone who can reach its address, which is
// why a program should refuse a non-loopback admin address without one
// (the gateway does).
//
//	admin_auth:
//	  tokens:
//	    - { name: oncall, token: env:SY_ADMIN_TOKEN, role: operator }
//	    - { name: grafana, token: file:/etc/switchyard/grafana.token, role: read }
//	  clients:                  # verified TLS client certificates (needs a client CA)
//	    - { name: deploy-bot, role: operator }
//
// GET /healthz stays open (load balancers and keepalived probe it); every
// other path needs a credential.
type AuthConfig struct {
	// Tokens are bearer tokens. A client sends `Authorization: Bearer
	// TOKEN`, or Basic credentials whose password is the token (any user
	// name), which is what a browser's login prompt sends, also for the
	// dashboard's event stream.
	Tokens []Token `yaml:"tokens"`
	// Clients map verified TLS client certificates to roles, by the
	// certificate's subject common name or one of its DNS names. Only
	// certificates the listener verified against its client CA count.
	Clients []Client `yaml:"clients"`
}

// Token is one bearer token.
type Token struct {
	// Name identifies the holder in the audit log; never the token itself.
	Name string `yaml:"name"`
	// Token is the secret: "env:NAME" (an environment variable),
	// "file:PATH" (a file's content, one trailing newline dropped) or,
	// discouraged because it lives in the config file, the token inline.
	// At least MinTokenLen bytes, printable ASCII without spaces.
	Token string `yaml:"token"`
	// Role is "read" or "operator".
	Role string `yaml:"role"`
}

// Client is one TLS client identity.
type Client struct {
	// Name is the certificate's subject common name or a DNS name in it.
	Name string `yaml:"name"`
	// Role is "read" or "operator".
	Role string `yaml:"role"`
}

// Validate checks the structure without reading secrets. Errors carry key
// paths relative to the block (config.FieldError).
func (c *AuthConfig) Validate() error {
	var errs []error
	if len(c.Tokens) == 0 && len(c.Clients) == 0 {
		errs = append(errs, errors.New("no tokens and no clients: expected at least one credential (or remove the block)"))
	}
	names := map[string]bool{}
	for i, t := range c.Tokens {
		p := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			errs = append(errs, config.Fieldf(p+".name", "missing: expected a name for the audit log"))
		} else if names[t.Name] {
			errs = append(errs, config.Fieldf(p+".name", "%q is used twice: names identify callers in the audit log", t.Name))
		}
		names[t.Name] = true
		if t.Token == "" {
			errs = append(errs, config.Fieldf(p+".token", "missing: expected env:NAME, file:PATH or the token"))
		} else if err := checkTokenSpec(t.Token); err != nil {
			errs = append(errs, config.Fieldf(p+".token", "%v", err))
		}
		if err := checkRole(t.Role); err != nil {
			errs = append(errs, config.Fieldf(p+".role", "%v", err))
		}
	}
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		if cl.Name == "" {
			errs = append(errs, config.Fieldf(p+".name", "missing: expected the certificate's common name or DNS name"))
		}
		if err := checkRole(cl.Role); err != nil {
			errs = append(errs, config.Fieldf(p+".role", "%v", err))
		}
	}
	return errors.Join(errs...)
}

func checkRole(r string) error {
	switch r {
	case RoleRead, RoleOperator:
		return nil
	case "":
		return errors.New("missing: expected read or operator")
	}
	return fmt.Errorf("unknown role %q: expected read or operator", r)
}

func checkTokenSpec(s string) error {
	switch {
	case strings.HasPrefix(s, "env:"):
		if len(s) == len("env:") {
			return errors.New(`"env:" needs a variable name`)
		}
	case strings.HasPrefix(s, "file:"):
		if len(s) == len("file:") {
			return errors.New(`"file:" needs a path`)
		}
	default:
		return checkToken(s)
	}
	return nil
}

func checkToken(s string) error {
	if len(s) < MinTokenLen {
		return fmt.Errorf("too short (%d bytes): at least %d", len(s), MinTokenLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("byte %d is not printable ASCII: expected a token without spaces", i)
		}
	}
	return nil
}

// loadToken resolves a token spec (env:, file: or inline).
func loadToken(spec string) (string, error) {
	var v string
	switch {
	case strings.HasPrefix(spec, "env:"):
		name := spec[len("env:"):]
		val, ok := os.LookupEnv(name)
		if !ok {
			return "", fmt.Errorf("environment variable %q is not set", name)
		}
		v = val
	case strings.HasPrefix(spec, "file:"):
		path := spec[len("file:"):]
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("reading token file: %w", err)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	default:
		v = spec
	}
	if err := checkToken(v); err != nil {
		return "", err
	}
	return v, nil
}

// Caller is who made an admin request.
type Caller struct {
	Name string // the token's or client's name; "anonymous" without auth
	Role string
	Via  string // "token", "client-cert" or "open"
}

type callerKey struct{}

// CallerOf returns the authenticated caller of an admin request.
func CallerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Authenticator checks admin requests against an AuthConfig whose
// secrets have been read. It is safe for concurrent use.
type Authenticator struct {
	tokens  []tokenEntry
	clients map[string]Client
	log     *slog.Logger
}

type tokenEntry struct {
	sum  [sha256.Size]byte
	name string
	role string
}

// NewAuthenticator reads c's secrets. Errors carry key paths relative to
// the block. log receives the audit lines (nil: slog.Default()).
func NewAuthenticator(c *AuthConfig, log *slog.Logger) (*Authenticator, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Authenticator{clients: map[string]Client{}, log: log}
	var errs []error
	seen := map[[sha256.Size]byte]string{}
	for i, t := range c.Tokens {
		v, err := loadToken(t.Token)
		if err != nil {
			errs = append(errs, config.Fieldf(fmt.Sprintf("tokens[%d].token", i), "%v", err))
			continue
		}
		sum := sha256.Sum256([]byte(v))
		if other, dup := seen[sum]; dup {
			errs = append(errs, config.Fieldf(fmt.Sprintf("tokens[%d].token", i), "the same token as %q: each holder needs its own token", other))
			continue
		}
		seen[sum] = t.Name
		a.tokens = append(a.tokens, tokenEntry{sum: sum, name: t.Name, role: t.Role})
	}
	for _, cl := range c.Clients {
		a.clients[cl.Name] = cl
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// NeedsClientCerts reports whether client certificates are configured.
func (a *Authenticator) NeedsClientCerts() bool { return len(a.clients) > 0 }

// authenticate finds r's caller; ok is false without a valid credential.
func (a *Authenticator) authenticate(r *http.Request) (Caller, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := credential(h)
		if !ok {
			return Caller{}, false
		}
		sum := sha256.Sum256([]byte(tok))
		var found *tokenEntry
		for i := range a.tokens { // every entry compared: no early exit to time
			if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
				found = &a.tokens[i]
			}
		}
		if found == nil {
			return Caller{}, false
		}
		return Caller{Name: found.name, Role: found.role, Via: "token"}, true
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(a.clients) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if c, ok := a.clientFor(leaf); ok {
			return Caller{Name: c.Name, Role: c.Role, Via: "client-cert"}, true
		}
	}
	return Caller{}, false
}

func (a *Authenticator) clientFor(cert *x509.Certificate) (Client, bool) {
	if c, ok := a.clients[cert.Subject.CommonName]; ok && cert.Subject.CommonName != "" {
		return c, true
	}
	for _, d := range cert.DNSNames {
		if c, ok := a.clients[d]; ok {
			return c, true
		}
	}
	return Client{}, false
}

// credential extracts the token from a Bearer or Basic Authorization value.
func credential(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(b), ":")
		return pass, ok && pass != ""
	}
	return "", false
}

// allows reports whether role may make r.
func allows(role string, r *http.Request) bool {
	if role == RoleOperator {
		return true
	}
	if strings.HasPrefix(r.URL.Path, "/debug/pprof") {
		return false
	}
	return r.Method == http.MethodGet || r.Method == http.MethodHead
}

// Wrap returns h behind a (nil a: open, which is what a loopback admin
// address without admin_auth gets, but for the cross-origin check below). Refused requests get 401 (no or
// a wrong credential, with a challenge) or 403 (a role that may not); both
// are JSON errors. Requests that change state are written to the audit log
// with the caller's name, never the credential.
//
// Before anything else (with or without a), a state-changing request a
// browser sends from another origin is refused with 403 (cross-site
// request forgery): a web page the operator visits could otherwise POST
// to the admin address (a loopback one without admin_auth, or one whose
// Basic credentials or client certificate the browser sends by itself)
// and drain targets or reload. Browsers say so in Sec-Fetch-Site or
// Origin; clients without those headers (curl, the CLI) are unaffected.
func (a *Authenticator) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := crossOrigin.Check(r); err != nil {
			log := slog.Default()
			if a != nil {
				log = a.log
			}
			log.Warn("admin request refused", "reason", "cross-origin", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"), "remote", remoteIP(r))
			writeError(w, http.StatusForbidden, "cross_origin", fmt.Sprintf("%s %s from another origin (a web page) is refused: the admin API takes changes only from non-browser clients or its own pages", r.Method, r.URL.Path))
			return
		}
		if a == nil {
			h.ServeHTTP(w, r)
			return
		}
		a.serve(h, w, r)
	})
}

// crossOrigin is net/http's CSRF check (Sec-Fetch-Site, else Origin
// against Host; GET, HEAD and OPTIONS always pass).
var crossOrigin = http.NewCrossOriginProtection()

func (a *Authenticator) serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		h.ServeHTTP(w, r)
		return
	}
	c, ok := a.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard admin", Basic realm="switchyard admin"`)
		a.log.Warn("admin request refused", "reason", "no valid credential", "method", r.Method, "path", r.URL.Path, "remote", remoteIP(r))
		writeError(w, http.StatusUnauthorized, "unauthorized", "the admin API needs a credential: Authorization: Bearer TOKEN (or a client certificate the listener trusts)")
		return
	}
	if !allows(c.Role, r) {
		a.log.Warn("admin request refused", "reason", "role", "caller", c.Name, "role", c.Role, "method", r.Method, "path", r.URL.Path, "remote", remoteIP(r))
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("caller %q has role %s: %s %s needs the operator role", c.Name, c.Role, r.Method, r.URL.Path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		a.log.Info("admin change", "caller", c.Name, "via", c.Via, "method", r.Method, "path", r.URL.Path, "remote", remoteIP(r))
	}
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// IsLoopback reports whether a listen address (host:port) binds only to
// a loopback interface: 127.0.0.0/8, ::1 or "localhost". An empty or
// wildcard host is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
