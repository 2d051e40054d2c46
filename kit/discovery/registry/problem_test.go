package registry

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/kit/discovery"
)

// TestErrorsAreProblems sends every kind of request the registry API
// refuses (bad input, unknown instance, unknown path, wrong method, no
// credential, a write the token may not make, a closed registry) and
// checks each answer is an RFC 9457 problem details document:
// application/problem+json with type, title, status (the HTTP status) and
// detail, plus the code clients branch on.
func TestErrorsAreProblems(t *testing.T) {
	r := open(t, Config{})
	srv := httptest.NewServer(Protect(Handler(r), Access{AnonymousReads: true, Tokens: []TokenGrant{
		{Name: "payments", Token: paymentsToken, Services: []string{"payments"}},
	}}))
	t.Cleanup(srv.Close)
	u := srv.URL + "/v1/services/payments/instances/a"
	auth := "Bearer " + paymentsToken
	cases := []struct {
		name, method, url, body, auth string
		status                        int
		code                          string
	}{
		{"unknown field", "PUT", u, `{"address":"h:1","weight":3}`, auth, 400, "invalid"},
		{"not json", "PUT", u, `address=h:1`, auth, 400, "invalid"},
		{"huge body", "PUT", u, `{"address":"h:1","meta":{"k":"` + strings.Repeat("x", discovery.MaxBody) + `"}}`, auth, 413, "body_too_large"},
		{"body names other instance", "PUT", u, `{"id":"b","address":"h:1"}`, auth, 400, "invalid"},
		{"bad state", "PUT", u + "/state", `{"state":"gone"}`, auth, 400, "invalid"},
		{"heartbeat unknown", "PUT", u + "/heartbeat", "", auth, 404, "not_registered"},
		{"deregister unknown", "DELETE", u, "", auth, 404, "not_registered"},
		{"bad index", "GET", srv.URL + "/v1/services/payments?index=-1", "", "", 400, "invalid"},
		{"bad name", "GET", srv.URL + "/v1/services/a%20b", "", "", 400, "invalid"},
		{"bad page limit", "GET", srv.URL + "/v1/services?limit=0", "", "", 400, "invalid"},
		{"bad cursor", "GET", srv.URL + "/v1/services?cursor=%00", "", "", 400, "invalid"},
		{"unknown path", "GET", srv.URL + "/v1/nothing", "", "", 404, "not_found"},
		{"wrong method", "GET", u, "", "", 405, "method_not_allowed"},
		{"no credential", "PUT", u, `{"address":"h:1"}`, "", 401, "unauthenticated"},
		{"bad credential", "PUT", u, `{"address":"h:1"}`, "Bearer nope", 401, "unauthenticated"},
		{"other service", "PUT", srv.URL + "/v1/services/rides/instances/a", `{"address":"h:1"}`, auth, 403, "forbidden"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkProblem(t, c.method, c.url, c.body, c.auth, c.status, c.code) })
	}
	t.Run("closed", func(t *testing.T) {
		r.Close()
		checkProblem(t, "GET", srv.URL+"/healthz", "", "", 503, "closed")
	})
}

func checkProblem(t *testing.T, method, url, body, auth string, status int, code string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != status || mt != httpx.ProblemContentType {
		t.Fatalf("%d %q %s; want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), b, status, httpx.ProblemContentType)
	}
	var p struct {
		Type   *string `json:"type"`
		Title  string  `json:"title"`
		Status int     `json:"status"`
		Detail string  `json:"detail"`
		Code   string  `json:"code"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("body not JSON: %v: %s", err, b)
	}
	if p.Type == nil || *p.Type == "" || p.Title == "" || p.Status != status || p.Detail == "" || p.Code != code {
		t.Fatalf("problem %s; want type, title, status %d, detail and code %q", b, status, code)
	}
}
