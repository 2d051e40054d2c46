package edge

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// origin is an HTTP server on 127.0.0.1 the test controls.
type origin struct {
	srv *httptest.Server
	n   atomic.Int64
	h   atomic.Pointer[http.HandlerFunc]
}

func newOrigin(t *testing.T, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.h.Store(&h)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.n.Add(1)
		(*o.h.Load())(w, r)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) set(h http.HandlerFunc) { o.h.Store(&h) }

// front is the cache in front of the origin, itself on 127.0.0.1.
type front struct {
	c   *Cache
	srv *httptest.Server
}

func newFront(t *testing.T, o *origin, pol Policy, mem, maxObject int64) *front {
	t.Helper()
	u, _ := url.Parse(o.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	c, err := New(NewStore(mem, maxObject), pol, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(c.Middleware()(rp))
	t.Cleanup(srv.Close)
	return &front{c: c, srv: srv}
}

func (f *front) do(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func (f *front) get(t *testing.T, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return f.do(t, http.MethodGet, path, hdr...)
}

func wantStatus(t *testing.T, resp *http.Response, prefix string) {
	t.Helper()
	if got := strings.Join(resp.Header["Cache-Status"], ", "); !strings.HasPrefix(got, prefix) {
		t.Fatalf("Cache-Status = %q, want prefix %q", got, prefix)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

const mib = 1 << 20

var noRedirect = &http.Client{Transport: &http.Transport{DisableCompression: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// RFC 9111 section 4.2.3: a hit carries Age, from the origin's Age plus
// the time in the cache; the origin is asked once.
func TestHitAndAge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Age", "100")
		fmt.Fprint(w, "hello")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	resp, body := f.get(t, "/a")
	wantStatus(t, resp, "switchyard; fwd=uri-miss; fwd-status=200; stored")
	if body != "hello" {
		t.Fatalf("body %q", body)
	}
	resp, body = f.get(t, "/a")
	wantStatus(t, resp, "switchyard; hit")
	if body != "hello" || resp.Header.Get("Age") < "100" || len(resp.Header.Get("Age")) != 3 {
		t.Fatalf("body %q Age %q", body, resp.Header.Get("Age"))
	}
	if o.n.Load() != 1 {
		t.Fatalf("origin asked %d times", o.n.Load())
	}
	if s := f.c.Store().Stats(); s.Hits != 1 || s.Misses != 1 || s.Entries != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// RFC 9111 section 3: what a shared cache may store.
func TestStorability(t *testing.T) {
	cases := []struct {
		name   string
		method string
		reqHdr []string
		status int
		hdr    map[string]string
		stored bool
	}{
		{"max-age", "GET", nil, 200, map[string]string{"Cache-Control": "max-age=60"}, true},
		{"no-store", "GET", nil, 200, map[string]string{"Cache-Control": "max-age=60, no-store"}, false},
		{"private", "GET", nil, 200, map[string]string{"Cache-Control": "private, max-age=60"}, false},
		{"authorization", "GET", []string{"Authorization", "Bearer x"}, 200, map[string]string{"Cache-Control": "max-age=60"}, false},
		{"authorization public", "GET", []string{"Authorization", "Bearer x"}, 200, map[string]string{"Cache-Control": "public, max-age=60"}, true},
		{"authorization s-maxage", "GET", []string{"Authorization", "Bearer x"}, 200, map[string]string{"Cache-Control": "s-maxage=60"}, true},
		{"set-cookie", "GET", nil, 200, map[string]string{"Cache-Control": "max-age=60", "Set-Cookie": "a=b"}, false},
		{"vary star", "GET", nil, 200, map[string]string{"Cache-Control": "max-age=60", "Vary": "*"}, false},
		{"no freshness", "GET", nil, 200, map[string]string{}, false},
		{"heuristic", "GET", nil, 200, map[string]string{"Last-Modified": time.Now().Add(-100 * time.Hour).UTC().Format(http.TimeFormat)}, true},
		{"404 with max-age", "GET", nil, 404, map[string]string{"Cache-Control": "max-age=60"}, true},
		{"302 without freshness", "GET", nil, 302, map[string]string{"Location": "/x"}, false},
		{"public 302", "GET", nil, 302, map[string]string{"Location": "/x", "Cache-Control": "public", "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, true},
		{"expires", "GET", nil, 200, map[string]string{"Expires": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, true},
		{"cdn-cache-control overrides", "GET", nil, 200, map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=60"}, true},
		{"cdn-cache-control no-store", "GET", nil, 200, map[string]string{"Cache-Control": "max-age=60", "CDN-Cache-Control": "no-store"}, false},
		{"surrogate-control", "GET", nil, 200, map[string]string{"Cache-Control": "private", "Surrogate-Control": "max-age=60"}, true},
		{"partial", "GET", nil, 206, map[string]string{"Cache-Control": "max-age=60"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.hdr {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, "x")
			})
			f := newFront(t, o, Policy{}, mib, 0)
			resp, _ := f.do(t, tc.method, "/s", tc.reqHdr...)
			for _, k := range []string{"Cdn-Cache-Control", "Surrogate-Control"} {
				if resp.Header.Get(k) != "" {
					t.Errorf("%s reached the client", k)
				}
			}
			f.do(t, tc.method, "/s", tc.reqHdr...)
			if got := o.n.Load() == 1; got != tc.stored {
				t.Fatalf("stored = %v, want %v (origin asked %d times)", got, tc.stored, o.n.Load())
			}
		})
	}
}

// RFC 9111 section 4.2.1: s-maxage beats max-age beats Expires.
func TestFreshnessPrecedence(t *testing.T) {
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	cases := []struct {
		name  string
		hdr   map[string]string
		fresh bool
	}{
		{"s-maxage over max-age", map[string]string{"Cache-Control": "s-maxage=0, max-age=600", "Etag": `"1"`}, false},
		{"max-age over expires", map[string]string{"Cache-Control": "max-age=600", "Expires": past}, true},
		{"max-age=0 over expires", map[string]string{"Cache-Control": "max-age=0", "Expires": future, "Etag": `"1"`}, false},
		{"expires", map[string]string{"Expires": future}, true},
		{"invalid expires is stale", map[string]string{"Expires": "0", "Etag": `"1"`}, false},
		{"conflicting max-age is stale", map[string]string{"Cache-Control": "max-age=600, max-age=700", "Etag": `"1"`}, false},
		{"default ttl only without explicit", map[string]string{"Cache-Control": "max-age=0", "Etag": `"1"`}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.hdr {
					w.Header().Set(k, v)
				}
				fmt.Fprint(w, "x")
			})
			f := newFront(t, o, Policy{DefaultTTL: time.Hour}, mib, 0)
			f.get(t, "/p")
			resp, _ := f.get(t, "/p")
			if got := strings.HasPrefix(resp.Header.Get("Cache-Status"), "switchyard; hit"); got != tc.fresh {
				t.Fatalf("fresh = %v, want %v (%q)", got, tc.fresh, resp.Header.Get("Cache-Status"))
			}
		})
	}
}

// RFC 9111 sections 4.3.1 and 4.3.4: a stale entry is validated with
// its ETag and Last-Modified; a 304 updates the stored headers.
func TestValidation304UpdatesHeaders(t *testing.T) {
	lm := "Mon, 01 Jan 2024 00:00:00 GMT"
	var gotINM, gotIMS atomic.Value
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		gotINM.Store(r.Header.Get("If-None-Match"))
		gotIMS.Store(r.Header.Get("If-Modified-Since"))
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Last-Modified", lm)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("X-Version", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("X-Version", "1")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "body-v1")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/v")
	resp, body := f.get(t, "/v")
	wantStatus(t, resp, "switchyard; fwd=stale; fwd-status=304")
	if body != "body-v1" || resp.StatusCode != 200 || resp.Header.Get("X-Version") != "2" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("after 304: %d %q X-Version=%q CT=%q", resp.StatusCode, body, resp.Header.Get("X-Version"), resp.Header.Get("Content-Type"))
	}
	if gotINM.Load() != `"v1"` || gotIMS.Load() != lm {
		t.Fatalf("validators sent: %q %q", gotINM.Load(), gotIMS.Load())
	}
	resp, body = f.get(t, "/v")
	wantStatus(t, resp, "switchyard; hit")
	if body != "body-v1" || resp.Header.Get("X-Version") != "2" || o.n.Load() != 2 {
		t.Fatalf("hit after 304: %q X-Version=%q origin=%d", body, resp.Header.Get("X-Version"), o.n.Load())
	}
	// The client's own validator is answered by the cache.
	resp, body = f.get(t, "/v", "If-None-Match", `"v1"`)
	if resp.StatusCode != http.StatusNotModified || body != "" || o.n.Load() != 2 {
		t.Fatalf("client conditional: %d %q", resp.StatusCode, body)
	}
}

// RFC 9111 section 4.1: Vary selects among stored variants.
func TestVary(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "lang="+r.Header.Get("Accept-Language"))
	})
	f := newFront(t, o, Policy{}, mib, 0)
	resp, _ := f.get(t, "/v", "Accept-Language", "en")
	wantStatus(t, resp, "switchyard; fwd=uri-miss")
	resp, _ = f.get(t, "/v", "Accept-Language", "fr")
	wantStatus(t, resp, "switchyard; fwd=vary-miss")
	for _, lang := range []string{"en", "fr", " fr "} {
		resp, body := f.get(t, "/v", "Accept-Language", lang)
		wantStatus(t, resp, "switchyard; hit")
		if body != "lang="+strings.TrimSpace(lang) {
			t.Fatalf("lang %q got %q", lang, body)
		}
	}
	if o.n.Load() != 2 {
		t.Fatalf("origin asked %d times", o.n.Load())
	}
}

// Unkeyed request headers never change the stored response.
func TestUnkeyedHeadersDoNotPoison(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "host="+r.Header.Get("X-Forwarded-Host")+" v="+r.Header.Get("X-Api-Version"))
	})
	f := newFront(t, o, Policy{Key: []string{"host", "path", "query", "header:X-Api-Version"}}, mib, 0)
	_, b1 := f.get(t, "/k")
	_, b2 := f.get(t, "/k", "X-Forwarded-Host", "evil.example")
	if b1 != b2 || strings.Contains(b2, "evil") {
		t.Fatalf("unkeyed header changed the response: %q then %q", b1, b2)
	}
	_, b3 := f.get(t, "/k", "X-Api-Version", "2")
	if b3 != "host= v=2" {
		t.Fatalf("keyed header: %q", b3)
	}
	if o.n.Load() != 2 {
		t.Fatalf("origin asked %d times", o.n.Load())
	}
}

