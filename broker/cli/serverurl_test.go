package cli

import (
	"strings"
	"testing"
)

// TestServerURLNamesTheNativePortMistake: `hitch up` prints the bus as
// switchyard://HOST:PORT; giving that to the CLI gets an error that says
// which address to use instead, not just "want http://".
func TestServerURLNamesTheNativePortMistake(t *testing.T) {
	_, err := serverURL("switchyard://127.0.0.1:4223?ca=/x/ca.crt")
	if err == nil || !strings.Contains(err.Error(), "native (bus) port") || !strings.Contains(err.Error(), "--http") {
		t.Fatalf("err = %v", err)
	}
	if u, err := serverURL("https://127.0.0.1:8222"); err != nil || u != "https://127.0.0.1:8222" {
		t.Fatalf("https: %q %v", u, err)
	}
	if _, err := serverURL("ftp://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "http(s)://") {
		t.Fatalf("ftp: %v", err)
	}
}
