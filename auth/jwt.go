package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the least RSA modulus size accepted for RS256 keys.
const minRSABits = 2048

// Causes returned by the key lookup (wrapped in *Error.Err).
var (
	errUnknownKID      = errors.New("no key with the token's kid")
	errNoKID           = errors.New("token has no kid and several keys could verify it")
	errNoKey           = errors.New("no key configured for the token's algorithm")
	errKeyAlgMismatch  = errors.New("the key named by kid is not for the token's algorithm")
	errKeysUnavailable = errors.New("jwks not fetched yet")
	errCrit            = errors.New("token has a crit header")
	errBadKID          = errors.New("kid header is not a string")
)

type jwtVerifier struct {
	cfg    JWTConfig
	a      *Authenticator
	parser *jwt.Parser

	hsKey  any // []byte secret, or nil
	rsaSet any // *rsa.PublicKey or jwt.VerificationKeySet, or nil
	ecSet  any // *ecdsa.PublicKey or jwt.VerificationKeySet, or nil
	jwks   *jwksCache
	cache  *tokenCache // nil when disabled
	now    func() time.Time

	// keyFirst looks keys up in the cached JWKS and reports an unknown kid
	// so the caller can refresh; keyFinal, used after the refresh, falls
	// back to public_keys for a kid the JWKS does not know.
	keyFirst, keyFinal jwt.Keyfunc
}