// RFC 9111 section 4.4: an unsafe method invalidates the target URI and
// same-origin Location / Content-Location.
func TestInvalidationByUnsafeMethod(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/other")
			w.Header().Set("Content-Location", "http://elsewhere.example/third")
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, r.URL.Path)
	})
	f := newFront(t, o, Policy{}, mib, 0)
	for _, p := range []string{"/items", "/other", "/third"} {
		f.get(t, p)
	}
	f.do(t, http.MethodPost, "/items")
	resp, _ := f.get(t, "/items")
	wantStatus(t, resp, "switchyard; fwd=uri-miss")
	resp, _ = f.get(t, "/other")
	wantStatus(t, resp, "switchyard; fwd=uri-miss")
	resp, _ = f.get(t, "/third") // another origin's Content-Location: kept
	wantStatus(t, resp, "switchyard; hit")
	// An error answer invalidates nothing.
	o.set(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
	})
	f.do(t, http.MethodDelete, "/items")
	resp, _ = f.get(t, "/items")
	wantStatus(t, resp, "switchyard; hit")
}

// RFC 9110 section 9.3.2 / RFC 9111 section 4: HEAD from a stored GET.
func TestHeadFromStoredGet(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "0123456789")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/h")
	resp, body := f.do(t, http.MethodHead, "/h")
	wantStatus(t, resp, "switchyard; hit")
	if body != "" || resp.ContentLength != 10 || o.n.Load() != 1 {
		t.Fatalf("HEAD: body %q length %d origin %d", body, resp.ContentLength, o.n.Load())
	}
}

