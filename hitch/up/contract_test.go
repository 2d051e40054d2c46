package up

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/contract"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/svc"
)

// The generated gateway puts Hitch's OpenAPI document on exactly the
// routes marked Contract; the document has an operation for each of
// them (and none for a route it is not on), refuses a malformed ride
// before the upstream sees it, and serves itself.
func TestHitchContract(t *testing.T) {
	o := Options{Data: t.TempDir(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Command: []string{"x"}}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	cfg, err := GatewayConfig(o, "http://127.0.0.1:1", "http://127.0.0.1:2/.well-known/jwks.json", filepath.Join(t.TempDir(), "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.Contracts[HitchContract]
	if cc == nil || cc.ServeAt != hitch.OpenAPIPath || cc.Responses != contract.ResponsesReport {
		t.Fatalf("contracts: %+v", cfg.Contracts)
	}
	c, err := contract.Load(HitchContract, *cc)
	if err != nil {
		t.Fatalf("hitch's document: %v", err)
	}
	reached := false
	h := c.Middleware(quiet())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		w.WriteHeader(http.StatusNoContent)
	}))
	serve := func(method, path, body string) *httptest.ResponseRecorder {
		reached = false
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	// Every operation of the document, by its path template.
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(hitch.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for p, item := range doc.Paths {
		for m := range item {
			if m != "parameters" {
				ops[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	byName := map[string]string{}
	for _, r := range cfg.Routes {
		byName[r.Name] = r.Contract
	}
	for _, s := range svc.Services() {
		for _, r := range s.Routes {
			if got, want := byName[r.Name], map[bool]string{true: HitchContract}[r.Contract]; got != want {
				t.Errorf("route %s: contract %q, want %q", r.Name, got, want)
			}
			if !r.Contract {
				continue
			}
			path := r.Path
			if r.PathPattern != "" {
				path = strings.ReplaceAll(r.PathPattern, "*", "{id}")
			}
			for _, m := range r.Methods {
				if m == http.MethodHead {
					continue
				}
				key := m + " " + path
				if !ops[key] {
					t.Errorf("route %s: the document has no operation %s", r.Name, key)
				}
				delete(ops, key)
			}
		}
	}
	for op := range ops {
		t.Errorf("the document's operation %s is on no contract route", op)
	}

	// A ride from off the planet: 400 naming the field, never forwarded.
	w := serve("POST", "/v1/rides", `{"from":{"lat":91,"lon":-73.98},"to":{"lat":40.76,"lon":-73.97}}`)
	var p contract.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || w.Code != 400 || reached || len(p.Violations) != 1 || p.Violations[0].Pointer != "/from/lat" {
		t.Errorf("malformed ride: %d reached=%v %s", w.Code, reached, w.Body)
	}
	// Unknown fields are refused, as the services' decoders do.
	if w := serve("POST", "/v1/auth/login", `{"email":"a@example.com","password":"x","admin":true}`); w.Code != 400 || reached {
		t.Errorf("login with an unknown field: %d %s", w.Code, w.Body)
	}
	// Availability: ready false needs nothing else; ready true needs the route.
	if w := serve("POST", "/v1/drivers/me/availability", `{"ready":false}`); w.Code != 204 || !reached {
		t.Errorf("withdrawing: %d %s", w.Code, w.Body)
	}
	if w := serve("POST", "/v1/drivers/me/availability", `{"ready":true,"seats":2}`); w.Code != 400 || reached {
		t.Errorf("offering without a route: %d %s", w.Code, w.Body)
	}
	// Conforming requests pass.
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/rides", `{"from":{"lat":40.75,"lon":-73.98},"to":{"lat":40.76,"lon":-73.97}}`},
		{"POST", "/v1/rides/r1/cancel", ""},
		{"POST", "/v1/rides/r1/start", "{}"},
		{"GET", "/v1/drivers/nearby?lat=40.75&lon=-73.98&radius_mi=2&limit=5", ""},
		{"PUT", "/v1/drivers/me/location", `{"lat":40.75,"lon":-73.98}`},
		{"POST", "/v1/auth/register", `{"role":"rider","name":"Rita","email":"rita@example.com","password":"rider pass"}`},
	} {
		if w := serve(tc.method, tc.path, tc.body); w.Code != 204 || !reached {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, w.Code, w.Body)
		}
	}
	if w := serve("HEAD", "/v1/drivers/nearby?lat=40.75&lon=1", ""); w.Code != 204 || !reached {
		t.Errorf("HEAD nearby: %d %s %v", w.Code, w.Body, w.Header())
	}
	if w := serve("GET", "/v1/drivers/nearby?lat=40.75", ""); w.Code != 400 || reached {
		t.Errorf("nearby without lon: %d %s", w.Code, w.Body)
	}
	if w := serve("GET", hitch.OpenAPIPath, ""); w.Code != 200 || reached || w.Body.String() != string(hitch.OpenAPI()) {
		t.Errorf("GET %s: %d", hitch.OpenAPIPath, w.Code)
	}
}

// FuzzHitchContract: any method, path, query and body against Hitch's
// document is either handed on untouched or refused with a problem
// (400, 404, 405, 413, 415) that never reaches the service.
func FuzzHitchContract(f *testing.F) {
	c, err := contract.Load(HitchContract, contract.Config{Document: hitch.OpenAPI(), ServeAt: hitch.OpenAPIPath, Responses: contract.ResponsesReport})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("POST", "/v1/rides", `{"from":{"lat":40.75,"lon":-73.98},"to":{"lat":40.76,"lon":-73.97}}`)
	f.Add("POST", "/v1/rides", `{"from":{"lat":91},"to":{}}`)
	f.Add("POST", "/v1/drivers/me/availability", `{"ready":true,"from":{"lat":1,"lon":2},"to":{"lat":1.1,"lon":2},"seats":2}`)
	f.Add("GET", "/v1/drivers/nearby?lat=1e309&lon=-0&limit=1.5", "")
	f.Add("POST", "/v1/auth/register", `{"role":"admin","name":"","email":"x","password":"`+strings.Repeat("p", 80)+`"}`)
	f.Add("POST", "/v1/rides/%2e%2e/cancel", `{"x":1}`)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") || len(target) > 1<<10 {
			return
		}
		r, err := http.NewRequest(method, "http://hitch"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Content-Type", "application/json")
		var got []byte
		reached := false
		h := c.Middleware(quiet())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached = true
			got, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if reached || r.URL.Path != hitch.OpenAPIPath {
				t.Fatalf("%s %s: 200 from the middleware itself", method, target)
			}
		case http.StatusNoContent:
			if !reached || string(got) != body {
				t.Fatalf("passed but the service got %q, not %q", got, body)
			}
		case 400, 404, 405, 413, 415:
			var p contract.Problem
			if reached || json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Status != w.Code || p.Contract != HitchContract {
				t.Fatalf("refused %d (reached=%v): %s", w.Code, reached, w.Body)
			}
		default:
			t.Fatalf("%s %s %q: %d %s", method, target, body, w.Code, w.Body)
		}
	})
}
