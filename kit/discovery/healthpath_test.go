package discovery

import (
	"net/http"
	"testing"
)

// TestHealthPath: only the path and query of a health URL count; its
// scheme, host (another service's port, the metadata address) and
// fragment are dropped.
func TestHealthPath(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"", ""},
		{"http://10.0.0.5:8080/healthz", "/healthz"},
		{"https://10.0.0.5:8443/ready?deep=1", "/ready?deep=1"},
		{"http://127.0.0.1:6379/", "/"},
		{"http://169.254.169.254/latest/meta-data/iam", "/latest/meta-data/iam"},
		{"http://10.0.0.5:8080", "/"},
		{"http://10.0.0.5:8080?x=1", "/?x=1"},
		{"http://10.0.0.5//evil.example/x", "//evil.example/x"},
		{"http://a/h%20z#frag", "/h%20z"},
		{"http://user:pw@10.0.0.5/h", "/h"},
		{"http:opaque", ""},
		{"/relative", ""},
		{"::nonsense", ""},
	} {
		if got := (Registration{HealthURL: c.url}).HealthPath(); got != c.want {
			t.Errorf("HealthPath(%q) = %q, want %q", c.url, got, c.want)
		}
	}
}

// FuzzHealthPath: whatever health URL a registration carries, a check
// built from the instance's address and HealthPath goes to that address.
func FuzzHealthPath(f *testing.F) {
	for _, s := range []string{"http://10.0.0.5:8080/healthz", "http://127.0.0.1:6379/", "http://a//b@c/d", "http://a/?@evil:1", "http://a/%2F%2Fevil", "https://[::1]:1/x#y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		r := Registration{Service: "s", ID: "i", Address: "10.1.2.3:8080", HealthURL: u}
		p := r.HealthPath()
		if p == "" {
			return
		}
		if p[0] != '/' {
			t.Fatalf("HealthPath(%q) = %q: not a path", u, p)
		}
		req, err := http.NewRequest(http.MethodGet, "http://"+r.Address+p, nil)
		if err != nil {
			return // the check fails; it goes nowhere
		}
		if req.URL.Host != r.Address {
			t.Fatalf("HealthPath(%q) = %q moves the check to host %q", u, p, req.URL.Host)
		}
	})
}
