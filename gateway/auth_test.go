package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyard/switchyard/auth"
)

func TestAuthThroughTheGateway(t *testing.T) {
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "consumer=%s tier=%s scopes=%s", r.Header.Get("X-Consumer"), r.Header.Get("X-Consumer-Tier"), r.Header.Get("X-Scopes"))
	})
	secret := strings.Repeat("s3cret-", 6)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
auth:
  jwt: { issuer: https://idp.test, audience: [rides], algorithms: [HS256], secret: %q }
  consumers:
    - { name: alice, tier: premium, scopes: [rides:read, rides:write], api_keys: [{hash: %q}] }
    - { name: bob, tier: free, scopes: [rides:read], api_keys: [{key: bob-key-0123456789}] }
upstreams:
  rides: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /admin }
    upstream: rides
    auth: [api_key, jwt]
    require: { tiers: [premium] }
  - match: { path_prefix: /rides }
    upstream: rides
    auth: [api_key, jwt]
    require: { scopes: [rides:read] }
  - upstream: rides
`, secret, auth.HashAPIKey("alice-key-0123456789"), be.addr()))

	token := func(claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	valid := token(jwt.MapClaims{"iss": "https://idp.test", "aud": "rides", "sub": "carol", "tier": "free",
		"scope": "rides:read", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	expired := token(jwt.MapClaims{"iss": "https://idp.test", "aud": "rides", "sub": "carol",
		"scope": "rides:read", "exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()})
	wrongAud := token(jwt.MapClaims{"iss": "https://idp.test", "aud": "payments", "sub": "carol",
		"scope": "rides:read", "exp": now.Add(time.Hour).Unix()})

	for _, tc := range []struct {
		name, path string
		hdr        []string
		status     int
		body, code string
		challenge  string
	}{
		{"api key", "/rides/1", []string{"X-API-Key", "alice-key-0123456789"}, 200, "consumer=alice tier=premium scopes=rides:read rides:write", "", ""},
		{"api key as bearer", "/rides/1", []string{"Authorization", "Bearer bob-key-0123456789"}, 200, "consumer=bob tier=free", "", ""},
		{"jwt", "/rides/1", []string{"Authorization", "Bearer " + valid}, 200, "consumer=carol tier=free scopes=rides:read", "", ""},
		{"spoofed identity is stripped", "/open", []string{"X-Consumer", "admin", "X-Consumer-Tier", "premium"}, 200, "consumer= tier= scopes=", "", ""},
		{"missing credentials", "/rides/1", nil, 401, "", "missing_credentials", "Bearer"},
		{"bad api key", "/rides/1", []string{"X-API-Key", "nope-nope-nope"}, 401, "", "invalid_credentials", ""},
		{"expired jwt", "/rides/1", []string{"Authorization", "Bearer " + expired}, 401, "", "token_expired", `error="invalid_token"`},
		{"wrong audience", "/rides/1", []string{"Authorization", "Bearer " + wrongAud}, 401, "", "wrong_audience", ""},
		{"insufficient tier", "/admin/x", []string{"X-API-Key", "bob-key-0123456789"}, 403, "", "forbidden", ""},
		{"sufficient tier", "/admin/x", []string{"X-API-Key", "alice-key-0123456789"}, 200, "consumer=alice", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := be.requests.Load()
			code, body, h := get(t, gw.url+tc.path, tc.hdr...)
			if code != tc.status {
				t.Fatalf("status %d, want %d (body %s)", code, tc.status, body)
			}
			if tc.status == 200 {
				if !strings.HasPrefix(body, tc.body) {
					t.Fatalf("backend saw %q, want prefix %q", body, tc.body)
				}
				return
			}
			if be.requests.Load() != before {
				t.Fatal("rejected request reached the backend")
			}
			if !strings.Contains(body, `"code":"`+tc.code+`"`) {
				t.Fatalf("body %s lacks code %s", body, tc.code)
			}
			if tc.challenge != "" && !strings.Contains(strings.Join(h.Values("WWW-Authenticate"), ", "), tc.challenge) {
				t.Fatalf("WWW-Authenticate %q lacks %q", h.Values("WWW-Authenticate"), tc.challenge)
			}
		})
	}
}

func TestAuthConfigErrorsAreLocated(t *testing.T) {
	path := t.TempDir() + "/g.yaml"
	writeConfig(t, path, `
listen: 127.0.0.1:0
upstreams:
  u: { targets: [{address: 127.0.0.1:1}] }
routes:
  - { upstream: u, auth: [jwt], match: { path_prefix: /a } }
  - { upstream: u, require: { scopes: [x] } }
`)
	_, err := New(Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "routes[0].auth") || !strings.Contains(err.Error(), "routes[1].require") {
		t.Fatalf("err = %v", err)
	}
}
