package contract

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/httpx"
)

const ridesAPI = `openapi: 3.1.0
info: { title: Rides, version: "1" }
paths:
  /v1/rides:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [from, to]
              additionalProperties: false
              properties:
                from: { $ref: '#/components/schemas/Point' }
                to: { $ref: '#/components/schemas/Point' }
                seats: { type: integer, minimum: 1, maximum: 6 }
                note: { type: [string, "null"], maxLength: 40 }
      responses:
        '201':
          description: created
          content: { application/json: { schema: { $ref: '#/components/schemas/Ride' } } }
        '400': { description: refused }
  /v1/rides/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: string, pattern: '^r-[0-9a-f]{8}$' } }
    get:
      parameters:
        - { name: fields, in: query, schema: { type: string, enum: [all, summary] } }
        - { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 100 } }
        - { name: X-Client, in: header, schema: { type: string, maxLength: 16 } }
      responses:
        '200':
          description: the ride
          content: { application/json: { schema: { $ref: '#/components/schemas/Ride' } } }
    delete:
      responses: { '204': { description: cancelled } }
  /v1/stream:
    get:
      responses:
        '200': { description: events, content: { text/event-stream: { schema: { type: string } } } }
components:
  schemas:
    Point:
      type: object
      required: [lat, lng]
      properties:
        lat: { type: number, minimum: -90, maximum: 90 }
        lng: { type: number, minimum: -180, maximum: 180 }
    Ride:
      type: object
      required: [id, status]
      properties:
        id: { type: string }
        status: { type: string, enum: [requested, matched, finished] }
`

type upstream struct {
	calls    atomic.Int64
	lastBody atomic.Value // string
	respond  atomic.Value // func(w, r)
}

func newHarness(t *testing.T, cfg Config) (*httptest.Server, *upstream, *Contract) {
	t.Helper()
	if cfg.File == "" && cfg.Document == nil {
		cfg.Document = []byte(ridesAPI)
	}
	c, err := Load("rides", cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	up := &upstream{}
	up.respond.Store(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(201)
		}
		io.WriteString(w, `{"id":"r-0000abcd","status":"requested"}`)
	})
	h := c.Middleware(slog.New(slog.DiscardHandler))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		up.lastBody.Store(string(b))
		up.respond.Load().(func(http.ResponseWriter, *http.Request))(w, r)
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(httpx.NewContext(r.Context(), &httpx.State{RequestID: "req-1"})))
	}))
	t.Cleanup(srv.Close)
	return srv, up, c
}

func send(t *testing.T, method, url, ctype, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func problemOf(t *testing.T, h http.Header, body string) Problem {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json; body %s", ct, body)
	}
	var p Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p
}

