package edge

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The attacker asks first: headers that origin frameworks read as the
// host, scheme, URL or method reach the origin only when keyed, so the
// answer stored for everyone never reflects them.
func TestOverrideHeadersFromTheFirstRequestDoNotPoison(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		for _, k := range overrideHeaders {
			if v := r.Header.Get(k); v != "" {
				fmt.Fprintf(w, "%s=%s\n", k, v)
			}
		}
		fmt.Fprint(w, "page")
	})
	f := newFront(t, o, Policy{Key: []string{"host", "path", "query", "header:X-Forwarded-Scheme"}}, mib, 0)
	var attack []string
	for _, k := range overrideHeaders {
		attack = append(attack, k, "evil.example")
	}
	_, b1 := f.get(t, "/p", attack...)
	_, b2 := f.get(t, "/p", "X-Forwarded-Scheme", "evil.example")
	if o.n.Load() != 1 {
		t.Fatalf("origin asked %d times, want 1", o.n.Load())
	}
	// X-Forwarded-Scheme is keyed: it reaches the origin and the victim's
	// request (which sends the same value) shares the entry; nothing else
	// reached the origin. httputil's proxy adds its own X-Forwarded-For only.
	if b1 != "X-Forwarded-Scheme=evil.example\npage" || b2 != b1 {
		t.Fatalf("the origin saw unkeyed override headers:\n%s", b1)
	}
	_, b3 := f.get(t, "/p")
	if b3 != "page" {
		t.Fatalf("victim got %q", b3)
	}
}

// A GET with a body ("fat GET") is not keyed by its body, so it is
// passed on and never stored: an origin that reads the body cannot
// shape the answer others get.
func TestFatGetIsNotStored(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "body=%s", b)
	})
	f := newFront(t, o, Policy{}, mib, 0)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/fat", strings.NewReader("callback=evil"))
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, resp, "switchyard; fwd=uri-miss; detail=body")
	_, b := f.get(t, "/fat")
	if b != "body=" {
		t.Fatalf("victim got %q", b)
	}
	if o.n.Load() != 2 {
		t.Fatalf("origin asked %d times, want 2", o.n.Load())
	}
}

// With query:NAME keys (and not the whole query), the origin gets only
// the keyed parameters: an unkeyed utm=<script> cannot reach a stored
// answer.
func TestUnkeyedQueryParametersDoNotReachTheOrigin(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "q="+r.URL.RawQuery)
	})
	f := newFront(t, o, Policy{Key: []string{"host", "path", "query:page", "query:lang"}}, mib, 0)
	_, b := f.get(t, "/list?utm=%3Cscript%3E&page=2&x;y=1&lang=en&page=3&z=page%3D9")
	if b != "q=page=2&lang=en&page=3" {
		t.Fatalf("the origin saw %q", b)
	}
	_, b = f.get(t, "/list?page=2&lang=en&page=3")
	if b != "q=page=2&lang=en&page=3" || o.n.Load() != 1 {
		t.Fatalf("same keyed parameters: %q, origin asked %d times", b, o.n.Load())
	}
	// A parameter the key reads differently (a semicolon) is dropped, as
	// url.ParseQuery drops it from the key.
	_, b = f.get(t, "/other?page=1;evil=1")
	if b != "q=" {
		t.Fatalf("semicolon parameter: %q", b)
	}
	// [host, path]: the query is not keyed at all, so none is forwarded.
	o2 := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "q="+r.URL.RawQuery)
	})
	f2 := newFront(t, o2, Policy{Key: []string{"host", "path"}}, mib, 0)
	if _, b := f2.get(t, "/a?evil=1"); b != "q=" {
		t.Fatalf("unkeyed query reached the origin: %q", b)
	}
}

