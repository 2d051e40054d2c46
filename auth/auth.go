package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Identity is an authenticated caller. Identities returned by Authenticate
// may be shared between requests: treat them as read-only.
type Identity struct {
	// Consumer is the consumer name (registered, or the JWT consumer claim).
	Consumer string
	// Tier is the consumer's tier; may be empty.
	Tier string
	// Scopes and Roles granted; may be empty.
	Scopes []string
	Roles  []string
	// Method is the one method that authenticated the request.
	Method Methods

	scopeHeader string // strings.Join(Scopes, " "), precomputed
}

// Options are the dependencies of an Authenticator. The zero value is
// usable.
type Options struct {
	// HTTPClient fetches the JWKS. Default: a client that follows at most 5
	// redirects and none to plain HTTP (JWTConfig.JWKSTimeout bounds each
	// fetch).
	HTTPClient *http.Client
	// Logger receives warnings (plaintext API keys in config, failed JWKS
	// fetches, unusable JWKs). Default: discard.
	Logger *slog.Logger
	// Now is the clock for token validity and caches. Default time.Now.
	Now func() time.Time
}

// maxCredentialLen bounds the credential read from a header; longer values
// are rejected before any parsing or hashing.
const maxCredentialLen = 8 << 10

// apiKeyHeader is X-API-Key in canonical form, for direct map lookups.
const apiKeyHeader = "X-Api-Key"

// Authenticator authenticates requests. Build it with New; it is safe for
// concurrent use.
type Authenticator struct {
	ch         challenges
	log        *slog.Logger
	insecureOK bool

	consumers map[string]*consumerEntry // by name
	keys      map[[32]byte]*consumerEntry
	basic     map[string]*basicEntry // by username
	dummyHash []byte                 // bcrypt hash compared for unknown users
	bcache    *basicCache
	jwt       *jwtVerifier // nil without Config.JWT
}

// consumerEntry is a registered consumer, with its identities prebuilt so
// API key and Basic authentication allocate nothing.
type consumerEntry struct {
	byKey     *Identity  // Method api_key; also the source of tier, scopes and roles for jwt
	byBasic   *Identity  // Method basic
	keyHashes [][32]byte // digests of the consumer's API keys
}

// New builds an Authenticator from cfg: defaults, Validate, then key
// material is read (file: and env: secrets, PEM files) and parsed. Every
// problem is reported, joined.
func New(cfg Config, opts Options) (*Authenticator, error) {
	orig := cfg
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return checkJWKSURL(r.URL.String()) // never downgrade to plain http
		}}
	}
	a := &Authenticator{
		ch:         challenges{realm: cfg.Realm},
		log:        opts.Logger,
		insecureOK: cfg.AllowInsecureBasic,
		consumers:  make(map[string]*consumerEntry, len(cfg.Consumers)),
		keys:       map[[32]byte]*consumerEntry{},
		basic:      map[string]*basicEntry{},
	}
	for _, c := range cfg.Consumers {
		e := &consumerEntry{}
		scopes, roles := slices.Clone(c.Scopes), slices.Clone(c.Roles)
		scopeHeader := strings.Join(scopes, " ")
		e.byKey = &Identity{Consumer: c.Name, Tier: c.Tier, Scopes: scopes, Roles: roles, Method: MethodAPIKey, scopeHeader: scopeHeader}
		e.byBasic = &Identity{Consumer: c.Name, Tier: c.Tier, Scopes: scopes, Roles: roles, Method: MethodBasic, scopeHeader: scopeHeader}
		a.consumers[c.Name] = e
		for _, k := range c.APIKeys {
			d, _ := k.digest() // checked by Validate
			if k.Key != "" {
				a.log.Warn("auth: api key given in plaintext in config; store its hash instead", "consumer", c.Name)
			}
			a.keys[d] = e
			e.keyHashes = append(e.keyHashes, d)
		}
		if c.Basic != nil {
			a.basic[c.Basic.Username] = &basicEntry{consumer: e, hash: []byte(c.Basic.PasswordHash)}
		}
	}
	if len(a.basic) > 0 {
		var err error
		if a.dummyHash, err = dummyBcrypt(a.basic); err != nil {
			return nil, err
		}
		var key [32]byte
		if _, err := rand.Read(key[:]); err != nil {
			return nil, fmt.Errorf("seeding basic auth cache: %w", err)
		}
		a.bcache = newBasicCache(key, opts.Now)
	}
	if cfg.JWT != nil {
		jc := *cfg.JWT
		if len(orig.JWT.Algorithms) == 0 {
			jc.Algorithms = nil // newJWTVerifier picks the defaults that have keys
		}
		v, err := newJWTVerifier(jc, a, opts)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

// Authenticate identifies the caller of r using one of methods. With None
// it returns (nil, nil). Otherwise it returns the identity, or a non-nil
// *Error (401, 403 or 503) and a nil identity.
//
// Which credential is used: with api_key accepted, an X-API-Key header
// wins; otherwise the Authorization header decides by its scheme: Bearer
// goes to jwt when jwt is accepted and the value has the JWT shape
// (three dot-separated parts), else to api_key when accepted; Basic goes
// to basic when accepted. Exactly one credential is checked: a failing one
// is not retried as another method. A request with no credential for an
// accepted method gets missing_credentials with one challenge per method.
// Duplicate X-API-Key or Authorization headers are rejected.
func (a *Authenticator) Authenticate(r *http.Request, methods Methods) (*Identity, error) {
	methods &= AllMethods
	if methods == None {
		return nil, nil
	}
	if methods&MethodAPIKey != 0 {
		if v := r.Header[apiKeyHeader]; len(v) > 0 {
			if len(v) > 1 {
				return nil, a.invalidKey("more than one X-API-Key header")
			}
			return a.authAPIKey(v[0])
		}
	}
	authz := r.Header["Authorization"]
	if len(authz) == 0 {
		return nil, a.missing(methods)
	}
	if len(authz) > 1 {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
			Message: "more than one authorization header", Challenges: a.ch.forMethods(methods)}
	}
	scheme, cred, _ := strings.Cut(authz[0], " ")
	cred = strings.TrimLeft(cred, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && methods&(MethodJWT|MethodAPIKey) != 0:
		if methods&MethodJWT != 0 && (methods&MethodAPIKey == 0 || looksLikeJWT(cred)) {
			if a.jwt == nil {
				return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
					Message: "jwt authentication is not configured", Challenges: []string{a.ch.bearer("invalid_token", "")}}
			}
			return a.jwt.authenticate(r.Context(), cred)
		}
		return a.authAPIKey(cred)
	case strings.EqualFold(scheme, "Basic") && methods&MethodBasic != 0:
		return a.authBasic(r)
	}
	return nil, a.missing(methods)
}

