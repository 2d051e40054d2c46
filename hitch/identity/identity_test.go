package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
	"golang.org/x/crypto/bcrypt"
)

func newService(t *testing.T, db *store.DB, cfg Config) *Service {
	t.Helper()
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = 4
	}
	s, err := New(context.Background(), db, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func call(t *testing.T, h http.Handler, method, path, body string) answer {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	a := answer{status: w.Code, header: w.Header()}
	if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
		t.Fatalf("%s %s: answer %d is not JSON: %q", method, path, w.Code, w.Body.String())
	}
	return a
}

func register(t *testing.T, h http.Handler, role, email, password string) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"role": role, "name": "Ann Example", "email": email, "password": password})
	return call(t, h, "POST", PathRegister, string(b))
}

func login(t *testing.T, h http.Handler, email, password string) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return call(t, h, "POST", PathLogin, string(b))
}

// verify checks token against the service's JWKS as the gateway would.
func verify(t *testing.T, h http.Handler, token string) jwt.MapClaims {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", PathJWKS, nil))
	var set struct {
		Keys []struct{ Kty, Crv, X, Y, Kid, Alg, Use string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %q: %v", w.Body.String(), err)
	}
	k := set.Keys[0]
	if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" || k.Use != "sig" || k.Kid == "" {
		t.Fatalf("JWKS key %+v", k)
	}
	x, _ := base64.RawURLEncoding.DecodeString(k.X)
	y, _ := base64.RawURLEncoding.DecodeString(k.Y)
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != k.Kid {
			t.Errorf("token kid %v, JWKS kid %s", tok.Header["kid"], k.Kid)
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(Audience), jwt.WithIssuer(DefaultIssuer), jwt.WithExpirationRequired())
	if err != nil || !tok.Valid {
		t.Fatalf("token does not verify with the JWKS: %v", err)
	}
	return claims
}

func TestRegisterLogin(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newService(t, db, Config{})
		h := s.Handler()
		a := register(t, h, "rider", "Ann@Example.com", "correct horse")
		if a.status != 201 || a.body["id"] == "" {
			t.Fatalf("register: %d %v", a.status, a.body)
		}
		id := a.body["id"].(string)
		d := register(t, h, "driver", "dan@example.com", "battery staple")
		if d.status != 201 {
			t.Fatalf("register driver: %d %v", d.status, d.body)
		}
		// Case-insensitive: the same email in other letters is taken.
		if a := register(t, h, "driver", "ann@EXAMPLE.com", "whatever12"); a.status != 409 || a.body["code"] != "email_taken" {
			t.Fatalf("duplicate email: %d %v", a.status, a.body)
		}
		l := login(t, h, "ANN@example.COM", "correct horse")
		if l.status != 200 {
			t.Fatalf("login: %d %v", l.status, l.body)
		}
		claims := verify(t, h, l.body["token"].(string))
		if claims["sub"] != id || claims["scope"] != "rider" {
			t.Fatalf("claims %v: want sub %s scope rider", claims, id)
		}
		exp, _ := claims.GetExpirationTime()
		if d := time.Until(exp.Time); d < 59*time.Minute || d > 61*time.Minute {
			t.Fatalf("token expires in %v, want 1h", d)
		}
		l = login(t, h, "dan@example.com", "battery staple")
		if c := verify(t, h, l.body["token"].(string)); c["scope"] != "driver" {
			t.Fatalf("driver claims %v", c)
		}
	})
}

// Replicas on one database sign with one key: a token from one verifies
// with the other's JWKS, also after a restart.
func TestReplicasShareKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		var wg sync.WaitGroup
		svcs := make([]*Service, 4)
		errs := make([]error, 4)
		for i := range svcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svcs[i], errs[i] = New(context.Background(), db, nil, Config{BcryptCost: 4})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
		}
		for _, s := range svcs[1:] {
			if s.KeyID() != svcs[0].KeyID() || !s.PublicKey().Equal(svcs[0].PublicKey()) {
				t.Fatalf("replicas have different keys: %s, %s", s.KeyID(), svcs[0].KeyID())
			}
		}
		register(t, svcs[0].Handler(), "rider", "r@example.com", "password1")
		l := login(t, svcs[1].Handler(), "r@example.com", "password1")
		verify(t, svcs[2].Handler(), l.body["token"].(string))
		again := newService(t, db, Config{})
		verify(t, again.Handler(), l.body["token"].(string))
	})
}