// Cache deception: /account.css reaches a dynamic page that ignores the
// suffix. Without the origin's word (max-age, s-maxage, Expires), the
// answer to a request with a Cookie is not stored, even with default_ttl
// or a Last-Modified heuristic; with it, it is.
func TestCacheDeceptionNeedsTheOriginsWord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		stored bool
	}{
		{"no headers, default_ttl", map[string]string{}, false},
		{"last-modified heuristic", map[string]string{"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, false},
		{"public without max-age", map[string]string{"Cache-Control": "public", "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, false},
		{"origin says max-age", map[string]string{"Cache-Control": "max-age=60"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.hdr {
					w.Header().Set(k, v)
				}
				if c, err := r.Cookie("session"); err == nil {
					fmt.Fprint(w, "account of "+c.Value)
					return
				}
				fmt.Fprint(w, "please log in")
			})
			f := newFront(t, o, Policy{DefaultTTL: time.Hour}, mib, 0)
			f.get(t, "/account.css", "Cookie", "session=alice")
			_, b := f.get(t, "/account.css")
			if got := b == "account of alice"; got != tc.stored {
				t.Fatalf("stored = %v, want %v (attacker got %q)", got, tc.stored, b)
			}
		})
	}
	// Without a Cookie, default_ttl applies as configured.
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "x") })
	f := newFront(t, o, Policy{DefaultTTL: time.Hour}, mib, 0)
	f.get(t, "/logo.png")
	if resp, _ := f.get(t, "/logo.png"); resp.Header.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("default_ttl without a cookie: %q", resp.Header.Get("Cache-Status"))
	}
}

// A Date centuries ago or a huge Age saturate at 2^31 seconds (RFC 9111
// section 1.2.2): the sum of ages must not overflow into a negative age
// that makes a stale response fresh forever.
func TestAncientDateAndHugeAgeStayStale(t *testing.T) {
	for _, tc := range []struct{ name, date, age string }{
		{"year 1 date", "Mon, 01 Jan 0001 00:00:00 GMT", ""},
		{"huge age", "", "99999999999999999999999"},
		{"both", "Mon, 01 Jan 0001 00:00:00 GMT", "4294967296"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Etag", `"e"`)
				if tc.date != "" {
					w.Header().Set("Date", tc.date)
				}
				if tc.age != "" {
					w.Header().Set("Age", tc.age)
				}
				fmt.Fprint(w, "x")
			})
			f := newFront(t, o, Policy{}, mib, 0)
			f.get(t, "/old")
			resp, _ := f.get(t, "/old")
			if strings.HasPrefix(resp.Header.Get("Cache-Status"), "switchyard; hit") || o.n.Load() != 2 {
				t.Fatalf("an entry older than its max-age was served fresh: %q, Age %q", resp.Header.Get("Cache-Status"), resp.Header.Get("Age"))
			}
			// A client that takes any staleness gets it, with the Age
			// saturated at 2^31 seconds, never a negative one.
			resp, _ = f.get(t, "/old", "Cache-Control", "max-stale")
			wantStatus(t, resp, "switchyard; hit; detail=max-stale")
			if a := resp.Header.Get("Age"); a != "2147483648" {
				t.Fatalf("Age %q, want 2147483648", a)
			}
		})
	}
}

// A negative or malformed max-age makes the response stale (RFC 9111
// section 4.2.1), and s-maxage never overrides private or no-store.
func TestDirectivePrecedenceAttacks(t *testing.T) {
	for _, tc := range []struct {
		cc     string
		reqHdr []string
		stored bool
	}{
		{"max-age=-1", nil, false},
		{"max-age=1e9", nil, false},
		{"s-maxage=-5, max-age=600", nil, false},
		{"private, s-maxage=600", nil, false},
		{"s-maxage=600, private", nil, false},
		{"no-store, s-maxage=600", nil, false},
		{"s-maxage=600, no-store, public", nil, false},
		{"public, s-maxage=600", []string{"Authorization", "Basic eDp5"}, true},
		{"max-age=600, must-revalidate", []string{"Authorization", "Basic eDp5"}, true},
		{"max-age=600, proxy-revalidate", []string{"Authorization", "Basic eDp5"}, false},
		{"max-age=600", []string{"Authorization", "Basic eDp5"}, false},
	} {
		t.Run(tc.cc, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", tc.cc)
				fmt.Fprint(w, "x")
			})
			f := newFront(t, o, Policy{}, mib, 0)
			f.get(t, "/d", tc.reqHdr...)
			f.get(t, "/d", tc.reqHdr...)
			if got := o.n.Load() == 1; got != tc.stored {
				t.Fatalf("reused = %v, want %v", got, tc.stored)
			}
		})
	}
}

