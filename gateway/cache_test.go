package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEdgeCacheRoute drives a cached route through the YAML config: a
// hit never reaches the upstream and carries the gateway's own request
// id, a route override gives freshness to answers without any.
func TestEdgeCacheRoute(t *testing.T) {
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/static/") {
			w.Header().Set("Cache-Control", "public, max-age=600")
		}
		w.Header().Set("Surrogate-Key", "k1")
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
caches:
  edge:
    memory: 8MiB
    max_object: 1MiB
    default_ttl: 0s
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /static/ }
    upstream: u
    cache: edge
  - match: { path_prefix: /api/ }
    upstream: u
    cache: { name: edge, default_ttl: 60s }
  - match: { path_prefix: / }
    upstream: u
`, be.addr()))
	_, body, h1 := get(t, gw.url+"/static/a.css")
	if body != "path=/static/a.css" || !strings.HasPrefix(h1.Get("Cache-Status"), "switchyard; fwd=uri-miss") {
		t.Fatalf("miss: %q %q", body, h1.Get("Cache-Status"))
	}
	code, body, h2 := get(t, gw.url+"/static/a.css")
	if code != 200 || body != "path=/static/a.css" || h2.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("hit: %d %q %q", code, body, h2.Get("Cache-Status"))
	}
	if h2.Get("X-Request-Id") == "" || h2.Get("X-Request-Id") == h1.Get("X-Request-Id") {
		t.Fatalf("the hit replayed the stored request id %q", h2.Get("X-Request-Id"))
	}
	if h2.Get("Surrogate-Key") != "" {
		t.Fatal("Surrogate-Key reached the client")
	}
	get(t, gw.url+"/api/x")
	_, _, h3 := get(t, gw.url+"/api/x")
	if h3.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("route default_ttl: %q", h3.Get("Cache-Status"))
	}
	get(t, gw.url+"/other")
	_, _, h4 := get(t, gw.url+"/other")
	if h4.Get("Cache-Status") != "" {
		t.Fatalf("uncached route: %q", h4.Get("Cache-Status"))
	}
	if n := be.requests.Load(); n != 4 {
		t.Fatalf("backend asked %d times, want 4", n)
	}
}

// TestEdgeCacheBackgroundAndStaleIfError: stale-while-revalidate
// revalidates through the gateway's handler (its own request state), and
// stale-if-error answers when the target is gone.
func TestEdgeCacheBackgroundAndStaleIfError(t *testing.T) {
	be := newBackend(t, "be")
	var version atomic.Int64
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=600, stale-if-error=600")
		if r.URL.Path == "/sie" {
			w.Header().Set("Cache-Control", "max-age=0, stale-if-error=600")
			w.Header().Set("Etag", `"1"`)
		}
		fmt.Fprintf(w, "v%d", version.Add(1))
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
caches:
  edge: { memory: 1MiB }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - upstream: u
    cache: edge
`, be.addr()))
	get(t, gw.url+"/swr")
	_, body, h := get(t, gw.url+"/swr")
	if body != "v1" || h.Get("Cache-Status") != "switchyard; hit; detail=stale-while-revalidate" {
		t.Fatalf("stale: %q %q", body, h.Get("Cache-Status"))
	}
	eventually(t, 5*time.Second, "the background revalidation", func() bool {
		_, body, _ := get(t, gw.url+"/swr")
		return body == "v2"
	})
	get(t, gw.url+"/sie")
	be.srv.Close()
	code, body, h := get(t, gw.url+"/sie")
	if code != 200 || !strings.HasPrefix(body, "v") || !strings.Contains(h.Get("Cache-Status"), "detail=stale-if-error") {
		t.Fatalf("dead upstream: %d %q %q", code, body, h.Get("Cache-Status"))
	}
}

