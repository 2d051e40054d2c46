package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawDial opens a raw client connection to the gateway, closed at the end
// of the test and bounded by a deadline.
func rawDial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

// TestWriteTimeoutReleasesUpstream: a client that asks for a huge response
// and stops reading is dropped after server.write_timeout, on both HTTP/1
// servers, and the upstream connection is let go (the backend's write
// fails) instead of being held as long as the client stays connected.
func TestWriteTimeoutReleasesUpstream(t *testing.T) {
	for _, server := range []string{"switchyard", "net/http"} {
		t.Run(server, func(t *testing.T) {
			b := newBackend(t, "big")
			backendErr := make(chan error, 1)
			b.handle(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 1<<20)
				for range 200 { // 200 MB
					if _, err := w.Write(buf); err != nil {
						backendErr <- err
						return
					}
				}
				backendErr <- nil
			})
			r := startGateway(t, e2eConfig{addrs: []string{b.addr()},
				top: []string{"server: { write_timeout: 200ms, http1: " + server + " }"}}.String())
			c, _ := rawDial(t, r.url)
			if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-backendErr:
				if err == nil {
					t.Fatalf("the backend wrote 200 MB to a client that reads nothing")
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the upstream connection is still held after 10s (write_timeout 200ms)")
			}
			// The client connection is closed: what was sent drains, then EOF.
			if _, err := io.Copy(io.Discard, c); err != nil && strings.Contains(err.Error(), "timeout") {
				t.Fatalf("the client connection stayed open: %v", err)
			}
		})
	}
}

// TestReadBodyTimeout408: a client that stops sending its body gets 408
// after server.read_body_timeout, on both HTTP/1 servers.
func TestReadBodyTimeout408(t *testing.T) {
	for _, server := range []string{"switchyard", "net/http"} {
		t.Run(server, func(t *testing.T) {
			b := newBackend(t, "echo")
			b.handle(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					return
				}
				_, _ = w.Write(body)
			})
			r := startGateway(t, e2eConfig{addrs: []string{b.addr()},
				top: []string{"server: { read_body_timeout: 200ms, http1: " + server + " }"}}.String())
			c, br := rawDial(t, r.url)
			if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
				t.Fatalf("status %d close %v, want 408 and close", resp.StatusCode, resp.Close)
			}
		})
	}
}

// TestMaxHeaderBytes: server.max_header_bytes bounds the request line
// (414) and the header (431); the connection closes.
func TestMaxHeaderBytes(t *testing.T) {
	b := newBackend(t, "ok")
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, top: []string{"server: { max_header_bytes: 2048 }"}}.String())
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"fits", "GET /ok HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 1500) + "\r\n\r\n", 200},
		{"long request line", "GET /" + strings.Repeat("a", 3000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"large header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 3000) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawDial(t, r.url)
			go func() { _, _ = io.WriteString(c, tc.req) }()
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.status != 200) != resp.Close {
				t.Fatalf("status %d close %v, want %d", resp.StatusCode, resp.Close, tc.status)
			}
		})
	}
}

// TestSmugglingThroughGateway: a pipelined request behind TE+CL never
// reaches the upstream.
func TestSmugglingThroughGateway(t *testing.T) {
	b := newBackend(t, "ok")
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())
	c, br := rawDial(t, r.url)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("status %d close %v, want 400 and close", resp.StatusCode, resp.Close)
	}
	_, _ = io.Copy(io.Discard, br)
	if n := b.requests.Load(); n != 0 {
		t.Fatalf("the backend got %d requests", n)
	}
}
