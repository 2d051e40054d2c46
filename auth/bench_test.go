package auth

import (
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func benchAuth(b *testing.B, methods Methods, hdr ...string) {
	benchAuthCfg(b, baseConfig(b), methods, hdr...)
}

// benchAuthCfg measures repeated authentication of one request. JWT
// benchmarks disable the token cache (CacheSize -1) to measure real
// verification, except BenchmarkJWTCached.
func benchAuthCfg(b *testing.B, cfg Config, methods Methods, hdr ...string) {
	a := newAuth(b, cfg, nil)
	r := req(true, hdr...)
	if _, err := a.Authenticate(r, methods); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r, methods); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAPIKey(b *testing.B) {
	benchAuth(b, MethodAPIKey|MethodJWT, "X-API-Key", testKey)
}

func BenchmarkAPIKeyBearer(b *testing.B) {
	benchAuth(b, MethodAPIKey|MethodJWT, bearer(testKey)...)
}

func noCache(b *testing.B) Config {
	cfg := baseConfig(b)
	cfg.JWT.CacheSize = -1
	return cfg
}

func BenchmarkJWTCached(b *testing.B) {
	benchAuth(b, MethodJWT, bearer(sign(b, jwt.SigningMethodRS256, rsaKeys()[0], claims("carol"), ""))...)
}

func BenchmarkJWTHS256(b *testing.B) {
	benchAuthCfg(b, noCache(b), MethodJWT, bearer(sign(b, jwt.SigningMethodHS256, []byte(testSecret), claims("carol"), ""))...)
}

func BenchmarkJWTRS256(b *testing.B) {
	benchAuthCfg(b, noCache(b), MethodJWT, bearer(sign(b, jwt.SigningMethodRS256, rsaKeys()[0], claims("carol"), ""))...)
}

func BenchmarkJWTES256(b *testing.B) {
	benchAuthCfg(b, noCache(b), MethodJWT, bearer(sign(b, jwt.SigningMethodES256, ecKeys()[0], claims("carol"), ""))...)
}

// BenchmarkBasicCached is the steady state of a client sending Basic on
// every request (one bcrypt per cache TTL).
func BenchmarkBasicCached(b *testing.B) {
	benchAuth(b, MethodBasic, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice-password")))
}

func BenchmarkStripAndForward(b *testing.B) {
	id := &Identity{Consumer: "alice", Tier: "premium", Scopes: []string{"a", "b"}, scopeHeader: "a b"}
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"x"}, "X-Consumer": {"spoofed"}}
	b.ReportAllocs()
	for b.Loop() {
		StripIdentityHeaders(h)
		ForwardHeaders(h, id)
	}
}

// TestAPIKeyAllocs pins the hot path: an API key request allocates nothing.
func TestAPIKeyAllocs(t *testing.T) {
	a := newAuth(t, baseConfig(t), nil)
	r := req(true, "X-API-Key", testKey)
	rb := req(true, bearer(testKey)...)
	if n := testing.AllocsPerRun(100, func() { a.Authenticate(r, MethodAPIKey|MethodJWT) }); n != 0 {
		t.Errorf("X-API-Key: %v allocs per request, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { a.Authenticate(rb, MethodAPIKey|MethodJWT) }); n != 0 {
		t.Errorf("Bearer key: %v allocs per request, want 0", n)
	}
}
