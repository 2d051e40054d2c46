package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// echoBody answers with the request body, its length and its trailer; at
// /ignore it leaves the body unread.
var echoBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ignore" {
		_, _ = io.WriteString(w, "ignored")
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d:%s:%s", len(b), b, r.Trailer.Get("X-Trailer"))
})

func TestRequestBodies(t *testing.T) {
	ts := startServer(t, echoBody, nil)

	t.Run("Content-Length", func(t *testing.T) {
		c := dial(t, ts.addr)
		_, body := c.roundTrip("POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
		if body != "11:hello world:" {
			t.Fatalf("body %q", body)
		}
	})

	t.Run("chunked", func(t *testing.T) {
		c := dial(t, ts.addr)
		_, body := c.roundTrip("POST", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: tr\r\n\r\n")
		if body != "11:hello world:tr" {
			t.Fatalf("body %q", body)
		}
	})

	t.Run("small unread body is discarded", func(t *testing.T) {
		c := dial(t, ts.addr)
		for _, te := range []string{"Content-Length: 1000\r\n\r\n" + strings.Repeat("a", 1000),
			"Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + strings.Repeat("b", 1000) + "\r\n0\r\n\r\n"} {
			resp, body := c.roundTrip("POST", "POST /ignore HTTP/1.1\r\nHost: x\r\n"+te)
			if body != "ignored" || resp.Close {
				t.Fatalf("body %q, close %v", body, resp.Close)
			}
		}
		if _, body := c.roundTrip("POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"); body != "2:ok:" {
			t.Fatalf("next request: body %q", body)
		}
	})

	t.Run("large unread body closes", func(t *testing.T) {
		c := dial(t, ts.addr)
		const size = 1 << 20
		c.send(fmt.Sprintf("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
		// The write may fail when the server closes; socket buffers on
		// loopback may also take it all.
		go func() { _, _ = c.nc.Write(make([]byte, size)) }()
		resp, body := c.response("POST")
		if body != "ignored" || !resp.Close {
			t.Fatalf("body %q, close %v", body, resp.Close)
		}
		c.expectClosed()
	})
}

func TestExpectContinue(t *testing.T) {
	ts := startServer(t, echoBody, nil)
	const head = "POST %s HTTP/1.1\r\nHost: x\r\nExpect: %s\r\nContent-Length: 5\r\n\r\n"

	t.Run("handler reads the body", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(fmt.Sprintf(head, "/", "100-continue"))
		resp, _ := c.response("POST")
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("first response %d, want 100", resp.StatusCode)
		}
		c.send("hello")
		resp, body := c.response("POST")
		if resp.StatusCode != 200 || body != "5:hello:" || resp.Close {
			t.Fatalf("final response %d %q close %v", resp.StatusCode, body, resp.Close)
		}
		if _, body := c.roundTrip("GET", get("/")); body != "0::" {
			t.Fatalf("next request: body %q", body)
		}
	})

	t.Run("handler ignores the body", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(fmt.Sprintf(head, "/ignore", "100-continue"))
		resp, body := c.response("POST")
		if resp.StatusCode != 200 || body != "ignored" {
			t.Fatalf("first response %d %q, want 200 without 100 Continue", resp.StatusCode, body)
		}
		c.expectClosed()
	})

	t.Run("unsupported expectation", func(t *testing.T) {
		for _, req := range []string{
			"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n",
			fmt.Sprintf(head, "/", "something") + "hello",
		} {
			c := dial(t, ts.addr)
			resp, _ := c.roundTrip("POST", req)
			if resp.StatusCode != http.StatusExpectationFailed {
				t.Fatalf("%q: status %d, want 417", req, resp.StatusCode)
			}
		}
	})
}

func TestMalformedRequests(t *testing.T) {
	ts := startServer(t, echoBody, func(s *Server) { s.MaxHeaderBytes = 1 << 10 })
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"bad request line", "GARBAGE\r\n\r\n", 400},
		{"bad version", "GET / HTTP/x.y\r\nHost: x\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431},
		{"Transfer-Encoding not ending in chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"unsupported Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"request line too long", "GET /" + strings.Repeat("a", 2<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			go func() { _, _ = c.nc.Write([]byte(tc.req)) }() // may block on a large header
			resp, body := c.response("GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("status %d close %v, want %d and close", resp.StatusCode, resp.Close, tc.status)
			}
			if strings.Contains(body, "GARBAGE") || strings.Contains(body, "x.y") || strings.Contains(body, "zz") {
				t.Fatalf("the answer reflects the client's bytes: %q", body)
			}
			c.expectClosed()
		})
	}
}

