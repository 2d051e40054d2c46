package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchyard/switchyard/internal/testclock"
)

// jwksServer serves a mutable JWK set and counts fetches; down makes it
// answer 500.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	fetches atomic.Int32
	down    atomic.Bool
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		body, _ := json.Marshal(map[string]any{"keys": s.keys})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...map[string]any) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func jwksAuth(t *testing.T, url string, clk *testclock.Clock, log *slog.Logger) *Authenticator {
	t.Helper()
	cfg := Config{JWT: &JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: url}}
	a, err := New(cfg, Options{Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestJWKS(t *testing.T) {
	r0, r1, r2 := rsaKeys()[0], rsaKeys()[1], rsaKeys()[2]
	e0 := ecKeys()[0]
	srv := newJWKSServer(t, jwkOf("r0", r0), jwkOf("r1", r1), jwkOf("e0", e0),
		map[string]any{"kty": "oct", "kid": "hmac", "k": b64([]byte(testSecret))}, // ignored
		map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"})
	clk := newClock()
	var logs bytes.Buffer
	a := jwksAuth(t, srv.URL, clk, slog.New(slog.NewTextHandler(&logs, nil)))
	c := claims("carol")
	auth := func(tok string) (*Identity, error) {
		return a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	}

	t.Run("kid selects the key", func(t *testing.T) {
		for _, tok := range []string{
			sign(t, jwt.SigningMethodRS256, r0, c, "r0"),
			sign(t, jwt.SigningMethodRS256, r1, c, "r1"),
			sign(t, jwt.SigningMethodES256, e0, c, "e0"),
		} {
			if _, err := auth(tok); err != nil {
				t.Fatal(err)
			}
		}
		if n := srv.fetches.Load(); n != 1 {
			t.Fatalf("fetches = %d, want 1 (cached)", n)
		}
	})
	t.Run("symmetric and encryption keys skipped", func(t *testing.T) {
		if !strings.Contains(logs.String(), `kty \"oct\": unsupported`) || !strings.Contains(logs.String(), `use \"enc\"`) {
			t.Fatalf("logs = %s", logs.String())
		}
		tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "hmac")
		_, err := auth(tok)
		wantCode(t, err, CodeUnsupportedAlgorithm, 401)
	})
	t.Run("missing kid with several RSA keys", func(t *testing.T) {
		_, err := auth(sign(t, jwt.SigningMethodRS256, r0, c, ""))
		wantCode(t, err, CodeUnknownKeyID, 401)
	})
	t.Run("missing kid with one EC key", func(t *testing.T) {
		if _, err := auth(sign(t, jwt.SigningMethodES256, e0, c, "")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("kid naming a key of another type", func(t *testing.T) {
		_, err := auth(sign(t, jwt.SigningMethodES256, e0, c, "r0"))
		wantCode(t, err, CodeUnsupportedAlgorithm, 401)
	})
	t.Run("unknown kid refreshes and finds the rotated key", func(t *testing.T) {
		srv.set(jwkOf("r1", r1), jwkOf("r2", r2))
		clk.Advance(MinJWKSRefreshInterval)
		before := srv.fetches.Load()
		if _, err := auth(sign(t, jwt.SigningMethodRS256, r2, c, "r2")); err != nil {
			t.Fatal(err)
		}
		if n := srv.fetches.Load() - before; n != 1 {
			t.Fatalf("fetches = %d, want 1", n)
		}
		// r0 was rotated out; its token (RS256 signatures are deterministic,
		// so the same string as before) must not be served from the cache.
		_, err := auth(sign(t, jwt.SigningMethodRS256, r0, c, "r0"))
		wantCode(t, err, CodeUnknownKeyID, 401)
	})
	t.Run("unknown kids are rate limited", func(t *testing.T) {
		before := srv.fetches.Load()
		for i := 0; i < 5; i++ {
			_, err := auth(sign(t, jwt.SigningMethodRS256, r0, c, "nope"))
			wantCode(t, err, CodeUnknownKeyID, 401)
		}
		if n := srv.fetches.Load() - before; n != 0 {
			t.Fatalf("fetches = %d within %s, want 0", n, MinJWKSRefreshInterval)
		}
		clk.Advance(MinJWKSRefreshInterval)
		_, err := auth(sign(t, jwt.SigningMethodRS256, r0, c, "nope"))
		wantCode(t, err, CodeUnknownKeyID, 401)
		if n := srv.fetches.Load() - before; n != 1 {
			t.Fatalf("fetches = %d after the interval, want 1", n)
		}
	})
	t.Run("server down keeps the last good keys", func(t *testing.T) {
		srv.down.Store(true)
		clk.Advance(DefaultJWKSRefresh + time.Second) // stale: the next request refetches
		before := srv.fetches.Load()
		if _, err := auth(sign(t, jwt.SigningMethodRS256, r2, c, "r2")); err != nil {
			t.Fatalf("after failed refresh: %v", err)
		}
		if n := srv.fetches.Load() - before; n != 1 {
			t.Fatalf("fetches = %d, want 1", n)
		}
		if !strings.Contains(logs.String(), "keeping the previous key set") {
			t.Fatalf("no warning logged: %s", logs.String())
		}
		// Still stale, but retries are rate limited.
		if _, err := auth(sign(t, jwt.SigningMethodRS256, r1, c, "r1")); err != nil {
			t.Fatal(err)
		}
		if n := srv.fetches.Load() - before; n != 1 {
			t.Fatalf("fetches = %d, want 1", n)
		}
		srv.down.Store(false)
	})
}

func TestJWKSUnavailableAtStart(t *testing.T) {
	srv := newJWKSServer(t, jwkOf("r0", rsaKeys()[0]))
	srv.down.Store(true)
	clk := newClock()
	a := jwksAuth(t, srv.URL, clk, nil)
	tok := sign(t, jwt.SigningMethodRS256, rsaKeys()[0], claims("carol"), "r0")
	_, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT)
	wantCode(t, err, CodeKeysUnavailable, 503)
	srv.down.Store(false)
	clk.Advance(MinJWKSRefreshInterval)
	if _, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT); err != nil {
		t.Fatalf("after the server came back: %v", err)
	}
}

func TestJWKSConcurrentColdStart(t *testing.T) {
	srv := newJWKSServer(t, jwkOf("r0", rsaKeys()[0]))
	a := jwksAuth(t, srv.URL, newClock(), nil)
	tok := sign(t, jwt.SigningMethodRS256, rsaKeys()[0], claims("carol"), "r0")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

func TestParseJWKS(t *testing.T) {
	small := map[string]any{"kty": "RSA", "kid": "small", "n": b64(make([]byte, 128)), "e": "AQAB"}
	tests := []struct {
		name string
		body string
		want int // usable keys; -1 = error
	}{
		{"not json", "{", -1},
		{"no keys", `{"keys":[]}`, -1},
		{"rsa under 2048 bits", string(mustJSON(t, map[string]any{"keys": []any{small}})), -1},
		{"wrong curve", `{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}`, -1},
		{"point not on curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(make([]byte, 32)) + `"}]}`, -1},
		{"duplicate kid keeps first", string(mustJSON(t, map[string]any{"keys": []any{jwkOf("a", rsaKeys()[0]), jwkOf("a", rsaKeys()[1])}})), 1},
		{"rsa key claiming ES256", string(mustJSON(t, map[string]any{"keys": []any{with(jwkOf("a", rsaKeys()[0]), "alg", "ES256")}})), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := parseJWKS([]byte(tc.body), slog.New(slog.DiscardHandler))
			if tc.want < 0 {
				if err == nil {
					t.Fatalf("parsed %d keys, want error", len(ks.keys))
				}
				return
			}
			if err != nil || len(ks.keys) != tc.want {
				t.Fatalf("parseJWKS = %v, %v; want %d keys", ks, err, tc.want)
			}
		})
	}
}

func TestJWKSOverTLSAndPrefetch(t *testing.T) {
	keys, _ := json.Marshal(map[string]any{"keys": []any{jwkOf("r0", rsaKeys()[0])}})
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			w.Write(keys)
		case "/downgrade":
			http.Redirect(w, r, "http://jwks.invalid/jwks", http.StatusFound)
		}
	}))
	defer srv.Close()

	newA := func(path string, client *http.Client) *Authenticator {
		a, err := New(Config{JWT: &JWTConfig{JWKSURL: srv.URL + path}}, Options{HTTPClient: client, Now: newClock().Now})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := newA("/jwks", srv.Client())
	if err := a.Prefetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodRS256, rsaKeys()[0], claims("carol"), "r0")
	if _, err := a.Authenticate(req(true, bearer(tok)...), MethodJWT); err != nil {
		t.Fatal(err)
	}

	// The default client refuses a redirect to plain http (here it also
	// does not trust the test CA; use a client that does, with the
	// default redirect policy).
	client := srv.Client()
	client.CheckRedirect = nil
	a = newA("/downgrade", nil)
	a.jwt.jwks.client.Transport = client.Transport
	err := a.Prefetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "plain http is allowed only to a loopback address") {
		t.Fatalf("Prefetch through a downgrade redirect: %v", err)
	}

	if err := newAuth(t, Config{}, nil).Prefetch(context.Background()); err != nil {
		t.Fatalf("Prefetch without jwks: %v", err)
	}
}

// TestConcurrentUse runs every method at once while the JWKS rotates, for
// the race detector.
func TestConcurrentUse(t *testing.T) {
	srv := newJWKSServer(t, jwkOf("r0", rsaKeys()[0]))
	clk := newClock()
	cfg := baseConfig(t)
	cfg.JWT.JWKSURL = srv.URL
	a := newAuth(t, cfg, clk)
	requests := [][]string{
		{"X-API-Key", testKey},
		basicHeader("alice", "alice-password"),
		bearer(sign(t, jwt.SigningMethodRS256, rsaKeys()[0], claims("carol"), "r0")),
		bearer(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("carol"), "")),
		bearer(sign(t, jwt.SigningMethodRS256, rsaKeys()[1], claims("carol"), "r1")),
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				hdr := requests[(g+i)%len(requests)]
				if _, err := a.Authenticate(req(true, hdr...), AllMethods); err != nil && hdr[1] != requests[4][1] {
					t.Errorf("%v: %v", hdr[0], err)
				}
				if g == 0 && i%10 == 0 {
					srv.set(jwkOf("r0", rsaKeys()[0]), jwkOf("r1", rsaKeys()[1]))
					clk.Advance(MinJWKSRefreshInterval)
				}
			}
		})
	}
	wg.Wait()
}
