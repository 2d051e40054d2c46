package route

import (
	"net/http/httptest"
	"testing"
)

func TestLookup(t *testing.T) {
	var tab Table[string]
	must := func(m Match, v string) {
		t.Helper()
		if err := tab.Add(m, v); err != nil {
			t.Fatal(err)
		}
	}
	must(Match{Host: "api.example.com", PathPrefix: "/v1/rides", Methods: []string{"GET", "POST"}, Headers: map[string]string{"x-client": "mobile"}}, "mobile-rides")
	must(Match{Host: "*.example.com", Path: "/exact"}, "wild-exact")
	must(Match{PathPrefix: "/v1/"}, "v1-dir")
	must(Match{PathPrefix: "/v2"}, "v2")
	must(Match{Methods: []string{"DELETE"}}, "deletes")
	for _, tc := range []struct {
		method, url string
		hdr         map[string]string
		want        string
	}{
		{"GET", "http://api.example.com/v1/rides", map[string]string{"X-Client": "mobile"}, "mobile-rides"},
		{"POST", "http://API.example.com:8080/v1/rides/42", map[string]string{"X-Client": "mobile"}, "mobile-rides"},
		{"GET", "http://api.example.com/v1/rides", map[string]string{"X-Client": "desktop"}, "v1-dir"},
		{"PUT", "http://api.example.com/v1/rides", map[string]string{"X-Client": "mobile"}, "v1-dir"},
		{"GET", "http://api.example.com/v1/ridesX", map[string]string{"X-Client": "mobile"}, "v1-dir"},
		{"GET", "http://a.b.example.com/exact", nil, "wild-exact"},
		{"GET", "http://example.com/exact", nil, ""},
		{"GET", "http://x.example.com/exact/", nil, ""},
		{"GET", "http://h/v2", nil, "v2"},
		{"GET", "http://h/v2/a", nil, "v2"},
		{"GET", "http://h/v20", nil, ""},
		{"DELETE", "http://h/anything", nil, "deletes"},
		{"GET", "http://[::1]:80/v2", nil, "v2"},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		got, ok := tab.Lookup(r)
		if tc.want == "" {
			if ok {
				t.Errorf("%s %s: matched %q, want no match", tc.method, tc.url, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s %s %v: got %q, want %q", tc.method, tc.url, tc.hdr, got, tc.want)
		}
	}
}

func TestMatchValidate(t *testing.T) {
	for _, m := range []Match{
		{Path: "/a", PathPrefix: "/a"},
		{Path: "a"},
		{PathPrefix: "a"},
		{Host: "a.*.com"},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%+v accepted", m)
		}
	}
	if err := (Match{Host: "*.example.com", PathPrefix: "/"}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestStripPrefix(t *testing.T) {
	for _, tc := range []struct{ path, prefix, want string }{
		{"/v1/rides", "/v1", "/rides"},
		{"/v1", "/v1", "/"},
		{"/v1/", "/v1", "/"},
		{"/v10/x", "/v1", "/v10/x"},
		{"/v1/x", "/v1/", "/x"},
		{"/other", "/v1", "/other"},
		{"/x", "", "/x"},
	} {
		if got := StripPrefix(tc.path, tc.prefix); got != tc.want {
			t.Errorf("StripPrefix(%q, %q) = %q, want %q", tc.path, tc.prefix, got, tc.want)
		}
	}
}

func TestLookupAllocs(t *testing.T) {
	var tab Table[int]
	_ = tab.Add(Match{Host: "a.example.com", PathPrefix: "/x"}, 1)
	_ = tab.Add(Match{PathPrefix: "/v1", Headers: map[string]string{"X-A": "b"}}, 2)
	r := httptest.NewRequest("GET", "http://b.example.com/v1/x", nil)
	r.Header.Set("X-A", "b")
	if n := testing.AllocsPerRun(100, func() { tab.Lookup(r) }); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	var tab Table[int]
	for i, p := range []string{"/a", "/b", "/c", "/d", "/e", "/f", "/g", "/v1/rides"} {
		_ = tab.Add(Match{PathPrefix: p, Methods: []string{"GET"}}, i)
	}
	r := httptest.NewRequest("GET", "http://h/v1/rides/42", nil)
	b.ReportAllocs()
	for b.Loop() {
		tab.Lookup(r)
	}
}

func TestClientType(t *testing.T) {
	for _, tc := range []struct{ ua, hdr, want string }{
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", "", ClientMobile},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8)", "", ClientMobile},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0", "", ClientDesktop},
		{"curl/8.5.0", "", ClientOther},
		{"", "", ClientOther},
		{"curl/8.5.0", "Mobile", ClientMobile},
		{"Mozilla/5.0 (iPhone)", "desktop", ClientDesktop},
		{"curl/8.5.0", "tv", ClientOther},
	} {
		r := httptest.NewRequest("GET", "http://h/", nil)
		r.Header.Set("User-Agent", tc.ua)
		if tc.hdr != "" {
			r.Header.Set(ClientTypeHeader, tc.hdr)
		}
		if got := ClientType(r); got != tc.want {
			t.Errorf("ClientType(ua=%q, header=%q) = %q, want %q", tc.ua, tc.hdr, got, tc.want)
		}
	}
	var tab Table[string]
	_ = tab.Add(Match{PathPrefix: "/api", Client: ClientMobile}, "mobile-bff")
	_ = tab.Add(Match{PathPrefix: "/api"}, "web-bff")
	r := httptest.NewRequest("GET", "http://h/api/x", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (iPhone) Mobile")
	if got, _ := tab.Lookup(r); got != "mobile-bff" {
		t.Fatalf("mobile UA routed to %q", got)
	}
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	if got, _ := tab.Lookup(r); got != "web-bff" {
		t.Fatalf("desktop UA routed to %q", got)
	}
	if err := (Match{Client: "tv"}).Validate(); err == nil {
		t.Fatal("unknown client type accepted")
	}
}

// A fully qualified host with its trailing dot ("admin.example.com.") is
// the same host to DNS and to most backends' virtual hosts: it matches the
// host's routes, rather than slipping past them (and their auth) to a
// catch-all route to the same backend.
func TestHostTrailingDotMatchesHostRoute(t *testing.T) {
	var tab Table[string]
	_ = tab.Add(Match{Host: "admin.example.com"}, "admin")
	_ = tab.Add(Match{Host: "*.example.com"}, "wild")
	_ = tab.Add(Match{}, "public")
	for host, want := range map[string]string{
		"admin.example.com": "admin", "admin.example.com.": "admin", "ADMIN.example.com.:8080": "admin",
		"x.example.com.": "wild", "example.com.": "public", ".": "public",
	} {
		r := httptest.NewRequest("GET", "http://h/", nil)
		r.Host = host
		if got, _ := tab.Lookup(r); got != want {
			t.Errorf("Host %q: route %q, want %q", host, got, want)
		}
	}
}
