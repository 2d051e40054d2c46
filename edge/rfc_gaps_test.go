package edge

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// RFC 9111 section 5.2.2.4: a stored response with no-cache is validated
// before every reuse; the 304 lets the stored body be sent.
func TestResponseNoCacheValidatesEveryReuse(t *testing.T) {
	var conditional atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600, no-cache")
		w.Header().Set("Etag", `"n1"`)
		if r.Header.Get("If-None-Match") == `"n1"` {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "body")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/nc")
	for i := range 3 {
		resp, b := f.get(t, "/nc")
		wantStatus(t, resp, "switchyard; fwd=stale; fwd-status=304")
		if b != "body" || conditional.Load() != int64(i+1) {
			t.Fatalf("reuse %d: %q, %d validations", i, b, conditional.Load())
		}
	}
}

// RFC 9111 sections 5.2.2.2 and 5.2.2.8: must-revalidate and
// proxy-revalidate forbid serving stale, even within stale-if-error:
// the origin's error is passed on.
func TestRevalidateDirectivesForbidStaleIfError(t *testing.T) {
	for _, cc := range []string{"max-age=0, must-revalidate, stale-if-error=600", "max-age=0, proxy-revalidate, stale-if-error=600"} {
		t.Run(cc, func(t *testing.T) {
			var down atomic.Bool
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if down.Load() {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("Cache-Control", cc)
				w.Header().Set("Etag", `"1"`)
				fmt.Fprint(w, "ok")
			})
			f := newFront(t, o, Policy{StaleIfError: time.Hour}, mib, 0)
			f.get(t, "/r")
			down.Store(true)
			resp, _ := f.get(t, "/r")
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("%s: stale served (%d, %q)", cc, resp.StatusCode, resp.Header.Get("Cache-Status"))
			}
		})
	}
}

// key: cookie:NAME and query:NAME select entries by that cookie or
// parameter only.
func TestKeyCookieAndQueryParameter(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		c, _ := r.Cookie("variant")
		v := ""
		if c != nil {
			v = c.Value
		}
		fmt.Fprintf(w, "variant=%s page=%s", v, r.URL.Query().Get("page"))
	})
	f := newFront(t, o, Policy{Key: []string{"host", "path", "cookie:variant", "query:page"}}, mib, 0)
	check := func(path, cookie, want, status string) {
		t.Helper()
		var hdr []string
		if cookie != "" {
			hdr = []string{"Cookie", cookie}
		}
		resp, b := f.get(t, path, hdr...)
		if b != want || !strings.HasPrefix(resp.Header.Get("Cache-Status"), status) {
			t.Fatalf("%s %q: %q %q, want %q %q", path, cookie, b, resp.Header.Get("Cache-Status"), want, status)
		}
	}
	check("/k?page=1", "variant=a; session=alice", "variant=a page=1", "switchyard; fwd=uri-miss")
	check("/k?page=1&utm=x", "session=bob; variant=a", "variant=a page=1", "switchyard; hit")
	check("/k?page=1", "variant=b", "variant=b page=1", "switchyard; fwd=uri-miss")
	check("/k?page=2", "variant=a", "variant=a page=2", "switchyard; fwd=uri-miss")
	check("/k", "", "variant= page=", "switchyard; fwd=uri-miss")
}

// ttl_jitter shortens each entry's lifetime by a random share up to the
// setting, never lengthens it.
func TestTTLJitterSpreadsExpiry(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1000")
		fmt.Fprint(w, "x")
	})
	f := newFront(t, o, Policy{TTLJitter: 0.5}, mib, 0)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	seen := map[int]bool{}
	for i := range 40 {
		p := fmt.Sprintf("/j%d", i)
		f.get(t, p)
		info := f.c.Store().Inspect(host+p, 1)
		if len(info) != 1 {
			t.Fatalf("%s not stored", p)
		}
		ttl := info[0].TTL + info[0].Age // the lifetime
		if ttl < 500-1 || ttl > 1000 {
			t.Fatalf("%s: lifetime %.1fs outside [500, 1000]", p, ttl)
		}
		seen[int(ttl)] = true
	}
	if len(seen) < 2 {
		t.Fatalf("40 entries, all with one lifetime: %v", seen)
	}
}
