package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchyard/switchyard/internal/testclock"
	"golang.org/x/crypto/bcrypt"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testIssuer   = "https://idp.example.com"
	testAudience = "switchyard"
	testSecret   = "0123456789abcdef0123456789abcdef-hs256"
	testKey      = "sy_live_4f3c2b1a0987654321fedcba"
	testKey2     = "sy_live_99999999aaaaaaaabbbbbbbb"
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
		out := make([]*rsa.PrivateKey, 3)
		for i := range out {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			out[i] = k
		}
		return out
	})
	ecKeys = sync.OnceValue(func() []*ecdsa.PrivateKey {
		out := make([]*ecdsa.PrivateKey, 2)
		for i := range out {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			out[i] = k
		}
		return out
	})
	// bcrypt at the minimum cost keeps tests fast.
	aliceHash = sync.OnceValue(func() string {
		h, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		return string(h)
	})
)

func pemPublic(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// claims returns valid claims for consumer sub at t0.
func claims(sub string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub":   sub,
		"iss":   testIssuer,
		"aud":   []string{testAudience},
		"iat":   t0.Add(-time.Minute).Unix(),
		"nbf":   t0.Add(-time.Minute).Unix(),
		"exp":   t0.Add(time.Hour).Unix(),
		"scope": "orders:read orders:write",
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// sign signs c with method and key; kid is set when non-empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf returns the public JWK of an RSA or EC private key.
func jwkOf(kid string, priv any) map[string]any {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		pub, _ := k.PublicKey.Bytes() // 0x04 || X || Y
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:])}
	}
	panic("unsupported key")
}

func newClock() *testclock.Clock { return testclock.At(t0) }

// baseConfig registers alice (premium, API key + Basic) and bob (free,
// hashed API key) and accepts HS256, RS256 and ES256 with static keys.
func baseConfig(t testing.TB) Config {
	return Config{
		JWT: &JWTConfig{
			Issuer:     testIssuer,
			Audience:   []string{testAudience, "other"},
			Algorithms: []string{"HS256", "RS256", "ES256"},
			Secret:     testSecret,
			PublicKeys: []string{pemPublic(t, &rsaKeys()[0].PublicKey), pemPublic(t, &ecKeys()[0].PublicKey)},
		},
		Consumers: []Consumer{
			{Name: "alice", Tier: "premium", Scopes: []string{"orders:read"}, Roles: []string{"admin"},
				APIKeys: []APIKey{{Key: testKey}},
				Basic:   &Basic{Username: "alice", PasswordHash: aliceHash()}},
			{Name: "bob", Tier: "free", APIKeys: []APIKey{{Hash: HashAPIKey(testKey2)}}},
		},
	}
}

func newAuth(t testing.TB, cfg Config, clk *testclock.Clock) *Authenticator {
	t.Helper()
	if clk == nil {
		clk = newClock()
	}
	a, err := New(cfg, Options{Now: clk.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// req builds a request with the given header pairs; tlsOn marks it as
// received over TLS.
func req(tlsOn bool, kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://gw.example.com/v1/orders", nil)
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	} else {
		r.TLS = nil
	}
	return r
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// wantCode asserts that err is an *Error with the code and status.
func wantCode(t *testing.T, err error, code string, status int) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want *Error with code %s", err, code)
	}
	if e.Code != code || e.Status != status {
		t.Fatalf("error = %d %s (%v), want %d %s", e.Status, e.Code, e, status, code)
	}
	return e
}