// TestRequestsChecked: conforming requests reach the upstream with the
// exact bytes sent; each kind of violation is refused with the right
// status and an RFC 9457 problem that names where it is (parameter name
// or JSON Pointer), and never reaches the upstream.
func TestRequestsChecked(t *testing.T) {
	srv, up, _ := newHarness(t, Config{})
	good := `{"from":{"lat":52.5,"lng":13.4},"to":{"lat":52.52,"lng":13.41},"seats":2,"note":null}`
	if code, _, body := send(t, "POST", srv.URL+"/v1/rides", "application/json", good); code != 201 {
		t.Fatalf("conforming POST: %d %s", code, body)
	}
	if got := up.lastBody.Load(); got != good {
		t.Errorf("upstream received %q, want the client's bytes", got)
	}
	if code, _, body := send(t, "GET", srv.URL+"/v1/rides/r-0000abcd?fields=all&limit=5", "", "", "X-Client", "ios"); code != 200 {
		t.Fatalf("conforming GET: %d %s", code, body)
	}
	before := up.calls.Load()

	cases := []struct {
		name, method, path, ctype, body string
		hdr                             []string
		status                          int
		in, field, msg                  string // a violation that must be present
	}{
		{"missing required field", "POST", "/v1/rides", "application/json", `{"from":{"lat":1,"lng":2}}`, nil, 400, "body", "", "to"},
		{"nested type", "POST", "/v1/rides", "application/json", `{"from":{"lat":"north","lng":2},"to":{"lat":1,"lng":2}}`, nil, 400, "body", "/from/lat", ""},
		{"nested range", "POST", "/v1/rides", "application/json", `{"from":{"lat":91,"lng":2},"to":{"lat":1,"lng":2}}`, nil, 400, "body", "/from/lat", ""},
		{"extra property", "POST", "/v1/rides", "application/json", `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2},"admin":true}`, nil, 400, "body", "", "admin"},
		{"integer bound", "POST", "/v1/rides", "application/json", `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2},"seats":7}`, nil, 400, "body", "/seats", ""},
		{"not JSON", "POST", "/v1/rides", "application/json", `{"from":`, nil, 400, "body", "", ""},
		{"wrong media type", "POST", "/v1/rides", "text/plain", `hello`, nil, 415, "", "", ""},
		{"missing body", "POST", "/v1/rides", "application/json", ``, nil, 400, "", "", ""},
		{"path parameter pattern", "GET", "/v1/rides/42", "", "", nil, 400, "path", "id", ""},
		{"query enum", "GET", "/v1/rides/r-0000abcd?fields=everything", "", "", nil, 400, "query", "fields", ""},
		{"query type", "GET", "/v1/rides/r-0000abcd?limit=lots", "", "", nil, 400, "query", "limit", ""},
		{"header length", "GET", "/v1/rides/r-0000abcd", "", "", []string{"X-Client", strings.Repeat("x", 40)}, 400, "header", "X-Client", ""},
		{"unknown path", "GET", "/v1/admin", "", "", nil, 404, "path", "", ""},
		{"unknown method", "PUT", "/v1/rides/r-0000abcd", "application/json", `{}`, nil, 405, "operation", "", ""},
	}
	for _, c := range cases {
		code, h, body := send(t, c.method, srv.URL+c.path, c.ctype, c.body, c.hdr...)
		if code != c.status {
			t.Errorf("%s: status %d, want %d; %s", c.name, code, c.status, body)
			continue
		}
		p := problemOf(t, h, body)
		if p.Status != c.status || p.Type != ProblemType || p.Contract != "rides" || p.Instance == "" || p.RequestID != "req-1" || p.Detail == "" {
			t.Errorf("%s: problem fields: %+v", c.name, p)
		}
		if c.status == 405 && h.Get("Allow") != "DELETE, GET" {
			t.Errorf("%s: Allow %q, want \"DELETE, GET\"", c.name, h.Get("Allow"))
		}
		if c.in == "" {
			continue
		}
		found := false
		for _, v := range p.Violations {
			if v.In == c.in && (c.field == "" || v.Pointer == c.field || v.Name == c.field) && strings.Contains(v.Message+v.Pointer, c.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no violation in %s naming %q/%q: %+v", c.name, c.in, c.field, c.msg, p.Violations)
		}
	}
	if n := up.calls.Load(); n != before {
		t.Errorf("%d refused requests reached the upstream", n-before)
	}
}

// TestBodyLimit: a body over max_body is refused with 413 whether it
// announces its length or arrives chunked, and never reaches the upstream.
func TestBodyLimit(t *testing.T) {
	srv, up, _ := newHarness(t, Config{MaxBody: 64})
	big := `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2},"note":"` + strings.Repeat("a", 100) + `"}`
	if code, _, body := send(t, "POST", srv.URL+"/v1/rides", "application/json", big); code != 413 {
		t.Errorf("announced large body: %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/rides", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1 // chunked
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked large body: %d", resp.StatusCode)
	}
	if up.calls.Load() != 0 {
		t.Error("an oversized body reached the upstream")
	}
}

// TestResponses: in enforce mode a response that breaks the contract
// becomes 502 with the violation; in report mode it is sent and counted;
// a streamed (non-JSON, flushed) response passes through untouched.
func TestResponses(t *testing.T) {
	bad := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		io.WriteString(w, `{"id":"r-0000abcd","status":"teleported"}`)
	}
	srv, up, c := newHarness(t, Config{Responses: ResponsesEnforce})
	up.respond.Store(bad)
	code, h, body := send(t, "GET", srv.URL+"/v1/rides/r-0000abcd", "", "")
	if code != 502 {
		t.Fatalf("enforce: %d %s", code, body)
	}
	p := problemOf(t, h, body)
	if len(p.Violations) == 0 || p.Violations[0].In != "response" || p.Violations[0].Pointer != "/status" {
		t.Errorf("enforce: violations %+v", p.Violations)
	}
	if h.Get("X-Upstream") != "" {
		t.Error("enforce: the refused response's headers leaked")
	}
	up.respond.Store(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"r-0000abcd","status":"matched"}`)
	})
	if code, h, body := send(t, "GET", srv.URL+"/v1/rides/r-0000abcd", "", ""); code != 200 || body != `{"id":"r-0000abcd","status":"matched"}` || h.Get("Content-Type") != "application/json" {
		t.Errorf("enforce, conforming: %d %s %v", code, body, h)
	}
	if c.Stats().ResponseViolations.Load() != 1 || c.Stats().ResponsesChecked.Load() != 2 {
		t.Errorf("stats: violations %d checked %d", c.Stats().ResponseViolations.Load(), c.Stats().ResponsesChecked.Load())
	}

	srv2, up2, c2 := newHarness(t, Config{Responses: ResponsesReport})
	up2.respond.Store(bad)
	if code, h, body := send(t, "GET", srv2.URL+"/v1/rides/r-0000abcd", "", ""); code != 200 || !strings.Contains(body, "teleported") || h.Get("X-Upstream") != "yes" {
		t.Errorf("report: %d %s", code, body)
	}
	if c2.Stats().ResponseViolations.Load() != 1 {
		t.Errorf("report: violations counted %d", c2.Stats().ResponseViolations.Load())
	}
	up2.respond.Store(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "data: two\n\n")
	})
	if code, _, body := send(t, "GET", srv2.URL+"/v1/stream", "", ""); code != 200 || body != "data: one\n\ndata: two\n\n" {
		t.Errorf("stream: %d %q", code, body)
	}
}

// TestServeAt: the document is served on its path, as loaded.
func TestServeAt(t *testing.T) {
	srv, up, _ := newHarness(t, Config{ServeAt: "/v1/openapi.yaml"})
	code, h, body := send(t, "GET", srv.URL+"/v1/openapi.yaml", "", "")
	if code != 200 || body != ridesAPI || h.Get("Content-Type") != "application/yaml" {
		t.Errorf("GET document: %d %q %q", code, h.Get("Content-Type"), body[:min(40, len(body))])
	}
	if up.calls.Load() != 0 {
		t.Error("the document request reached the upstream")
	}
}

// TestLoadErrors: a contract that cannot be enforced stops the config,
// saying why.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"missing file":  {Config{File: filepath.Join(dir, "nope.yaml")}, "file: reading the contract"},
		"empty":         {Config{File: write("empty.yaml", "  \n")}, "empty document"},
		"swagger 2":     {Config{File: write("sw.yaml", "swagger: '2.0'\ninfo: {title: x, version: '1'}\npaths: {}\n")}, "expected 3.0.x or 3.1.x"},
		"not openapi":   {Config{File: write("x.yaml", "hello: world\n")}, "sw"},
		"invalid doc":   {Config{File: write("bad.yaml", "openapi: 3.1.0\ninfo: {title: x}\npaths:\n  /a:\n    get:\n      responses: {'200': {}}\n")}, "not a valid OpenAPI"},
		"bad responses": {Config{Document: []byte(ridesAPI), Responses: "always"}, `responses: unknown mode "always"`},
		"bad serve_at":  {Config{Document: []byte(ridesAPI), ServeAt: "openapi.yaml"}, "serve_at"},
		"no file":       {Config{}, "file: missing"},
	}
	for name, c := range cases {
		_, err := Load("t", c.cfg)
		if err == nil {
			t.Errorf("%s: loaded", name)
			continue
		}
		if name == "not openapi" {
			t.Logf("%s: %v", name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// FuzzRequest: any method, path, query, content type and body is answered
// with a status from the expected set, never a panic, and a refused
// request never reaches the upstream.
func FuzzRequest(f *testing.F) {
	c, err := Load("rides", Config{Document: []byte(ridesAPI), MaxBody: 4096})
	if err != nil {
		f.Fatal(err)
	}
	var reached atomic.Bool
	h := c.Middleware(slog.New(slog.DiscardHandler))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(true)
		w.WriteHeader(200)
	}))
	f.Add("POST", "/v1/rides", "", "application/json", `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2}}`)
	f.Add("GET", "/v1/rides/r-0000abcd", "fields=all&limit=3", "", "")
	f.Add("GET", "/v1/rides/%2e%2e", "limit=1e400", "", "")
	f.Add("POST", "/v1/rides", "", "application/json; charset=utf-16", "\xff\xfe{")
	f.Fuzz(func(t *testing.T, method, path, query, ctype, body string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") {
			return
		}
		req := httptest.NewRequest("GET", "/", strings.NewReader(body))
		req.Method = method
		req.URL.Path = path
		req.URL.RawQuery = query
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		reached.Store(false)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if !reached.Load() {
				t.Fatal("200 without reaching the upstream")
			}
		case 400, 404, 405, 413, 415:
			if reached.Load() {
				t.Fatalf("refused with %d but reached the upstream", rec.Code)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code {
				t.Fatalf("problem body %q: %v", rec.Body.String(), err)
			}
		default:
			t.Fatalf("status %d for %s %s?%s (%s) %q", rec.Code, method, path, query, ctype, body)
		}
	})
}

func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// FuzzLoad: a hostile document is refused or loaded, never a panic.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(ridesAPI))
	f.Add([]byte("openapi: 3.1.0\ninfo: {title: x, version: '1'}\npaths: {}\n"))
	f.Add([]byte(`{"openapi":"3.0.3","info":{"title":"x","version":"1"},"paths":{"/a/{b}":{"get":{"responses":{"200":{"description":"x"}}}}}}`))
	f.Add([]byte("openapi: 3.1.0\ncomponents:\n  schemas:\n    A: {$ref: '#/components/schemas/A'}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		_, _ = Load("f", Config{Document: doc})
	})
}
