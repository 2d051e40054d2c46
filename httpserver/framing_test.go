package httpserver

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// smuggled is the request pipelined after every hostile one: it must never
// reach the handler.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// pathRecorder is a handler that reads the body and remembers the paths it
// served. A body it cannot read gets no answer from it: the server answers.
type pathRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (p *pathRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.paths = append(p.paths, r.URL.Path)
	p.mu.Unlock()
	if _, err := io.ReadAll(r.Body); err != nil {
		return
	}
	_, _ = io.WriteString(w, "ok "+r.URL.Path)
}

func (p *pathRecorder) saw(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.paths {
		if s == path {
			return true
		}
	}
	return false
}

// framingRejects are requests whose framing or head is ambiguous or
// invalid: each is answered with its status, the connection closes, and
// the request pipelined after it is never served.
var framingRejects = []struct {
	name, req string
	status    int
}{
	// Transfer-Encoding and Content-Length together (RFC 9112 6.1, 6.3).
	{"TE then CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
	{"CL then TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"CL and TE identity", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: identity\r\n\r\n", 400},
	{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE and CL on HTTP/1.0", "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
	{"TE gzip on HTTP/1.0", "GET / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	// Content-Length values.
	{"CL list differs", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello", 400},
	{"CL list agrees", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
	{"two CLs differ", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400},
	{"two CLs agree", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400},
	{"CL minus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
	{"CL hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", 400},
	{"CL vertical tab", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \x0b5\r\n\r\nhello", 400},
	{"CL two numbers", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello", 400},
	{"CL empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400},
	{"CL blank", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  \r\n\r\n", 400},
	{"CL overflow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
	{"CL decimal point", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5.0\r\n\r\nhello", 400},
	// Transfer-Encoding values: chunked must be the final coding, once.
	{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
	{"TE identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400},
	{"TE gzip alone", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	{"TE chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE two chunked fields", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE chunked then gzip fields", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400},
	{"TE trailing comma", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", 400},
	{"TE empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", 400},
	{"TE parameter", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400},
	{"TE vertical tab", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400},
	{"TE obs-fold", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE obs-fold after chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n \r\n\r\n0\r\n\r\n", 400},
	{"TE tab before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
	// Field syntax.
	{"CL space before colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
	{"space before first field", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400},
	{"bare LF ending a field", "GET / HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n", 400},
	{"bare LF everywhere", "GET / HTTP/1.1\nHost: x\n\n", 400},
	{"bare LF ending the head", "GET / HTTP/1.1\r\nHost: x\r\n\n", 400},
	{"bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
	{"bare CR ending a field", "GET / HTTP/1.1\r\nHost: x\rX-A: a\r\n\r\n", 400},
	{"NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
	{"control byte in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400},
	{"DEL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400},
	{"escape in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: \x1b[31m\r\n\r\n", 400},
	{"invalid name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400},
	{"name with slash", "GET / HTTP/1.1\r\nHost: x\r\nX/A: 1\r\n\r\n", 400},
	{"non-ASCII name", "GET / HTTP/1.1\r\nHost: x\r\nX-\xc3\xa9: 1\r\n\r\n", 400},
	{"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400},
	// Host (RFC 9112 3.2).
	{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
	{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
	{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"two Hosts agree", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
	{"two Hosts on HTTP/1.0", "GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400},
	{"Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	{"absolute-form Host mismatch", "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400},
	{"absolute-form port mismatch", "GET http://a:81/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute-form without Host", "GET http://a/ HTTP/1.1\r\n\r\n", 400},
	// Request line and version.
	{"HTTP/0.9", "GET /\r\n\r\n", 400},
	{"HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505},
	{"HTTP/2.0 version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
	{"HTTP/3.0 version", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
	{"lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400},
	{"version without minor", "GET / HTTP/1\r\nHost: x\r\n\r\n", 400},
	{"two-digit version", "GET / HTTP/10.0\r\nHost: x\r\n\r\n", 400},
	{"space after version", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"bad escape in target", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"short escape in target", "GET /%4 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"control byte in target", "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"NUL in target", "GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"DEL in target", "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"relative target", "GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"invalid method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"empty request line", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	// Chunked bodies.
	{"chunk size negative", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n", 400},
	{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400},
	{"chunk size 2^64+1", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nx\r\n0\r\n\r\n", 400},
	{"chunk size 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk size empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk size not hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
	{"chunk size leading space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk size trailing space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400},
	{"chunk ext control byte", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01b\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk ext bare CR", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk ext without semicolon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 a\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk ext unterminated quote", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk ext too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=" + strings.Repeat("b", 5000) + "\r\nhello\r\n0\r\n\r\n", 400},
	{"no CRLF after chunk data", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", 400},
	{"chunk data longer than size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400},
	{"bare LF after chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
	{"bare LF after chunk data", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400},
	{"bare LF ending the trailer", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n", 400},
	{"trailer Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 50\r\n\r\n", 400},
	{"trailer Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"trailer Host", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: evil\r\n\r\n", 400},
	{"trailer obs-fold", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400},
	{"trailer bad name", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX T: a\r\n\r\n", 400},
	{"trailer control byte", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\x00\r\n\r\n", 400},
	{"trailer without colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400},
}

// TestFramingRejected sends each hostile request with a request pipelined
// behind it: the answer is the expected status with Connection: close, the
// connection closes, and the pipelined request never reaches the handler.
func TestFramingRejected(t *testing.T) {
	for _, tc := range framingRejects {
		t.Run(tc.name, func(t *testing.T) {
			h := &pathRecorder{}
			ts := startServer(t, h, nil)
			c := dial(t, ts.addr)
			c.send(tc.req + smuggled)
			resp, body := c.response("POST")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("status %d close %v body %q, want %d and close", resp.StatusCode, resp.Close, body, tc.status)
			}
			if body == "" || len(body) > 200 {
				t.Errorf("answer body %q: want a short explanation", body)
			}
			c.expectClosed()
			if h.saw("/smuggled") {
				t.Fatalf("the pipelined request reached the handler")
			}
		})
	}
}

// framingAccepts are requests at the edges of the rules that are valid:
// each is served and the request pipelined after it is served too.
var framingAccepts = []struct{ name, req, want string }{
	{"chunked with extensions", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;flag\r\nhello\r\n0\r\n\r\n", "ok /a"},
	{"chunked with quoted extension", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b; \\\"c\" ; d = e\r\nhello\r\n0\r\n\r\n", "ok /a"},
	{"chunked with trailer", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "ok /a"},
	{"chunked upper-case", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n00005\r\nhello\r\n0\r\n\r\n", "ok /a"},
	{"CL with spaces", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \t 5 \r\n\r\nhello", "ok /a"},
	{"CL leading zeros", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\nhello", "ok /a"},
	{"HTTP/1.0 without Host", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "ok /a"},
	{"absolute-form with its Host", "GET http://Example.com:80/a HTTP/1.1\r\nHost: example.com:80\r\n\r\n", "ok /a"},
	{"obs-text in a value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n", "ok /a"},
	{"tab in a value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n", "ok /a"},
	{"empty value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A:\r\n\r\n", "ok /a"},
	{"escapes in target", "GET /a%20b?q=%zz HTTP/1.1\r\nHost: x\r\n\r\n", "ok /a b"},
	{"HTTP/1.2 as 1.1", "GET /a HTTP/1.2\r\nHost: x\r\n\r\n", "ok /a"},
}

func TestFramingAccepted(t *testing.T) {
	for _, tc := range framingAccepts {
		t.Run(tc.name, func(t *testing.T) {
			h := &pathRecorder{}
			ts := startServer(t, h, nil)
			c := dial(t, ts.addr)
			c.send(tc.req + smuggled)
			resp, body := c.response("POST")
			if resp.StatusCode != 200 || body != tc.want {
				t.Fatalf("status %d body %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
			resp, body = c.response("GET")
			if resp.StatusCode != 200 || body != "ok /smuggled" {
				t.Fatalf("pipelined request: status %d body %q", resp.StatusCode, body)
			}
		})
	}
}

// FuzzHeadScan checks the framing rules on arbitrary request heads: no
// panic, and a head they accept has one reading only: net/http's parser,
// when it parses it, sees the same fields (no line folded or split
// differently), at most one Content-Length, never Content-Length with
// Transfer-Encoding, and the body length scanHead decided.
func FuzzHeadScan(f *testing.F) {
	for _, tc := range framingRejects {
		f.Add([]byte(tc.req))
	}
	for _, tc := range framingAccepts {
		f.Add([]byte(tc.req))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		end, _, herr := headEnd(raw, 0)
		if herr != nil || end == 0 {
			return
		}
		// headEnd must find the same end when fed byte by byte.
		next := 0
		for n := 1; n <= end; n++ {
			e, nx, herr := headEnd(raw[:n], next)
			if herr != nil || (e != 0) != (n == end) {
				t.Fatalf("headEnd fed %d bytes: end %d err %v, want end %d", n, e, herr, end)
			}
			next = nx
		}
		info, herr := scanHead(raw[:end])
		if herr != nil {
			if herr.status != 400 && herr.status != 501 && herr.status != 505 {
				t.Fatalf("status %d", herr.status)
			}
			return
		}
		head := raw[:end]
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			return // answered 400: not ambiguous
		}
		// Each field line, split the simplest way, is one value net/http
		// sees under the same name (it moves Host, Transfer-Encoding and
		// Trailer out of the header).
		rawCount := map[string]int{}
		for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
			if name, _, ok := bytes.Cut(line, []byte(":")); ok {
				rawCount[http.CanonicalHeaderKey(string(name))]++
			}
		}
		for k, vs := range req.Header {
			if len(vs) != rawCount[k] {
				t.Fatalf("%d %s lines but net/http saw %d values: %q", rawCount[k], k, len(vs), head)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("field %s has a line break or NUL: %q", k, v)
				}
			}
		}
		for k, n := range rawCount {
			switch k {
			case "Host", "Transfer-Encoding", "Trailer":
			default:
				if len(req.Header[k]) != n {
					t.Fatalf("%d %s lines but net/http saw %d values: %q", n, k, len(req.Header[k]), head)
				}
			}
		}
		cl := req.Header.Values("Content-Length")
		switch {
		case len(cl) > 1:
			t.Fatalf("accepted %d Content-Length fields", len(cl))
		case info.chunked && (len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" || len(cl) > 0):
			t.Fatalf("chunked by scanHead, net/http: TE %q CL %q", req.TransferEncoding, cl)
		case !info.chunked && len(req.TransferEncoding) > 0:
			t.Fatalf("not chunked by scanHead, net/http: TE %q", req.TransferEncoding)
		case !info.chunked && len(cl) == 1 && strconv.FormatInt(req.ContentLength, 10) != strings.TrimLeft(strings.Trim(cl[0], " \t"), "0") && req.ContentLength != 0:
			t.Fatalf("Content-Length %q but net/http reads %d", cl[0], req.ContentLength)
		}
	})
}

// FuzzChunkedBody feeds arbitrary bytes to the strict chunked reader: no
// panic, and what it accepts net/http's lenient reader decodes to the
// same bytes.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b;c\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"5;a=\"b\\\"c\"\r\nhello\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"ffffffffffffffffff\r\n",
		"0\r\nContent-Length: 5\r\n\r\n",
		"3\r\nhello\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := &http.Request{}
		got, err := io.ReadAll(&chunkedBody{br: bufio.NewReader(bytes.NewReader(raw)), req: req, maxTrailer: 1 << 10})
		if err != nil {
			return
		}
		want, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("accepted %q, net/http's reader fails: %v", raw, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, net/http %q", got, want)
		}
	})
}
