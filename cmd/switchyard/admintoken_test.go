package main

import (
	"strings"
	"testing"
)

// TestAdminBase: the edge and rollout CLIs share one normalisation of
// --admin; what it refuses says what was expected.
func TestAdminBase(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9901":          "http://127.0.0.1:9901",
		"127.0.0.1:9901/":         "http://127.0.0.1:9901",
		" localhost:9901 ":        "http://localhost:9901",
		"http://127.0.0.1:9901//": "http://127.0.0.1:9901",
		"https://gw.example:9901": "https://gw.example:9901",
		"http://h:1/prefix":       "http://h:1/prefix",
	} {
		if got, err := adminBase("--admin", in); err != nil || got != want {
			t.Errorf("adminBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                "--admin is required",
		"/":               "--admin is required",
		"ftp://h:1":       `scheme "ftp"`,
		"http:///x":       "no host",
		"h:1/?q=1":        "a query or fragment",
		"h:1/%zz":         "invalid --admin",
		"http://h:1#frag": "a query or fragment",
	} {
		_, err := adminBase("--admin", in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("adminBase(%q): %v, want an error containing %q", in, err, want)
		}
	}
}