// RFC 9111 section 5.2.1: request directives.
func TestRequestDirectives(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Age", "50")
		fmt.Fprint(w, "x")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	resp, _ := f.get(t, "/r", "Cache-Control", "only-if-cached")
	if resp.StatusCode != http.StatusGatewayTimeout || o.n.Load() != 0 {
		t.Fatalf("only-if-cached on a miss: %d, origin %d", resp.StatusCode, o.n.Load())
	}
	f.get(t, "/r")
	steps := []struct {
		cc      string
		forward bool
	}{
		{"max-age=10", true},    // age 50 > 10
		{"max-age=1000", false}, // acceptable
		{"min-fresh=80", true},  // 50 s left < 80
		{"min-fresh=10", false},
		{"no-cache", true},
		{"only-if-cached", false},
	}
	for _, s := range steps {
		before := o.n.Load()
		resp, _ := f.get(t, "/r", "Cache-Control", s.cc)
		if got := o.n.Load() > before; got != s.forward {
			t.Fatalf("%s: forwarded = %v (%q)", s.cc, got, resp.Header.Get("Cache-Status"))
		}
	}
	before := o.n.Load()
	f.get(t, "/r", "Pragma", "no-cache")
	if o.n.Load() == before {
		t.Fatal("Pragma: no-cache was not forwarded")
	}
}

