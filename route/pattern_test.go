package route

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPathPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"/v1/rides/*/receipt", "/v1/rides/42/receipt", true},
		{"/v1/rides/*/receipt", "/v1/rides/receipt", false},
		{"/v1/rides/*/receipt", "/v1/rides//receipt", false},
		{"/v1/rides/*/receipt", "/v1/rides/4/2/receipt", false},
		{"/v1/rides/*/receipt", "/v1/rides/42/receipt/", false},
		{"/v1/rides/*/receipt", "/v1/rides/42/receipts", false},
		{"/v1/rides/*/receipt", "/v1/rides/42", false},
		{"/v1/rides/*/receipt", "v1/rides/42/receipt", false},
		{"/v1/rides/*", "/v1/rides/42", true},
		{"/v1/rides/*", "/v1/rides/", false},
		{"/v1/rides/*", "/v1/rides", false},
		{"/v1/rides/*", "/v1/rides/42/start", false},
		{"/*", "/x", true},
		{"/*", "/", false},
		{"/*/*", "/a/b", true},
		{"/a", "/a", true},
		{"/a", "/a/", false},
	} {
		var tb Table[int]
		if err := tb.Add(Match{PathPattern: tc.pattern}, 1); err != nil {
			t.Fatal(err)
		}
		_, got := tb.Lookup(httptest.NewRequest("GET", "http://h"+tc.path, nil))
		if tc.path[0] != '/' {
			got = MatchPattern(tc.pattern, tc.path)
		}
		if got != tc.want || MatchPattern(tc.pattern, tc.path) != tc.want {
			t.Errorf("%s on %s: got %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

func TestPathPatternValidate(t *testing.T) {
	for _, bad := range []string{"v1/*", "/v1//x", "/v1/*/", "/v1/a*", "/**", "/"} {
		if err := (Match{PathPattern: bad}).Validate(); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if err := (Match{PathPattern: "/v1/*", PathPrefix: "/v1"}).Validate(); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("pattern with prefix: %v", err)
	}
	if err := (Match{PathPattern: "/v1/*", Path: "/v1"}).Validate(); err == nil {
		t.Error("pattern with path accepted")
	}
}

// First match wins: the receipt pattern before the rides prefix sends
// receipts to one route and the rest to the other.
func TestPatternBeforePrefix(t *testing.T) {
	var tb Table[string]
	tb.Add(Match{PathPattern: "/v1/rides/*/receipt", Methods: []string{"GET"}}, "views")
	tb.Add(Match{PathPrefix: "/v1/rides"}, "rides")
	for path, want := range map[string]string{"/v1/rides/7/receipt": "views", "/v1/rides/7": "rides", "/v1/rides": "rides", "/v1/rides/7/start": "rides"} {
		if got, _ := tb.Lookup(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if got, _ := tb.Lookup(httptest.NewRequest("POST", "/v1/rides/7/receipt", nil)); got != "rides" {
		t.Errorf("POST receipt: %s", got)
	}
}

func TestPatternAllocs(t *testing.T) {
	var tb Table[int]
	tb.Add(Match{PathPattern: "/v1/rides/*/receipt"}, 1)
	r := httptest.NewRequest("GET", "/v1/rides/42/receipt", nil)
	if n := testing.AllocsPerRun(100, func() { tb.Lookup(r) }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		a, b Match
		want bool
	}{
		{Match{}, Match{Path: "/x"}, true},
		{Match{PathPrefix: "/v1/rides"}, Match{PathPattern: "/v1/rides/*/receipt"}, true},
		{Match{PathPrefix: "/v1/rides/"}, Match{PathPattern: "/v1/rides/*/receipt"}, true},
		{Match{PathPrefix: "/v1/ride"}, Match{PathPattern: "/v1/rides/*/receipt"}, false},
		{Match{PathPattern: "/v1/rides/*/receipt"}, Match{PathPrefix: "/v1/rides"}, false},
		{Match{PathPattern: "/v1/rides/*"}, Match{Path: "/v1/rides/7"}, true},
		{Match{PathPattern: "/v1/rides/*"}, Match{PathPattern: "/v1/rides/*/x"}, false},
		{Match{PathPattern: "/v1/*/x"}, Match{PathPattern: "/v1/rides/x"}, true},
		{Match{PathPattern: "/v1/rides/x"}, Match{PathPattern: "/v1/*/x"}, false},
		{Match{PathPrefix: "/v1"}, Match{PathPrefix: "/v1/x"}, true},
		{Match{PathPrefix: "/v1/"}, Match{PathPrefix: "/v1"}, false},
		{Match{PathPrefix: "/v1"}, Match{Path: "/v10"}, false},
		{Match{Path: "/a"}, Match{Path: "/a"}, true},
		{Match{Path: "/a"}, Match{PathPrefix: "/a"}, false},
		{Match{Path: "/a", Methods: []string{"GET"}}, Match{Path: "/a"}, false},
		{Match{Path: "/a", Methods: []string{"GET", "POST"}}, Match{Path: "/a", Methods: []string{"GET"}}, true},
		{Match{Path: "/a", Methods: []string{"GET"}}, Match{Path: "/a", Methods: []string{"GET", "POST"}}, false},
		{Match{Host: "a.example"}, Match{Path: "/a"}, false},
		{Match{Host: "A.example"}, Match{Host: "a.example", Path: "/a"}, true},
		{Match{Headers: map[string]string{"x-v": "2"}}, Match{Headers: map[string]string{"X-V": "2"}}, true},
		{Match{Headers: map[string]string{"x-v": "2"}}, Match{}, false},
		{Match{Client: "mobile"}, Match{}, false},
	} {
		if got := Covers(tc.a, tc.b); got != tc.want {
			t.Errorf("Covers(%+v, %+v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// refMatch is the obvious implementation MatchPattern must agree with.
func refMatch(p, path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	ps, xs := strings.Split(p[1:], "/"), strings.Split(path[1:], "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if xs[i] == "" || (ps[i] != "*" && ps[i] != xs[i]) {
			return false
		}
	}
	return true
}

func FuzzPathPattern(f *testing.F) {
	f.Add("/v1/rides/*/receipt", "/v1/rides/42/receipt")
	f.Add("/*", "//")
	f.Add("/a/*", "/a/b/")
	f.Add("/*/*", "/a//b")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if ValidPattern(pattern) != nil {
			if pattern != "" && (Match{PathPattern: pattern}).Validate() == nil {
				t.Fatalf("Validate accepted %q", pattern)
			}
			return
		}
		want := refMatch(pattern, path)
		if got := MatchPattern(pattern, path); got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, want %v", pattern, path, got, want)
		}
		if got := matchSegments(strings.Split(pattern[1:], "/"), path); got != want {
			t.Fatalf("matchSegments(%q, %q) = %v, want %v", pattern, path, got, want)
		}
		// A covering pattern matches every exact path the other matches.
		if want && !Covers(Match{PathPattern: pattern}, Match{Path: path}) {
			t.Fatalf("Covers(%q, path %q) false though it matches", pattern, path)
		}
	})
}
