package gateway

// End-to-end tests of the gateway's HTTP/1.1 upstream path against
// backends that write exact bytes: what a misbehaving upstream must not
// be able to do to other clients, and how a broken response reaches the
// client and the access log.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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
