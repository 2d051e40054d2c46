package auth

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestJWT(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	rsa0, rsa1, ec0, ec1 := rsaKeys()[0], rsaKeys()[1], ecKeys()[0], ecKeys()[1]
	ok := claims("carol")
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "") }
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, rsa0, c, "") }

	valid := rs(ok)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64(mustJSON(t, with(ok, "sub", "alice"))) + "." + parts[2]
	noneTok := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(mustJSON(t, ok)) + "."
	noneUpper := b64([]byte(`{"alg":"NONE"}`)) + "." + b64(mustJSON(t, ok)) + "."
	// Algorithm confusion: HS256 signed with the RSA public key's PEM.
	confused := sign(t, jwt.SigningMethodHS256, []byte(pemPublic(t, &rsa0.PublicKey)), ok, "")
	crit := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, ok)
		tok.Header["crit"] = []string{"exp"}
		s, _ := tok.SignedString(rsa0)
		return s
	}()

	tests := []struct {
		name   string
		token  string
		code   string // "" = accepted
		status int
	}{
		{"valid HS256", hs(ok), "", 0},
		{"valid RS256", valid, "", 0},
		{"valid ES256", sign(t, jwt.SigningMethodES256, ec0, ok, ""), "", 0},
		{"valid RS256 with kid ignored by static keys", sign(t, jwt.SigningMethodRS256, rsa0, ok, "whatever"), "", 0},
		{"expired", rs(with(ok, "exp", t0.Add(-time.Minute).Unix())), CodeTokenExpired, 401},
		{"expired within skew", rs(with(ok, "exp", t0.Add(-20*time.Second).Unix())), "", 0},
		{"not yet valid", rs(with(ok, "nbf", t0.Add(time.Minute).Unix())), CodeTokenNotYetValid, 401},
		{"nbf within skew", rs(with(ok, "nbf", t0.Add(20*time.Second).Unix())), "", 0},
		{"issued in the future", rs(with(ok, "iat", t0.Add(time.Hour).Unix())), CodeTokenNotYetValid, 401},
		{"wrong audience", rs(with(ok, "aud", "someone-else")), CodeWrongAudience, 401},
		{"second audience accepted", rs(with(ok, "aud", []string{"x", "other"})), "", 0},
		{"missing audience", rs(with(ok, "aud", nil)), CodeWrongAudience, 401},
		{"wrong issuer", rs(with(ok, "iss", "https://evil.example.com")), CodeWrongIssuer, 401},
		{"missing issuer", rs(with(ok, "iss", nil)), CodeWrongIssuer, 401},
		{"missing exp", rs(with(ok, "exp", nil)), CodeInvalidCredentials, 401},
		{"exp of wrong type", rs(with(ok, "exp", "tomorrow")), CodeInvalidCredentials, 401},
		{"bad signature: tampered payload", tampered, CodeBadSignature, 401},
		{"bad signature: other RSA key", sign(t, jwt.SigningMethodRS256, rsa1, ok, ""), CodeBadSignature, 401},
		{"bad signature: other EC key", sign(t, jwt.SigningMethodES256, ec1, ok, ""), CodeBadSignature, 401},
		{"bad signature: HS256 wrong secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), ok, ""), CodeBadSignature, 401},
		{"HS/RS confusion with HS256 enabled", confused, CodeBadSignature, 401},
		{"alg none", noneTok, CodeUnsupportedAlgorithm, 401},
		{"alg NONE", noneUpper, CodeUnsupportedAlgorithm, 401},
		{"alg RS384 not accepted", sign(t, jwt.SigningMethodRS384, rsa0, ok, ""), CodeUnsupportedAlgorithm, 401},
		{"alg PS256 not accepted", sign(t, jwt.SigningMethodPS256, rsa0, ok, ""), CodeUnsupportedAlgorithm, 401},
		{"crit header", crit, CodeInvalidCredentials, 401},
		{"malformed", "a.b.c", CodeInvalidCredentials, 401},
		{"padded base64 rejected", strings.Replace(valid, ".", "=.", 1), CodeInvalidCredentials, 401},
		{"no consumer claim", rs(with(ok, "sub", nil)), CodeInvalidCredentials, 401},
		{"consumer claim with newline", rs(with(ok, "sub", "a\r\nX-Consumer: admin")), CodeInvalidCredentials, 401},
		{"scope claim of wrong type", rs(with(ok, "scope", 42)), CodeInvalidCredentials, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(req(true, bearer(tc.token)...), MethodJWT)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if id.Consumer != "carol" || id.Method != MethodJWT {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if id != nil {
				t.Fatalf("identity %+v returned with an error", id)
			}
			e := wantCode(t, err, tc.code, tc.status)
			if len(e.Challenges) != 1 || !strings.HasPrefix(e.Challenges[0], `Bearer realm="switchyard", error="invalid_token", error_description="`) {
				t.Fatalf("challenges = %q", e.Challenges)
			}
		})
	}
}