func (a *Authenticator) missing(m Methods) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeMissingCredentials,
		Message: "missing credentials: expected " + m.String(), Challenges: a.ch.forMethods(m)}
}

// looksLikeJWT reports whether s has the compact JWS shape: exactly two
// dots. API keys should not contain dots.
func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 }

// authAPIKey looks the key up by its SHA-256 digest. The map lookup is not
// constant-time, but what it could leak through timing is about the digest
// of the attacker's own guess, which says nothing useful about a stored
// key unless SHA-256 preimages can be found; the final comparison of
// digests is constant-time anyway.
func (a *Authenticator) authAPIKey(key string) (*Identity, error) {
	if key == "" || len(key) > maxCredentialLen {
		return nil, a.invalidKey("invalid api key")
	}
	d := hashKey(key)
	e, ok := a.keys[d]
	if !ok {
		return nil, a.invalidKey("invalid api key")
	}
	match := 0
	for i := range e.keyHashes {
		match |= subtle.ConstantTimeCompare(d[:], e.keyHashes[i][:])
	}
	if match != 1 {
		return nil, a.invalidKey("invalid api key")
	}
	return e.byKey, nil
}

func (a *Authenticator) invalidKey(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials, Message: msg,
		Challenges: []string{a.ch.apiKey()}}
}

func hashKey(key string) [32]byte {
	return sha256.Sum256([]byte(key))
}

// Prefetch fetches the JWKS now, if one is configured, and reports
// whether a key set is available. A gateway may call it at start to warm
// the cache and log a misconfigured URL early; it is never required.
// Like any fetch it is skipped within MinJWKSRefreshInterval of the last
// attempt, and bounded by JWTConfig.JWKSTimeout.
func (a *Authenticator) Prefetch(ctx context.Context) error {
	if a.jwt == nil || a.jwt.jwks == nil {
		return nil
	}
	c := a.jwt.jwks
	c.refresh(ctx)
	if c.current() == nil {
		return fmt.Errorf("fetching jwks %q: %w", c.url, c.lastError())
	}
	return nil
}

// errUnknownConsumer is the cause when RequireConsumer rejects a token.
var errUnknownConsumer = errors.New("consumer is not registered")

// CheckMethods reports accepted methods that could never succeed with this
// configuration: jwt without Config.JWT, api_key without any API key,
// basic without any Basic credential. The gateway can call it for every
// route when building a config, to refuse a route that would answer 401 to
// everyone.
func (a *Authenticator) CheckMethods(m Methods) error {
	var errs []error
	if m&MethodJWT != 0 && a.jwt == nil {
		errs = append(errs, errors.New("auth method jwt: no jwt configuration"))
	}
	if m&MethodAPIKey != 0 && len(a.keys) == 0 {
		errs = append(errs, errors.New("auth method api_key: no consumer has an api key"))
	}
	if m&MethodBasic != 0 && len(a.basic) == 0 {
		errs = append(errs, errors.New("auth method basic: no consumer has basic credentials"))
	}
	return errors.Join(errs...)
}
