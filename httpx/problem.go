package httpx

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// ProblemContentType is the media type of an RFC 9457 problem details body.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object, as the admin listener's
// endpoints (the admin API, SLOs, traces, faults, the dashboard) answer
// their errors:
//
//	{"type": "about:blank", "title": "Not Found", "status": 404,
//	 "detail": "unknown upstream \"web2\": expected one of api, web",
//	 "code": "not_found", "error": "unknown upstream ..."}
//
// Type is "about:blank" (the status says it all) and Title the status's
// text, as the RFC asks for that type; Status is the HTTP status as a
// number. Code (a stable machine-readable reason) and Error (the same
// text as Detail, which clients of the older {"error": ...} bodies read)
// are extension members.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code,omitempty"`
	Error  string `json:"error"`
}

// NewProblem returns the problem for status with a detail (what went
// wrong, where, and what was expected) and an optional code.
func NewProblem(status int, code, detail string) Problem {
	title := http.StatusText(status)
	if title == "" {
		title = "Error"
	}
	if detail == "" {
		detail = title
	}
	return Problem{Type: "about:blank", Title: title, Status: status, Detail: detail, Code: code, Error: detail}
}

// WriteProblem answers status with a problem details body
// (Content-Type application/problem+json, never cached).
func WriteProblem(w http.ResponseWriter, status int, code, detail string) {
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // details say "rate 0.2 > 0.01", not "\u003e"
	_ = enc.Encode(NewProblem(status, code, detail))
}

// MuxProblems serves mux, answering what it has no pattern for as problem
// details instead of its plain-text 404 and 405: 405 method_not_allowed
// with Allow when the path is served for other methods, else 404
// not_found "no WHAT endpoint METHOD PATH", followed by hint(r) when hint
// is set and says something (such as where the path is served instead).
func MuxProblems(mux *http.ServeMux, what string, hint func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"} {
			probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
			if _, pattern := mux.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		path := trunc(r.URL.Path)
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			WriteProblem(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("%s is not served on %s: expected %s", trunc(r.Method), path, strings.Join(allow, " or ")))
			return
		}
		msg := fmt.Sprintf("no %s endpoint %s %s", what, trunc(r.Method), path)
		if hint != nil {
			if h := hint(r); h != "" {
				msg += ": " + h
			}
		}
		WriteProblem(w, http.StatusNotFound, "not_found", msg)
	})
}

// ClipText bounds a text quoted back in an error (a refusal may quote the
// offending value, which can be most of a large body): longer than max
// bytes, it is cut at a rune boundary at or before max and says how much
// was left out.
func ClipText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d more bytes)", s[:cut], len(s)-cut)
}
