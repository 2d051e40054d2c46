package transform

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxy"
)

func TestFilterJSON(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		in    string
		want  string
	}{
		{"top level", []string{"id", "status"}, `{"id": 7, "status": "done", "secret": {"a": 1}}`, `{"id":7,"status":"done"}`},
		{"kept values verbatim", []string{"a"}, `{"a": {"x" : [1, 2.50e1, "\u00e9"]}, "b": 1}`, `{"a":{"x" : [1, 2.50e1, "\u00e9"]}}`},
		{"dotted", []string{"driver.name", "id"}, `{"id":1,"driver":{"name":"Ann","phone":"555"}}`, `{"id":1,"driver":{"name":"Ann"}}`},
		{"deep", []string{"a.b.c"}, `{"a":{"b":{"c":1,"d":2},"e":3},"f":4}`, `{"a":{"b":{"c":1}}}`},
		{"array of objects", []string{"stops.city"}, `{"stops":[{"city":"A","lat":1},{"city":"B","lat":2},{"lat":3}]}`, `{"stops":[{"city":"A"},{"city":"B"},{}]}`},
		{"scalars dropped where objects expected", []string{"stops.city", "driver.name"}, `{"stops":[1,"x",null,{"city":"A"},[{"city":"B","z":1}]],"driver":"bob"}`, `{"stops":[{"city":"A"},[{"city":"B"}]]}`},
		{"top-level array", []string{"id"}, `[{"id":1,"x":2},{"id":2}]`, `[{"id":1},{"id":2}]`},
		{"top-level scalar", []string{"id"}, `"hello"`, `null`},
		{"missing paths", []string{"nope.deeper"}, `{"a":1}`, `{}`},
		{"empty object on the way", []string{"driver.name"}, `{"driver":{"phone":"555"}}`, `{"driver":{}}`},
		{"ancestor wins", []string{"a.b", "a"}, `{"a":{"b":1,"c":2}}`, `{"a":{"b":1,"c":2}}`},
		{"escaped key", []string{"a\"b", "é"}, `{"a\"b":1,"\u00e9":2,"x":3}`, `{"a\"b":1,"\u00e9":2}`},
		{"strings with brackets", []string{"b"}, `{"a":"}]{[\"","b":"ok"}`, `{"b":"ok"}`},
		{"whitespace", []string{"b"}, " \n{ \"a\" : 1 ,\n \"b\" : [ 1 , 2 ] } \n", `{"b":[ 1 , 2 ]}`},
		{"null kept when allowed", []string{"a"}, `{"a":null}`, `{"a":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !json.Valid([]byte(tt.in)) {
				t.Fatalf("test input is not valid JSON: %s", tt.in)
			}
			got := string(filterJSON(nil, []byte(tt.in), compileAllow(tt.allow)))
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestResponseValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Response
		want []string
	}{
		{"zero", Response{}, nil},
		{"full", Response{Headers: Headers{Set: map[string]string{"Cache-Control": "no-store"}, Remove: []string{"Server"}}, JSONAllow: []string{"id", "driver.name"}, MaxBody: 4096}, nil},
		{"empty segment", Response{JSONAllow: []string{"a..b", ".a", ""}}, []string{`path "a..b": empty segment`, `path ".a"`, `path ""`}},
		{"max body", Response{MaxBody: -1}, []string{`max_body: -1: expected 0 (default 1048576) to 67108864 bytes`}},
		{"joined", Response{MaxBody: 1 << 30, Headers: Headers{Remove: []string{"Transfer-Encoding"}}}, []string{"max_body", "headers.remove"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := NewResponse(tt.cfg); err == nil {
				t.Error("NewResponse accepted an invalid config")
			}
		})
	}
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

// TestResponseHook runs the hook in a real proxy in front of a real
// backend and checks what the client receives.
func TestResponseHook(t *testing.T) {
	const doc = `{"id":7,"driver":{"name":"Ann","phone":"555"},"secret":"x"}`
	const filtered = `{"id":7,"driver":{"name":"Ann"}}`
	tests := []struct {
		name     string
		method   string
		ctype    string
		encoding string
		status   int
		body     []byte
		chunked  bool
		// want
		wantStatus int
		wantBody   string
		wantCode   string
	}{
		{name: "filtered", ctype: "application/json; charset=utf-8", body: []byte(doc), wantStatus: 200, wantBody: filtered},
		{name: "filtered chunked", ctype: "application/json", body: []byte(doc), chunked: true, wantStatus: 200, wantBody: filtered},
		{name: "+json", ctype: "application/problem+json", status: 404, body: []byte(doc), wantStatus: 404, wantBody: filtered},
		{name: "not json", ctype: "text/plain", body: []byte(doc), wantStatus: 200, wantBody: doc},
		{name: "gzip", ctype: "application/json", encoding: "gzip", body: gzipped(doc), wantStatus: 200, wantBody: filtered},
		{name: "empty body", ctype: "application/json", body: nil, wantStatus: 200, wantBody: ""},
		{name: "head", method: "HEAD", ctype: "application/json", body: []byte(doc), wantStatus: 200, wantBody: ""},
		{name: "invalid json", ctype: "application/json", body: []byte(`{"id":7,`), wantStatus: 502, wantCode: "response_transform"},
		{name: "too large", ctype: "application/json", body: []byte(`{"pad":"` + strings.Repeat("x", 300) + `"}`), wantStatus: 502, wantCode: "response_transform"},
		{name: "too large chunked", ctype: "application/json", body: []byte(`{"pad":"` + strings.Repeat("x", 300) + `"}`), chunked: true, wantStatus: 502, wantCode: "response_transform"},
		{name: "brotli refused", ctype: "application/json", encoding: "br", body: []byte("\x0b\x02\x80"), wantStatus: 502, wantCode: "response_transform"},
		{name: "bad gzip", ctype: "application/json", encoding: "gzip", body: []byte("not gzip"), wantStatus: 502, wantCode: "response_transform"},
	}
	rt, err := NewResponse(Response{
		Headers:   Headers{Set: map[string]string{"Cache-Control": "no-store"}, Remove: []string{"X-Internal"}},
		JSONAllow: []string{"id", "driver.name"},
		MaxBody:   256,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set("Content-Type", tt.ctype)
				h.Set("X-Internal", "1")
				h.Set("ETag", `"abc"`)
				if tt.encoding != "" {
					h.Set("Content-Encoding", tt.encoding)
				}
				if !tt.chunked {
					h.Set("Content-Length", strconv.Itoa(len(tt.body)))
				}
				w.WriteHeader(cmp(tt.status, 200))
				if r.Method != "HEAD" {
					w.Write(tt.body)
				}
			})
			url := newGateway(t, &proxy.Route{ResponseHooks: []func(*http.Response) error{rt.Hook()}}, nil, backend)
			req, _ := http.NewRequest(cmp(tt.method, "GET"), url+"/r", nil)
			req.Header.Set("Accept-Encoding", "gzip") // ask as a browser would, and read the raw bytes
			resp, body := do(t, req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantCode != "" {
				if c := gatewayError(t, body); c != tt.wantCode {
					t.Errorf("code %q, want %q", c, tt.wantCode)
				}
				return
			}
			if string(body) != tt.wantBody {
				t.Errorf("body %s, want %s", body, tt.wantBody)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Internal") != "" {
				t.Errorf("headers not transformed: %v", resp.Header)
			}
			if tt.wantBody != string(tt.body) && tt.method != "HEAD" {
				if resp.ContentLength != int64(len(body)) || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Etag") != "" {
					t.Errorf("filtered response: ContentLength %d (body %d), headers %v", resp.ContentLength, len(body), resp.Header)
				}
			}
		})
	}
}

func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func TestHookErrors(t *testing.T) {
	rt, err := NewResponse(Response{JSONAllow: []string{"a"}, MaxBody: 10})
	if err != nil {
		t.Fatal(err)
	}
	resp := func(ct, enc, body string, status int) *http.Response {
		h := http.Header{"Content-Type": {ct}}
		if enc != "" {
			h.Set("Content-Encoding", enc)
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1}
	}
	tests := []struct {
		resp *http.Response
		want error
	}{
		{resp("application/json", "", `{"a":1,`, 200), ErrInvalidJSON},
		{resp("application/json", "", `{"a":"0123456789"}`, 200), ErrBodyTooLarge},
		{resp("application/json", "zstd", `{}`, 200), ErrUnsupportedEncoding},
		{resp("application/json", "", `{"a":1}`, 206), ErrPartialContent},
		{resp("application/json", "", `{"a":1}`, 200), nil},
		{resp("application/json", "", `{}`, 304), nil},
		{resp("text/html", "", `<html>`, 200), nil},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if err := rt.Hook()(tt.resp); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "Application/JSON; charset=utf-8": true, "application/vnd.api+json": true,
		" application/json ": true, "application/+json": false, "text/json": false, "application/jsonx": false,
		"application/x-ndjson": false, "": false, "application/json-seq": false,
	} {
		if got := isJSON(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestFilterAllocs(t *testing.T) {
	src := []byte(benchDoc)
	root := compileAllow([]string{"id", "driver.name", "stops.city"})
	dst := make([]byte, 0, len(src))
	if n := testing.AllocsPerRun(100, func() { filterJSON(dst[:0], src, root) }); n != 0 {
		t.Errorf("filterJSON into a large enough buffer: %v allocations", n)
	}
}
