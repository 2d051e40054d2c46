package transcode_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/transcode"
	"github.com/switchyard/switchyard/transcode/transcodetest"
)

// h2cProxy forwards gRPC calls to addr over h2c, as the gateway's proxy
// does for an upstream with protocol h2c.
func h2cProxy(addr string) http.Handler {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	target := &url.URL{Scheme: "http", Host: addr}
	return &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
}

type env struct {
	srv *httptest.Server
	lib *transcodetest.Library
	tc  *transcode.Transcoder
}

func start(t *testing.T, mod func(*transcode.Config)) *env {
	t.Helper()
	lib := transcodetest.Start(t)
	cfg := transcode.Config{Descriptor: lib.DescriptorFile, Services: []string{transcodetest.Service}}
	if mod != nil {
		mod(&cfg)
	}
	tc, err := transcode.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tc.Middleware()(h2cProxy(lib.Addr)))
	t.Cleanup(srv.Close)
	return &env{srv: srv, lib: lib, tc: tc}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(t *testing.T, method, path, body string, hdr ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func jsonOf(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %q", err, s)
	}
	return m
}

func TestTranscodeMappings(t *testing.T) {
	e := start(t, nil)
	for _, c := range []struct {
		name, method, path, body string
		want                     string // exact JSON answer
	}{
		{"get with path variables", "GET", "/v1/shelves/s1/books/42", "", `{"shelf":"s1","id":"42","title":"book-42"}`},
		{"escaped single-segment variable", "GET", "/v1/shelves/a%2Fb%20c/books/1", "", `{"shelf":"a/b c","id":"1","title":"book-1"}`},
		{"body field", "POST", "/v1/shelves/s2/books", `{"title":"T","tags":["x"],"genre":"FICTION","note":"n"}`,
			`{"shelf":"s2","title":"T","tags":["x"],"genre":"FICTION","note":"n"}`},
		{"body * with path variables winning", "PATCH", "/v1/shelves/s3/books/7", `{"title":"X","shelf":"other","id":"9","author":{"name":"A"}}`,
			`{"shelf":"s3","id":"7","title":"X","author":{"name":"A"}}`},
		{"query parameters and response_body", "GET", "/v1/shelves/s4/books?tags=a&tags=b&page_size=2&genre=SCIENCE&min_pages=3", "",
			`[{"shelf":"s4","id":"1","title":"a"},{"shelf":"s4","id":"2","title":"b"}]`},
		{"additional binding, ** variable and verb", "GET", "/v1/files/a/b%2Fc:list?tags=t", "",
			`{"books":[{"shelf":"files/a/b%2Fc","id":"1","title":"t"}],"nextPageToken":"tok"}`}, // its own response_body: none
		{"default POST /pkg.Service/Method", "POST", "/switchyard.test.library.Library/GetBook", `{"shelf":"s5","bookId":"5"}`,
			`{"shelf":"s5","id":"5","title":"book-5"}`},
		{"proto field names accepted", "POST", "/switchyard.test.library.Library/GetBook", `{"shelf":"s5","book_id":6}`,
			`{"shelf":"s5","id":"6","title":"book-6"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := e.do(t, c.method, c.path, c.body)
			if a.status != 200 || a.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %s", a.status, a.header.Get("Content-Type"), a.body)
			}
			var got, want any
			_ = json.Unmarshal([]byte(a.body), &got)
			_ = json.Unmarshal([]byte(c.want), &want)
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if string(gb) != string(wb) {
				t.Fatalf("got %s\nwant %s", a.body, c.want)
			}
		})
	}
	// Response metadata comes back as headers; request headers go as metadata.
	a := e.do(t, "GET", "/v1/shelves/s9/books/1", "", "X-Tenant", "acme")
	if a.header.Get("X-Library-Shelf") != "s9" {
		t.Errorf("response metadata not forwarded: %v", a.header)
	}
	if md := e.lib.LastMetadata(); strings.Join(md.Get("x-tenant"), ",") != "acme" {
		t.Errorf("request header not sent as metadata: %v", md)
	}
	if got := e.tc.Stats().Calls.Load(); got < 9 {
		t.Errorf("calls = %d", got)
	}
}

func TestTranscodePrintOptions(t *testing.T) {
	e := start(t, func(c *transcode.Config) {
		c.Print = transcode.Print{UseProtoNames: true, EmitUnpopulated: true, EnumsAsInts: true}
	})
	a := e.do(t, "POST", "/v1/shelves/s/books", `{"genre":"SCIENCE","title":"t"}`)
	m := jsonOf(t, a.body)
	if a.status != 200 || m["genre"] != float64(2) || m["pages"] != float64(0) || m["tags"] == nil {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

type problem struct {
	Type, Title, Detail, GRPCStatus, Method string
	Status                                  int
	GRPCCode                                *int
}

func problemOf(t *testing.T, a answer) problem {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q: %d %s", ct, a.status, a.body)
	}
	var raw struct {
		Type       string `json:"type"`
		Title      string `json:"title"`
		Status     int    `json:"status"`
		Detail     string `json:"detail"`
		GRPCStatus string `json:"grpc_status"`
		GRPCCode   *int   `json:"grpc_code"`
		Method     string `json:"grpc_method"`
	}
	if err := json.Unmarshal([]byte(a.body), &raw); err != nil {
		t.Fatalf("problem body: %v: %s", err, a.body)
	}
	if raw.Status != a.status {
		t.Fatalf("problem status %d, response %d", raw.Status, a.status)
	}
	return problem{raw.Type, raw.Title, raw.Detail, raw.GRPCStatus, raw.Method, raw.Status, raw.GRPCCode}
}

func TestTranscodeGRPCErrors(t *testing.T) {
	e := start(t, nil)
	for _, c := range []struct {
		path   string
		status int
		grpc   string
		detail string
	}{
		{"/v1/shelves/missing/books/3", 404, "NOT_FOUND", "no book 3 on shelf \"missing\": ünïcode\nand a newline"},
		{"/v1/shelves/denied/books/3", 403, "PERMISSION_DENIED", "shelf is private"},
		{"/v1/shelves/exists/books/3", 409, "ALREADY_EXISTS", "already there"},
		{"/v1/shelves/s/books/0", 400, "INVALID_ARGUMENT", "book_id must be set"},
	} {
		a := e.do(t, "GET", c.path, "")
		p := problemOf(t, a)
		if a.status != c.status || p.GRPCStatus != c.grpc || p.Detail != c.detail || p.Method != "switchyard.test.library.Library.GetBook" {
			t.Errorf("%s: %d %s", c.path, a.status, a.body)
		}
	}
	// Client-streaming methods are not transcoded.
	if a := e.do(t, "POST", "/switchyard.test.library.Library/Upload", `{}`); a.status != 404 {
		t.Errorf("Upload: %d %s", a.status, a.body)
	}
	if got := e.tc.Stats().Failed.Load(); got != 4 {
		t.Errorf("failed = %d", got)
	}
}

func TestHTTPStatusTable(t *testing.T) {
	// google/rpc/code.proto's canonical mapping.
	want := []int{200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401}
	for code, st := range want {
		if got := transcode.HTTPStatus(code); got != st {
			t.Errorf("code %d: %d, want %d", code, got, st)
		}
	}
	if transcode.HTTPStatus(99) != 500 {
		t.Error("unknown code")
	}
}

func TestTranscodeServerStreaming(t *testing.T) {
	e := start(t, nil)
	resp, err := http.Get(e.srv.URL + "/v1/shelves/w:watch?page_size=3")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 || lines[2] != `{"shelf":"w","id":"3","title":"book-3"}` {
		t.Fatalf("%q", lines)
	}

	a := e.do(t, "GET", "/v1/shelves/fail:watch?page_size=2", "")
	got := strings.Split(strings.TrimSpace(a.body), "\n")
	if a.status != 200 || len(got) != 3 {
		t.Fatalf("%d %q", a.status, got)
	}
	last := jsonOf(t, got[2])["error"].(map[string]any)
	if last["status"] != "UNAVAILABLE" || last["message"] != "shelf went away" || last["http_status"] != float64(503) {
		t.Fatalf("last line %s", got[2])
	}

	a = e.do(t, "GET", "/v1/shelves/fail-first:watch", "")
	if p := problemOf(t, a); a.status != 503 || p.Detail != "shelf is closed" {
		t.Fatalf("%d %s", a.status, a.body)
	}
	a = e.do(t, "GET", "/v1/shelves/empty:watch", "")
	if a.status != 200 || a.body != "" {
		t.Fatalf("empty stream: %d %q", a.status, a.body)
	}
}

// Hostile requests are answered 4xx by the gateway, and none reaches the
// service.
func TestTranscodeHostileRequests(t *testing.T) {
	e := start(t, func(c *transcode.Config) { c.MaxBody = 4096; c.MaxDepth = 16 })
	deep := strings.Repeat(`{"mentor":`, 20) + `{}` + strings.Repeat(`}`, 20)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		detail                   string
		hdr                      []string
	}{
		{"malformed JSON", "POST", "/v1/shelves/s/books", `{"title":`, 400, "not valid JSON", nil},
		{"trailing data", "POST", "/v1/shelves/s/books", `{"title":"a"} {"x":1}`, 400, "not valid JSON", nil},
		{"body field smuggling", "POST", "/v1/shelves/s/books", `{"title":"a"}, "shelf": "x"`, 400, "not valid JSON", nil},
		{"unknown field", "POST", "/v1/shelves/s/books", `{"titel":"a"}`, 400, "unknown field", nil},
		{"wrong type", "POST", "/v1/shelves/s/books", `{"title":5}`, 400, "invalid value for string field", nil},
		{"int32 overflow", "POST", "/v1/shelves/s/books", `{"pages":99999999999}`, 400, "invalid value for int32", nil},
		{"huge exponent", "POST", "/v1/shelves/s/books", `{"pages":1e400}`, 400, "invalid value", nil},
		{"int64 overflow in path", "GET", "/v1/shelves/s/books/99999999999999999999", "", 400, "value out of range", nil},
		{"non-number in path", "GET", "/v1/shelves/s/books/abc", "", 400, "invalid int64 value", nil},
		{"bad enum in query", "GET", "/v1/shelves/s/books?genre=POETRY", "", 400, "not a value of", nil},
		{"deep nesting", "POST", "/v1/shelves/s/books", `{"author":` + deep + `}`, 400, "deeper than 16", nil},
		{"traversal in variable", "GET", "/v1/shelves/%2E%2E/books/1", "", 400, "'..'", nil},
		{"dot variable", "GET", "/v1/shelves/./books/1", "", 400, "'..'", nil},
		{"traversal in ** variable", "GET", "/v1/files/a/../etc:list", "", 400, "'..'", nil},
		{"escaped traversal in ** variable", "GET", "/v1/files/a/%2e%2E/etc:list", "", 400, "'..'", nil},
		{"slash-dot-dot inside one segment", "GET", "/v1/files/a/x%2F..%2Fy:list", "", 400, "'..'", nil},
		{"NUL in variable", "GET", "/v1/shelves/a%00b/books/1", "", 400, "NUL", nil},
		{"oversized body", "POST", "/v1/shelves/s/books", `{"title":"` + strings.Repeat("a", 5000) + `"}`, 413, "larger than the limit of 4096", nil},
		{"unknown query parameter", "GET", "/v1/shelves/s/books?colour=red", "", 400, "has no field", nil},
		{"query parameter naming a message", "GET", "/v1/shelves/s/books?min_pages.value.x=1&tags=a", "", 400, "is not a message", nil},
		{"repeated single field", "GET", "/v1/shelves/s/books?page_size=1&page_size=2", "", 400, "holds one value", nil},
		{"query on body field", "POST", "/v1/shelves/s/books?book.title=x", `{}`, 400, "set by the body", nil},
		{"body on GET", "GET", "/v1/shelves/s/books/1", `{"x":1}`, 400, "takes no body", nil},
		{"not JSON", "POST", "/v1/shelves/s/books", `title=x`, 415, "expected application/json", []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"compressed body", "POST", "/v1/shelves/s/books", `{}`, 415, "Content-Encoding", []string{"Content-Encoding", "gzip"}},
		{"unmapped path", "GET", "/v2/anything", "", 404, "no gRPC method is mapped", nil},
		{"wrong method", "DELETE", "/v1/shelves/s/books/1", "", 405, "not allowed", nil},
		{"duplicate key", "POST", "/v1/shelves/s/books", `{"title":"a","title":"b"}`, 400, "duplicate", nil},
		{"duplicate key, JSON and proto names", "POST", "/v1/shelves/s/books", `{"pages":1,"pages":2}`, 400, "duplicate", nil},
		{"invalid UTF-8 in a string", "POST", "/v1/shelves/s/books", "{\"title\":\"\xff\"}", 400, "UTF-8", nil},
		{"unpaired high surrogate", "POST", "/v1/shelves/s/books", `{"title":"a\ud800b"}`, 400, "unpaired UTF-16 surrogate", nil},
		{"unpaired low surrogate", "POST", "/v1/shelves/s/books", `{"title":"\uDC00"}`, 400, "unpaired UTF-16 surrogate", nil},
		{"high surrogate then a non-surrogate", "POST", "/v1/shelves/s/books", `{"title":"\ud800\u0041"}`, 400, "unpaired UTF-16 surrogate", nil},
		{"surrogate in a key", "POST", "/v1/shelves/s/books", `{"\ud800":1}`, 400, "unpaired UTF-16 surrogate", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := e.do(t, c.method, c.path, c.body, c.hdr...)
			p := problemOf(t, a)
			if a.status != c.status || !strings.Contains(p.Detail, c.detail) {
				t.Fatalf("%d %s (want %d and %q)", a.status, a.body, c.status, c.detail)
			}
			if c.status == 405 && a.header.Get("Allow") != "GET, PATCH" {
				t.Errorf("Allow: %q", a.header.Get("Allow"))
			}
		})
	}
	if got := e.tc.Stats().Calls.Load(); got != 0 {
		t.Errorf("%d hostile requests reached the service", got)
	}
	// A query parameter naming a field the path binds cannot override it:
	// what a path-based rule in front saw is what the service gets.
	if a := e.do(t, "GET", "/v1/shelves/s/books/1?shelf=t", ""); a.status != 200 || jsonOf(t, a.body)["shelf"] != "s" {
		t.Fatalf("query overriding a path variable: %d %s, want shelf \"s\" from the path", a.status, a.body)
	}
	if a := e.do(t, "POST", "/v1/shelves/s/books", `{"title":"\ud83d\ude00 \\ud800 \u00e9"}`); a.status != 200 || jsonOf(t, a.body)["title"] != "\U0001F600 \\ud800 \u00e9" {
		t.Fatalf("a surrogate pair, an escaped backslash before ud800 and a plain escape: %d %s", a.status, a.body)
	}
	// The decoder quotes the offending value; the refusal does not echo
	// a body's worth of it.
	if a := e.do(t, "POST", "/v1/shelves/s/books", `{"pages":`+strings.Repeat("9", 4000)+`}`); a.status != 400 || len(problemOf(t, a).Detail) > 1100 || !strings.Contains(problemOf(t, a).Detail, "more bytes") {
		t.Fatalf("a 4000-digit number: %d, detail of %d bytes: %.200s", a.status, len(problemOf(t, a).Detail), a.body)
	}
	e2 := start(t, func(c *transcode.Config) { c.IgnoreUnknownFields, c.IgnoreUnknownQuery = true, true })
	if a := e2.do(t, "POST", "/v1/shelves/s/books?colour=red", `{"titel":"a","title":"b"}`); a.status != 200 || jsonOf(t, a.body)["title"] != "b" {
		t.Fatalf("ignore unknown: %d %s", a.status, a.body)
	}
}

func TestTranscodeNotGRPCUpstream(t *testing.T) {
	lib := transcodetest.Start(t)
	tc, err := transcode.Load(transcode.Config{DescriptorSet: transcodetest.DescriptorSet, Services: []string{transcodetest.Service}})
	if err != nil {
		t.Fatal(err)
	}
	_ = lib
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusNotFound) })
	srv := httptest.NewServer(tc.Middleware()(plain))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/shelves/s/books/1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(b), "without a gRPC status") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pb")
	if err := os.WriteFile(garbage, []byte("\xff\xff\xff not a descriptor"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg  transcode.Config
		want []string
	}{
		{transcode.Config{}, []string{"descriptor: missing", "services: missing"}},
		{transcode.Config{Descriptor: "x.pb", Services: []string{"bad name!", "a.B", "a.B"}, MaxBody: -1},
			[]string{"services[0]: \"bad name!\" is not a fully qualified", "services[2]: duplicate service", "max_body: negative"}},
		{transcode.Config{Descriptor: filepath.Join(dir, "none.pb"), Services: []string{"a.B"}}, []string{"descriptor: reading the descriptor set", "no such file"}},
		{transcode.Config{Descriptor: garbage, Services: []string{"a.B"}}, []string{"is not a protobuf FileDescriptorSet"}},
		{transcode.Config{DescriptorSet: transcodetest.DescriptorSet, Services: []string{"pkg.Nope"}},
			[]string{`services[0]: service "pkg.Nope" is not in the embedded descriptor set (it has: switchyard.test.library.Library)`}},
	} {
		_, err := transcode.Load(c.cfg)
		if err == nil {
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
		var fe *config.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%v: not located at a key", err)
		}
	}
}

// TestTranscodeNullBody: a body of JSON null for a rule whose body is one
// message field ("book") panicked in dynamicpb (the handler's connection
// was cut, no answer); it is the empty field, as an empty body is the
// empty message. For body "*" it is refused.
func TestTranscodeNullBody(t *testing.T) {
	e := start(t, nil)
	if a := e.do(t, "POST", "/v1/shelves/s/books", "null"); a.status != 200 || jsonOf(t, a.body)["shelf"] != "s" {
		t.Fatalf("null for body field book: %d %s", a.status, a.body)
	}
	if a := e.do(t, "POST", "/v1/shelves/s/books", ` null `); a.status != 200 {
		t.Fatalf("null with spaces: %d %s", a.status, a.body)
	}
	if a := e.do(t, "PATCH", "/v1/shelves/s/books/7", "null"); a.status != 400 {
		t.Fatalf("null for body *: %d %s, want 400", a.status, a.body)
	}
}
