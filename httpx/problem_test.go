package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
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

// TestMuxProblems: what a mux has no pattern for is a problem (405 with
// Allow for a path served with other methods, else 404 with the hint);
// what it has is served as before.
func TestMuxProblems(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /a", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("a")) })
	mux.HandleFunc("PUT /a", func(w http.ResponseWriter, _ *http.Request) {})
	h := MuxProblems(mux, "test", func(r *http.Request) string {
		if r.URL.Path == "/b" {
			return "try /a"
		}
		return ""
	})
	for _, c := range []struct {
		method, path string
		status       int
		code, detail string
	}{
		{"GET", "/a", 200, "", ""},
		{"POST", "/a", 405, "method_not_allowed", "POST is not served on /a: expected GET or HEAD or PUT"},
		{"GET", "/b", 404, "not_found", "no test endpoint GET /b: try /a"},
		{"GET", "/" + strings.Repeat("x", 300), 404, "not_found", "..."},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.status {
			t.Fatalf("%s %s: %d", c.method, c.path, w.Code)
		}
		if c.status == 200 {
			continue
		}
		var p Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code != c.code || !strings.Contains(p.Detail, c.detail) || len(p.Detail) > 200 {
			t.Fatalf("%s %s: %s", c.method, c.path, w.Body)
		}
		if c.status == 405 && w.Header().Get("Allow") != "GET, HEAD, PUT" {
			t.Fatalf("Allow %q", w.Header().Get("Allow"))
		}
	}
}

// FuzzMuxProblems: any method and path a client sends gets the mux's own
// answer or a 404/405 problem document (valid JSON, its status the
// response's, Allow on a 405), never a panic or a plain-text page.
func FuzzMuxProblems(f *testing.F) {
	for _, s := range [][2]string{{"GET", "/a"}, {"POST", "/a"}, {"GET", "/nope"}, {"BREW", "/a/"}, {"GET", "/a\x00\xff" + strings.Repeat("é", 60)}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	h := MuxProblems(mux, "test", func(*http.Request) string { return "try /a" })
	f.Fuzz(func(t *testing.T, method, path string) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path}, Header: http.Header{}, Host: "x"}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 299 {
			return
		}
		if w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed {
			// ServeMux itself redirects unclean paths (301/307/308).
			if w.Code >= 300 && w.Code < 400 {
				return
			}
			t.Fatalf("%q %q: status %d", method, path, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%q %q: Content-Type %q", method, path, ct)
		}
		var p struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Code == "" {
			t.Fatalf("%q %q: body %q (%v)", method, path, w.Body.Bytes(), err)
		}
		if w.Code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
			t.Fatalf("%q %q: 405 without Allow", method, path)
		}
	})
}

func TestClipText(t *testing.T) {
	if got := ClipText("short", 10); got != "short" {
		t.Errorf("short text changed: %q", got)
	}
	// "é" is two bytes: a cut at byte 3 of "abé..." would split it.
	got := ClipText("abéééé", 3)
	if got != "ab... (8 more bytes)" {
		t.Errorf("cut inside a rune or wrong count: %q", got)
	}
	if !utf8.ValidString(got) {
		t.Errorf("invalid UTF-8: %q", got)
	}
}
