package gateway

// End-to-end tests of the gateway's HTTP/1.1 upstream path against
// backends that write exact bytes: what a misbehaving upstream must not
// be able to do to other clients, and how a broken response reaches the
// client and the access log.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawUpstream is an HTTP/1.1 backend on loopback that writes exactly the
// bytes answer returns for each request; nil closes the connection.
func rawUpstream(t *testing.T, answer func(c net.Conn, req *http.Request) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					out := answer(c, req)
					if out == nil {
						return
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// newClientGet sends a GET from a new client (its own connection).
func newClientGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// An upstream that sends more than its Content-Length must not make the
// gateway answer the next client with the surplus (a response meant for
// nobody) nor the client after with an answer to someone else's request.
func TestUpstreamSurplusBytesNeverReachAnotherClient(t *testing.T) {
	addr := rawUpstream(t, func(_ net.Conn, req *http.Request) []byte {
		if req.URL.Path == "/extra" {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned")
		}
		body := "echo " + req.URL.Path
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	})
	r := startGateway(t, e2eConfig{addrs: []string{addr}, top: []string{"access_log: off"}}.String())
	if code, body := newClientGet(t, r.url+"/extra"); code != 200 || body != "hello" {
		t.Fatalf("first client: %d %q, want 200 \"hello\"", code, body)
	}
	for _, path := range []string{"/second", "/third"} {
		if code, body := newClientGet(t, r.url+path); code != 200 || body != "echo "+path {
			t.Fatalf("client of %s got %d %q, want 200 %q", path, code, body, "echo "+path)
		}
	}
}

// An upstream that breaks off a chunked response must not look like a
// complete one to the client: no terminating chunk, the connection
// closed, and the access log records a failure, not 200. On both servers
// of plain HTTP/1.x listeners.
func TestUpstreamTruncatedChunkedResponseAborts(t *testing.T) {
	addr := rawUpstream(t, func(c net.Conn, req *http.Request) []byte {
		if req.URL.Path == "/broken" {
			// The second chunk announces 16 bytes; 7 come, then the close.
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\npartial")
			return nil
		}
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	for _, server := range []string{"switchyard", "net/http"} {
		t.Run(server, func(t *testing.T) {
			r := startGateway(t, e2eConfig{addrs: []string{addr}, top: []string{"server: { http1: " + server + " }"}}.String())
			c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			id := "truncated-" + strings.ReplaceAll(server, "/", "-")
			if _, err := io.WriteString(c, "GET /broken HTTP/1.1\r\nHost: gw\r\nX-Request-Id: "+id+"\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			// The gateway must close the connection: reading to EOF ends
			// well before the deadline (a kept-alive connection would hit it).
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			raw, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading the response: %v (the connection was kept open after a broken response); got %q", err, raw)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
			if err != nil {
				t.Fatalf("response %q: %v", raw, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("the client read a complete response (body %q) from a truncated upstream one: %q", body, raw)
			}
			if bytes.Contains(raw, []byte("\r\n0\r\n\r\n")) {
				t.Fatalf("response ends with a last chunk: %q", raw)
			}
			var rec accessRecord
			eventually(t, 2*time.Second, "the access log line of "+id, func() bool {
				var ok bool
				rec, ok = accessLine(t, r, id)
				return ok
			})
			if rec.Status != http.StatusBadGateway {
				t.Errorf("access log status %d, want 502 (upstream broke off the response)", rec.Status)
			}
			// The gateway still serves the next request.
			if code, body := newClientGet(t, r.url+"/ok"); code != 200 || body != "ok" {
				t.Fatalf("next request: %d %q", code, body)
			}
		})
	}
}

// Informational responses from an upstream: 103 Early Hints reach the
// client, their fields stay out of the final response, and an upstream
// that sends too many, a status under 100 or a 101 nobody asked for gets
// a 502 and its connection is not reused.
func TestUpstreamInformationalResponses(t *testing.T) {
	var mu sync.Mutex
	badConns := map[string]bool{} // connections that sent an invalid answer
	addr := rawUpstream(t, func(c net.Conn, req *http.Request) []byte {
		remote := c.RemoteAddr().String()
		mu.Lock()
		reused := badConns[remote]
		mu.Unlock()
		if reused {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nreused")
		}
		var pre string
		switch req.URL.Path {
		case "/hints":
			pre = "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"
		case "/continue":
			pre = "HTTP/1.1 100 Continue\r\n\r\n"
		case "/many":
			pre = strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", 9)
		case "/low":
			pre = "HTTP/1.1 099 Odd\r\n\r\n"
		case "/switch":
			pre = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
		}
		if req.URL.Path == "/many" || req.URL.Path == "/low" || req.URL.Path == "/switch" {
			mu.Lock()
			badConns[remote] = true
			mu.Unlock()
		}
		return []byte(pre + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
	})
	r := startGateway(t, e2eConfig{addrs: []string{addr}, top: []string{"access_log: off"}}.String())

	send := func(path string) (*http.Response, string, []int, []http.Header) {
		t.Helper()
		var codes []int
		var hdrs []http.Header
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			codes = append(codes, code)
			hdrs = append(hdrs, http.Header(h).Clone())
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", r.url+path, nil)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), codes, hdrs
	}

	resp, body, codes, hdrs := send("/hints")
	if resp.StatusCode != 200 || body != "final" {
		t.Fatalf("/hints: %d %q", resp.StatusCode, body)
	}
	if len(codes) != 1 || codes[0] != 103 || hdrs[0].Get("Link") != "</app.css>; rel=preload" {
		t.Fatalf("/hints: client got 1xx %v %v, want one 103 with the Link", codes, hdrs)
	}
	if resp.Header.Get("Link") != "" {
		t.Errorf("the 103's Link leaked into the final response: %v", resp.Header)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("final response after a 103 lacks X-Request-Id: %v", resp.Header)
	}

	if resp, body, codes, _ := send("/continue"); resp.StatusCode != 200 || body != "final" || len(codes) != 0 {
		t.Fatalf("/continue: %d %q, 1xx %v (an unasked 100 is dropped)", resp.StatusCode, body, codes)
	}

	for _, path := range []string{"/many", "/low", "/switch"} {
		resp, body, _, _ := send(path)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %d %q, want 502", path, resp.StatusCode, body)
		}
		if _, body, _, _ := send("/after"); body != "final" {
			t.Errorf("after %s: %q (the connection that sent it was reused)", path, body)
		}
	}
}

// An "Upgrade: h2c" offer is for the gateway's hop and is not passed on:
// the request reaches the upstream as a plain request.
func TestUpstreamNeverSeesH2CUpgrade(t *testing.T) {
	seen := make(chan http.Header, 1)
	addr := rawUpstream(t, func(_ net.Conn, req *http.Request) []byte {
		seen <- req.Header.Clone()
		if req.Header.Get("Upgrade") != "" {
			return []byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		}
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
	})
	r := startGateway(t, e2eConfig{addrs: []string{addr}, top: []string{"access_log: off"}}.String())
	c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "plain" {
		t.Fatalf("got %d %q, want the plain 200", resp.StatusCode, body)
	}
	if h := <-seen; h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" {
		t.Fatalf("upstream saw Upgrade %q, HTTP2-Settings %q", h.Get("Upgrade"), h.Get("Http2-Settings"))
	}
}