// max-stale lets a client take a stale answer unless the origin forbids it.
func TestMaxStale(t *testing.T) {
	for _, tc := range []struct {
		cc    string
		stale bool
	}{{"max-age=0", true}, {"max-age=0, must-revalidate", false}, {"s-maxage=0", false}} {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", tc.cc)
			w.Header().Set("Etag", `"e"`)
			fmt.Fprint(w, "x")
		})
		f := newFront(t, o, Policy{}, mib, 0)
		f.get(t, "/m")
		resp, _ := f.get(t, "/m", "Cache-Control", "max-stale=60")
		if got := o.n.Load() == 1; got != tc.stale {
			t.Fatalf("%s: served stale = %v (%q)", tc.cc, got, resp.Header.Get("Cache-Status"))
		}
	}
}

// RFC 5861 section 3: stale-while-revalidate serves the stale entry at
// once and revalidates once in the background, even with a slow origin.
func TestStaleWhileRevalidateSlowOrigin(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=600")
			fmt.Fprint(w, "v1")
			return
		}
		<-release // slow origin
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "v2")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/swr")
	for range 5 { // served stale while the origin hangs; one revalidation
		resp, body := f.get(t, "/swr")
		wantStatus(t, resp, "switchyard; hit; detail=stale-while-revalidate")
		if body != "v1" {
			t.Fatalf("body %q", body)
		}
	}
	eventually(t, "the background revalidation to reach the origin", func() bool { return o.n.Load() == 2 })
	close(release)
	eventually(t, "the revalidated entry", func() bool {
		resp, body := f.get(t, "/swr")
		return body == "v2" && resp.Header.Get("Cache-Status") == "switchyard; hit"
	})
	if n := o.n.Load(); n != 2 {
		t.Fatalf("origin asked %d times, want 2", n)
	}
}

// RFC 5861 section 4: stale-if-error serves the stale entry when the
// origin fails or is gone.
func TestStaleIfErrorDeadOrigin(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0, stale-if-error=600")
		w.Header().Set("Etag", `"1"`)
		fmt.Fprint(w, "good")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/sie")
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "down")
	})
	resp, body := f.get(t, "/sie")
	wantStatus(t, resp, "switchyard; fwd=stale; fwd-status=503; detail=stale-if-error")
	if body != "good" || resp.StatusCode != 200 || resp.Header.Get("Content-Type") == "text/html" {
		t.Fatalf("5xx: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	o.srv.Close() // dead origin: the reverse proxy answers 502
	resp, body = f.get(t, "/sie")
	wantStatus(t, resp, "switchyard; fwd=stale; fwd-status=502; detail=stale-if-error")
	if body != "good" {
		t.Fatalf("dead origin: %q", body)
	}
	if s := f.c.Store().Stats(); s.StaleServed != 2 {
		t.Fatalf("stale served %d", s.StaleServed)
	}
}

// Without stale-if-error, an error is passed on.
func TestErrorWithoutStaleIfError(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("Etag", `"1"`)
		fmt.Fprint(w, "good")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/e")
	o.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	resp, _ := f.get(t, "/e")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// storm sends n concurrent requests through the cache; it reports
// non-200 answers as "error ..." statuses.
func storm(f *front, n int, path string) []string {
	var wg sync.WaitGroup
	out := make([]string, n)
	for i := range n {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			f.srv.Config.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://edge.test"+path, nil))
			out[i] = rec.Header().Get("Cache-Status")
			if rec.Code != 200 {
				out[i] = fmt.Sprintf("error: status %d", rec.Code)
			}
		})
	}
	wg.Wait()
	return out
}