func TestEdgeCacheConfigErrors(t *testing.T) {
	base := "listen: 127.0.0.1:0\nupstreams:\n  a:\n    targets: [{ address: 127.0.0.1:9 }]\n"
	for name, tc := range map[string]struct {
		cfg  string
		want []string
	}{
		"memory missing": {base + "caches:\n  edge: { max_object: 1MiB }\nroutes:\n  - upstream: a\n    cache: edge\n",
			[]string{"caches.edge.memory", "required"}},
		"bad size": {base + "caches:\n  edge: { memory: 12 parsecs }\nroutes:\n  - upstream: a\n",
			[]string{":6:19: caches.edge.memory", `invalid size "12 parsecs"`}},
		"unknown cache": {base + "caches:\n  edge: { memory: 1MiB }\nroutes:\n  - upstream: a\n    cache: egde\n",
			[]string{":9:5: routes[0].cache", `unknown cache "egde"`}},
		"unknown override": {base + "caches:\n  edge: { memory: 1MiB }\nroutes:\n  - upstream: a\n    cache: { name: edge, defualt_ttl: 1s }\n",
			[]string{"routes[0].cache", `unknown key "defualt_ttl"`, `did you mean "default_ttl"`}},
		"bad key element": {base + "caches:\n  edge: { memory: 1MiB, key: [host, path, header:] }\nroutes:\n  - upstream: a\n",
			[]string{"caches.edge.key[2]", "unknown key element"}},
		"bad override key": {base + "caches:\n  edge: { memory: 1MiB }\nroutes:\n  - upstream: a\n    cache: { name: edge, key: [host] }\n",
			[]string{"routes[0].cache.key", "must include path"}},
		"disk size": {base + "caches:\n  edge: { memory: 1MiB, disk: { path: /tmp/x } }\nroutes:\n  - upstream: a\n",
			[]string{"caches.edge.disk.size", "required"}},
		"disk shared": {base + "caches:\n  a: { memory: 1MiB, disk: { path: DIR, size: 1MiB } }\n  b: { memory: 1MiB, disk: { path: DIR/, size: 1MiB } }\nroutes:\n  - upstream: a\n",
			[]string{"caches.b.disk.path", `also cache "a"'s disk`}},
		"compress type": {base + "caches:\n  edge:\n    memory: 1MiB\n    compress: { gzip: true, types: [text/html, javascript] }\nroutes:\n  - upstream: a\n",
			[]string{":8:48: caches.edge.compress.types[1]", `"javascript" is not a media type`}},
		"compress nothing": {base + "caches:\n  edge:\n    memory: 1MiB\n    compress: { min_size: 1KiB }\nroutes:\n  - upstream: a\n",
			[]string{"caches.edge.compress", "enables no encoding"}},
		"compress unknown key": {base + "caches:\n  edge:\n    memory: 1MiB\n    compress: { gzip: true, brotly: true }\nroutes:\n  - upstream: a\n",
			[]string{"caches.edge.compress", "brotly"}},
		"max_object above memory": {base + "caches:\n  edge: { memory: 1MiB, max_object: 2MiB }\nroutes:\n  - upstream: a\n",
			[]string{"caches.edge.max_object", "larger than memory"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "gw.yaml")
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(tc.cfg, "DIR", filepath.Join(dir, "disk"))), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Check(path)
			if err == nil {
				t.Fatal("Check accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestEdgeCacheAdmin purges by URL, prefix and tag through the admin API,
// inspects entries and reads the cache metrics.
func TestEdgeCacheAdmin(t *testing.T) {
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600, stale-while-revalidate=600")
		w.Header().Set("Surrogate-Key", "all "+strings.Split(r.URL.Path, "/")[1])
		fmt.Fprint(w, r.URL.Path)
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
caches:
  edge: { memory: 1MiB }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - upstream: u
    cache: edge
`, be.addr()))
	host := strings.TrimPrefix(gw.url, "http://")
	for _, p := range []string{"/a/1", "/a/2", "/b/1", "/c/1"} {
		get(t, gw.url+p)
	}
	purge := func(body string) (int, string) {
		code, resp, _ := do(t, http.MethodPost, gw.admin+"/admin/caches/edge/purge", strings.NewReader(body))
		return code, resp
	}
	if code, resp := purge(`{"url": "http://` + host + `/c/1"}`); code != 200 || !strings.Contains(resp, `"purged": 1`) {
		t.Fatalf("purge url: %d %s", code, resp)
	}
	if code, resp := purge(`{"prefix": "` + host + `/a/"}`); code != 200 || !strings.Contains(resp, `"purged": 2`) {
		t.Fatalf("purge prefix: %d %s", code, resp)
	}
	if code, resp := purge(`{"tag": "b", "soft": true}`); code != 200 || !strings.Contains(resp, `"purged": 1`) {
		t.Fatalf("purge tag: %d %s", code, resp)
	}
	if code, resp := purge(`{"url": "x", "tag": "y"}`); code != 400 || !strings.Contains(resp, "exactly one") {
		t.Fatalf("bad purge: %d %s", code, resp)
	}
	if code, _, _ := do(t, http.MethodPost, gw.admin+"/admin/caches/nope/purge", strings.NewReader(`{"tag": "a"}`)); code != 404 {
		t.Fatalf("unknown cache: %d", code)
	}
	_, _, h := get(t, gw.url+"/a/1")
	if !strings.HasPrefix(h.Get("Cache-Status"), "switchyard; fwd=uri-miss") {
		t.Fatalf("after hard purge: %q", h.Get("Cache-Status"))
	}
	_, _, h = get(t, gw.url+"/b/1")
	if h.Get("Cache-Status") != "switchyard; hit; detail=stale-while-revalidate" {
		t.Fatalf("after soft purge: %q", h.Get("Cache-Status"))
	}
	code, body, _ := get(t, gw.admin+"/admin/caches/edge/entries?url=http://"+host+"/a/1")
	if code != 200 || !strings.Contains(body, `"status": 200`) || !strings.Contains(body, `"tags": [`) {
		t.Fatalf("entries: %d %s", code, body)
	}
	code, body, _ = get(t, gw.admin+"/admin/caches")
	if code != 200 || !strings.Contains(body, `"name": "edge"`) {
		t.Fatalf("caches: %d %s", code, body)
	}
	_, metrics, _ := get(t, gw.admin+"/metrics")
	for _, m := range []string{`switchyard_cache_hits_total{cache="edge"} 0`, `switchyard_cache_stale_served_total{cache="edge"} 1`, `switchyard_cache_purged_total{cache="edge"} 4`, `switchyard_cache_entries{cache="edge"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

// TestEdgeCachePush publishes an object through the admin API; the edge
// serves it without asking the upstream.
func TestEdgeCachePush(t *testing.T) {
	be := newBackend(t, "be")
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
caches:
  edge: { memory: 1MiB, max_object: 1KiB }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /nocache/ }
    upstream: u
  - upstream: u
    cache: edge
`, be.addr()))
	put := func(query, body string, hdr ...string) (int, string) {
		code, resp, _ := do(t, http.MethodPut, gw.admin+"/admin/caches/edge/objects?"+query, strings.NewReader(body), hdr...)
		return code, resp
	}
	if code, resp := put("url="+gw.url+"/press/release.html&ttl=10m", "<h1>news</h1>", "Content-Type", "text/html", "X-Ignored", "1"); code != 200 {
		t.Fatalf("push: %d %s", code, resp)
	}
	code, body, h := get(t, gw.url+"/press/release.html")
	if code != 200 || body != "<h1>news</h1>" || h.Get("Content-Type") != "text/html" || h.Get("Cache-Status") != "switchyard; hit" || h.Get("X-Ignored") != "" {
		t.Fatalf("pushed object: %d %q %v", code, body, h)
	}
	if be.requests.Load() != 0 {
		t.Fatalf("upstream asked %d times", be.requests.Load())
	}
	for _, tc := range []struct{ query, body, want string }{
		{"url=" + gw.url + "/nocache/x&ttl=1m", "x", "does not use cache"},
		{"url=" + gw.url + "/big&ttl=1m", strings.Repeat("b", 2048), "max_object"},
		{"url=" + gw.url + "/stale", "x", "not storable"},
		{"url=/relative&ttl=1m", "x", "invalid url"},
		{"url=" + gw.url + "/x&ttl=soon", "x", "invalid ttl"},
	} {
		if code, resp := put(tc.query, tc.body); code == 200 || !strings.Contains(resp, tc.want) {
			t.Errorf("%s: %d %s", tc.query, code, resp)
		}
	}
	// An unknown cache names the ones there are, without a bare "not found".
	code, resp, _ := do(t, http.MethodPut, gw.admin+"/admin/caches/cdn/objects?url="+gw.url+"/x", strings.NewReader("x"))
	if code != 404 || !strings.Contains(resp, `unknown cache \"cdn\": expected one of edge"`) {
		t.Errorf("unknown cache: %d %s", code, resp)
	}
	// A body of unknown length larger than max_object: 413, read no further.
	code, resp, _ = do(t, http.MethodPut, gw.admin+"/admin/caches/edge/objects?url="+gw.url+"/big&ttl=1m",
		io.MultiReader(strings.NewReader(strings.Repeat("b", 4096))))
	if code != 413 || !strings.Contains(resp, "max_object of 1024 bytes") {
		t.Errorf("chunked push over max_object: %d %s", code, resp)
	}
	// A declared length over max_object is refused before any body byte
	// is read: the client sends none and still gets its answer.
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.admin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "PUT /admin/caches/edge/objects?url=%s/huge&ttl=1m HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\n", gw.url)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, " 413 ") {
		t.Errorf("declared 1 GiB push: %q %v", line, err)
	}
}

// TestEdgeCacheDiskAndCompress drives the compress and disk blocks
// through the YAML config: a gzip variant for a client that accepts it,
// and the entry answered by a second gateway process over the same disk
// directory without the upstream.
func TestEdgeCacheDiskAndCompress(t *testing.T) {
	var n atomic.Int64
	be := newBackend(t, "be")
	page := strings.Repeat("body { color: red }\n", 200)
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/css")
		fmt.Fprint(w, page)
	})
	cfg := fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
caches:
  edge:
    memory: 8MiB
    disk: { path: %s, size: 64MiB }
    compress: { gzip: true, brotli: true, types: [text/css], min_size: 1KiB }
    key: [path, query]
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - { upstream: u, cache: edge }
`, filepath.Join(t.TempDir(), "cache"), be.addr())
	gw := startGateway(t, cfg)
	get(t, gw.url+"/site.css")
	_, body, h := get(t, gw.url+"/site.css", "Accept-Encoding", "gzip")
	if h.Get("Content-Encoding") != "gzip" || h.Get("Vary") != "Accept-Encoding" || len(body) >= len(page)/4 {
		t.Fatalf("gzip hit: %q %q %d bytes", h.Get("Content-Encoding"), h.Get("Vary"), len(body))
	}
	gw.cancel()
	err := <-gw.done
	gw.done <- err // for the cleanup
	gw2 := startGateway(t, cfg)
	_, body, h = get(t, gw2.url+"/site.css", "Accept-Encoding", "br")
	if h.Get("Cache-Status") != "switchyard; hit" || h.Get("Content-Encoding") != "br" || n.Load() != 1 {
		t.Fatalf("after restart: %q %q, upstream asked %d times", h.Get("Cache-Status"), h.Get("Content-Encoding"), n.Load())
	}
	_, body, _ = get(t, gw2.url+"/site.css")
	if body != page {
		t.Fatalf("identity after restart: %d bytes", len(body))
	}
}

// TestEdgeCachePoisoningThroughTheGateway: the attacker's request comes
// first and carries the headers origin frameworks read as the host,
// scheme, URL or method, an absolute-form target and a body; the answer
// the victim then gets from the cache holds none of it.
func TestEdgeCachePoisoningThroughTheGateway(t *testing.T) {
	be := newBackend(t, "be")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=600")
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "host=%s xfh=%s xfs=%s xou=%s xmo=%s query=%s body=%s",
			r.Host, r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Scheme"),
			r.Header.Get("X-Original-Url"), r.Header.Get("X-Http-Method-Override"), r.URL.RawQuery, b)
	})
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
caches:
  edge: { memory: 8MiB }
upstreams:
  u: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: /q/ }
    upstream: u
    cache: { name: edge, key: [host, path, "query:id"] }
  - match: { path_prefix: / }
    upstream: u
    cache: edge
`, be.addr()))
	const clean = "host=www.example.com xfh=www.example.com xfs= xou= xmo= query= body="
	_, attacked, _ := get(t, gw.url+"/page", "Host", "www.example.com", "X-Forwarded-Host", "evil.example",
		"X-Forwarded-Scheme", "nothttps", "X-Original-URL", "/admin", "X-HTTP-Method-Override", "DELETE")
	if attacked != clean {
		t.Fatalf("the origin saw the attacker's headers: %q", attacked)
	}
	_, victim, h := get(t, gw.url+"/page", "Host", "WWW.EXAMPLE.COM")
	if victim != clean || h.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("victim: %q %q", victim, h.Get("Cache-Status"))
	}
	// Unkeyed query parameters never reach the origin on a keyed route.
	_, q, _ := get(t, gw.url+"/q/list?id=7&callback=evil", "Host", "www.example.com")
	if !strings.Contains(q, " query=id=7 ") {
		t.Fatalf("query: %q", q)
	}
	// A fat GET is passed on, not stored.
	code, fat, fh := do(t, http.MethodGet, gw.url+"/fat", strings.NewReader("evil"), "Host", "www.example.com")
	if code != 200 || !strings.HasSuffix(fat, "body=evil") || strings.Contains(fh.Get("Cache-Status"), "stored") {
		t.Fatalf("fat GET: %d %q %q", code, fat, fh.Get("Cache-Status"))
	}
	if _, b, _ := get(t, gw.url+"/fat", "Host", "www.example.com"); !strings.HasSuffix(b, "body=") {
		t.Fatalf("after a fat GET: %q", b)
	}
	// An absolute-form target naming another authority than Host is
	// refused; one naming the same is the same key.
	code, _, _ = rawExchange(t, gw.url, "GET http://evil.example/page HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n", false)
	if code != http.StatusBadRequest {
		t.Fatalf("absolute-form with another authority: %d", code)
	}
	code, b, rh := rawExchange(t, gw.url, "GET http://www.example.com/page HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n", false)
	if code != 200 || b != clean || rh.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("absolute-form, same authority: %d %q %q", code, b, rh.Get("Cache-Status"))
	}
}

// TestEdgeCacheTieredCDN is the three-node CDN of docs/edge.md: two
// edges whose upstream is a shield (itself a cached gateway) in front of
// the origin. The second edge's miss is a shield hit, so the origin is
// asked once; Cache-Status lists the shield's member first.
func TestEdgeCacheTieredCDN(t *testing.T) {
	be := newBackend(t, "origin")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Surrogate-Key", "static")
		fmt.Fprintf(w, "origin answer for %s%s", r.Host, r.URL.Path)
	})
	node := func(name, upstream string) *running {
		return startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
caches:
  %s: { memory: 8MiB }
upstreams:
  up: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: / }
    upstream: up
    cache: %s
`, name, upstream, name))
	}
	shield := node("shield", be.addr())
	edgeA := node("edge-a", strings.TrimPrefix(shield.url, "http://"))
	edgeB := node("edge-b", strings.TrimPrefix(shield.url, "http://"))
	const want = "origin answer for www.example.com/static/app.css"
	_, b, h := get(t, edgeA.url+"/static/app.css", "Host", "www.example.com")
	if b != want || strings.Join(h.Values("Cache-Status"), " | ") != "switchyard; fwd=uri-miss; fwd-status=200; stored | switchyard; fwd=uri-miss; fwd-status=200; stored" {
		t.Fatalf("edge-a miss: %q %q", b, h.Values("Cache-Status"))
	}
	_, b, h = get(t, edgeB.url+"/static/app.css", "Host", "www.example.com")
	if b != want || strings.Join(h.Values("Cache-Status"), " | ") != "switchyard; hit | switchyard; fwd=uri-miss; fwd-status=200; stored" {
		t.Fatalf("edge-b miss, shield hit: %q %q", b, h.Values("Cache-Status"))
	}
	_, b, h = get(t, edgeA.url+"/static/app.css", "Host", "www.example.com")
	if b != want || strings.Join(h.Values("Cache-Status"), " | ") != "switchyard; hit" {
		t.Fatalf("edge-a hit: %q %q", b, h.Values("Cache-Status"))
	}
	if n := be.requests.Load(); n != 1 {
		t.Fatalf("origin asked %d times, want 1", n)
	}
	if h.Get("Surrogate-Key") != "" {
		t.Fatal("Surrogate-Key reached the client through two tiers")
	}
}

