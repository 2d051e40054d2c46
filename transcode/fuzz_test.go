package transcode

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/switchyard/switchyard/transcode/transcodetest"
)

// FuzzRequest drives the JSON -> protobuf request translation (rule
// lookup, path variables, query parameters, body) with arbitrary input:
// it must never panic, and what it accepts must be a request message that
// encodes and decodes again, with no "." or ".." segment in a variable and
// only valid JSON as a body.
func FuzzRequest(f *testing.F) {
	tc, err := Load(Config{DescriptorSet: transcodetest.DescriptorSet, Services: []string{transcodetest.Service}, MaxDepth: 16})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct{ method, path, query, body string }{
		{"GET", "/v1/shelves/s1/books/42", "", ""},
		{"GET", "/v1/shelves/a%2Fb/books/1", "", ""},
		{"GET", "/v1/shelves/%2E%2E/books/1", "", ""},
		{"GET", "/v1/shelves/s/books", "tags=a&tags=b&page_size=2&genre=SCIENCE&min_pages=3", ""},
		{"GET", "/v1/files/a/b%2Fc:list", "tags=t", ""},
		{"GET", "/v1/files/a/%2e%2e/b:list", "", ""},
		{"POST", "/v1/shelves/s/books", "", `{"title":"T","tags":["x"],"genre":"FICTION","note":"n"}`},
		{"POST", "/v1/shelves/s/books", "book.title=x", `{}`},
		{"POST", "/v1/shelves/s/books", "", `null`},
		{"PATCH", "/v1/shelves/s/books/7", "", ` null `},
		{"POST", "/v1/shelves/s/books", "", `{"title":"a"}, "shelf": "x"`},
		{"PATCH", "/v1/shelves/s/books/7", "", `{"author":{"mentor":{"mentor":{"name":"x"}}},"pages":1e3}`},
		{"POST", "/switchyard.test.library.Library/GetBook", "", `{"shelf":"s","bookId":"99999999999999999999"}`},
		{"POST", "/switchyard.test.library.Library/CreateBook", "", `{"book":{"note":null,"tags":[null]}}`},
		{"GET", "/v1/shelves/s:watch", "page_size=-1", ""},
		{"DELETE", "/v1/shelves/s/books/1", "", ""},
	} {
		f.Add(s.method, s.path, s.query, s.body)
	}
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		u, err := url.Parse("http://gw" + path)
		if err != nil || len(path) == 0 || path[0] != '/' {
			return
		}
		r := &http.Request{Method: method, URL: u, Header: http.Header{}}
		ru, vars, _, err := tc.find(r)
		if ru == nil || err != nil {
			return
		}
		for _, v := range vars {
			for _, seg := range strings.Split(strings.ReplaceAll(v.value, "%2F", "/"), "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("variable %v holds a dot segment", v)
				}
			}
		}
		msg, err := tc.request(ru, vars, query, []byte(body))
		if err != nil {
			return
		}
		if ru.body != "" && strings.TrimSpace(body) != "" && !json.Valid([]byte(strings.TrimSpace(body))) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatalf("accepted request does not encode: %v", err)
		}
		back := dynamicpb.NewMessage(ru.method.Input())
		if err := proto.Unmarshal(b, back); err != nil || !proto.Equal(back, msg) {
			t.Fatalf("request does not round-trip: %v", err)
		}
	})
}

// FuzzTemplate parses and matches arbitrary templates and paths: no
// panics, and a match binds each variable once, never to a dot segment.
func FuzzTemplate(f *testing.F) {
	for _, s := range [][2]string{
		{"/v1/shelves/{shelf}/books/{book_id}", "/v1/shelves/a/books/1"},
		{"/v1/{name=files/**}:list", "/v1/files/a/b:list"},
		{"/v1/{name=shelves/*}/books", "/v1/shelves/x/books"},
		{"/{a.b.c=**}", "/"},
		{"/x/{a}:verb", "/x/%2E:verb"},
		{"/{a={b}}", "/q"},
		{"/**/x", "/a/x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, tmpl, path string) {
		tm, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		vars, ok, err := tm.match(path)
		if !ok || err != nil {
			return
		}
		if len(vars) != len(tm.vars) {
			t.Fatalf("%d bindings for %d variables", len(vars), len(tm.vars))
		}
		for _, v := range vars {
			for _, seg := range strings.Split(strings.ReplaceAll(v.value, "%2F", "/"), "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("variable %v holds a dot segment", v)
				}
			}
		}
	})
}

func TestTemplates(t *testing.T) {
	for _, c := range []struct {
		tmpl, path string
		ok         bool
		vars       string // field=value;...
	}{
		{"/v1/shelves/{shelf}/books/{book_id}", "/v1/shelves/a/books/1", true, "shelf=a;book_id=1"},
		{"/v1/shelves/{shelf}/books/{book_id}", "/v1/shelves/a/books", false, ""},
		{"/v1/shelves/{shelf}/books/{book_id}", "/v1/shelves//books/1", false, ""},
		{"/v1/{name=shelves/*/books/*}", "/v1/shelves/a/books/b", true, "name=shelves/a/books/b"},
		{"/v1/{name=shelves/*/books/*}", "/v1/shelves/a/books", false, ""},
		{"/v1/{name=files/**}:list", "/v1/files:list", true, "name=files/"},
		{"/v1/{name=files/**}:list", "/v1/files/a/b/c:list", true, "name=files/a/b/c"},
		{"/v1/{name=files/**}:list", "/v1/files/a", false, ""},
		{"/v1/{a.b}", "/v1/x%20y", true, "a.b=x y"},
		{"/v1/x%20y", "/v1/x%20y", true, ""},
	} {
		tm, err := parseTemplate(c.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", c.tmpl, err)
		}
		vars, ok, err := tm.match(c.path)
		if ok != c.ok || err != nil {
			t.Errorf("%s ~ %s: ok=%v err=%v", c.tmpl, c.path, ok, err)
			continue
		}
		var got []string
		for _, v := range vars {
			got = append(got, strings.Join(v.field, ".")+"="+v.value)
		}
		if strings.Join(got, ";") != c.vars {
			t.Errorf("%s ~ %s: %q, want %q", c.tmpl, c.path, got, c.vars)
		}
	}
	for _, bad := range []string{"v1", "/v1/{a", "/v1/{a=*", "/v1/{a}/{a}", "/v1/**/x", "/v1/{a={b}}", "/v1/{1a}", "/v1/", "/v1/../x", "/v1:", "/v1/{a.}"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