// 1000 concurrent misses on one cold key make exactly one origin request.
func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "one")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	const n = 1000
	done := make(chan []string)
	go func() { done <- storm(f, n, "/cold") }()
	eventually(t, "999 coalesced waiters", func() bool { return f.c.Store().Stats().Coalesced == n-1 })
	once.Do(func() { close(release) })
	statuses := <-done
	if got := o.n.Load(); got != 1 {
		t.Fatalf("origin asked %d times, want 1", got)
	}
	coalesced := 0
	for _, s := range statuses {
		if s == "switchyard; hit; detail=coalesced" {
			coalesced++
		}
	}
	if coalesced != n-1 {
		t.Fatalf("%d answers from the coalesced fetch, want %d", coalesced, n-1)
	}
}

// When the coalesced answer is uncacheable, the waiters go to the
// origin themselves at once (all of them, concurrently).
func TestCoalescingUncacheable(t *testing.T) {
	release := make(chan struct{})
	var first atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			<-release
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "private")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	const n = 200
	done := make(chan []string)
	go func() { done <- storm(f, n, "/nostore") }()
	eventually(t, "coalesced waiters", func() bool { return f.c.Store().Stats().Coalesced == n-1 && o.n.Load() == 1 })
	once.Do(func() { close(release) })
	for _, s := range <-done {
		if s != "switchyard; fwd=uri-miss; fwd-status=200" {
			t.Fatalf("status %q", s)
		}
	}
	if got := o.n.Load(); got != n {
		t.Fatalf("origin asked %d times, want %d (each waiter once)", got, n)
	}
}

// A response larger than max_object streams through, uncached.
func TestMaxObjectStreamsThrough(t *testing.T) {
	big := strings.Repeat("z", 4096)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", "4096")
		}
		for i := 0; i < 4; i++ { // chunked without Content-Length
			io.WriteString(w, big[i*1024:(i+1)*1024])
			w.(http.Flusher).Flush()
		}
	})
	f := newFront(t, o, Policy{}, mib, 1024)
	for _, p := range []string{"/chunked", "/sized"} {
		for range 2 {
			resp, body := f.get(t, p)
			if body != big {
				t.Fatalf("%s: body of %d bytes", p, len(body))
			}
			if strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
				t.Fatalf("%s: stored an object above max_object", p)
			}
		}
	}
	if s := f.c.Store().Stats(); s.Entries != 0 {
		t.Fatalf("entries %d", s.Entries)
	}
}

// The memory tier stays within its bound, evicting the least recently used.
func TestEvictionBound(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, strings.Repeat("b", 2000))
	})
	const mem = 32 << 10
	f := newFront(t, o, Policy{}, mem, 0)
	f.get(t, "/keep")
	for i := range 100 {
		f.get(t, fmt.Sprintf("/o/%d", i))
		f.get(t, "/keep") // recently used: survives
		if b := f.c.Store().Stats().Bytes; b > mem {
			t.Fatalf("store holds %d bytes, bound %d", b, mem)
		}
	}
	s := f.c.Store().Stats()
	if s.Evictions == 0 {
		t.Fatal("no evictions")
	}
	resp, _ := f.get(t, "/keep")
	wantStatus(t, resp, "switchyard; hit")
	resp, _ = f.get(t, "/o/0")
	wantStatus(t, resp, "switchyard; fwd=uri-miss")
}

