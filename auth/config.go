package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults applied to zero fields of Config and JWTConfig.
const (
	DefaultRealm         = "switchyard"
	DefaultJWKSRefresh   = 5 * time.Minute
	DefaultJWKSTimeout   = 5 * time.Second
	DefaultClockSkew     = 30 * time.Second
	DefaultConsumerClaim = "sub"
	DefaultTierClaim     = "tier"
	DefaultScopesClaim   = "scope"
	DefaultRolesClaim    = "roles"
	DefaultCacheSize     = 1024
	// MinJWKSRefreshInterval is the least time between two JWKS fetches,
	// whatever triggers them (staleness, an unknown kid, a failed fetch).
	MinJWKSRefreshInterval = 10 * time.Second
	// MaxClockSkew bounds JWTConfig.ClockSkew.
	MaxClockSkew = 5 * time.Minute
	// MinSecretLen is the least length in bytes of an HS256 secret
	// (RFC 7518 §3.2: at least the size of the hash output).
	MinSecretLen = 32
	// MinAPIKeyLen is the least length of an API key given in plaintext.
	MinAPIKeyLen = 16
)

// defaultAlgorithms is the JWT algorithm list used when JWTConfig.Algorithms
// is empty. HS256 is never a default: a shared secret must be opted into.
// Never modified.
var defaultAlgorithms = []string{"RS256", "ES256"}

// supportedAlgorithms are the only JWT algorithms this package verifies.
var supportedAlgorithms = []string{"HS256", "RS256", "ES256"}

// Config is the gateway-wide authentication configuration: the registered
// consumers and how JWTs are verified. The zero value is valid and
// authenticates nobody (every route that requires auth answers 401).
//
// Suggested YAML placement: a top-level `auth:` block decoded into Config.
type Config struct {
	// Realm is the realm named in WWW-Authenticate challenges. Printable
	// ASCII without quotes or backslashes. Default "switchyard".
	Realm string `yaml:"realm"`
	// AllowInsecureBasic accepts Basic credentials on requests that did not
	// arrive over TLS (r.TLS == nil). Default false. Hazard: the password
	// travels in clear text; set it only when TLS is terminated in front of
	// the gateway on a trusted network.
	AllowInsecureBasic bool `yaml:"allow_insecure_basic"`
	// JWT configures bearer-token verification. Nil disables the jwt method
	// (a route accepting only jwt then answers 401 to everyone).
	JWT *JWTConfig `yaml:"jwt"`
	// Consumers are the registered clients. Names are unique.
	Consumers []Consumer `yaml:"consumers"`
}

// Consumer is a registered client of the gateway.
type Consumer struct {
	// Name identifies the consumer; it is forwarded upstream as X-Consumer
	// and matched against the JWT consumer claim. Required, unique,
	// printable, at most 256 bytes.
	Name string `yaml:"name"`
	// Tier is the consumer's plan ("free", "premium" ...), forwarded as
	// X-Consumer-Tier and checked by Require.Tiers. Optional.
	Tier string `yaml:"tier"`
	// Scopes granted to the consumer when it authenticates with an API key
	// or Basic, or with a JWT that has no scopes claim. No spaces.
	Scopes []string `yaml:"scopes"`
	// Roles granted like Scopes. No spaces.
	Roles []string `yaml:"roles"`
	// APIKeys the consumer may present (X-API-Key or Authorization: Bearer).
	APIKeys []APIKey `yaml:"api_keys"`
	// Basic is the consumer's HTTP Basic credential, if any.
	Basic *Basic `yaml:"basic"`
}

// APIKey is one API key credential: exactly one of Hash and Key.
//
// Keys must be high-entropy random strings (128 bits or more, e.g. 32 hex
// characters from a CSPRNG): they are stored as a plain SHA-256 digest,
// which is only safe for keys nobody can guess. A key should contain no
// '.': a Bearer value with two dots is taken for a JWT on routes that
// accept jwt.
type APIKey struct {
	// Hash is "sha256:" followed by the 64 lowercase or uppercase hex
	// digits of the SHA-256 of the key (see HashAPIKey). Preferred.
	Hash string `yaml:"hash"`
	// Key is the key in plaintext, hashed when the Authenticator is built
	// and then forgotten. Hazard: the config file holds the secret; New logs
	// a warning for each such key. At least 16 bytes.
	Key string `yaml:"key"`
}