// newJWTVerifier loads the keys of cfg. An empty cfg.Algorithms means
// defaultAlgorithms, narrowed, when there is no JWKS, to those for which
// public_keys holds a key.
func newJWTVerifier(cfg JWTConfig, a *Authenticator, opts Options) (*jwtVerifier, error) {
	v := &jwtVerifier{a: a, now: opts.Now}
	if cfg.CacheSize > 0 {
		v.cache = &tokenCache{max: cfg.CacheSize, skew: cfg.ClockSkew, m: map[string]cachedToken{}}
	}
	var errs []error
	if slices.Contains(cfg.Algorithms, "HS256") {
		secret, err := loadSecret(cfg.Secret)
		if err != nil {
			errs = append(errs, &FieldError{Path: "jwt.secret", Err: err})
		} else {
			v.hsKey = secret
		}
	}
	var rsaKeys, ecKeys []jwt.VerificationKey
	for i, spec := range cfg.PublicKeys {
		keys, err := loadPublicKeys(spec)
		if err != nil {
			errs = append(errs, &FieldError{Path: fmt.Sprintf("jwt.public_keys[%d]", i), Err: err})
			continue
		}
		for _, k := range keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				rsaKeys = append(rsaKeys, k)
			case *ecdsa.PublicKey:
				ecKeys = append(ecKeys, k)
			}
		}
	}
	v.rsaSet, v.ecSet = keySet(rsaKeys), keySet(ecKeys)
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = slices.Clone(defaultAlgorithms)
		if cfg.JWKSURL == "" && (v.rsaSet == nil) != (v.ecSet == nil) {
			if v.rsaSet == nil {
				cfg.Algorithms = []string{"ES256"}
			} else {
				cfg.Algorithms = []string{"RS256"}
			}
		}
	}
	v.cfg = cfg
	if cfg.JWKSURL != "" {
		v.jwks = &jwksCache{url: cfg.JWKSURL, client: opts.HTTPClient, timeout: cfg.JWKSTimeout,
			maxAge: cfg.JWKSRefresh, now: opts.Now, log: opts.Logger}
		if v.cache != nil {
			v.jwks.onStore = v.cache.clear // a token verified by a removed key must not outlive it
		}
	} else {
		if slices.Contains(cfg.Algorithms, "RS256") && v.rsaSet == nil {
			errs = append(errs, errors.New("jwt: algorithm RS256 is listed but public_keys has no RSA key and there is no jwks_url"))
		}
		if slices.Contains(cfg.Algorithms, "ES256") && v.ecSet == nil {
			errs = append(errs, errors.New("jwt: algorithm ES256 is listed but public_keys has no P-256 key and there is no jwks_url"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	parserOpts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithLeeway(cfg.ClockSkew),
		jwt.WithTimeFunc(opts.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		parserOpts = append(parserOpts, jwt.WithIssuer(cfg.Issuer))
	}
	if len(cfg.Audience) > 0 {
		parserOpts = append(parserOpts, jwt.WithAudience(cfg.Audience...))
	}
	v.parser = jwt.NewParser(parserOpts...)
	v.keyFirst = func(t *jwt.Token) (any, error) { return v.lookupKey(t, false) }
	v.keyFinal = func(t *jwt.Token) (any, error) { return v.lookupKey(t, true) }
	return v, nil
}

// keySet returns nil, the only key, or a VerificationKeySet (boxed once
// here, so returning it from the key function allocates nothing).
func keySet(keys []jwt.VerificationKey) any {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		return keys[0]
	}
	return jwt.VerificationKeySet{Keys: keys}
}

// lookupKey is the jwt.Keyfunc. The parser has already rejected any alg
// not in the configured list, so only HS256, RS256 and ES256 reach it, and
// each gets only keys of its own type.
func (v *jwtVerifier) lookupKey(t *jwt.Token, final bool) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	alg := t.Method.Alg()
	var static any
	switch alg {
	case "HS256":
		if v.hsKey == nil {
			return nil, errNoKey
		}
		return v.hsKey, nil
	case "RS256":
		static = v.rsaSet
	case "ES256":
		static = v.ecSet
	default:
		return nil, errNoKey
	}
	rawKID, hasKID := t.Header["kid"]
	kid, isString := rawKID.(string)
	if hasKID && !isString {
		return nil, errBadKID
	}
	if v.jwks == nil {
		if static == nil {
			return nil, errNoKey
		}
		return static, nil
	}
	ks := v.jwks.current()
	if ks == nil {
		if static != nil && final {
			return static, nil
		}
		return nil, errKeysUnavailable
	}
	if hasKID {
		if k, ok := ks.byKID[kid]; ok {
			if k.family != alg || (k.alg != "" && k.alg != alg) {
				return nil, errKeyAlgMismatch
			}
			return k.key, nil
		}
		if final && static != nil {
			return static, nil
		}
		return nil, errUnknownKID
	}
	if static != nil {
		return static, nil
	}
	var found any
	n := 0
	for _, k := range ks.keys {
		if k.family == alg && (k.alg == "" || k.alg == alg) {
			found = k.key
			n++
		}
	}
	switch n {
	case 0:
		return nil, errNoKey
	case 1:
		return found, nil
	}
	return nil, errNoKID
}

// authenticate verifies a bearer token and maps its claims to an identity.
func (v *jwtVerifier) authenticate(ctx context.Context, raw string) (*Identity, error) {
	if raw == "" || len(raw) > maxCredentialLen {
		return nil, v.fail(CodeInvalidCredentials, "malformed token", nil)
	}
	if v.jwks != nil {
		v.jwks.refreshIfStale(ctx)
	}
	if id := v.cache.get(raw, v.now()); id != nil {
		return id, nil
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, v.keyFirst)
	if err != nil && v.jwks != nil && (errors.Is(err, errUnknownKID) || errors.Is(err, errKeysUnavailable)) {
		v.jwks.refresh(ctx)
		claims = jwt.MapClaims{}
		tok, err = v.parser.ParseWithClaims(raw, claims, v.keyFinal)
	}
	if err != nil {
		return nil, v.mapError(tok, claims, err)
	}
	id, err := v.identity(claims)
	if err == nil && v.cache != nil {
		if exp, _ := claims.GetExpirationTime(); exp != nil { // required: never nil here
			v.cache.put(raw, id, exp.Time)
		}
	}
	return id, err
}

// tokenCache remembers tokens that passed verification, with their
// identity, until they expire, so a client reusing its token costs a map
// lookup instead of a signature verification (as Envoy's jwt_authn cache
// does). Only verified tokens enter it, so it cannot be poisoned; it is
// bounded (emptied when full) and emptied whenever a new JWKS is stored.
type tokenCache struct {
	max  int
	skew time.Duration

	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	id  *Identity
	exp time.Time
}

// get returns the cached identity of tok, or nil. Safe on a nil cache.
func (c *tokenCache) get(tok string, now time.Time) *Identity {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[tok]
	if !ok {
		return nil
	}
	if !now.Before(e.exp.Add(c.skew)) { // expired: verify again for the proper error
		delete(c.m, tok)
		return nil
	}
	return e.id
}

func (c *tokenCache) put(tok string, id *Identity, exp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[tok] = cachedToken{id: id, exp: exp}
}

func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (v *jwtVerifier) fail(code, msg string, cause error) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: code, Message: msg, Err: cause,
		Challenges: []string{v.a.ch.bearer("invalid_token", msg)}}
}