func TestPurge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600, stale-while-revalidate=600")
		w.Header().Set("Surrogate-Key", "all "+strings.Split(r.URL.Path, "/")[1])
		w.Header().Set("Cache-Tag", "tagged")
		fmt.Fprint(w, r.URL.Path)
	})
	f := newFront(t, o, Policy{}, mib, 0)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	paths := []string{"/a/1", "/a/2", "/b/1", "/c/1"}
	for _, p := range paths {
		resp, _ := f.get(t, p)
		if resp.Header.Get("Surrogate-Key") != "" || resp.Header.Get("Cache-Tag") != "" {
			t.Fatal("tags reached the client")
		}
	}
	st := f.c.Store()
	if n := st.PurgeURL("http://"+host+"/c/1", Hard); n != 1 {
		t.Fatalf("purge url: %d", n)
	}
	if n := st.PurgePrefix(host+"/a/", Hard); n != 2 {
		t.Fatalf("purge prefix: %d", n)
	}
	if n := st.PurgeTag("b", Soft); n != 1 {
		t.Fatalf("purge tag: %d", n)
	}
	resp, _ := f.get(t, "/a/1")
	wantStatus(t, resp, "switchyard; fwd=uri-miss")
	resp, _ = f.get(t, "/b/1") // soft: stale, within stale-while-revalidate
	wantStatus(t, resp, "switchyard; hit; detail=stale-while-revalidate")
	if info := st.Inspect(host+"/a/1", 10); len(info) != 1 || info[0].Status != 200 || info[0].TTL <= 0 {
		t.Fatalf("inspect: %+v", info)
	}
}

func TestPolicyValidation(t *testing.T) {
	bad := []Policy{
		{Key: []string{"host"}},
		{Key: []string{"path", "header:"}},
		{Key: []string{"path", "path"}},
		{Key: []string{"path", "bogus"}},
		{DefaultTTL: -1},
		{TTLJitter: 1},
	}
	for _, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: want an error", p)
		}
	}
	cfg := Config{Memory: 1024, MaxObject: 2048, Disk: &Disk{}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "max_object") || !strings.Contains(err.Error(), "disk") {
		t.Fatalf("config: %v", err)
	}
}

// RFC 9110 section 14: ranges answered from a stored full response.
func TestRangeFromStoredResponse(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Etag", `"abc"`)
		w.Header().Set("Content-Type", "text/plain")
		if rg := r.Header.Get("Range"); rg != "" {
			w.Header().Set("Content-Range", "bytes 0-1/10")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprint(w, "01")
			return
		}
		fmt.Fprint(w, "0123456789")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	resp, body := f.get(t, "/r", "Range", "bytes=0-1") // a miss: the origin's 206, not stored
	wantStatus(t, resp, "switchyard; fwd=uri-miss; detail=range")
	if resp.StatusCode != 206 || body != "01" {
		t.Fatalf("miss: %d %q", resp.StatusCode, body)
	}
	f.get(t, "/r")
	cases := []struct {
		hdr    []string
		code   int
		body   string
		header string
	}{
		{[]string{"Range", "bytes=2-4"}, 206, "234", "bytes 2-4/10"},
		{[]string{"Range", "bytes=-3"}, 206, "789", "bytes 7-9/10"},
		{[]string{"Range", "bytes=8-"}, 206, "89", "bytes 8-9/10"},
		{[]string{"Range", "bytes=20-30"}, 416, "", "bytes */10"},
		{[]string{"Range", "bytes=1-2", "If-Range", `"abc"`}, 206, "12", "bytes 1-2/10"},
		{[]string{"Range", "bytes=1-2", "If-Range", `"other"`}, 200, "0123456789", ""},
		{[]string{"Range", "bytes=0-0,5-5"}, 206, "", ""}, // multipart
	}
	for _, tc := range cases {
		resp, body := f.get(t, "/r", tc.hdr...)
		if resp.StatusCode != tc.code || tc.body != "" && body != tc.body || resp.Header.Get("Content-Range") != tc.header {
			t.Errorf("%q: %d %q Content-Range %q", tc.hdr, resp.StatusCode, body, resp.Header.Get("Content-Range"))
		}
		if tc.code != 416 && !strings.HasPrefix(resp.Header.Get("Cache-Status"), "switchyard; hit") {
			t.Errorf("%q: %q", tc.hdr, resp.Header.Get("Cache-Status"))
		}
		if strings.Contains(tc.hdr[1], ",") && (!strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") || !strings.Contains(body, "Content-Range: bytes 5-5/10")) {
			t.Errorf("multipart: %q %q", resp.Header.Get("Content-Type"), body)
		}
	}
	if o.n.Load() != 2 {
		t.Fatalf("origin asked %d times", o.n.Load())
	}
}

