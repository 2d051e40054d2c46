package auth

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"
)

func TestAPIKey(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	jwtTok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("carol"), "")
	tests := []struct {
		name    string
		methods Methods
		headers []string
		want    string // consumer; "" = error
		code    string
	}{
		{"x-api-key plaintext-configured key", MethodAPIKey, []string{"X-API-Key", testKey}, "alice", ""},
		{"x-api-key hashed key", MethodAPIKey, []string{"X-API-Key", testKey2}, "bob", ""},
		{"lowercase header name", MethodAPIKey, []string{"x-api-key", testKey2}, "bob", ""},
		{"bearer api key", MethodAPIKey, bearer(testKey), "alice", ""},
		{"bearer api key on a jwt+api_key route", MethodAPIKey | MethodJWT, bearer(testKey), "alice", ""},
		{"bearer jwt on a jwt+api_key route", MethodAPIKey | MethodJWT, bearer(jwtTok), "carol", ""},
		{"jwt shape on api_key-only route is a (wrong) key", MethodAPIKey, bearer(jwtTok), "", CodeInvalidCredentials},
		{"x-api-key wins over authorization", MethodAPIKey | MethodJWT, append([]string{"X-API-Key", testKey2}, bearer(jwtTok)...), "bob", ""},
		{"invalid key", MethodAPIKey, []string{"X-API-Key", "sy_live_nope_nope_nope_nope"}, "", CodeInvalidCredentials},
		{"invalid key is not retried as jwt", MethodAPIKey | MethodJWT, append([]string{"X-API-Key", "wrong"}, bearer(jwtTok)...), "", CodeInvalidCredentials},
		{"empty key", MethodAPIKey, []string{"X-API-Key", ""}, "", CodeInvalidCredentials},
		{"duplicate x-api-key", MethodAPIKey, []string{"X-API-Key", testKey, "X-API-Key", testKey2}, "", CodeInvalidCredentials},
		{"missing", MethodAPIKey, nil, "", CodeMissingCredentials},
		{"x-api-key ignored when api_key not accepted", MethodJWT, []string{"X-API-Key", testKey}, "", CodeMissingCredentials},
		{"other scheme", MethodAPIKey, []string{"Authorization", "Token " + testKey}, "", CodeMissingCredentials},
		{"oversized", MethodAPIKey, []string{"X-API-Key", strings.Repeat("k", maxCredentialLen+1)}, "", CodeInvalidCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(req(true, tc.headers...), tc.methods)
			if tc.code != "" {
				e := wantCode(t, err, tc.code, 401)
				if len(e.Challenges) == 0 {
					t.Fatal("401 without a challenge")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Consumer != tc.want {
				t.Fatalf("consumer = %q, want %q", id.Consumer, tc.want)
			}
		})
	}
}

func TestAPIKeyIdentity(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	id, err := a.Authenticate(req(false, "X-API-Key", testKey), MethodAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Consumer: "alice", Tier: "premium", Scopes: []string{"orders:read"}, Roles: []string{"admin"}, Method: MethodAPIKey, scopeHeader: "orders:read"}
	if !reflect.DeepEqual(*id, want) {
		t.Fatalf("identity = %+v, want %+v", *id, want)
	}
}

