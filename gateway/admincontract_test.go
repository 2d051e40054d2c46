package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/contract"
	"github.com/switchyard/switchyard/httpx"
)

// TestAdminAPIContract drives every admin endpoint of a real gateway
// (its admin listener, with admin_auth) through the admin API's own
// OpenAPI document enforced on requests and responses: a request the
// test sends must conform, and a response that drifts from the document
// becomes a 502 naming the field, failing the test. Error answers (400,
// 401, 403, 404, 422, ...) are checked as well as successes.
func TestAdminAPIContract(t *testing.T) {
	be := newBackend(t, "a")
	const operator, reader = "operator-token-abcdef123456", "reader-token-abcdef1234567"
	cfgText := fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
tracing: { ratio: 1 }
admin_auth:
  tokens:
    - { name: oncall, token: %q, role: operator }
    - { name: grafana, token: %q, role: read }
caches:
  edge: { memory: 1MiB }
upstreams:
  u: { targets: [ { address: %s } ] }
routes:
  - { name: api, match: { path_prefix: / }, upstream: u, cache: edge }
slos:
  - { name: api-availability, route: api, objective: 99%%, window: 30d }
`, operator, reader, be.addr())
	r := startGateway(t, cfgText)
	if code, _, _ := get(t, r.url+"/warm"); code != 200 {
		t.Fatalf("a request through the gateway: %d", code)
	}

	c, err := contract.Load("admin", contract.Config{Document: admin.OpenAPI(), Responses: contract.ResponsesEnforce})
	if err != nil {
		t.Fatalf("the admin API's document: %v", err)
	}
	target, _ := url.Parse(r.admin)
	checked := httptest.NewServer(c.Middleware(slog.New(slog.NewTextHandler(io.Discard, nil)))(httputil.NewSingleHostReverseProxy(target)))
	defer checked.Close()

	op, rd := []string{"Authorization", "Bearer " + operator}, []string{"Authorization", "Bearer " + reader}
	withJSON := func(hdr []string) []string { return append(slices.Clone(hdr), "Content-Type", "application/json") }
	call := func(method, path, body string, hdr []string, want ...int) string {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		code, got, _ := do(t, method, checked.URL+path, rd, hdr...)
		if !slices.Contains(want, code) {
			t.Errorf("%s %s: %d, want %v: %s", method, path, code, want, got)
		}
		return got
	}
	tgt := "/admin/upstreams/u/targets/" + be.addr()

	call("GET", "/healthz", "", nil, 200)
	if doc := call("GET", admin.PathOpenAPI, "", rd, 200); doc != string(admin.OpenAPI()) {
		t.Errorf("GET %s: not the document", admin.PathOpenAPI)
	}
	call("GET", admin.PathOpenAPI, "", nil, 401) // the same auth as the rest
	call("GET", "/metrics", "", rd, 200)
	call("GET", "/admin/status", "", rd, 200)
	call("GET", "/admin/routes", "", rd, 200)
	call("GET", "/admin/upstreams", "", rd, 200)
	call("GET", "/admin/upstreams/u", "", rd, 200)
	call("GET", "/admin/upstreams/nope", "", rd, 404)

	call("POST", tgt+"/drain", "", rd, 403)
	call("POST", tgt+"/drain", "", op, 200)
	call("POST", tgt+"/drain?wait=1s", "", op, 200)
	call("POST", tgt+"/drain?wait=1h", "", op, 400)
	call("POST", "/admin/upstreams/u/targets/127.0.0.1:1/drain", "", op, 404)
	call("POST", tgt+"/undrain", "", op, 200)
	call("PUT", tgt+"/weight", `{"weight":3}`, withJSON(op), 200)
	call("PUT", "/admin/upstreams/nope/targets/127.0.0.1:1/weight", `{"weight":3}`, withJSON(op), 404)
	call("DELETE", tgt+"/weight", "", op, 200)

	// Conditional requests: a target's settings carry an ETag; a write
	// based on stale settings is refused 412, one on current settings
	// goes through; an unchanged GET is 304.
	with := func(hdr []string, kv ...string) []string { return append(slices.Clone(hdr), kv...) }
	code, _, h := do(t, "GET", checked.URL+tgt, nil, rd...)
	etag := h.Get("ETag")
	if code != 200 || etag == "" {
		t.Fatalf("GET %s: %d ETag %q", tgt, code, etag)
	}
	call("GET", tgt, "", with(rd, "If-None-Match", etag), 304)
	call("GET", "/admin/upstreams/u/targets/127.0.0.1:1", "", rd, 404)
	code, _, h = do(t, "PUT", checked.URL+tgt+"/weight", strings.NewReader(`{"weight":4}`), with(withJSON(op), "If-Match", etag)...)
	if code != 200 || h.Get("ETag") == etag || h.Get("ETag") == "" {
		t.Fatalf("PUT weight If-Match current: %d, ETag %q (was %q)", code, h.Get("ETag"), etag)
	}
	newTag := h.Get("ETag")
	if body := call("PUT", tgt+"/weight", `{"weight":5}`, with(withJSON(op), "If-Match", etag), 412); !strings.Contains(body, "precondition_failed") {
		t.Errorf("stale If-Match: %s", body)
	}
	call("POST", tgt+"/drain", "", with(op, "If-Match", etag), 412)
	call("GET", tgt, "", with(rd, "If-None-Match", etag), 200)
	call("DELETE", tgt+"/weight", "", with(op, "If-Match", newTag), 200)
	call("GET", "/admin/upstreams", "", rd, 200)
	_, _, h = do(t, "GET", checked.URL+"/admin/routes", nil, rd...)
	call("GET", "/admin/routes", "", with(rd, "If-None-Match", h.Get("ETag")), 304)

	call("POST", "/admin/reload", "", op, 200)
	r.rewrite(t, strings.Replace(cfgText, "upstream: u,", "upstream: missing,", 1))
	call("POST", "/admin/reload", "", op, 422)
	r.rewrite(t, cfgText)

	call("GET", "/admin/caches", "", rd, 200)
	call("PUT", "/admin/caches/edge/objects?url=http://example.com/pushed&ttl=60s", "pushed body", append(slices.Clone(op), "Content-Type", "text/plain"), 200)
	call("GET", "/admin/caches/edge/entries?url=http://example.com/pushed", "", rd, 200)
	call("GET", "/admin/caches/edge/entries?url=http://example.com/pushed&limit=0", "", rd, 400)
	call("POST", "/admin/caches/edge/purge", `{"prefix":"example.com/","soft":true}`, withJSON(op), 200)
	call("POST", "/admin/caches/edge/purge", `{}`, withJSON(op), 400)
	call("POST", "/admin/caches/nope/purge", `{"tag":"t"}`, withJSON(op), 404)

	var traces struct {
		Traces []struct {
			ID string `json:"trace_id"`
		} `json:"traces"`
	}
	_ = json.Unmarshal([]byte(call("GET", "/admin/traces?kind=all&limit=10", "", rd, 200)), &traces)
	if len(traces.Traces) > 0 {
		call("GET", "/admin/traces/"+traces.Traces[0].ID, "", rd, 200)
	}
	call("GET", "/admin/traces/"+strings.Repeat("0", 32), "", rd, 404)
	call("GET", "/admin/traces?limit=0", "", rd, 400)
	if code, _, h := do(t, "GET", checked.URL+"/admin/traces?kind=all&limit=1", nil, rd...); code != 200 {
		t.Errorf("traces page: %d", code)
	} else if next := httpx.NextLink(h.Values("Link")); next != "" {
		call("GET", next, "", rd, 200)
	}
	call("GET", "/admin/traces?cursor=bm90LW91cnM", "", rd, 400)

	call("GET", "/admin/slos", "", rd, 200)
	call("GET", "/admin/slos/api-availability", "", rd, 200)
	call("GET", "/admin/slos/nope", "", rd, 404)

	call("GET", "/admin/rollouts", "", rd, 200)
	call("GET", "/admin/rollouts/u", "", rd, 404)
	call("POST", "/admin/rollouts", `{"upstream":"u","targets":["127.0.0.1:1"],"strategy":"blue-green","steps":[5]}`, withJSON(op), 400)
	call("POST", "/admin/rollouts", `{"upstream":"u","targets":["127.0.0.1:1"]}`, withJSON(op), 201)
	call("GET", "/admin/rollouts/u", "", rd, 200)
	call("POST", "/admin/rollouts/u/pause", "", op, 200)
	call("POST", "/admin/rollouts/u/resume", "", op, 200)
	call("POST", "/admin/rollouts/u/promote", "", op, 200) // the next step
	call("GET", "/admin/rollouts", "", rd, 200)
	call("GET", "/admin/rollouts?limit=1", "", rd, 200)
	call("GET", "/admin/rollouts?limit=1001", "", rd, 400)
	call("GET", "/admin/rollouts?cursor=bm9wZQ", "", rd, 400)
	_, _, h = do(t, "GET", checked.URL+"/admin/rollouts", nil, rd...)
	call("GET", "/admin/rollouts", "", with(rd, "If-None-Match", h.Get("ETag")), 304)
	call("DELETE", "/admin/rollouts/u", "", op, 200)
	call("POST", "/admin/rollouts/u/promote", "", op, 409)

	call("PUT", "/admin/faults/api", `{"abort_status":503,"abort_percent":0}`, withJSON(op), 200)
	call("GET", "/admin/faults", "", rd, 200)
	call("PUT", "/admin/faults/api", `{"delay":"soon","delay_percent":10}`, withJSON(op), 400)
	call("PUT", "/admin/faults/nope", `{"abort_status":503,"abort_percent":0}`, withJSON(op), 404)
	call("DELETE", "/admin/faults/api", "", op, 204)

	st := c.Stats()
	t.Logf("admin contract: %d requests checked, %d refused; %d responses checked, %d violations, %d unchecked",
		st.Checked.Load(), st.Refused.Load(), st.ResponsesChecked.Load(), st.ResponseViolations.Load(), st.ResponsesUnchecked.Load())
	if st.Refused.Load() != 0 || st.ResponseViolations.Load() != 0 || st.ResponsesChecked.Load() < 40 {
		t.Errorf("contract stats: %d refused, %d violations, %d responses checked", st.Refused.Load(), st.ResponseViolations.Load(), st.ResponsesChecked.Load())
	}
}
