package load

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name      string
		in        string
		head      bool
		status    int
		keepAlive bool
		rest      string // what must remain unread (the next response)
		wantErr   string // kind name
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", false, 200, true, "NEXT", ""},
		{"case-insensitive headers", "HTTP/1.1 201 Created\r\ncontent-LENGTH:  3 \r\nX: y\r\n\r\nabcNEXT", false, 201, true, "NEXT", ""},
		{"chunked with trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT", false, 200, true, "NEXT", ""},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false, 200, false, "", ""},
		{"body until close", "HTTP/1.1 200 OK\r\n\r\nall of it", false, 200, false, "", ""},
		{"http/1.0 default close", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokNEXT", false, 200, false, "NEXT", ""},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nokNEXT", false, 200, true, "NEXT", ""},
		{"interim 100 continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nNEXT", false, 204, true, "NEXT", ""},
		{"head has no body", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nNEXT", true, 200, true, "NEXT", ""},
		{"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\nNEXT", false, 304, true, "NEXT", ""},
		{"status only", "HTTP/1.1 503\r\nContent-Length: 0\r\n\r\nNEXT", false, 503, true, "NEXT", ""},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", false, 0, false, "", "protocol"},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", false, 0, false, "", "protocol"},
		{"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 0, false, "", "protocol"},
		{"conflicting content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, 0, false, "", "protocol"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, 0, false, "", "protocol"},
		{"gzip only encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, false, "", "protocol"},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, 0, false, "", "closed"},
		{"truncated headers", "HTTP/1.1 200 OK\r\nContent-", false, 0, false, "", "closed"},
		{"empty", "", false, 0, false, "", "closed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 64)
			status, keepAlive, _, err := readResponse(br, tc.head)
			if tc.wantErr != "" {
				if err == nil || classify(err).String() != tc.wantErr {
					t.Fatalf("err = %v (%s), want kind %s", err, classify(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status || keepAlive != tc.keepAlive {
				t.Errorf("status %d keepAlive %v, want %d %v", status, keepAlive, tc.status, tc.keepAlive)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.rest {
				t.Errorf("left %q unread, want %q", rest, tc.rest)
			}
		})
	}
}

func TestLongHeaderLineIsSkipped(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 200) + "\r\nContent-Length: 2\r\n\r\nok"
	status, _, _, err := readResponse(bufio.NewReaderSize(strings.NewReader(in), 32), false)
	if err != nil || status != 200 {
		t.Fatalf("status %d err %v", status, err)
	}
}

// TestReadResponseAllocs: parsing a response allocates nothing.
func TestReadResponseAllocs(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nDate: x\r\n\r\n" + strings.Repeat("x", 1024)
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + strings.Repeat("x", 1024) + "\r\n0\r\n\r\n"
	for _, in := range []string{resp, chunked} {
		sr := strings.NewReader(in)
		br := bufio.NewReaderSize(sr, readBufferSize)
		allocs := testing.AllocsPerRun(100, func() {
			sr.Reset(in)
			br.Reset(sr)
			if _, _, _, err := readResponse(br, false); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("readResponse allocates %.1f times per response, want 0", allocs)
		}
	}
}

func TestBuildRequest(t *testing.T) {
	reqs, eps, err := prepare([]Target{
		{URL: "http://example.test:8080/a/b?q=1", Method: "PUT", Body: []byte("xyz"), Header: []HeaderField{{"Authorization", "Bearer t"}}},
		{URL: "http://example.test:8080/c", Header: []HeaderField{{"Host", "other.test"}, {"User-Agent", "me"}}},
		{URL: "https://example.test/"},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 || eps[0].addr != "example.test:8080" || eps[1].addr != "example.test:443" || eps[1].tls == nil {
		t.Errorf("endpoints %+v", eps)
	}
	want := "PUT /a/b?q=1 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: switchyard-load\r\nAccept: */*\r\nAuthorization: Bearer t\r\nContent-Length: 3\r\n\r\nxyz"
	if got := string(reqs[0].raw); got != want {
		t.Errorf("request 0:\n%q\nwant\n%q", got, want)
	}
	want = "GET /c HTTP/1.1\r\nHost: other.test\r\nAccept: */*\r\nUser-Agent: me\r\n\r\n"
	if got := string(reqs[1].raw); got != want {
		t.Errorf("request 1:\n%q\nwant\n%q", got, want)
	}
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Targets: []Target{{URL: srv.URL}}, Rate: 100, Duration: 300 * time.Millisecond, Connections: 4, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Successes != 30 {
		t.Errorf("successes %d, want 30: %v", res.Successes, res.ErrorsByKind)
	}
}

// The benchmarks compare one sequential round trip with the lean client and
// with net/http's Client: the reason the generator has its own HTTP/1.1
// client (see httpconn.go). The server is a canned-response loop so that
// the client's own cost dominates.
func benchServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// GET requests without a body end at an empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

func BenchmarkClientLean(b *testing.B) {
	url := benchServer(b)
	reqs, eps, err := prepare([]Target{{URL: url + "/"}}, false)
	if err != nil {
		b.Fatal(err)
	}
	c, err := dial(context.Background(), eps[0], time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.nc.Close()
	b.ReportAllocs()
	for b.Loop() {
		if status, _, _, err := c.roundTrip(&reqs[0], time.Now().Add(time.Second)); err != nil || status != 200 {
			b.Fatal(status, err)
		}
	}
}

func BenchmarkClientNetHTTP(b *testing.B) {
	url := benchServer(b)
	client := &http.Client{Timeout: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url + "/")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestRequestTargetEscaped: a URL with a space or other bytes that may not
// appear in a request line is sent percent-encoded, with existing escapes
// kept as they are. A raw TCP server captures the request line.
func TestRequestTargetEscaped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					lines <- strings.TrimRight(line, "\r\n")
					for { // rest of the head
						h, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if h == "\r\n" {
							break
						}
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			}()
		}
	}()
	for _, tc := range []struct{ path, want string }{
		{"/a b?q=x y", "GET /a%20b?q=x%20y HTTP/1.1"},
		{"/%41 b/é?q=é&r=\"<>\"", "GET /%41%20b/%C3%A9?q=%C3%A9&r=%22%3C%3E%22 HTTP/1.1"},
		{"/ok/path?a=1&b=%2F", "GET /ok/path?a=1&b=%2F HTTP/1.1"},
	} {
		res, err := Run(context.Background(), Config{
			Targets: []Target{{URL: "http://" + ln.Addr().String() + tc.path}},
			Rate:    10, Duration: 100 * time.Millisecond, Connections: 1,
		})
		if err != nil {
			t.Fatalf("%q: %v", tc.path, err)
		}
		if res.Successes != 1 {
			t.Fatalf("%q: %d successes, errors %v", tc.path, res.Successes, res.ErrorSamples)
		}
		select {
		case got := <-lines:
			if got != tc.want {
				t.Errorf("URL path %q: request line %q, want %q", tc.path, got, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: no request line", tc.path)
		}
	}
}

func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{"/", "/a b?q=x y", "/%41?%zz", "/é", "?", "/a#b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse("http://h" + s)
		if err != nil || u.Host != "h" {
			return
		}
		target := requestTarget(u)
		if !strings.HasPrefix(target, "/") {
			t.Fatalf("%q: request target %q does not start with /", s, target)
		}
		for i := 0; i < len(target); i++ {
			if c := target[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}#", c) >= 0 {
				t.Fatalf("%q: request target %q has byte %q", s, target, c)
			}
		}
	})
}