// One URL cannot hold more than MaxVariants variants, however many
// distinct values a client sends for the header it varies on, and every
// client still gets its own variant's answer.
func TestVaryVariantsPerURLAreBounded(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "lang="+r.Header.Get("Accept-Language"))
	})
	f := newFront(t, o, Policy{}, mib, 0)
	for i := range 200 {
		lang := fmt.Sprintf("x-%d", i)
		if _, b := f.get(t, "/v", "Accept-Language", lang); b != "lang="+lang {
			t.Fatalf("%s got %q", lang, b)
		}
	}
	if n := f.c.Store().Stats().Entries; n > MaxVariants {
		t.Fatalf("%d entries for one URL, want at most %d", n, MaxVariants)
	}
	host := strings.TrimPrefix(f.srv.URL, "http://")
	if n := len(f.c.Store().Inspect(host+"/v", 1000)); n != MaxVariants {
		t.Fatalf("%d variants kept, want %d", n, MaxVariants)
	}
}

// A client sending the varied header twice selects the variant of both
// values joined, never the single-valued variant another client stored.
func TestVaryHeaderSentTwice(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "lang="+strings.Join(r.Header.Values("Accept-Language"), "|"))
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/v", "Accept-Language", "en")
	resp, b := f.get(t, "/v", "Accept-Language", "en", "Accept-Language", "fr")
	wantStatus(t, resp, "switchyard; fwd=vary-miss")
	if b != "lang=en|fr" {
		t.Fatalf("two lines: %q", b)
	}
	if resp, b := f.get(t, "/v", "Accept-Language", "en"); b != "lang=en" || resp.Header.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("victim: %q %q", b, resp.Header.Get("Cache-Status"))
	}
	// The same two values on one line are the same selecting value
	// (RFC 9111 section 4.1: field lines are combined).
	if resp, _ := f.get(t, "/v", "Accept-Language", "en, fr"); resp.Header.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("combined line: %q", resp.Header.Get("Cache-Status"))
	}
}

// A HEAD that misses is forwarded as HEAD and stores nothing: a later
// GET is a miss that gets the whole body, not an empty stored one.
func TestHeadDoesNotFillGet(t *testing.T) {
	var heads atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			heads.Add(1)
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "full body")
	})
	f := newFront(t, o, Policy{}, mib, 0)
	resp, _ := f.do(t, http.MethodHead, "/h")
	if heads.Load() != 1 || strings.Contains(resp.Header.Get("Cache-Status"), "stored") {
		t.Fatalf("HEAD: %d heads, %q", heads.Load(), resp.Header.Get("Cache-Status"))
	}
	resp, b := f.get(t, "/h")
	wantStatus(t, resp, "switchyard; fwd=uri-miss; fwd-status=200; stored")
	if b != "full body" {
		t.Fatalf("GET after HEAD: %q", b)
	}
	if resp, b := f.get(t, "/h"); b != "full body" || resp.Header.Get("Cache-Status") != "switchyard; hit" {
		t.Fatalf("hit: %q %q", b, resp.Header.Get("Cache-Status"))
	}
}

// Paths are keyed exactly as they are forwarded: dot segments, encoded
// slashes, double slashes and case are never normalised into another
// path's entry (the origin decides what they mean, and its answer is
// stored under the same spelling).
func TestPathSpellingsAreSeparateKeys(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, r.RequestURI)
	})
	f := newFront(t, o, Policy{}, mib, 0)
	paths := []string{"/a/b", "/a/../a/b", "/a/%2E%2E/a/b", "/a%2Fb", "//a/b", "/a//b", "/A/b", "/a/b?", "/a/b?x=1&y=2", "/a/b?y=2&x=1", "/a/b?x=1&x=1"}
	for _, p := range paths {
		if _, b := f.get(t, p); b != p && !(p == "/a/b?" && b == "/a/b") {
			t.Fatalf("%s answered with the origin's answer for %s", p, b)
		}
	}
	for _, p := range paths {
		resp, b := f.get(t, p)
		if b != p && !(p == "/a/b?" && b == "/a/b") {
			t.Fatalf("%s: a hit stored for another spelling: %s (%s)", p, b, resp.Header.Get("Cache-Status"))
		}
	}
}

