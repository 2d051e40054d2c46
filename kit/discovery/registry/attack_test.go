package registry

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
)

// An instance id "." or ".." is a path segment the HTTP API cannot
// address (the mux cleans /instances/.. away), so such an instance,
// registered through the Go API, could never be renewed, drained or
// deregistered over HTTP. Both are refused like any other bad id.
func TestDotIDsRefused(t *testing.T) {
	r, srv := serve(t)
	for _, id := range []string{".", ".."} {
		if _, err := r.Register(reg("rides", id, "127.0.0.1:1", time.Minute)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "instance id") {
			t.Errorf("Register id %q = %v, want ErrInvalid naming the instance id", id, err)
		}
	}
	// What the HTTP API does with such a path: never this instance.
	code, _ := call(t, http.MethodDelete, srv.URL+"/v1/services/rides/instances/..", "")
	if code == http.StatusOK || code == http.StatusNoContent {
		t.Fatalf("DELETE /instances/.. answered %d", code)
	}
}

// Addresses no instance can have are refused: link-local (169.254.0.0/16
// holds cloud metadata services, 169.254.169.254), the unspecified
// address (0.0.0.0 dials this host) and multicast. Loopback and private
// addresses stay allowed (development, private networks).
func TestNonInstanceAddressesRefused(t *testing.T) {
	r := open(t, Config{})
	at := func(a string) discovery.Registration {
		return discovery.Registration{Service: "rides", ID: "a", Address: a, TTL: config.Duration(time.Minute)}
	}
	for _, a := range []string{"169.254.169.254:80", "[fe80::1%eth0]:80", "0.0.0.0:9901", "[::]:80", "224.0.0.1:80", "[::ffff:169.254.169.254]:80"} {
		if _, err := r.Register(at(a)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "address") {
			t.Errorf("Register address %q = %v, want ErrInvalid naming the address", a, err)
		}
	}
	for _, a := range []string{"127.0.0.1:80", "10.0.0.7:80", "[::1]:80", "rides-1.internal:80"} {
		if _, err := r.Register(at(a)); err != nil {
			t.Errorf("Register address %q: %v", a, err)
		}
	}
}