// mapError turns a parse error into a typed *Error. Messages are constant
// strings: nothing from the token is echoed to the client.
func (v *jwtVerifier) mapError(tok *jwt.Token, claims jwt.MapClaims, err error) *Error {
	switch {
	case errors.Is(err, errKeysUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeKeysUnavailable,
			Message: "token keys are not available yet", Err: err}
	case errors.Is(err, errUnknownKID):
		return v.fail(CodeUnknownKeyID, "unknown key id", err)
	case errors.Is(err, errNoKID):
		return v.fail(CodeUnknownKeyID, "token has no key id", err)
	case errors.Is(err, errKeyAlgMismatch), errors.Is(err, errNoKey):
		return v.fail(CodeUnsupportedAlgorithm, "unsupported algorithm", err)
	case errors.Is(err, errCrit), errors.Is(err, errBadKID):
		return v.fail(CodeInvalidCredentials, "unsupported token header", err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return v.fail(CodeInvalidCredentials, "malformed token", err)
	case tok != nil && tok.Method == nil, // alg missing or unknown
		tok != nil && !slices.Contains(v.cfg.Algorithms, tok.Method.Alg()):
		return v.fail(CodeUnsupportedAlgorithm, "unsupported algorithm", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return v.fail(CodeBadSignature, "invalid signature", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return v.fail(CodeTokenExpired, "token expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return v.fail(CodeTokenNotYetValid, "token not yet valid", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return v.fail(CodeWrongIssuer, "wrong issuer", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return v.fail(CodeWrongAudience, "wrong audience", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// Which claim: look at the (signature-verified) claims rather than
		// at the error text.
		if _, ok := claims["exp"]; !ok {
			return v.fail(CodeInvalidCredentials, "token has no exp claim", err)
		}
		if _, ok := claims["iss"]; !ok && v.cfg.Issuer != "" {
			return v.fail(CodeWrongIssuer, "token has no iss claim", err)
		}
		return v.fail(CodeWrongAudience, "token has no aud claim", err)
	}
	return v.fail(CodeInvalidCredentials, "invalid token", err)
}

// identity maps verified claims to an Identity.
func (v *jwtVerifier) identity(claims jwt.MapClaims) (*Identity, error) {
	name, _ := claims[v.cfg.ConsumerClaim].(string)
	if name == "" {
		return nil, v.fail(CodeInvalidCredentials, "token has no consumer claim", nil)
	}
	if !validHeaderToken(name, 256, true) {
		return nil, v.fail(CodeInvalidCredentials, "invalid consumer claim", nil)
	}
	entry := v.a.consumers[name]
	if entry == nil && v.cfg.RequireConsumer {
		return nil, v.fail(CodeInvalidCredentials, "unknown consumer", errUnknownConsumer)
	}
	id := &Identity{Consumer: name, Method: MethodJWT}
	if entry != nil {
		id.Tier = entry.byKey.Tier
	} else if t, ok := claims[v.cfg.TierClaim]; ok {
		tier, _ := t.(string)
		if !validHeaderToken(tier, 256, true) {
			return nil, v.fail(CodeInvalidCredentials, "invalid tier claim", nil)
		}
		id.Tier = tier
	}
	var ok bool
	if id.Scopes, ok = v.stringList(claims, v.cfg.ScopesClaim); !ok {
		return nil, v.fail(CodeInvalidCredentials, "invalid scopes claim", nil)
	}
	if id.Roles, ok = v.stringList(claims, v.cfg.RolesClaim); !ok {
		return nil, v.fail(CodeInvalidCredentials, "invalid roles claim", nil)
	}
	if entry != nil {
		if id.Scopes == nil {
			id.Scopes = entry.byKey.Scopes
		}
		if id.Roles == nil {
			id.Roles = entry.byKey.Roles
		}
	}
	return id, nil
}

// stringList reads a claim that is a space-separated string or an array of
// strings. It returns nil, true when the claim is absent, and false when
// it has another type or a value unfit for a header.
func (v *jwtVerifier) stringList(claims jwt.MapClaims, name string) ([]string, bool) {
	raw, ok := claims[name]
	if !ok && strings.Contains(name, ".") {
		raw, ok = claimPath(claims, name)
	}
	if !ok {
		return nil, true
	}
	var out []string
	switch x := raw.(type) {
	case string:
		out = strings.Fields(x)
	case []any:
		out = make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
	default:
		return nil, false
	}
	for _, s := range out {
		if !validHeaderToken(s, 256, false) {
			return nil, false
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, true
}

// claimPath follows a dotted path ("realm_access.roles") into nested
// claim objects.
func claimPath(claims map[string]any, path string) (any, bool) {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// loadSecret resolves an HS256 secret spec: inline, file:PATH or env:NAME.
func loadSecret(spec string) ([]byte, error) {
	var b []byte
	switch {
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %q: %w", path, err)
		}
		b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r"))
	case strings.HasPrefix(spec, "env:"):
		name := strings.TrimPrefix(spec, "env:")
		val, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("environment variable %q is not set", name)
		}
		b = []byte(val)
	default:
		b = []byte(spec)
	}
	if err := checkSecret(b); err != nil {
		return nil, err
	}
	return b, nil
}

// loadPublicKeys reads every PEM block of spec (inline or file:PATH).
func loadPublicKeys(spec string) ([]any, error) {
	data := []byte(spec)
	if path, ok := strings.CutPrefix(spec, "file:"); ok {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading %q: %w", path, err)
		}
	}
	var keys []any
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		k, err := parsePEMKey(block)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found")
	}
	return keys, nil
}

func parsePEMKey(block *pem.Block) (any, error) {
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q: expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing PEM block %q: %w", block.Type, err)
	}
	return checkPublicKey(pub)
}

func checkPublicKey(pub any) (any, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("rsa key of %d bits: at least %d required", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ecdsa key on curve %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return k, nil
	}
	return nil, fmt.Errorf("key type %T: expected RSA or ECDSA P-256", pub)
}