func TestJWTAlgorithmConfusionRSOnly(t *testing.T) {
	// The classic attack: the gateway only knows an RSA public key, and the
	// attacker signs HS256 with that key's PEM as the HMAC secret.
	cfg := Config{JWT: &JWTConfig{PublicKeys: []string{pemPublic(t, &rsaKeys()[0].PublicKey)}}}
	a := newAuth(t, cfg, nil)
	pub := pemPublic(t, &rsaKeys()[0].PublicKey)
	for _, secret := range []string{pub, strings.TrimSpace(pub)} {
		tok := sign(t, jwt.SigningMethodHS256, []byte(secret), claims("carol"), "")
		_, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT)
		wantCode(t, err, CodeUnsupportedAlgorithm, 401)
	}
	// And a config that tries to use the PEM as the secret is refused.
	_, err := New(Config{JWT: &JWTConfig{Algorithms: []string{"HS256"}, Secret: pub}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "looks like a PEM key") {
		t.Fatalf("New with a PEM secret: %v", err)
	}
}

func TestJWTExpiredChallenge(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), with(claims("carol"), "exp", t0.Add(-time.Hour).Unix()), "")
	_, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	e := wantCode(t, err, CodeTokenExpired, 401)
	want := `Bearer realm="switchyard", error="invalid_token", error_description="token expired"`
	if e.Challenge() != want {
		t.Fatalf("challenge = %q, want %q", e.Challenge(), want)
	}
}

func TestJWTIdentityClaims(t *testing.T) {
	cfg := baseConfig(t)
	cfg.JWT.RolesClaim = "realm_access.roles"
	a := newAuth(t, cfg, nil)
	strict := baseConfig(t)
	strict.JWT.RequireConsumer = true
	as := newAuth(t, strict, nil)
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "") }

	tests := []struct {
		name   string
		a      *Authenticator
		claims jwt.MapClaims
		want   Identity
		code   string
	}{
		{"unregistered subject takes tier claim", a, with(claims("carol"), "tier", "gold", "realm_access", map[string]any{"roles": []string{"ops"}}),
			Identity{Consumer: "carol", Tier: "gold", Scopes: []string{"orders:read", "orders:write"}, Roles: []string{"ops"}}, ""},
		{"registered consumer: tier from config, not from token", a, with(claims("alice"), "tier", "enterprise"),
			Identity{Consumer: "alice", Tier: "premium", Scopes: []string{"orders:read", "orders:write"}, Roles: []string{"admin"}}, ""},
		{"registered consumer without scope claim gets configured scopes", a, with(claims("alice"), "scope", nil),
			Identity{Consumer: "alice", Tier: "premium", Scopes: []string{"orders:read"}, Roles: []string{"admin"}}, ""},
		{"scope as array", a, with(claims("carol"), "scope", []string{"a", "b"}),
			Identity{Consumer: "carol", Scopes: []string{"a", "b"}}, ""},
		{"require_consumer rejects unknown subject", as, claims("mallory"), Identity{}, CodeInvalidCredentials},
		{"require_consumer accepts registered", as, claims("bob"), Identity{Consumer: "bob", Tier: "free", Scopes: []string{"orders:read", "orders:write"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.a.Authenticate(req(true, bearer(hs(tc.claims))...), MethodJWT)
			if tc.code != "" {
				wantCode(t, err, tc.code, 401)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Consumer != tc.want.Consumer || id.Tier != tc.want.Tier ||
				!slices.Equal(id.Scopes, tc.want.Scopes) || !slices.Equal(id.Roles, tc.want.Roles) {
				t.Fatalf("identity = %+v, want %+v", *id, tc.want)
			}
		})
	}
}

func TestJWTNotConfigured(t *testing.T) {
	a := newAuth(t, Config{}, nil)
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("carol"), "")
	_, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	wantCode(t, err, CodeInvalidCredentials, 401)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTokenCache(t *testing.T) {
	clk := newClock()
	a := newAuth(t, baseConfig(t), clk)
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), with(claims("carol"), "exp", t0.Add(time.Minute).Unix()), "")
	first, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	if err != nil || second != first {
		t.Fatalf("second call = %p, %v; want the cached identity %p", second, err, first)
	}
	clk.Advance(time.Minute + 20*time.Second) // within skew
	if _, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT); err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * time.Second) // beyond skew: the cache must not extend a token's life
	_, err = a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	wantCode(t, err, CodeTokenExpired, 401)

	cfg := baseConfig(t)
	cfg.JWT.CacheSize = -1
	a = newAuth(t, cfg, nil)
	first, _ = a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	second, _ = a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	if first == nil || first == second {
		t.Fatalf("cache disabled but identities %p, %p", first, second)
	}
}