func basicHeader(user, pass string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

func TestBasic(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	insecureCfg := baseConfig(t)
	insecureCfg.AllowInsecureBasic = true
	insecure := newAuth(t, insecureCfg, nil)
	tests := []struct {
		name   string
		a      *Authenticator
		tls    bool
		hdr    []string
		code   string
		status int
	}{
		{"valid over tls", a, true, basicHeader("alice", "alice-password"), "", 0},
		{"valid again (cached)", a, true, basicHeader("alice", "alice-password"), "", 0},
		{"wrong password", a, true, basicHeader("alice", "nope"), CodeInvalidCredentials, 401},
		{"wrong password after a cached success", a, true, basicHeader("alice", "alice-password "), CodeInvalidCredentials, 401},
		{"unknown user", a, true, basicHeader("mallory", "alice-password"), CodeInvalidCredentials, 401},
		{"malformed", a, true, []string{"Authorization", "Basic !!!"}, CodeInvalidCredentials, 401},
		{"plain http rejected", a, false, basicHeader("alice", "alice-password"), CodeInsecureBasic, 403},
		{"plain http rejected before checking the password", a, false, basicHeader("alice", "nope"), CodeInsecureBasic, 403},
		{"plain http allowed when configured", insecure, false, basicHeader("alice", "alice-password"), "", 0},
		{"lowercase scheme", a, true, []string{"Authorization", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-password"))}, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.a.Authenticate(req(tc.tls, tc.hdr...), MethodBasic|MethodAPIKey)
			if tc.code != "" {
				e := wantCode(t, err, tc.code, tc.status)
				if tc.status == 401 && (len(e.Challenges) != 1 || e.Challenges[0] != `Basic realm="switchyard", charset="UTF-8"`) {
					t.Fatalf("challenges = %q", e.Challenges)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Consumer != "alice" || id.Method != MethodBasic || id.Tier != "premium" {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

func TestBasicNotAcceptedOnRoute(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	_, err := a.Authenticate(req(true, basicHeader("alice", "alice-password")...), MethodJWT)
	wantCode(t, err, CodeMissingCredentials, 401)
}

func TestMissingCredentialsChallenges(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Realm = "api"
	a := newAuth(t, cfg, nil)
	tests := []struct {
		m    Methods
		want []string
	}{
		{MethodJWT, []string{`Bearer realm="api"`}},
		{MethodAPIKey, []string{`APIKey realm="api"`}},
		{MethodBasic, []string{`Basic realm="api", charset="UTF-8"`}},
		{AllMethods, []string{`Bearer realm="api"`, `APIKey realm="api"`, `Basic realm="api", charset="UTF-8"`}},
	}
	for _, tc := range tests {
		t.Run(tc.m.String(), func(t *testing.T) {
			_, err := a.Authenticate(req(true), tc.m)
			e := wantCode(t, err, CodeMissingCredentials, 401)
			if !slices.Equal(e.Challenges, tc.want) {
				t.Fatalf("challenges = %q, want %q", e.Challenges, tc.want)
			}
			h := http.Header{"Www-Authenticate": {"stale"}}
			e.SetHeaders(h)
			if !slices.Equal(h.Values("WWW-Authenticate"), tc.want) {
				t.Fatalf("headers = %q", h.Values("WWW-Authenticate"))
			}
		})
	}
}

func TestNoneAndDuplicateAuthorization(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	id, err := a.Authenticate(req(true), None)
	if id != nil || err != nil {
		t.Fatalf("auth none = %v, %v; want nil, nil", id, err)
	}
	_, err = a.Authenticate(req(true, "Authorization", "Bearer "+testKey, "Authorization", "Bearer "+testKey2), MethodAPIKey)
	wantCode(t, err, CodeInvalidCredentials, 401)
}

func TestRequire(t *testing.T) {
	id := &Identity{Consumer: "alice", Tier: "free", Scopes: []string{"orders:read", "orders:write"}, Roles: []string{"ops"}, Method: MethodJWT}
	tests := []struct {
		name string
		req  *Require
		id   *Identity
		msg  string // "" = allowed
	}{
		{"nil require", nil, nil, ""},
		{"empty require", &Require{}, id, ""},
		{"all scopes present", &Require{Scopes: []string{"orders:read", "orders:write"}}, id, ""},
		{"missing scopes", &Require{Scopes: []string{"orders:read", "admin", "billing"}}, id, `missing scopes "admin", "billing"`},
		{"any role", &Require{Roles: []string{"admin", "ops"}}, id, ""},
		{"no role", &Require{Roles: []string{"admin", "root"}}, id, `requires one of roles "admin", "root"`},
		{"tier ok", &Require{Tiers: []string{"free", "premium"}}, id, ""},
		{"tier not allowed", &Require{Tiers: []string{"premium", "enterprise"}}, id, `tier "free" is not one of "premium", "enterprise"`},
		{"everything missing", &Require{Scopes: []string{"x"}, Roles: []string{"y"}, Tiers: []string{"z"}}, id,
			`missing scopes "x"; requires one of roles "y"; tier "free" is not one of "z"`},
		{"unauthenticated", &Require{Tiers: []string{"free"}}, nil, "request is not authenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Check(tc.id)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			e := wantCode(t, err, CodeForbidden, 403)
			if e.Message != tc.msg {
				t.Fatalf("message = %q, want %q", e.Message, tc.msg)
			}
		})
	}
	// RFC 6750 insufficient_scope challenge for JWT identities.
	e := (&Require{Scopes: []string{"admin"}}).Check(id).(*Error)
	want := `Bearer error="insufficient_scope", error_description="missing scopes admin", scope="admin"`
	if e.Challenge() != want {
		t.Fatalf("challenge = %q, want %q", e.Challenge(), want)
	}
}

func TestIdentityHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-Consumer", "admin")
	h.Set("X-Consumer-Tier", "enterprise")
	h.Set("X-Scopes", "everything")
	h["x-consumer"] = []string{"raw lowercase"} // as set by code bypassing canonicalization
	h["X_Consumer"] = []string{"underscore"}
	h["X_SCOPES"] = []string{"underscore upper"}
	h.Set("X-Consumer-Other", "kept")
	h.Set("Accept", "kept")

	StripIdentityHeaders(h)
	if len(h) != 2 || h.Get("Accept") != "kept" || h.Get("X-Consumer-Other") != "kept" {
		t.Fatalf("after strip: %v", h)
	}

	ForwardHeaders(h, nil)
	if len(h) != 2 {
		t.Fatalf("nil identity set headers: %v", h)
	}
	ForwardHeaders(h, &Identity{Consumer: "alice", Tier: "premium", Scopes: []string{"a", "b"}})
	if h.Get(HeaderConsumer) != "alice" || h.Get(HeaderTier) != "premium" || h.Get(HeaderScopes) != "a b" {
		t.Fatalf("forwarded: %v", h)
	}
	h2 := http.Header{}
	ForwardHeaders(h2, &Identity{Consumer: "carol"})
	if len(h2) != 1 || h2.Get(HeaderConsumer) != "carol" {
		t.Fatalf("forwarded without tier/scopes: %v", h2)
	}
}

func TestMethods(t *testing.T) {
	tests := []struct {
		in   []string
		want Methods
		err  string
	}{
		{nil, None, ""},
		{[]string{"none"}, None, ""},
		{[]string{"jwt"}, MethodJWT, ""},
		{[]string{"api_key", "basic"}, MethodAPIKey | MethodBasic, ""},
		{[]string{"jwt", "jwt"}, MethodJWT, `auth method "jwt": listed twice`},
		{[]string{"none", "jwt"}, MethodJWT, `"none" cannot be combined`},
		{[]string{"oauth"}, None, `auth method "oauth": unknown`},
	}
	for _, tc := range tests {
		got, err := ParseMethods(tc.in...)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMethods(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMethods(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if s := (MethodAPIKey | MethodJWT).String(); s != "api_key,jwt" {
		t.Errorf("String = %q", s)
	}
}

// TestYAML decodes the documented YAML shape strictly, as the gateway's
// config loader will.
func TestYAML(t *testing.T) {
	doc := `
auth:
  realm: switchyard
  allow_insecure_basic: false
  jwt:
    issuer: https://idp.example.com
    audience: [switchyard]
    algorithms: [RS256, ES256]
    jwks_url: https://idp.example.com/.well-known/jwks.json
    jwks_refresh: 5m
    jwks_timeout: 5s
    clock_skew: 30s
    consumer_claim: sub
    require_consumer: false
    tier_claim: tier
    scopes_claim: scope
    roles_claim: roles
  consumers:
    - name: alice
      tier: premium
      scopes: [orders:read]
      roles: [admin]
      api_keys:
        - { hash: "` + HashAPIKey(testKey) + `" }
      basic: { username: alice, password_hash: "` + aliceHash() + `" }
routes:
  - { auth: none }
  - { auth: jwt }
  - { auth: [jwt, api_key], require: { scopes: [orders:write], roles: [admin, ops], tiers: [premium] } }
`
	var got struct {
		Auth   Config  `yaml:"auth"`
		Routes []Route `yaml:"routes"`
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if err := got.Auth.Validate(); err != nil {
		t.Fatal(err)
	}
	if got.Auth.JWT.JWKSRefresh.String() != "5m0s" || got.Auth.Consumers[0].Basic.Username != "alice" {
		t.Fatalf("decoded %+v", got.Auth)
	}
	wantAuth := []Methods{None, MethodJWT, MethodJWT | MethodAPIKey}
	for i, r := range got.Routes {
		if r.Auth != wantAuth[i] {
			t.Errorf("routes[%d].auth = %v, want %v", i, r.Auth, wantAuth[i])
		}
		if err := r.Validate(); err != nil {
			t.Errorf("routes[%d]: %v", i, err)
		}
	}
	if r := got.Routes[2].Require; r == nil || !slices.Equal(r.Tiers, []string{"premium"}) {
		t.Fatalf("require = %+v", r)
	}
	var bad Route
	if err := yaml.Unmarshal([]byte("auth: [jwt, oauth]"), &bad); err == nil || !strings.Contains(err.Error(), `"oauth"`) {
		t.Fatalf("bad method: %v", err)
	}
	if err := (Route{Require: &Require{Scopes: []string{"x"}}}).Validate(); err == nil {
		t.Fatal("require without auth accepted")
	}
	out, err := yaml.Marshal(got.Routes[2])
	if err != nil || !strings.Contains(string(out), "- api_key\n") {
		t.Fatalf("marshal = %s, %v", out, err)
	}
}

func TestValidate(t *testing.T) {
	good := baseConfig(t)
	if err := good.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	tests := []struct {
		name string
		mod  func(c *Config)
		want []string
	}{
		{"bad realm", func(c *Config) { c.Realm = `a"b` }, []string{`realm "a\"b"`}},
		{"consumer problems", func(c *Config) {
			c.Consumers = append(c.Consumers,
				Consumer{},
				Consumer{Name: "alice"},
				Consumer{Name: "x", Scopes: []string{"a b"}, APIKeys: []APIKey{{Key: "short"}, {Hash: "md5:abc"}, {}, {Key: testKey2}}},
				Consumer{Name: "y", Basic: &Basic{Username: "alice", PasswordHash: "plain"}},
				Consumer{Name: "z", Basic: &Basic{Username: "a:b", PasswordHash: aliceHash()}},
			)
		}, []string{
			"consumers[2]: name is required",
			`consumer "alice": duplicate consumer name`,
			`consumer "x": scope "a b"`,
			`consumer "x": api_keys[0]: key: too short (5 bytes)`,
			`consumer "x": api_keys[1]: hash "md5:abc"`,
			`consumer "x": api_keys[2]: set hash or key`,
			`consumer "x": api_keys[3]: the same key is already registered for consumer "bob"`,
			`consumer "y": basic.username "alice" is already used by consumer "alice"`,
			`consumer "y": basic.password_hash: expected a bcrypt hash`,
			`consumer "z": basic.username "a:b"`,
		}},
		{"jwt problems", func(c *Config) {
			c.JWT = &JWTConfig{Algorithms: []string{"HS256", "RS512", "RS256", "RS256"}, Secret: "short",
				PublicKeys: []string{"nope"}, JWKSURL: "http://idp.example.com/jwks", JWKSRefresh: 1, ClockSkew: -1}
		}, []string{
			`jwt: algorithm "RS512": unsupported`,
			`jwt: algorithm "RS256": listed twice`,
			"jwt.secret: too short (5 bytes)",
			"jwt.public_keys[0]: expected a PEM block",
			`jwt.jwks_url: "http://idp.example.com/jwks": plain http is allowed only to a loopback address`,
			"jwt: jwks_refresh 1ns: must be at least 10s",
			"jwt: clock_skew -1ns",
		}},
		{"secret without HS256", func(c *Config) { c.JWT = &JWTConfig{Secret: testSecret, JWKSURL: "https://x/jwks"} },
			[]string{"secret is set but HS256 is not in algorithms"}},
		{"HS256 without secret", func(c *Config) { c.JWT = &JWTConfig{Algorithms: []string{"HS256"}} },
			[]string{"algorithm HS256 needs a secret"}},
		{"asymmetric without keys", func(c *Config) { c.JWT = &JWTConfig{} },
			[]string{`algorithms ["RS256" "ES256"] need public_keys or jwks_url`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(t)
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if _, err := New(c, Options{}); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestKeyMaterialSources(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	pubFile := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, []byte(pemPublic(t, &ecKeys()[0].PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SY_TEST_SECRET", testSecret)
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("carol"), "")
	for _, spec := range []string{"file:" + secretFile, "env:SY_TEST_SECRET"} {
		a := newAuth(t, Config{JWT: &JWTConfig{Algorithms: []string{"HS256"}, Secret: spec}}, nil)
		if _, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT); err != nil {
			t.Errorf("secret %s: %v", spec, err)
		}
	}
	a := newAuth(t, Config{JWT: &JWTConfig{PublicKeys: []string{"file:" + pubFile}}}, nil)
	if _, err := a.Authenticate(req(true, bearer(sign(t, jwt.SigningMethodES256, ecKeys()[0], claims("carol"), ""))...), MethodJWT); err != nil {
		t.Errorf("public key file: %v", err)
	}

	badNew := []struct {
		name string
		cfg  JWTConfig
		want string
	}{
		{"missing secret file", JWTConfig{Algorithms: []string{"HS256"}, Secret: "file:" + filepath.Join(dir, "nope")}, "reading"},
		{"unset env", JWTConfig{Algorithms: []string{"HS256"}, Secret: "env:SY_TEST_UNSET_VARIABLE"}, "is not set"},
		{"missing key file", JWTConfig{PublicKeys: []string{"file:" + filepath.Join(dir, "nope")}}, "reading"},
		{"private key given", JWTConfig{PublicKeys: []string{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}}, `PEM block "PRIVATE KEY"`},
		{"RS256 listed without RSA key", JWTConfig{Algorithms: []string{"RS256", "ES256"}, PublicKeys: []string{"file:" + pubFile}}, "RS256 is listed but"},
	}
	for _, tc := range badNew {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{JWT: &tc.cfg}, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckMethods(t *testing.T) {
	if err := newAuth(t, baseConfig(t), nil).CheckMethods(AllMethods); err != nil {
		t.Fatal(err)
	}
	err := newAuth(t, Config{}, nil).CheckMethods(AllMethods)
	for _, want := range []string{"auth method jwt: no jwt configuration", "auth method api_key: no consumer", "auth method basic: no consumer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckMethods error = %v, want %q", err, want)
		}
	}
	if err := newAuth(t, Config{}, nil).CheckMethods(None); err != nil {
		t.Fatal(err)
	}
}
