package resilient

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestBulkheadReleasesSlotOnPanic: a RoundTripper below the bulkhead that
// panics (a bug in a custom transport, a nil map in a test double) must
// not keep its slot. The panic reaches the caller, and net/http's server
// recovers a handler's panic, so the service keeps running: before, every
// such panic leaked one slot for good, and MaxConcurrent of them refused
// every later call to the dependency with ErrBulkheadFull.
func TestBulkheadReleasesSlotOnPanic(t *testing.T) {
	bh, err := NewBulkhead(BulkheadConfig{MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	var panicking = true
	rt := bh.Wrap(RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		if panicking {
			panic("transport bug")
		}
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: req}, nil
	}))
	call := func() (p any, resp *http.Response, err error) {
		defer func() { p = recover() }()
		req, _ := http.NewRequest(http.MethodGet, "http://payments.internal/charge", nil)
		resp, err = rt.RoundTrip(req)
		return nil, resp, err
	}
	for range 3 {
		if p, _, err := call(); p != "transport bug" {
			t.Fatalf("the panic did not reach the caller: %v %v", p, err)
		}
	}
	if f, w := bh.Stats("payments.internal"); f != 0 || w != 0 {
		t.Fatalf("after 3 panics: %d in flight, %d waiting, want 0 and 0", f, w)
	}
	panicking = false
	p, resp, err := call()
	if p != nil || err != nil {
		t.Fatalf("a call after the panics: %v %v, want through", p, err)
	}
	resp.Body.Close()
	if f, _ := bh.Stats("payments.internal"); f != 0 {
		t.Fatalf("%d in flight after the body was closed", f)
	}
}
