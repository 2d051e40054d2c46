package throttle

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/ratelimit"
)

// TestNewErrorsAreFieldErrors checks that every problem is reported, each
// at its key path inside the rate_limit section.
func TestNewErrorsAreFieldErrors(t *testing.T) {
	cfg := Config{OnLimit: "explode", Queue: &Queue{MaxLength: 3},
		Limits: []Limit{{Rate: "10/fortnight"}, {Key: "user", Rate: "1/s"}, {Rate: "1/s", Quota: "1/day"}, {Quota: "1/day", Burst: 2}}}
	_, err := New(cfg, "r", nil, nil)
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a FieldError", e)
		}
		got = append(got, fe.Path)
	}
	want := []string{"on_limit", "queue", "limits[0].rate", "limits[1].key", "limits[2]", "limits[3].burst"}
	if len(got) != len(want) {
		t.Fatalf("paths %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("paths %v, want %v", got, want)
		}
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("no limits accepted")
	}
}

// TestMiddlewareDropsOverLimit runs the middleware alone over a memory
// store: the burst passes with RateLimit-* headers, the next is a 429.
func TestMiddlewareDropsOverLimit(t *testing.T) {
	store, err := ratelimit.NewMemory(ratelimit.MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	th, err := New(Config{Limits: []Limit{{Key: "ip", Rate: "1/h", Burst: 2}}}, "r", store, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := th.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for i, want := range []int{200, 200, 429} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != want || w.Header().Get("RateLimit-Limit") != "2" {
			t.Fatalf("request %d: %d %v, want %d", i, w.Code, w.Header(), want)
		}
	}
}