// TestLikeNetHTTP sends the same raw bytes to this server and to
// net/http's and compares the responses' status classes and bodies:
// request-smuggling shapes must be framed the same way by both.
func TestLikeNetHTTP(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, b)
	})
	ours := startServer(t, h, nil)
	ref := httptest.NewServer(h)
	defer ref.Close()

	const next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
	// refused: net/http serves these (or answers 501), this server's
	// framing rules (framing.go) refuse them with 400 and close.
	const refused = "the framing rules refuse an ambiguous request"
	for _, tc := range []struct {
		name, req string
		// known names a difference the package doc lists; ourClass is
		// then the status class this server answers with.
		known    string
		ourClass int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next, refused, 4},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\n" + next, refused, 4},
		{"two CLs differ", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde" + next, "", 0},
		{"two CLs agree", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + next, refused, 4},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc" + next, "", 0},
		{"signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc" + next, "", 0},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + next, refused, 4},
		{"TE identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc" + next, refused, 4},
		{"TE two fields", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" + next, refused, 4},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + next, refused, 4},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc" + next, "", 0},
		{"obs-fold TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + next, refused, 4},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\na\r\n0\r\n\r\n" + next, "", 0},
		{"bare LF in chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n" + next, "", 0},
		{"CRLF after a POST body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n" + next, "", 0},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n" + next, "", 0},
		{"control byte in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n" + next, "", 0},
		{"Expect list", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, x\r\nContent-Length: 3\r\n\r\nabc" + next, "", 0},
		{"Expect other", "POST / HTTP/1.1\r\nHost: x\r\nExpect: x\r\nContent-Length: 3\r\n\r\nabc" + next, "", 0},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + next, "OPTIONS * goes to the handler", 2},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2 is not served", 5},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n" + next, "", 0},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n" + next, "an empty Host field is rejected", 4},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + next, "", 0},
		{"absolute URI without Host", "GET http://a/ HTTP/1.1\r\n\r\n" + next, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := exchange(t, ref.Listener.Addr().String(), tc.req)
			got := exchange(t, ours.addr, tc.req)
			if len(want) == 0 || len(got) == 0 {
				t.Fatalf("no response: net/http %v, this server %v", want, got)
			}
			if tc.known != "" {
				t.Logf("known difference (%s): net/http %v, this server %v", tc.known, want, got)
				if got[0].status/100 != tc.ourClass {
					t.Errorf("this server answered %v, want %dxx", got, tc.ourClass)
				}
				return
			}
			if got[0].status/100 != want[0].status/100 {
				t.Errorf("status classes differ: net/http %v, this server %v", want, got)
			}
			for i, w := range want {
				if w.status/100 == 2 && (i >= len(got) || got[i] != w) {
					t.Errorf("response %d: net/http %v, this server %v", i, want, got)
				}
			}
			if len(got) > len(want) {
				t.Errorf("this server answered more requests: net/http %v, this server %v", want, got)
			}
		})
	}
}

type answer struct {
	status int
	body   string
}

func (a answer) String() string { return fmt.Sprintf("%d %q", a.status, a.body) }

// exchange writes raw, half-closes and reads every response.
func exchange(t testing.TB, addr, raw string) []answer {
	t.Helper()
	c := dial(t, addr)
	c.send(raw)
	_ = c.nc.(interface{ CloseWrite() error }).CloseWrite()
	var out []answer
	for {
		resp, body, err := c.tryResponse("GET")
		if err != nil {
			if resp != nil {
				out = append(out, answer{resp.StatusCode, body + " (" + err.Error() + ")"})
			}
			return out
		}
		out = append(out, answer{resp.StatusCode, body})
	}
}

func TestClientDisconnect(t *testing.T) {
	for _, tc := range []struct {
		name       string
		watchAfter int
		req        string
	}{
		{"default", 0, get("/")},
		{"immediate", -1, get("/")},
		{"after body", 0, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			causes := make(chan error, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				close(started)
				<-r.Context().Done()
				causes <- context.Cause(r.Context())
			})
			ts := startServer(t, h, func(s *Server) {
				if tc.watchAfter < 0 {
					s.WatchAfter = -1
				}
			})
			c := dial(t, ts.addr)
			c.send(tc.req)
			recv(t, started, "the handler to start")
			_ = c.nc.Close()
			if err := recv(t, causes, "the request context to end"); !errors.Is(err, errClientGone) {
				t.Fatalf("cause %v, want errClientGone", err)
			}
		})
	}
}
