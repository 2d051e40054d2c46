package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/hitch/web"
)

func TestCachingHeaders(t *testing.T) {
	h, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, page := get("/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		resp.Header.Get("Cache-Control") != "public, no-cache" || resp.Header.Get("ETag") == "" {
		t.Fatalf("/: %d %v", resp.StatusCode, resp.Header)
	}
	if r2, body := get("/", "If-None-Match", resp.Header.Get("ETag")); r2.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("revalidation: %d %q, want 304 and no body", r2.StatusCode, body)
	}
	// The page names its assets by content hash; those never change.
	assets := regexp.MustCompile(`"(/assets/app\.[0-9a-f]{12}\.(?:js|css))"`).FindAllStringSubmatch(page, -1)
	if len(assets) != 2 {
		t.Fatalf("page references %v, want the hashed app.js and app.css", assets)
	}
	for _, a := range assets {
		r, body := get(a[1])
		if r.StatusCode != 200 || r.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || len(body) < 100 {
			t.Errorf("%s: %d %v (%d bytes)", a[1], r.StatusCode, r.Header, len(body))
		}
		plain := regexp.MustCompile(`\.[0-9a-f]{12}\.`).ReplaceAllString(a[1], ".")
		if r, _ := get(plain); r.StatusCode != 200 || r.Header.Get("Cache-Control") != "public, no-cache" {
			t.Errorf("%s: %d %v", plain, r.StatusCode, r.Header)
		}
	}
	for _, p := range []string{"/assets/nope.js", "/v1/rides", "/../web.go", "/assets/../index.html"} {
		if r, _ := get(p); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}
	resp2, err := http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", resp2.StatusCode)
	}
	// Nothing from another origin: no absolute URL in what the page loads.
	for _, p := range h.Paths() {
		_, body := get(p)
		if m := regexp.MustCompile(`(?:src|href)=["']?(?:https?:)?//`).FindString(body); m != "" {
			t.Errorf("%s loads from another origin: %s", p, m)
		}
	}
}
