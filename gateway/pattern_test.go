package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A path_pattern route before a path_prefix route: receipts go to views,
// the rest of /v1/rides to rides (Hitch's table).
func TestPathPatternRoutes(t *testing.T) {
	views, rides := newBackend(t, "views"), newBackend(t, "rides")
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
upstreams:
  views: { targets: [{address: %s}] }
  rides: { targets: [{address: %s}] }
routes:
  - { name: receipt, match: { path_pattern: /v1/rides/*/receipt, methods: [GET] }, upstream: views }
  - { name: rides, match: { path_prefix: /v1/rides }, upstream: rides }
`, views.addr(), rides.addr()))
	for path, want := range map[string]string{
		"/v1/rides/42/receipt":  "views",
		"/v1/rides/42":          "rides",
		"/v1/rides/42/receipt/": "rides",
		"/v1/rides//receipt":    "rides",
		"/v1/rides/4/2/receipt": "rides",
	} {
		if code, body, _ := get(t, gw.url+path); code != 200 || body != want {
			t.Errorf("%s: %d %q, want %s", path, code, body, want)
		}
	}
	_, body, _ := get(t, gw.admin+"/admin/routes")
	if !strings.Contains(body, `"path_pattern": "/v1/rides/*/receipt"`) {
		t.Errorf("admin routes lack the pattern: %s", body)
	}
}

func TestPathPatternConfigErrors(t *testing.T) {
	for _, tc := range []struct{ routes, want string }{
		{`- { match: { path_pattern: "v1/*" }, upstream: u }`, "routes[0].match.path_pattern"},
		{`- { match: { path_pattern: "/v1/*/" }, upstream: u }`, "segment 3 is empty"},
		{`- { match: { path_pattern: "/v1/a*" }, upstream: u }`, "whole segment"},
		{`- { match: { path_pattern: "/v1/*", path_prefix: /v1 }, upstream: u }`, "exclusive"},
		// The first match wins: a broader route first hides the pattern.
		{"- { match: { path_prefix: /v1/rides }, upstream: u }\n  - { name: receipt, match: { path_pattern: /v1/rides/*/receipt }, upstream: u }",
			`routes[1].match: never reached: routes[0] ("route0")`},
		{"- { match: { path_pattern: /v1/*/x }, upstream: u }\n  - { match: { path: /v1/a/x, methods: [GET] }, upstream: u }",
			"routes[1].match: never reached"},
		{"- { match: { path: /a, methods: [GET] }, upstream: u }\n  - { match: { path: /a, methods: [GET] }, upstream: u }",
			"routes[1].match: never reached"},
	} {
		_, err := ParseConfig([]byte("listen: 127.0.0.1:0\nupstreams:\n  u: { targets: [{address: 127.0.0.1:1}] }\nroutes:\n  "+tc.routes+"\n"), "g.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.routes, err, tc.want)
		}
	}
	// Narrower first is fine, and a method split is not shadowing.
	for _, ok := range []string{
		"- { match: { path_pattern: /v1/rides/*/receipt }, upstream: u }\n  - { match: { path_prefix: /v1/rides }, upstream: u }",
		"- { match: { path: /a, methods: [GET] }, upstream: u }\n  - { match: { path: /a }, upstream: u }",
	} {
		if _, err := ParseConfig([]byte("listen: 127.0.0.1:0\nupstreams:\n  u: { targets: [{address: 127.0.0.1:1}] }\nroutes:\n  "+ok+"\n"), "g.yaml"); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// A program's admin extension is served beside the admin API; patterns
// outside /admin/ or over the API's own paths are refused.
func TestAdminExtensions(t *testing.T) {
	cfg := func() *Config {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: \"off\"\nupstreams:\n  u: { targets: [{address: 127.0.0.1:1}] }\nroutes:\n  - { upstream: u }\n"), "g.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	for pattern, want := range map[string]string{
		"GET /metrics":        "under /admin/",
		"GET /admin/status":   "serves /admin/status itself",
		"GET /admin/routes":   "itself",
		"GET /admin/{x}/y":    "fixed path",
		"BAD METHOD /admin/x": "admin extension",
	} {
		_, err := New(Options{Config: cfg(), AdminExtensions: map[string]http.Handler{pattern: hello}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", pattern, err, want)
		}
	}
	g, err := New(Options{Config: cfg(), AdminExtensions: map[string]http.Handler{"GET /admin/prog/things": hello}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	base := "http://" + g.AdminAddr().String()
	if code, body, _ := get(t, base+"/admin/prog/things"); code != 200 || body != "hello" {
		t.Fatalf("extension: %d %q", code, body)
	}
	if code, body, _ := get(t, base+"/admin/routes"); code != 200 || !strings.Contains(body, "route0") {
		t.Fatalf("admin API beside it: %d %q", code, body)
	}
	if code, _, _ := get(t, base+"/admin/nothing"); code != 404 {
		t.Fatalf("unknown admin path: %d", code)
	}
}
