package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fake is a Backend with hostile names.
type fake struct{ weight int }

const hostile = "we\"ird\\name\n\x01<>&\u2028"

func (f *fake) Snapshot() Snapshot {
	return Snapshot{ConfigFile: hostile + ".yaml",
		Routes:    []Route{{Name: hostile, Upstream: hostile, Headers: map[string]string{hostile: hostile}}},
		Upstreams: []Upstream{{Name: "u", Balance: "random", Targets: []Target{{Address: "h:1", Weight: f.weight}}}, {Name: hostile}}}
}
func (f *fake) SetDraining(up, addr string, on bool) error {
	if up != "u" || addr != "h:1" {
		return fmt.Errorf("unknown target %q in upstream %q: %w", addr, up, ErrNotFound)
	}
	return nil
}
func (f *fake) SetWeight(up, addr string, w int) error {
	if err := f.SetDraining(up, addr, false); err != nil {
		return err
	}
	f.weight = w
	return nil
}
func (f *fake) ResetWeight(up, addr string) error {
	if err := f.SetDraining(up, addr, false); err != nil {
		return err
	}
	f.weight = 1
	return nil
}
func (f *fake) Reload(context.Context) error { return fmt.Errorf("refused: %s", hostile) }

// TestWrongMethodIs405WithAllow: every admin path answers a method it does
// not serve with 405, an Allow header listing what it serves, and a JSON
// error; unknown paths stay 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	srv := httptest.NewServer(Handler(&fake{weight: 1}, nil))
	defer srv.Close()
	paths := map[string]string{ // path -> Allow
		"/healthz":                               "GET, HEAD",
		"/admin/status":                          "GET, HEAD",
		"/admin/routes":                          "GET, HEAD",
		"/admin/upstreams":                       "GET, HEAD",
		"/admin/upstreams/u":                     "GET, HEAD",
		"/admin/upstreams/u/targets/h:1/drain":   "POST",
		"/admin/upstreams/u/targets/h:1/undrain": "POST",
		"/admin/upstreams/u/targets/h:1/weight":  "DELETE, PUT",
		"/admin/reload":                          "POST",
		"/debug/pprof/":                          "GET, HEAD",
		"/debug/pprof/cmdline":                   "GET, HEAD",
	}
	for path, allow := range paths {
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"} {
			if strings.Contains(allow, m) {
				continue
			}
			req, _ := http.NewRequest(m, srv.URL+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != allow {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", m, path, resp.StatusCode, resp.Header.Get("Allow"), allow)
				continue
			}
			var e map[string]any
			if m != "HEAD" && (json.Unmarshal(body, &e) != nil || e["code"] != "method_not_allowed") {
				t.Errorf("%s %s: body %q, want a JSON error with code method_not_allowed", m, path, body)
			}
		}
	}
	for _, path := range []string{"/admin/nothing", "/admin/upstreams/u/targets/h:1/explode", "/"} {
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// TestJSONEscapesNames: names with quotes, backslashes, control and
// line-separator characters come back as valid JSON, unchanged.
func TestJSONEscapesNames(t *testing.T) {
	srv := httptest.NewServer(Handler(&fake{weight: 1}, nil))
	defer srv.Close()
	for _, tc := range []struct{ method, path string }{
		{"GET", "/admin/status"}, {"GET", "/admin/routes"}, {"GET", "/admin/upstreams"},
		{"GET", "/admin/upstreams/" + strings.ReplaceAll(hostile, "\n", "%0A")},
		{"POST", "/admin/reload"},
		{"POST", "/admin/upstreams/%22x%5C/targets/%22%0A/drain"},
		{"PUT", "/admin/upstreams/u/targets/h:1/weight"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+strings.ReplaceAll(strings.ReplaceAll(tc.path, "\x01", "%01"), "\u2028", "%E2%80%A8"), strings.NewReader(`{"weight": 2}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ct := resp.Header.Get("Content-Type")
		if !json.Valid(body) || (ct != "application/json" && !(resp.StatusCode >= 400 && ct == "application/problem+json")) {
			t.Errorf("%s %s: invalid JSON %q", tc.method, tc.path, body)
		}
		if strings.Contains(tc.path, "status") {
			var s Snapshot
			if err := json.Unmarshal(body, &s); err != nil || s.Routes[0].Name != hostile || s.ConfigFile != hostile+".yaml" {
				t.Errorf("status round trip: %v %+v", err, s.Routes)
			}
		}
	}
}

// TestWeightBounds: the admin API refuses weights outside 1..MaxWeight
// before they reach the gateway.
func TestWeightBounds(t *testing.T) {
	f := &fake{weight: 1}
	srv := httptest.NewServer(Handler(f, nil))
	defer srv.Close()
	for body, want := range map[string]int{
		`{"weight": 0}`: 400, `{"weight": -1}`: 400, `{"weight": 1000001}`: 400,
		`{"weight": 99999999999999999999}`: 400, `{"weight": 1.5}`: 400,
		`{"weight": 2} {"weight": 3}`: 400,
		`{"weight": 1000000}`:         200, `{"weight": 1}`: 200,
	} {
		req, _ := http.NewRequest("PUT", srv.URL+"/admin/upstreams/u/targets/h:1/weight", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("PUT weight %s: %d, want %d", body, resp.StatusCode, want)
		}
	}
}

// FuzzWeightBody: any body to PUT .../weight answers 200 with a weight in
// 1..MaxWeight reaching the backend, or 400 with a JSON error.
func FuzzWeightBody(f *testing.F) {
	for _, s := range []string{`{"weight": 3}`, `{"weight": 0}`, `{"weight": 1e6}`, `{"weight": 1000001}`, `{"weight": "3"}`, `{}`, `[]`, `{"weight": 2, "x": 1}`, "{\"weight\": 2}\n{\"weight\": 9999999}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fb := &fake{weight: 1}
		h := Handler(fb, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("PUT", "/admin/upstreams/u/targets/h:1/weight", strings.NewReader(body)))
		switch w.Code {
		case 200:
			if fb.weight < 1 || fb.weight > MaxWeight {
				t.Fatalf("body %q set weight %d", body, fb.weight)
			}
		case 400:
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("400 body not JSON: %q", w.Body)
			}
		default:
			t.Fatalf("body %q: status %d", body, w.Code)
		}
	})
}