// Basic is an HTTP Basic (RFC 7617) credential.
type Basic struct {
	// Username is unique across consumers, non-empty, without ':'.
	Username string `yaml:"username"`
	// PasswordHash is a bcrypt hash ("$2a$", "$2b$" or "$2y$"); cost 10 or
	// more is recommended. Each failed check costs one bcrypt comparison;
	// successful ones are cached in memory for a while.
	PasswordHash string `yaml:"password_hash"`
}

// JWTConfig configures verification of JWT bearer tokens (RFC 7519).
//
// Keys are bound to algorithms by type: HS256 verifies only with Secret,
// RS256 only with RSA public keys, ES256 only with P-256 public keys, and a
// token whose alg is not in Algorithms is rejected before any key is looked
// up. So "alg": "none" never verifies and an RSA public key can never be
// used as an HMAC secret (algorithm confusion). Symmetric ("oct") keys in a
// JWKS are ignored. Token headers jku, x5u and jwk are never followed;
// tokens with a crit header are rejected.
type JWTConfig struct {
	// Issuer, if set, must equal the token's iss claim. Default: not
	// checked. Hazard: with a shared identity provider, leave it unset only
	// if every token it signs may call this gateway.
	Issuer string `yaml:"issuer"`
	// Audience, if set, must share at least one value with the token's aud
	// claim. Default: not checked (same hazard as Issuer).
	Audience []string `yaml:"audience"`
	// Algorithms accepted: a subset of HS256, RS256, ES256. Default
	// [RS256, ES256], narrowed to the one whose key type public_keys holds
	// when there is no jwks_url. HS256 must be listed explicitly and needs
	// Secret.
	Algorithms []string `yaml:"algorithms"`
	// Secret is the HS256 key: the secret itself (at least 32 bytes),
	// "file:PATH" (file contents, one trailing newline trimmed) or
	// "env:NAME" (an environment variable). Required iff HS256 is listed.
	// Hazard: an inline secret lives in the config file; prefer env: or
	// file:. Anyone holding it can mint tokens for any consumer.
	Secret string `yaml:"secret"`
	// PublicKeys are RSA (2048 bits or more) or P-256 public keys for RS256
	// and ES256, each a PEM block ("PUBLIC KEY", "RSA PUBLIC KEY" or
	// "CERTIFICATE") inline or "file:PATH". They are tried for any token of
	// a matching algorithm, whatever its kid.
	PublicKeys []string `yaml:"public_keys"`
	// JWKSURL is a JSON Web Key Set fetched over HTTPS (plain HTTP only to
	// a loopback address). Keys are selected by the token's kid. The set is
	// fetched on first use and cached; see JWKSRefresh.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is how long a fetched key set is used before the next
	// request refetches it; a token with an unknown kid also triggers a
	// refetch. Fetches are at most one per 10s; when one fails the last
	// good set stays in use. At least 10s. Default 5m.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// JWKSTimeout bounds one JWKS fetch. Positive. Default 5s.
	JWKSTimeout time.Duration `yaml:"jwks_timeout"`
	// ClockSkew is the leeway applied to exp, nbf and iat. Between 0 and
	// 5m. Default 30s.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// ConsumerClaim names the claim whose string value is the consumer
	// name. When it names a registered consumer, the consumer's tier is
	// used. Default "sub".
	ConsumerClaim string `yaml:"consumer_claim"`
	// RequireConsumer rejects (401) tokens whose consumer claim names no
	// registered consumer. When false such tokens authenticate an ad-hoc
	// identity named by the claim, with the tier from TierClaim. Default
	// false.
	RequireConsumer bool `yaml:"require_consumer"`
	// TierClaim names the claim giving the tier of a consumer that is not
	// registered. Default "tier".
	TierClaim string `yaml:"tier_claim"`
	// ScopesClaim names the claim holding scopes: a space-separated string
	// (RFC 8693 "scope") or an array of strings. When the token has no such
	// claim a registered consumer's configured scopes apply. Default "scope".
	ScopesClaim string `yaml:"scopes_claim"`
	// RolesClaim names the claim holding roles, like ScopesClaim. A name
	// with dots ("realm_access.roles") that is not itself a claim is looked
	// up as a path into nested objects. Default "roles".
	RolesClaim string `yaml:"roles_claim"`
	// CacheSize is how many verified tokens are remembered, with their
	// identity, until they expire (or until a new JWKS is fetched), so a
	// reused token skips signature verification. Emptied when full.
	// Default 1024; -1 disables the cache.
	CacheSize int `yaml:"cache_size"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.JWT != nil {
		j := c.JWT.WithDefaults()
		c.JWT = &j
	}
	return c
}

// WithDefaults returns c with every zero field set to its default.
func (c JWTConfig) WithDefaults() JWTConfig {
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(defaultAlgorithms)
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = DefaultJWKSRefresh
	}
	if c.JWKSTimeout == 0 {
		c.JWKSTimeout = DefaultJWKSTimeout
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.ConsumerClaim == "" {
		c.ConsumerClaim = DefaultConsumerClaim
	}
	if c.TierClaim == "" {
		c.TierClaim = DefaultTierClaim
	}
	if c.ScopesClaim == "" {
		c.ScopesClaim = DefaultScopesClaim
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	return c
}

// Validate reports every problem of c (with defaults applied to zero
// fields) at once. It reads no file and no environment variable: those
// are resolved by New.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !validRealm(c.Realm) {
		add("realm %q: must be printable ASCII without quotes or backslashes", c.Realm)
	}
	names := map[string]bool{}
	users := map[string]string{}
	keys := map[string]string{}
	for i, cons := range c.Consumers {
		where := fmt.Sprintf("consumers[%d]", i)
		if cons.Name != "" {
			where = fmt.Sprintf("consumer %q", cons.Name)
		}
		switch {
		case cons.Name == "":
			add("%s: name is required", where)
		case !validHeaderToken(cons.Name, 256, true):
			add("%s: name must be printable and at most 256 bytes", where)
		case names[cons.Name]:
			add("%s: duplicate consumer name", where)
		}
		names[cons.Name] = true
		if cons.Tier != "" && !validHeaderToken(cons.Tier, 256, true) {
			add("%s: tier %q must be printable and at most 256 bytes", where, cons.Tier)
		}
		for _, s := range cons.Scopes {
			if !validHeaderToken(s, 256, false) {
				add("%s: scope %q must be printable without spaces", where, s)
			}
		}
		for _, s := range cons.Roles {
			if !validHeaderToken(s, 256, false) {
				add("%s: role %q must be printable without spaces", where, s)
			}
		}
		for j, k := range cons.APIKeys {
			kw := fmt.Sprintf("%s: api_keys[%d]", where, j)
			digest, err := k.digest()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", kw, err))
				continue
			}
			id := string(digest[:])
			if other, dup := keys[id]; dup {
				add("%s: the same key is already registered for %s", kw, other)
			}
			keys[id] = where
		}
		if b := cons.Basic; b != nil {
			switch {
			case b.Username == "":
				add("%s: basic.username is required", where)
			case strings.ContainsRune(b.Username, ':') || !validHeaderToken(b.Username, 256, true):
				add("%s: basic.username %q must be printable and contain no ':'", where, b.Username)
			case users[b.Username] != "":
				add("%s: basic.username %q is already used by %s", where, b.Username, users[b.Username])
			}
			users[b.Username] = where
			if err := checkBcrypt(b.PasswordHash); err != nil {
				errs = append(errs, fmt.Errorf("%s: basic.password_hash: %w", where, err))
			}
		}
	}
	if c.JWT != nil {
		if err := c.JWT.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c JWTConfig) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("jwt: "+format, args...)) }
	seen := map[string]bool{}
	for _, a := range c.Algorithms {
		if !slices.Contains(supportedAlgorithms, a) {
			add("algorithm %q: unsupported: expected one of %s", a, strings.Join(supportedAlgorithms, ", "))
		}
		if seen[a] {
			add("algorithm %q: listed twice", a)
		}
		seen[a] = true
	}
	hs, asym := seen["HS256"], seen["RS256"] || seen["ES256"]
	switch {
	case hs && c.Secret == "":
		add("algorithm HS256 needs a secret")
	case !hs && c.Secret != "":
		add("secret is set but HS256 is not in algorithms %q (list it explicitly to use a shared secret)", c.Algorithms)
	case hs:
		if err := checkSecretSpec(c.Secret); err != nil {
			errs = append(errs, &FieldError{Path: "jwt.secret", Err: err})
		}
	}
	if asym && len(c.PublicKeys) == 0 && c.JWKSURL == "" {
		add("algorithms %q need public_keys or jwks_url", c.Algorithms)
	}
	if !asym && (len(c.PublicKeys) > 0 || c.JWKSURL != "") {
		add("public_keys or jwks_url are set but neither RS256 nor ES256 is in algorithms %q", c.Algorithms)
	}
	for i, pk := range c.PublicKeys {
		if pk == "" || pk == "file:" {
			errs = append(errs, &FieldError{Path: fmt.Sprintf("jwt.public_keys[%d]", i), Err: errors.New("empty")})
		} else if !strings.HasPrefix(pk, "file:") && !strings.Contains(pk, "-----BEGIN ") {
			errs = append(errs, &FieldError{Path: fmt.Sprintf("jwt.public_keys[%d]", i), Err: errors.New("expected a PEM block or \"file:PATH\"")})
		}
	}
	if c.JWKSURL != "" {
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			errs = append(errs, &FieldError{Path: "jwt.jwks_url", Err: fmt.Errorf("%q: %w", c.JWKSURL, err)})
		}
	}
	if c.JWKSRefresh < MinJWKSRefreshInterval {
		add("jwks_refresh %s: must be at least %s", c.JWKSRefresh, MinJWKSRefreshInterval)
	}
	if c.JWKSTimeout <= 0 {
		add("jwks_timeout %s: must be positive", c.JWKSTimeout)
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		add("clock_skew %s: must be between 0s and %s", c.ClockSkew, MaxClockSkew)
	}
	if c.CacheSize < -1 {
		add("cache_size %d: must be positive, or -1 to disable", c.CacheSize)
	}
	for _, a := range c.Audience {
		if a == "" {
			add("audience: empty value")
		}
	}
	return errors.Join(errs...)
}

// HashAPIKey returns the value to put in APIKey.Hash for key:
// "sha256:" and the lowercase hex SHA-256 of key.
func HashAPIKey(key string) string {
	d := hashKey(key)
	return "sha256:" + hex.EncodeToString(d[:])
}

// digest returns the SHA-256 of the key, decoding Hash or hashing Key.
func (k APIKey) digest() ([32]byte, error) {
	var d [32]byte
	switch {
	case k.Hash != "" && k.Key != "":
		return d, errors.New("set either hash or key, not both")
	case k.Hash != "":
		hexpart, ok := strings.CutPrefix(k.Hash, "sha256:")
		if !ok || len(hexpart) != 64 {
			return d, fmt.Errorf("hash %q: expected \"sha256:\" and 64 hex digits", k.Hash)
		}
		if _, err := hex.Decode(d[:], []byte(hexpart)); err != nil {
			return d, fmt.Errorf("hash %q: expected \"sha256:\" and 64 hex digits", k.Hash)
		}
		return d, nil
	case k.Key != "":
		if len(k.Key) < MinAPIKeyLen {
			return d, fmt.Errorf("key: too short (%d bytes): use a random key of at least %d bytes", len(k.Key), MinAPIKeyLen)
		}
		if !validHeaderToken(k.Key, 4096, false) {
			return d, errors.New("key: must be printable ASCII without spaces")
		}
		return hashKey(k.Key), nil
	default:
		return d, errors.New("set hash or key")
	}
}

func checkSecretSpec(s string) error {
	switch {
	case strings.HasPrefix(s, "file:"):
		if len(s) == len("file:") {
			return errors.New("\"file:\" needs a path")
		}
	case strings.HasPrefix(s, "env:"):
		if len(s) == len("env:") {
			return errors.New("\"env:\" needs a variable name")
		}
	default:
		return checkSecret([]byte(s))
	}
	return nil
}

// checkSecret rejects HS256 secrets that are short or that are a PEM
// block: a public key used as an HMAC secret is the algorithm-confusion
// attack, so refuse to be configured into it.
func checkSecret(b []byte) error {
	if len(b) < MinSecretLen {
		return fmt.Errorf("too short (%d bytes): at least %d bytes", len(b), MinSecretLen)
	}
	if strings.Contains(string(b), "-----BEGIN ") {
		return errors.New("looks like a PEM key: an HS256 secret must be a random shared secret, never a public key")
	}
	return nil
}

func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("parsing: %w", err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("plain http is allowed only to a loopback address: use https")
		}
	default:
		return fmt.Errorf("scheme %q: expected https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

func validRealm(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// validHeaderToken reports whether s can be forwarded in a header value:
// non-empty, at most max bytes, no control characters, and no spaces
// unless spaces is set. Non-ASCII UTF-8 is accepted.
func validHeaderToken(s string, max int, spaces bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || (c == ' ' && !spaces) {
			return false
		}
	}
	return true
}