// Set-Cookie responses pass uncached unless the policy allows them; a
// qualified private stores the response without the named fields.
func TestSetCookieAndQualifiedPrivate(t *testing.T) {
	for _, allow := range []bool{false, true} {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("Set-Cookie", "s=1")
			fmt.Fprint(w, "x")
		})
		f := newFront(t, o, Policy{AllowSetCookie: allow}, mib, 0)
		f.get(t, "/c")
		resp, _ := f.get(t, "/c")
		if got := o.n.Load() == 1; got != allow {
			t.Fatalf("allow_set_cookie=%v: stored=%v", allow, got)
		}
		if allow && resp.Header.Get("Set-Cookie") != "s=1" {
			t.Fatalf("allowed cookie not replayed: %q", resp.Header.Get("Set-Cookie"))
		}
	}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", `max-age=600, private="X-User, X-Session"`)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("X-User", "alice")
		w.Header().Set("X-Public", "yes")
		fmt.Fprint(w, "x")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/p")
	resp, _ := f.get(t, "/p")
	wantStatus(t, resp, "switchyard; hit")
	if resp.Header.Get("X-User") != "" || resp.Header.Get("X-Public") != "yes" {
		t.Fatalf("qualified private: X-User=%q X-Public=%q", resp.Header.Get("X-User"), resp.Header.Get("X-Public"))
	}
}

// Push publishes an object that is then served without the origin.
func TestPush(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	f := newFront(t, o, Policy{}, mib, 64)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	req := httptest.NewRequest(http.MethodPut, "http://"+host+"/pushed", nil)
	err := f.c.Push(req, PushObject{Header: http.Header{"Content-Type": {"text/plain"}, "Surrogate-Key": {"p"}}, Body: []byte("pushed!"), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := f.get(t, "/pushed")
	wantStatus(t, resp, "switchyard; hit")
	if body != "pushed!" || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("Cdn-Cache-Control") != "" || o.n.Load() != 0 {
		t.Fatalf("pushed object: %q %v origin %d", body, resp.Header, o.n.Load())
	}
	if err := f.c.Push(req, PushObject{Body: []byte("no freshness")}); err == nil || !strings.Contains(err.Error(), "not storable") {
		t.Fatalf("push without freshness: %v", err)
	}
	if err := f.c.Push(req, PushObject{Body: make([]byte, 100), TTL: time.Minute}); err == nil || !strings.Contains(err.Error(), "max_object") {
		t.Fatalf("push too large: %v", err)
	}
	if n := f.c.Store().PurgeTag("p", Hard); n != 1 {
		t.Fatalf("purge pushed: %d", n)
	}
}

// A cache-wide stale_if_error made an object without any freshness
// "storable" (it could be served stale on an origin error), so a push
// without a ttl was accepted and then every request went to the origin.
func TestPushWithoutFreshnessRefusedUnderStaleIfError(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	f := newFront(t, o, Policy{StaleIfError: time.Hour}, mib, 64)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	req := httptest.NewRequest(http.MethodPut, "http://"+host+"/pushed", nil)
	if err := f.c.Push(req, PushObject{Body: []byte("no freshness")}); err == nil || !strings.Contains(err.Error(), "not storable") {
		t.Fatalf("push without freshness under stale_if_error: %v", err)
	}
	if err := f.c.Push(req, PushObject{Body: []byte("fresh"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	resp, body := f.get(t, "/pushed")
	wantStatus(t, resp, "switchyard; hit")
	if body != "fresh" {
		t.Fatalf("body %q", body)
	}
}
