package transform

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/proxy"
)

func TestRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Request
		want []string
	}{
		{"zero", Request{}, nil},
		{"full", Request{
			Headers: Headers{Set: map[string]string{"X-A": "1"}, Add: map[string]string{"X-B": "2"}, Remove: []string{"Cookie"}, Rename: map[string]string{"X-Old": "X-New"}},
			Path:    &PathRewrite{Regex: `^/v1/(\w+)/(\d+)$`, Replace: "/api/$1/${2}"},
			Query:   &Query{Set: map[string]string{"v": "2"}, Remove: []string{"debug"}, Rename: map[string]string{"q": "query"}},
		}, nil},
		{"prefix", Request{Path: &PathRewrite{Prefix: "/old", Replace: "/new"}}, nil},
		{"bad header name", Request{Headers: Headers{Set: map[string]string{"X A": "1"}}}, []string{`headers.set: header name "X A"`}},
		{"bad header value", Request{Headers: Headers{Add: map[string]string{"X-A": "1\r\nX-Evil: 1"}}}, []string{`headers.add: header "X-A": value "1\r\nX-Evil: 1"`}},
		{"managed", Request{Headers: Headers{Set: map[string]string{"host": "x"}, Remove: []string{"Content-Length"}}}, []string{`headers.set: header "host" is managed`, `headers.remove: header "Content-Length" is managed`}},
		{"duplicate set", Request{Headers: Headers{Set: map[string]string{"X-A": "1", "x-a": "2"}}}, []string{`given twice`}},
		{"rename to itself", Request{Headers: Headers{Rename: map[string]string{"X-A": "x-a"}}}, []string{`expected a different name`}},
		{"rename chain", Request{Headers: Headers{Rename: map[string]string{"X-A": "X-B", "X-B": "X-C"}}}, []string{`expected no chains`}},
		{"rename same target", Request{Headers: Headers{Rename: map[string]string{"X-A": "X-C", "X-B": "x-c"}}}, []string{`both renamed to`}},
		{"path neither", Request{Path: &PathRewrite{Replace: "/x"}}, []string{`path: neither regex nor prefix`}},
		{"path both", Request{Path: &PathRewrite{Regex: "a", Prefix: "/a", Replace: "/x"}}, []string{`path: both regex "a" and prefix "/a"`}},
		{"bad regex", Request{Path: &PathRewrite{Regex: "(", Replace: "/x"}}, []string{`path.regex: compiling "("`}},
		{"prefix without slash", Request{Path: &PathRewrite{Prefix: "old", Replace: "new"}}, []string{`path.prefix: "old"`, `path.replace: "new"`}},
		{"unescaped replace", Request{Path: &PathRewrite{Prefix: "/a", Replace: "/a b?c"}}, []string{`path.replace: "/a b?c": expected an escaped path`}},
		{"empty regex replace", Request{Path: &PathRewrite{Regex: "^/a"}}, []string{`path.replace: empty`}},
		{"query", Request{Query: &Query{Set: map[string]string{"": "x"}, Remove: []string{""}, Rename: map[string]string{"a": "b", "b": "c", "d": "c"}}},
			[]string{`query.set: empty parameter name`, `query.remove: empty parameter name`, `expected no chains`, `both renamed to "c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := NewRequest(tt.cfg); err != nil {
					t.Fatalf("NewRequest: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := NewRequest(tt.cfg); err == nil {
				t.Error("NewRequest accepted an invalid config")
			}
		})
	}
}

func TestHeadersApply(t *testing.T) {
	tests := []struct {
		name string
		ops  Headers
		in   http.Header
		want http.Header
	}{
		{"set replaces all values", Headers{Set: map[string]string{"x-a": "new"}},
			http.Header{"X-A": {"1", "2"}}, http.Header{"X-A": {"new"}}},
		{"add appends", Headers{Add: map[string]string{"x-a": "3", "X-B": "b"}},
			http.Header{"X-A": {"1", "2"}}, http.Header{"X-A": {"1", "2", "3"}, "X-B": {"b"}}},
		{"remove", Headers{Remove: []string{"cookie", "X-Missing"}},
			http.Header{"Cookie": {"a=1"}, "X-A": {"1"}}, http.Header{"X-A": {"1"}}},
		{"rename keeps all values and replaces the target", Headers{Rename: map[string]string{"x-user": "X-Consumer"}},
			http.Header{"X-User": {"a", "b"}, "X-Consumer": {"old"}}, http.Header{"X-Consumer": {"a", "b"}}},
		{"rename of an absent header leaves the target", Headers{Rename: map[string]string{"x-user": "X-Consumer"}},
			http.Header{"X-Consumer": {"old"}}, http.Header{"X-Consumer": {"old"}}},
		{"order: remove, rename, set, add", Headers{
			Remove: []string{"X-A"}, Rename: map[string]string{"X-A": "X-B", "X-C": "X-D"},
			Set: map[string]string{"X-D": "set"}, Add: map[string]string{"X-D": "added"}},
			http.Header{"X-A": {"a"}, "X-C": {"c"}}, http.Header{"X-D": {"set", "added"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := (Request{Headers: tt.ops}).Validate(); err != nil {
				t.Fatal(err)
			}
			ops := compileHeaders(tt.ops)
			ops.apply(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Errorf("got %v, want %v", tt.in, tt.want)
			}
		})
	}
}

// TestSetValuesNotShared checks two headers edited by the same transform
// do not share backing arrays.
func TestSetValuesNotShared(t *testing.T) {
	ops := compileHeaders(Headers{Set: map[string]string{"X-A": "1", "X-B": "2"}})
	h1, h2 := http.Header{}, http.Header{}
	ops.apply(h1)
	ops.apply(h2)
	h1["X-A"][0] = "changed"
	h1.Add("X-A", "more")
	if h2.Get("X-A") != "1" || h1.Get("X-B") != "2" || len(h1["X-A"]) != 2 {
		t.Errorf("h1 %v h2 %v", h1, h2)
	}
}

func TestPathRewrite(t *testing.T) {
	tests := []struct {
		name     string
		rw       PathRewrite
		in       string // request URI
		path     string // want URL.Path
		rawPath  string // want URL.RawPath
		rawQuery string
	}{
		{"regex", PathRewrite{Regex: `^/v1/users/(\d+)$`, Replace: "/api/users/$1/profile"}, "/v1/users/42?x=1", "/api/users/42/profile", "", "x=1"},
		{"regex named", PathRewrite{Regex: `^/(?P<svc>\w+)/(?P<rest>.*)$`, Replace: "/${rest}/${svc}"}, "/a/b/c", "/b/c/a", "", ""},
		{"regex no match", PathRewrite{Regex: `^/v2/`, Replace: "/x/"}, "/v1/y", "/v1/y", "", ""},
		{"regex all matches", PathRewrite{Regex: `-`, Replace: "_"}, "/a-b-c", "/a_b_c", "", ""},
		{"regex keeps escapes", PathRewrite{Regex: `^/files/(.*)$`, Replace: "/blob/$1"}, "/files/a%2Fb%20c", "/blob/a/b c", "/blob/a%2Fb%20c", ""},
		{"regex result gets a slash", PathRewrite{Regex: `^/x(.*)$`, Replace: "$1"}, "/xy", "/y", "", ""},
		{"regex invalid result left alone", PathRewrite{Regex: `^/(.)(.)(.*)$`, Replace: "/$3$1"}, "/%41z", "/Az", "/%41z", ""},
		{"prefix", PathRewrite{Prefix: "/old", Replace: "/new"}, "/old/x?y=1", "/new/x", "", "y=1"},
		{"prefix exact", PathRewrite{Prefix: "/old", Replace: "/new"}, "/old", "/new", "", ""},
		{"prefix boundary", PathRewrite{Prefix: "/old", Replace: "/new"}, "/older", "/older", "", ""},
		{"prefix to root", PathRewrite{Prefix: "/old", Replace: "/"}, "/old/x", "/x", "", ""},
		{"prefix with slash", PathRewrite{Prefix: "/old/", Replace: "/n/"}, "/old/x", "/n/x", "", ""},
		{"root prefix", PathRewrite{Prefix: "/", Replace: "/api"}, "/x/y", "/api/x/y", "", ""},
		{"root prefix on root", PathRewrite{Prefix: "/", Replace: "/api"}, "/", "/api", "", ""},
		{"slash prefix to bare replace", PathRewrite{Prefix: "/old/", Replace: "/new"}, "/old/x", "/new/x", "", ""},
		{"prefix keeps escapes", PathRewrite{Prefix: "/old", Replace: "/new"}, "/old/a%2Fb", "/new/a/b", "/new/a%2Fb", ""},
		{"prefix drops raw path", PathRewrite{Prefix: "/a%2Fb", Replace: "/c"}, "/a%2Fb/d", "/c/d", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := NewRequest(Request{Path: &tt.rw})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", tt.in, nil)
			rt.Apply(r)
			if r.URL.Path != tt.path || r.URL.RawPath != tt.rawPath || r.URL.RawQuery != tt.rawQuery {
				t.Errorf("Path %q RawPath %q RawQuery %q, want %q %q %q", r.URL.Path, r.URL.RawPath, r.URL.RawQuery, tt.path, tt.rawPath, tt.rawQuery)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	tests := []struct {
		name string
		q    Query
		in   string
		want string
	}{
		{"untouched", Query{Remove: []string{"x"}}, "b=2&a=1&b=%20", "b=2&a=1&b=%20"},
		{"remove all occurrences", Query{Remove: []string{"debug"}}, "a=1&debug=1&b=2&debug", "a=1&b=2"},
		{"remove escaped name", Query{Remove: []string{"a b"}}, "a+b=1&c=2", "c=2"},
		{"rename keeps raw value", Query{Rename: map[string]string{"q": "query"}}, "q=a%2Fb&z=1&q", "query=a%2Fb&z=1&query"},
		{"set in place", Query{Set: map[string]string{"v": "2"}}, "a=1&v=1&b=2", "a=1&v=2&b=2"},
		{"set drops duplicates", Query{Set: map[string]string{"v": "2"}}, "v=1&a=1&v=3", "v=2&a=1"},
		{"set appends", Query{Set: map[string]string{"v": "a b", "k": "&"}}, "a=1", "a=1&k=%26&v=a+b"},
		{"set on empty query", Query{Set: map[string]string{"v": "2"}}, "", "v=2"},
		{"set already equal keeps encoding", Query{Set: map[string]string{"v": "a b"}}, "v=a%20b&x=1", "v=a%20b&x=1"},
		{"rename then set", Query{Rename: map[string]string{"old": "v"}, Set: map[string]string{"v": "2"}}, "old=1", "v=2"},
		{"bad escape kept", Query{Remove: []string{"a"}}, "%zz=1&a=2", "%zz=1"},
		{"empty pairs dropped when changed", Query{Remove: []string{"a"}}, "&&a=1&&b=2&", "b=2"},
		{"semicolon kept", Query{Remove: []string{"a"}}, "a=1&b=1;c=2", "b=1;c=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := NewRequest(Request{Query: &tt.q})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/p", nil)
			r.URL.RawQuery = tt.in
			rt.Apply(r)
			if r.URL.RawQuery != tt.want {
				t.Errorf("RawQuery %q, want %q", r.URL.RawQuery, tt.want)
			}
		})
	}
}

// TestRequestMiddleware sends requests through a real proxy and checks
// what the upstream receives, and that the client's request is unchanged.
func TestRequestMiddleware(t *testing.T) {
	rt, err := NewRequest(Request{
		Headers: Headers{Set: map[string]string{"X-Api-Version": "2"}, Remove: []string{"Cookie"}, Rename: map[string]string{"X-User": "X-Consumer"}},
		Path:    &PathRewrite{Regex: `^/v1/rides/(\d+)$`, Replace: "/rides/$1"},
		Query:   &Query{Remove: []string{"debug"}, Set: map[string]string{"format": "json"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		Path, RawPath, RawQuery string
		Header                  http.Header
	}
	var inbound *http.Request
	observe := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inbound = r
			next.ServeHTTP(w, r)
		})
	}
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header})
	})
	url := newGateway(t, &proxy.Route{Middleware: []httpx.Middleware{observe, rt.Middleware()}}, nil, backend)

	req, _ := http.NewRequest("GET", url+"/v1/rides/42?debug=1&x=%2F&format=xml", nil)
	req.Header.Set("Cookie", "session=secret")
	req.Header.Add("X-User", "alice")
	req.Header.Add("X-User", "bob")
	resp, body := do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got seen
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Path != "/rides/42" || got.RawQuery != "x=%2F&format=json" {
		t.Errorf("upstream saw path %q query %q", got.Path, got.RawQuery)
	}
	if got.Header.Get("Cookie") != "" || got.Header.Get("X-Api-Version") != "2" ||
		!reflect.DeepEqual(got.Header["X-Consumer"], []string{"alice", "bob"}) || got.Header.Get("X-User") != "" {
		t.Errorf("upstream headers %v", got.Header)
	}
	if inbound.URL.Path != "/v1/rides/42" || inbound.Header.Get("Cookie") == "" || inbound.URL.RawQuery != "debug=1&x=%2F&format=xml" {
		t.Errorf("the incoming request was modified: %v %v", inbound.URL, inbound.Header)
	}
}

func TestApplyAllocs(t *testing.T) {
	rt, err := NewRequest(Request{
		Headers: Headers{Remove: []string{"Cookie"}, Rename: map[string]string{"X-User": "X-Consumer"}},
		Query:   &Query{Remove: []string{"debug"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/rides?a=1&b=2", nil)
	// Nothing to change: no allocation.
	if n := testing.AllocsPerRun(100, func() { rt.Apply(r) }); n != 0 {
		t.Errorf("Apply with nothing to change: %v allocations", n)
	}
}

func TestConfigTags(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	for _, v := range []any{Config{}, Request{}, Response{}, Headers{}, PathRewrite{}, Query{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			if tag := typ.Field(i).Tag.Get("yaml"); !snake.MatchString(tag) {
				t.Errorf("%s.%s: yaml tag %q", typ.Name(), typ.Field(i).Name, tag)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	err := Config{
		Request:  &Request{Headers: Headers{Set: map[string]string{"Host": "x"}}, Path: &PathRewrite{Regex: "("}},
		Response: &Response{MaxBody: -5, JSONAllow: []string{"a."}},
	}.Validate()
	for _, want := range []string{`request.headers.set: header "Host" is managed`, `request.path.regex: compiling "("`, `response.max_body: -5`, `response.json_allow: path "a."`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}
