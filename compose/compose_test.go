package compose

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		calls []Call
		want  string
	}{
		"empty":       {nil, "at least one call"},
		"reserved":    {[]Call{{Name: "_partial", Upstream: "u", Path: "/"}}, "reserved"},
		"duplicate":   {[]Call{{Name: "a", Upstream: "u", Path: "/"}, {Name: "a", Upstream: "u", Path: "/"}}, "duplicate"},
		"no slash":    {[]Call{{Name: "a", Upstream: "u", Path: "x"}}, "must start with /"},
		"unknown dep": {[]Call{{Name: "a", Upstream: "u", Path: "/", After: []string{"z"}}}, `unknown call "z"`},
		"undeclared":  {[]Call{{Name: "a", Upstream: "u", Path: "/"}, {Name: "b", Upstream: "u", Path: "/{a.id}"}}, "must be listed in after"},
		"bad source":  {[]Call{{Name: "a", Upstream: "u", Path: "/{cookie.x}"}}, "expected {query.NAME}"},
		"cycle":       {[]Call{{Name: "a", Upstream: "u", Path: "/", After: []string{"b"}}, {Name: "b", Upstream: "u", Path: "/", After: []string{"a"}}}, "cycle"},
		"no upstream": {[]Call{{Name: "a", Path: "/"}}, "upstream: missing"},
	} {
		t.Run(name, func(t *testing.T) {
			err := Config{Calls: tc.calls}.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	r := httptest.NewRequest("GET", "http://h/home?uid=a%2Fb&q=x+y", nil)
	r.Header.Set("X-User", "u 1")
	results := map[string]*result{"p": {body: json.RawMessage(`{"id": "p/1", "n": 3, "nested": {"ok": true}}`)}}
	got, err := expand("/users/{query.uid}/{header.X-User}?p={p.id}&n={p.n}&ok={p.nested.ok}&q={query.q}", r, results)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/users/a%2Fb/u%201?p=p%2F1&n=3&ok=true&q=x+y"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := expand("/x/{p.missing}", r, results); err == nil {
		t.Fatal("missing field accepted")
	}
}

// A value that fills a whole path segment cannot make it a dot segment or
// empty: "/users/{query.uid}/profile" with uid=.. would reach the
// upstream's /profile (most servers resolve dot segments), with uid
// missing its /users//profile. A client's value (query, header) is the
// client's 400; an upstream's value fails the call.
func TestExpandRefusesDotAndEmptySegments(t *testing.T) {
	results := map[string]*result{"p": {body: json.RawMessage(`{"id": "..", "ok": "7"}`)}}
	for _, c := range []struct {
		tmpl, query string
		client      bool
	}{
		{"/users/{query.uid}/profile", "uid=..", true},
		{"/users/{query.uid}/profile", "uid=.", true},
		{"/users/{query.uid}/profile", "uid=%2e%2e", true},
		{"/users/{query.uid}/profile", "", true},
		{"/users/{query.a}{query.b}", "a=.&b=.", true},
		{"/users/{header.X-Id}", "", true},
		{"/users/{p.id}", "", false},
	} {
		r := httptest.NewRequest("GET", "http://h/home?"+c.query, nil)
		got, err := expand(c.tmpl, r, results)
		var ce *ClientValueError
		switch {
		case err == nil:
			t.Errorf("%s with %q: expanded to %q, want an error", c.tmpl, c.query, got)
		case errors.As(err, &ce) != c.client:
			t.Errorf("%s with %q: error %v, client's fault %v, want %v", c.tmpl, c.query, err, !c.client, c.client)
		}
	}
	// Dots inside a segment, and the query part, are ordinary values.
	r := httptest.NewRequest("GET", "http://h/home?uid=..a&q=..", nil)
	got, err := expand("/users/{query.uid}/x.{query.q}?q={query.q}&e={query.none}&p={p.ok}", r, results)
	if want := "/users/..a/x...?q=..&e=&p=7"; err != nil || got != want {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
}

// FuzzExpand: whatever the client sends, an expanded path that is used
// has exactly the template's segments, none of them empty, "." or "..".
func FuzzExpand(f *testing.F) {
	f.Add("..", "x")
	f.Add("a/b", "")
	f.Add("%2e", "..")
	f.Fuzz(func(t *testing.T, uid, hdr string) {
		r := httptest.NewRequest("GET", "http://h/home", nil)
		r.URL.RawQuery = url.Values{"uid": {uid}}.Encode()
		r.Header = http.Header{"X-Id": {hdr}}
		got, err := expand("/users/{query.uid}/{header.X-Id}/p?u={query.uid}", r, nil)
		if err != nil {
			return
		}
		p, _, _ := strings.Cut(got, "?")
		segs := strings.Split(p, "/")
		if len(segs) != 5 || segs[1] != "users" || segs[4] != "p" {
			t.Fatalf("%q: segments %q", got, segs)
		}
		for _, s := range segs[2:4] {
			if s == "" || s == "." || s == ".." {
				t.Fatalf("%q: segment %q", got, s)
			}
		}
	})
}
