package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteProblem(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteProblem(rec, http.StatusConflict, "conflict", `upstream "api" has a rollout running: abort it first`)
	if rec.Code != 409 {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q: RFC 9457 asks for application/problem+json", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	// RFC 9457 section 3.1.2: status is a JSON number.
	if s, ok := got["status"].(float64); !ok || s != 409 {
		t.Errorf("status member %#v: expected the number 409", got["status"])
	}
	want := map[string]any{"type": "about:blank", "title": "Conflict", "code": "conflict",
		"detail": `upstream "api" has a rollout running: abort it first`, "error": `upstream "api" has a rollout running: abort it first`}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}
