package registry

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/httpx/listtest"
)

// TestServicesListPages: GET /v1/services comes in cursor pages by name
// with Link rel="next" and an ETag (304 on If-None-Match), refuses
// hostile limits and cursors with 400, and a page's ETag changes when
// one of its services changes.
func TestServicesListPages(t *testing.T) {
	_, srv := serve(t)
	var want []string
	for _, s := range []string{"alpha", "beta", "delta", "gamma", "rides"} {
		if code, body := call(t, "PUT", srv.URL+"/v1/services/"+s+"/instances/a", `{"address":"127.0.0.1:9000","ttl":"30s"}`); code != 200 {
			t.Fatalf("register %s: %d %s", s, code, body)
		}
		want = append(want, s)
	}
	names := func(t *testing.T, body []byte) []string {
		var ans struct {
			Services []ServiceInfo `json:"services"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || ans.Services == nil {
			t.Fatalf("body %s: %v (want {\"services\": [...]})", body, err)
		}
		var out []string
		for _, s := range ans.Services {
			out = append(out, s.Name)
		}
		return out
	}
	l := listtest.List{Base: srv.URL, Path: "/v1/services", Names: names, Want: want}
	listtest.Check(t, l)

	// A change to a service on the page changes its ETag: a client that
	// holds the old one reads the new page.
	resp, _ := l.Get(t, "/v1/services?limit=2", nil)
	etag := resp.Header.Get("ETag")
	if code, body := call(t, "PUT", srv.URL+"/v1/services/beta/instances/b", `{"address":"127.0.0.1:9001","ttl":"30s"}`); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	resp, body := l.Get(t, "/v1/services?limit=2", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Fatalf("after a change: %d ETag %s (was %s) %s", resp.StatusCode, resp.Header.Get("ETag"), etag, body)
	}
	// The registry's error body names the parameter.
	resp, body = l.Get(t, "/v1/services?limit=1001", nil)
	if resp.StatusCode != 400 || !json.Valid(body) {
		t.Fatalf("limit above the maximum: %d %s", resp.StatusCode, body)
	}
	var e struct{ Error, Code string }
	json.Unmarshal(body, &e)
	if e.Code != "invalid" || e.Error != fmt.Sprintf(`query parameter limit "1001": expected a whole number from 1 to %d`, ListMax) {
		t.Fatalf("error body %s", body)
	}
}
