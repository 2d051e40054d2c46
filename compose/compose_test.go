package compose

import (
	"encoding/json"
	"net/http/httptest"
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