func TestAttacks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newService(t, db, Config{MaxBody: 1024})
		h := s.Handler()
		register(t, h, "rider", "ann@example.com", "correct horse")
		cases := []struct {
			name, path, body string
			status           int
			code, mention    string
		}{
			{"empty body", PathRegister, "", 400, "bad_json", "empty body"},
			{"not json", PathRegister, "role=rider", 400, "bad_json", "invalid JSON"},
			{"array", PathRegister, "[]", 400, "bad_json", "array"},
			{"wrong type", PathRegister, `{"role":"rider","name":5}`, 400, "bad_json", `"name"`},
			{"unknown field", PathRegister, `{"role":"rider","admin":true}`, 400, "bad_json", `"admin"`},
			{"trailing data", PathRegister, `{"role":"rider"} {}`, 400, "bad_json", "after the object"},
			{"bad role", PathRegister, `{"role":"admin","name":"x","email":"a@b.co","password":"12345678"}`, 400, "invalid_role", "role"},
			{"no name", PathRegister, `{"role":"rider","name":" ","email":"a@b.co","password":"12345678"}`, 400, "invalid_name", "name"},
			{"control in name", PathRegister, `{"role":"rider","name":"a\u0000b","email":"a@b.co","password":"12345678"}`, 400, "invalid_name", "control"},
			{"bad email", PathRegister, `{"role":"rider","name":"x","email":"Ann <a@b.co>","password":"12345678"}`, 400, "invalid_email", "email"},
			{"email without domain dot", PathRegister, `{"role":"rider","name":"x","email":"a@b","password":"12345678"}`, 400, "invalid_email", "email"},
			{"short password", PathRegister, `{"role":"rider","name":"x","email":"a@b.co","password":"1234567"}`, 400, "invalid_password", "password"},
			{"long password", PathRegister, `{"role":"rider","name":"x","email":"a@b.co","password":"` + strings.Repeat("p", 73) + `"}`, 400, "invalid_password", "password"},
			{"oversized", PathRegister, `{"name":"` + strings.Repeat("x", 2000) + `"}`, 413, "body_too_large", "1024"},
			{"login without email", PathLogin, `{"password":"x"}`, 400, "invalid_email", "email"},
			{"login without password", PathLogin, `{"email":"ann@example.com"}`, 400, "invalid_password", "password"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := call(t, h, "POST", c.path, c.body)
				if a.status != c.status || a.body["code"] != c.code || !strings.Contains(a.body["error"].(string), c.mention) {
					t.Fatalf("%d %v: want %d %s mentioning %q", a.status, a.body, c.status, c.code, c.mention)
				}
			})
		}
		if a := call(t, h, "GET", PathRegister, ""); a.status != 405 {
			t.Fatalf("GET register: %d", a.status)
		}
		if a := call(t, h, "GET", "/v1/auth/other", ""); a.status != 404 {
			t.Fatalf("unknown path: %d", a.status)
		}
		// Wrong password and unknown email: the same answer.
		wrong := login(t, h, "ann@example.com", "wrong horse")
		unknown := login(t, h, "nobody@example.com", "wrong horse")
		if wrong.status != 401 || unknown.status != 401 || wrong.body["error"] != unknown.body["error"] || wrong.body["code"] != unknown.body["code"] {
			t.Fatalf("wrong password %d %v, unknown email %d %v: want the same 401", wrong.status, wrong.body, unknown.status, unknown.body)
		}
	})
}

