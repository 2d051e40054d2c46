package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestErrorsAreProblemDetails: every error the admin API itself answers
// (400, 401, 403, 404, 405, 422) is an RFC 9457 problem details object
// with Content-Type application/problem+json and "status" the number of
// the HTTP status (section 3.1.2), not a string.
func TestErrorsAreProblemDetails(t *testing.T) {
	t.Setenv("SY_TEST_OP", "operator-token-0123456789")
	t.Setenv("SY_TEST_RD", "reader-token-0123456789ab")
	a, err := NewAuthenticator(&AuthConfig{Tokens: []Token{
		{Name: "op", Token: "env:SY_TEST_OP", Role: RoleOperator},
		{Name: "rd", Token: "env:SY_TEST_RD", Role: RoleRead},
	}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Wrap(Handler(&fake{weight: 1}, nil)))
	defer srv.Close()
	const op, rd = "Bearer operator-token-0123456789", "Bearer reader-token-0123456789ab"
	cases := []struct {
		method, path, body, auth string
		status                   int
	}{
		{"GET", "/admin/status", "", "", 401},
		{"GET", "/admin/status", "", "Bearer wrong-token-0123456789", 401},
		{"POST", "/admin/reload", "", rd, 403},
		{"GET", "/admin/upstreams/nope", "", rd, 404},
		{"GET", "/admin/nothing", "", rd, 404},
		{"DELETE", "/admin/status", "", op, 405},
		{"PUT", "/admin/upstreams/u/targets/h:1/weight", `{"weight": -1}`, op, 400},
		{"POST", "/admin/upstreams/u/targets/h:1/drain?wait=forever", "", op, 400},
		{"POST", "/admin/reload", "", op, 422},
		{"POST", "/admin/rollouts", `{}`, op, 404}, // the fake runs no rollouts
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		derr := json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		what := c.method + " " + c.path
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", what, resp.StatusCode, c.status)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
		}
		if derr != nil {
			t.Errorf("%s: body: %v", what, derr)
			continue
		}
		if s, ok := p["status"].(float64); !ok || int(s) != c.status {
			t.Errorf("%s: status member %#v: expected the number %d", what, p["status"], c.status)
		}
		if p["type"] != "about:blank" || p["title"] != http.StatusText(c.status) {
			t.Errorf("%s: type %v title %v: expected about:blank and %q", what, p["type"], p["title"], http.StatusText(c.status))
		}
		if d, _ := p["detail"].(string); d == "" || p["error"] != d {
			t.Errorf("%s: detail %#v error %#v: expected the same non-empty text", what, p["detail"], p["error"])
		}
	}
}
