package registry

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
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