// TestEdgeCacheShieldForwardsTags: a shield with forward_tags passes the
// origin's purge tags on to the edges (on its fill and on its hits), so a
// tag purge at the edges empties them too; the edges, which do not
// forward, never show the tags to a client.
func TestEdgeCacheShieldForwardsTags(t *testing.T) {
	be := newBackend(t, "origin")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Surrogate-Key", "static css")
		fmt.Fprintf(w, "origin answer for %s", r.URL.Path)
	})
	node := func(name, upstream, extra string) *running {
		return startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
caches:
  %s: { memory: 8MiB%s }
upstreams:
  up: { targets: [{address: %s}] }
routes:
  - match: { path_prefix: / }
    upstream: up
    cache: %s
`, name, extra, upstream, name))
	}
	shield := node("shield", be.addr(), ", forward_tags: true")
	edgeA := node("edge-a", strings.TrimPrefix(shield.url, "http://"), "")
	edgeB := node("edge-b", strings.TrimPrefix(shield.url, "http://"), "")
	// The shield's own answers carry the tags (fill, then hit).
	_, _, h := get(t, shield.url+"/direct")
	if got := h.Get("Surrogate-Key"); got != "static css" {
		t.Fatalf("shield fill forwarded Surrogate-Key %q, want %q", got, "static css")
	}
	_, _, h = get(t, shield.url+"/direct")
	if got := h.Get("Surrogate-Key"); got != "static css" || !strings.Contains(h.Get("Cache-Status"), "hit") {
		t.Fatalf("shield hit: Surrogate-Key %q, Cache-Status %q", got, h.Get("Cache-Status"))
	}
	// edge-a fills through a shield miss, edge-b through a shield hit.
	for _, e := range []*running{edgeA, edgeB} {
		_, b, h := get(t, e.url+"/static/app.css", "Host", "www.example.com")
		if b != "origin answer for /static/app.css" || h.Get("Surrogate-Key") != "" || h.Get("Cache-Tag") != "" {
			t.Fatalf("edge answer %q, tags reached the client: %q %q", b, h.Get("Surrogate-Key"), h.Get("Cache-Tag"))
		}
	}
	for _, e := range []*running{edgeA, edgeB} {
		code, resp, _ := do(t, http.MethodPost, e.admin+"/admin/caches/"+map[*running]string{edgeA: "edge-a", edgeB: "edge-b"}[e]+"/purge", strings.NewReader(`{"tag": "css"}`))
		if code != 200 || !strings.Contains(resp, `"purged": 1`) {
			t.Fatalf("edge tag purge: %d %s (the edge did not learn the shield's tags)", code, resp)
		}
		_, _, h := get(t, e.url+"/static/app.css", "Host", "www.example.com")
		if cs := strings.Join(h.Values("Cache-Status"), " | "); !strings.HasPrefix(cs, "switchyard; hit | switchyard; fwd=uri-miss") {
			t.Fatalf("after the edge's purge: Cache-Status %q, want a shield hit and an edge miss", cs)
		}
	}
	if n := be.requests.Load(); n != 2 {
		t.Fatalf("origin asked %d times, want 2 (/direct and /static/app.css)", n)
	}
}
