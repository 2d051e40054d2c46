package gateway

import (
	"fmt"
	"testing"
)

// TestVersionsBFFAndStrangler covers the API-gateway routing features of
// the config: versioned APIs (path and Accept-Version header) with
// deprecation headers, backends for frontends by client type, and a
// strangler-fig split by path and by percentage.
func TestVersionsBFFAndStrangler(t *testing.T) {
	v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
	mobile, web := newBackend(t, "mobile"), newBackend(t, "web")
	legacy, modern := newBackend(t, "legacy"), newBackend(t, "modern")
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  v1: { targets: [{address: %s}] }
  v2: { targets: [{address: %s}] }
  mobile: { targets: [{address: %s}] }
  web: { targets: [{address: %s}] }
  legacy: { targets: [{address: %s}] }
  modern: { targets: [{address: %s}] }
  half: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /v2 }
    upstream: v2
  - match: { path_prefix: /api, headers: { Accept-Version: v2 } }
    upstream: v2
  - match: { path_prefix: /v1 }
    upstream: v1
    deprecated: { since: "2026-01-01T00:00:00Z", sunset: "2027-01-31T00:00:00Z", link: "https://example.com/migrate" }
  - match: { path_prefix: /api }
    upstream: v1
    deprecated: {}
  - match: { path_prefix: /bff, client: mobile }
    upstream: mobile
  - match: { path_prefix: /bff }
    upstream: web
  - match: { path_prefix: /shop }
    upstream: legacy
    split: { upstream: modern, paths: [/shop/search] }
  - match: { path_prefix: /half }
    upstream: legacy
    split: { upstream: half, percent: 50 }
`, v1.addr(), v2.addr(), mobile.addr(), web.addr(), legacy.addr(), modern.addr(), newBackend(t, "half").addr()))

	t.Run("versions", func(t *testing.T) {
		_, body, h := get(t, gw.url+"/v1/rides")
		if body != "v1" || h.Get("Deprecation") != "@1767225600" || h.Get("Sunset") != "Sun, 31 Jan 2027 00:00:00 GMT" ||
			h.Get("Link") != `<https://example.com/migrate>; rel="deprecation"` {
			t.Fatalf("v1: body %q, headers %v", body, h)
		}
		if _, body, h := get(t, gw.url+"/v2/rides"); body != "v2" || h.Get("Deprecation") != "" {
			t.Fatalf("v2: body %q deprecation %q", body, h.Get("Deprecation"))
		}
		if _, body, _ := get(t, gw.url+"/api/rides", "Accept-Version", "v2"); body != "v2" {
			t.Fatalf("Accept-Version v2 went to %q", body)
		}
		if _, body, h := get(t, gw.url+"/api/rides"); body != "v1" || h.Get("Deprecation") != "true" {
			t.Fatalf("unversioned: %q %q", body, h.Get("Deprecation"))
		}
	})
	t.Run("backends for frontends", func(t *testing.T) {
		if _, body, _ := get(t, gw.url+"/bff/home", "User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"); body != "mobile" {
			t.Fatalf("iPhone went to %q", body)
		}
		if _, body, _ := get(t, gw.url+"/bff/home", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120"); body != "web" {
			t.Fatalf("desktop went to %q", body)
		}
		if _, body, _ := get(t, gw.url+"/bff/home", "X-Client-Type", "mobile"); body != "mobile" {
			t.Fatalf("X-Client-Type: mobile went to %q", body)
		}
	})
	t.Run("strangler fig", func(t *testing.T) {
		if _, body, _ := get(t, gw.url+"/shop/search?q=x"); body != "modern" {
			t.Fatalf("migrated path went to %q", body)
		}
		if _, body, _ := get(t, gw.url+"/shop/cart"); body != "legacy" {
			t.Fatalf("legacy path went to %q", body)
		}
		hits := map[string]int{}
		for i := 0; i < 400; i++ {
			_, body, _ := get(t, gw.url+"/half/x")
			hits[body]++
		}
		// 50% of 400: binomial sd = 10, so [140, 260] is 6 sd wide.
		if hits["half"] < 140 || hits["half"] > 260 || hits["half"]+hits["legacy"] != 400 {
			t.Fatalf("50%% split gave %v", hits)
		}
	})
}