// Host case is folded (host names are case-insensitive) but a port is
// part of the key.
func TestHostKeying(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "host="+r.Host)
	})
	f := newFront(t, o, Policy{}, mib, 0)
	get := func(host string) (string, string) {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/h", nil)
		req.Host = host
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("Cache-Status")
	}
	get("www.example.com")
	if _, st := get("WWW.Example.COM"); st != "switchyard; hit" {
		t.Fatalf("host case: %q", st)
	}
	if b, st := get("www.example.com:8080"); st == "switchyard; hit" || b != "host=www.example.com:8080" {
		t.Fatalf("host with port shared an entry: %q %q", b, st)
	}
}

// Surrogate-Key and Cache-Tag lists are bounded (MaxTags tags of at most
// MaxTagLen bytes, each once), and the tags count against memory.
func TestOversizeTagListsAreBounded(t *testing.T) {
	var many []string
	for i := range 10000 {
		many = append(many, fmt.Sprintf("t%d", i%5000))
	}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Date", "Mon, 01 Jan 2024 00:00:00 GMT")
		w.Header().Set("Age", "0")
		if r.URL.Path == "/tag1" {
			w.Header().Set("Surrogate-Key", strings.Repeat("x", MaxTagLen+1)+" "+strings.Join(many, " "))
			w.Header().Set("Cache-Tag", "c1, c2")
		}
		fmt.Fprint(w, "x")
	})
	f := newFront(t, o, Policy{}, 4*mib, 0)
	f.get(t, "/tag1")
	f.get(t, "/tag2")
	host := strings.TrimPrefix(f.srv.URL, "http://")
	info := f.c.Store().Inspect(host+"/tag1", 1)
	plain := f.c.Store().Inspect(host+"/tag2", 1)
	if len(info) != 1 || len(plain) != 1 {
		t.Fatalf("not stored: %+v %+v", info, plain)
	}
	tags := info[0].Tags
	if len(tags) != MaxTags || tags[0] != "t0" || tags[MaxTags-1] != fmt.Sprintf("t%d", MaxTags-1) {
		t.Fatalf("%d tags: %v", len(tags), tags)
	}
	var tagBytes int64
	for _, tg := range tags {
		tagBytes += int64(len(tg))
	}
	if info[0].Size-plain[0].Size < tagBytes {
		t.Fatalf("size %d (%d without tags) does not count %d bytes of tags", info[0].Size, plain[0].Size, tagBytes)
	}
	if n := f.c.Store().PurgeTag("t63", Hard); n != 1 {
		t.Fatalf("purge by a kept tag: %d", n)
	}
}

// A pushed object's header values are written on every hit: one with a
// CR or LF (response splitting) or an invalid name is refused.
func TestPushRefusesSplittingHeaders(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	f := newFront(t, o, Policy{}, mib, 0)
	req, _ := http.NewRequest(http.MethodGet, "http://example.com/p", nil)
	for _, h := range []http.Header{
		{"Content-Type": {"text/html\r\nSet-Cookie: s=evil"}},
		{"X-A": {"a\nb"}},
		{"Bad Name": {"x"}},
		{"X-Z": {"\x00"}},
	} {
		if err := f.c.Push(req, PushObject{Header: h, TTL: time.Minute, Body: []byte("x")}); err == nil {
			t.Errorf("%q: pushed", h)
		}
	}
	if err := f.c.Push(req, PushObject{Header: http.Header{"Content-Type": {"text/html"}}, TTL: time.Minute, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}
