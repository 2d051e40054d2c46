package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestCORSIPFilterBodyLimitAndTransform drives the route-level edge
// features through the YAML config.
func TestCORSIPFilterBodyLimitAndTransform(t *testing.T) {
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Internal", "secret")
		fmt.Fprintf(w, `{"id": 1, "path": %q, "q": %q, "api": %q, "driver": {"name": "Ada", "phone": "555"}}`,
			r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Api-Version"))
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /v1/rides }
    upstream: u
    cors: { allow_origins: ["https://app.example.com"], allow_methods: [GET, POST], allow_headers: [Content-Type], max_age: 10m }
    max_request_body: 16
    transform:
      request:
        headers: { set: { X-Api-Version: "2" } }
        path: { regex: "^/v1/rides/(\\d+)$", replace: "/rides/$1" }
        query: { rename: { q: query }, remove: [debug] }
      response:
        headers: { remove: [X-Internal] }
        json_allow: [id, path, q, api, driver.name]
  - match: { path_prefix: /private }
    upstream: u
    ip_filter: { allow: [10.0.0.0/8] }
`, be.addr()))

	code, body, h := get(t, gw.url+"/v1/rides/42?q=x&debug=1")
	if code != 200 || h.Get("X-Internal") != "" {
		t.Fatalf("transform: %d %s %v", code, body, h)
	}
	want := `{"id":1,"path":"/rides/42","q":"query=x","api":"2","driver":{"name":"Ada"}}`
	if strings.ReplaceAll(body, " ", "") != want {
		t.Fatalf("transformed body %s, want %s", body, want)
	}

	req, _ := http.NewRequest("OPTIONS", gw.url+"/v1/rides/42", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Max-Age") != "600" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	req.Header.Set("Origin", "https://evil.example.com")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("preflight from a foreign origin: %d", resp.StatusCode)
	}

	code, body, _ = do(t, "POST", gw.url+"/v1/rides/42", strings.NewReader(strings.Repeat("x", 64)), "Content-Type", "text/plain")
	if code != 413 || !strings.Contains(body, "body_too_large") {
		t.Fatalf("oversized body: %d %s", code, body)
	}

	before := be.requests.Load()
	code, body, _ = get(t, gw.url+"/private/x")
	if code != 403 || !strings.Contains(body, "ip_forbidden") || be.requests.Load() != before {
		t.Fatalf("loopback client on a 10/8-only route: %d %s", code, body)
	}
}
