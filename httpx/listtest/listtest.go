// Package listtest checks a list endpoint served with httpx's cursor
// pages and ETags the same way everywhere: pages in a stable order that
// together hold every item once, Link rel="next" to follow, 304 for a
// matching If-None-Match, and 400 for hostile limits and cursors.
package listtest

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/httpx"
)

// List describes the endpoint under test.
type List struct {
	Base string // scheme://host of the server
	Path string // the list's path, e.g. /v1/services
	// Names extracts the items' keys, in answer order, from a page's body.
	Names func(t *testing.T, body []byte) []string
	// Want is every key the list holds, in its order.
	Want []string
	// Prepare, if set, decorates each request (credentials).
	Prepare func(*http.Request)
	// Client, if set, sends the requests; default http.DefaultClient.
	Client *http.Client
}

// Get sends GET target (a path with query, or a full URL) with extra
// headers, and returns the response with its body read.
func (l List) Get(t *testing.T, target string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		target = l.Base + target
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Prepare != nil {
		l.Prepare(req)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := l.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// Check walks the list in pages of each size from 1 to len(Want)+1 and
// checks every page's ETag and conditional requests, the answer without
// a limit (everything, no Link, when Want fits the default page), and the
// hostile parameters.
func Check(t *testing.T, l List) {
	t.Helper()
	resp, body := l.Get(t, l.Path, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", l.Path, resp.StatusCode, body)
	}
	if got := l.Names(t, body); !slices.Equal(got, l.Want) {
		t.Fatalf("GET %s without limit: %v, want %v", l.Path, got, l.Want)
	}
	if link := resp.Header.Get("Link"); link != "" {
		t.Fatalf("GET %s without limit: Link %q on the only page", l.Path, link)
	}
	for limit := 1; limit <= len(l.Want)+1; limit++ {
		l.walk(t, limit)
	}
	l.hostile(t)
}

func (l List) walk(t *testing.T, limit int) {
	t.Helper()
	sep := "?"
	if strings.Contains(l.Path, "?") {
		sep = "&"
	}
	target := l.Path + sep + "limit=" + itoa(limit)
	var seen []string
	for pages := 0; target != ""; pages++ {
		if pages > len(l.Want)+1 {
			t.Fatalf("limit %d: more pages than items (last link %s)", limit, target)
		}
		resp, body := l.Get(t, target, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", target, resp.StatusCode, body)
		}
		names := l.Names(t, body)
		if len(names) > limit {
			t.Fatalf("GET %s: %d items, above the limit %d", target, len(names), limit)
		}
		seen = append(seen, names...)
		l.conditional(t, target, resp.Header.Get("ETag"))
		next := httpx.NextLink(resp.Header.Values("Link"))
		if next != "" {
			u, err := url.Parse(next)
			if err != nil || u.Path != strings.SplitN(l.Path, "?", 2)[0] || u.Query().Get("limit") != itoa(limit) {
				t.Fatalf("GET %s: Link target %q: want this list's path with limit %d", target, next, limit)
			}
			if len(names) == 0 {
				t.Fatalf("GET %s: an empty page with a next link", target)
			}
		}
		target = next
	}
	if !slices.Equal(seen, l.Want) {
		t.Fatalf("limit %d: pages held %v, want %v", limit, seen, l.Want)
	}
}

// conditional checks a page's ETag against If-None-Match variants.
func (l List) conditional(t *testing.T, target, etag string) {
	t.Helper()
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 3 {
		t.Fatalf("GET %s: ETag %q: want a quoted strong tag", target, etag)
	}
	for inm, want := range map[string]int{
		etag:                         304,
		"W/" + etag:                  304, // weak comparison
		`"other", ` + etag:           304,
		"*":                          304,
		`"other"`:                    200,
		`garbage,,, "W/`:             200,
		strings.Trim(etag, `"`):      200, // unquoted is not the tag
		strings.Repeat(`"x", `, 500): 200,
	} {
		resp, body := l.Get(t, target, map[string]string{"If-None-Match": inm})
		if resp.StatusCode != want {
			t.Fatalf("GET %s If-None-Match %.40q: %d, want %d", target, inm, resp.StatusCode, want)
		}
		if want == 304 && (len(body) != 0 || resp.Header.Get("ETag") != etag) {
			t.Fatalf("GET %s: 304 with body %q, ETag %q", target, body, resp.Header.Get("ETag"))
		}
	}
}

// hostile sends limits and cursors that must be refused with 400 naming
// the parameter.
func (l List) hostile(t *testing.T) {
	t.Helper()
	sep := "?"
	if strings.Contains(l.Path, "?") {
		sep = "&"
	}
	other := base64.RawURLEncoding.EncodeToString([]byte("v1:no-such-list:a"))
	for _, q := range []string{
		"limit=0", "limit=-1", "limit=1e3", "limit=abc", "limit=", "limit=99999999999999999999999",
		"limit=1000000", "limit=1&limit=2", "limit=%00",
		"cursor=", "cursor=!!!", "cursor=" + other, "cursor=a&cursor=b",
		"cursor=" + strings.Repeat("A", 5000),
		"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("v1:x")),
		"cursor=%ff%fe", "cursor=%%%", "limit=%zz",
	} {
		target := l.Path + sep + q
		resp, body := l.Get(t, target, nil)
		param, _, _ := strings.Cut(q, "=")
		if resp.StatusCode != 400 || !strings.Contains(string(body), param) {
			t.Fatalf("GET %.80s: %d %.200s, want 400 naming %s", target, resp.StatusCode, body, param)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