// After MaxFailures failures an email is refused (429) until the window
// ends, even with the right password; success clears the count.
func TestBruteForce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		now := time.Unix(1_800_000_000, 0)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		s := newService(t, db, Config{MaxFailures: 3, FailureWindow: time.Minute, Now: clock})
		h := s.Handler()
		register(t, h, "driver", "dan@example.com", "battery staple")
		// Two failures, then a success clears them.
		login(t, h, "dan@example.com", "x1234567")
		login(t, h, "dan@example.com", "x1234567")
		if a := login(t, h, "dan@example.com", "battery staple"); a.status != 200 {
			t.Fatalf("login after 2 failures: %d %v", a.status, a.body)
		}
		for i := 0; i < 3; i++ {
			if a := login(t, h, "dan@example.com", "x1234567"); a.status != 401 {
				t.Fatalf("failure %d: %d", i, a.status)
			}
		}
		a := login(t, h, "dan@example.com", "battery staple")
		if a.status != 429 || a.header.Get("Retry-After") == "" {
			t.Fatalf("locked out: %d %v (Retry-After %q)", a.status, a.body, a.header.Get("Retry-After"))
		}
		// Unknown emails are counted (and refused) the same way.
		for i := 0; i < 3; i++ {
			login(t, h, "ghost@example.com", "x1234567")
		}
		if a := login(t, h, "ghost@example.com", "x1234567"); a.status != 429 {
			t.Fatalf("unknown email after 3 failures: %d", a.status)
		}
		advance(61 * time.Second)
		if a := login(t, h, "dan@example.com", "battery staple"); a.status != 200 {
			t.Fatalf("after the window: %d %v", a.status, a.body)
		}
		// Run sweeps ended windows.
		ctx, cancel := context.WithCancel(context.Background())
		s.cfg.SweepInterval = 10 * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var n int
			if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM hitch_identity_failures`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d failure rows left after the window", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// An unknown email costs the same bcrypt work as a wrong password: each
// login compares exactly one hash of the configured cost (for an unknown
// email the dummy one). Counted, not timed: a timing comparison on a
// loaded machine fails either way.
func TestLoginUnknownEmailComparesAHash(t *testing.T) {
	const cost = 6
	s := newService(t, storetest.SQLite(t), Config{BcryptCost: cost, MaxFailures: -1})
	h := s.Handler()
	register(t, h, "rider", "ann@example.com", "correct horse")
	var mu sync.Mutex
	var costs []int
	orig := compareHash
	compareHash = func(hash, pw []byte) error {
		c, err := bcrypt.Cost(hash)
		if err != nil {
			c = -1
		}
		mu.Lock()
		costs = append(costs, c)
		mu.Unlock()
		return orig(hash, pw)
	}
	t.Cleanup(func() { compareHash = orig })
	for _, email := range []string{"ann@example.com", "nobody@example.com"} {
		mu.Lock()
		costs = costs[:0]
		mu.Unlock()
		if a := login(t, h, email, "wrong horse"); a.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", email, a.status)
		}
		mu.Lock()
		got := append([]int(nil), costs...)
		mu.Unlock()
		if len(got) != 1 || got[0] != cost {
			t.Fatalf("%s: compared hashes of costs %v, want exactly one of cost %d", email, got, cost)
		}
	}
}

func TestHealthAndConfig(t *testing.T) {
	db := storetest.SQLite(t)
	s := newService(t, db, Config{})
	if a := call(t, s.Handler(), "GET", PathHealth, ""); a.status != 200 {
		t.Fatalf("healthz: %d", a.status)
	}
	err := Config{TokenTTL: time.Second, BcryptCost: 40, MaxBody: 1, MaxFailures: -2}.Validate()
	for _, key := range []string{"token_ttl", "bcrypt_cost", "max_body", "max_failures"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate: %v, want it to name %s", err, key)
		}
	}
	db.Close()
	if a := call(t, s.Handler(), "GET", PathHealth, ""); a.status != 503 {
		t.Fatalf("healthz with a closed database: %d", a.status)
	}
}

func FuzzRegisterBody(f *testing.F) {
	f.Add(`{"role":"rider","name":"Ann","email":"ann@example.com","password":"correct horse"}`)
	f.Add(`{"role":"driver","name":"\u0000","email":"A@B.CO","password":"12345678"}`)
	f.Add(`{"email":"a@b.co" , "x":1}`)
	f.Add(`{"role":"rider","name":"Ann","email":"\"a b\"@example.com","password":"12345678"} x`)
	f.Fuzz(func(t *testing.T, body string) {
		var req registerRequest
		if err := decodeStrict([]byte(body), &req); err != nil {
			return
		}
		email, err := checkRegistration(&req)
		if err != nil {
			var fe *fieldError
			if !errors.As(err, &fe) || fe.field == "" {
				t.Fatalf("error %v names no field", err)
			}
			return
		}
		if email != strings.ToLower(email) || len(req.Password) < MinPassword || len(req.Password) > MaxPassword ||
			(req.Role != "rider" && req.Role != "driver") || strings.TrimSpace(req.Name) == "" {
			t.Fatalf("accepted %+v (email %q)", req, email)
		}
	})
}
