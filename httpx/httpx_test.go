package httpx_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/httpx"
)

func TestWriteErrorIsJSONAndRecordsStatus(t *testing.T) {
	st := &httpx.State{RequestID: "id-1"}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(httpx.NewContext(r.Context(), st))
	w := httptest.NewRecorder()
	msg := "bad \x00 \"quote\" \xff é"
	httpx.WriteError(w, r, &httpx.Error{Status: 429, Code: "rate_limited", Msg: msg, RetryAfter: 1500 * time.Millisecond})
	if st.Status != 429 || w.Code != 429 {
		t.Fatalf("status recorded %d, written %d", st.Status, w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != "2" {
		t.Fatalf("Retry-After %q, want 2 (rounded up)", got)
	}
	var body struct {
		Error     string `json:"error"`
		Code      string `json:"code"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, w.Body.String())
	}
	if body.Code != "rate_limited" || body.RequestID != "id-1" || !strings.Contains(body.Error, `"quote"`) {
		t.Fatalf("body %+v", body)
	}
}

func TestOutsideGateway(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if httpx.RequestID(r) != "" || httpx.StateOf(r) != nil {
		t.Fatal("no state expected")
	}
	httpx.RecordStatus(r, 500) // must not panic
	w := httptest.NewRecorder()
	httpx.WriteError(w, r, &httpx.Error{Status: 403, Code: "x", Msg: "y"})
	if w.Code != 403 {
		t.Fatal(w.Code)
	}
}

func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) httpx.Middleware {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := httpx.Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { order = append(order, "h") }), mw("a"), mw("b"))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if strings.Join(order, ",") != "a,b,h" {
		t.Fatal(order)
	}
}

func TestChildTraceparent(t *testing.T) {
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	out := httpx.ChildTraceparent(in)
	if len(out) != 55 || out[3:35] != in[3:35] || out[36:52] == in[36:52] || out[53:] != "01" {
		t.Fatalf("child of %s = %s", in, out)
	}
	for _, bad := range []string{"", "garbage", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		out := httpx.ChildTraceparent(bad)
		if len(out) != 55 || out[3:35] == "00000000000000000000000000000000" || (len(bad) == 55 && out[3:35] == bad[3:35]) {
			t.Fatalf("invalid parent %q continued as %s", bad, out)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{"abc-123": true, "": false, "a b": false, "é": false, strings.Repeat("a", 128): true, strings.Repeat("a", 129): false} {
		if httpx.ValidRequestID(id) != want {
			t.Errorf("%q: want %v", id, want)
		}
	}
	if a, b := httpx.NewRequestID(), httpx.NewRequestID(); a == b || len(a) != 32 {
		t.Fatal(a, b)
	}
}
