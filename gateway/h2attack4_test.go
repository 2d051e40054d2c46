package gateway

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawLineBackend is an HTTP/1.1 backend that records each request line
// exactly as it arrived and answers 200 "ok".
type rawLineBackend struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func newRawLineBackend(t *testing.T) *rawLineBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawLineBackend{ln: ln}
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
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					b.mu.Lock()
					b.lines = append(b.lines, strings.TrimRight(line, "\r\n"))
					b.mu.Unlock()
					for { // the rest of the head; no bodies in these tests
						h, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if h == "\r\n" {
							break
						}
					}
					_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				}
			}()
		}
	}()
	return b
}

// TestH2MalformedRequestLineNotForwarded: over HTTP/2 (both servers), a
// :method with a space and a :path with a space in its query never reach
// an HTTP/1.1 backend as a request line of more than three parts ("GET
// /admin /p HTTP/1.1", "GET /p?b c HTTP/1.1"), which backends split each
// their own way: switchyard's server refuses them (RST_STREAM), and the
// proxy answers 400 under net/http's, which passes them on.
func TestH2MalformedRequestLineNotForwarded(t *testing.T) {
	for _, srv := range []string{"net/http", "switchyard"} {
		t.Run(strings.ReplaceAll(srv, "/", ""), func(t *testing.T) {
			testHTTP2 = srv
			defer func() { testHTTP2 = "" }()
			b := newRawLineBackend(t)
			r := startGateway(t, "h2c: true\n"+e2eConfig{addrs: []string{b.ln.Addr().String()}}.String())
			// one sends a request on a connection of its own and returns
			// its status, or "reset".
			one := func(method, path string, extra ...string) string {
				nc, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				fr := http2.NewFramer(nc, nc)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				var hb bytes.Buffer
				enc := hpack.NewEncoder(&hb)
				_, _ = nc.Write([]byte(http2.ClientPreface))
				_ = fr.WriteSettings()
				f := append([]string{":method", method, ":scheme", "http", ":authority", "gw.test", ":path", path}, extra...)
				for i := 0; i < len(f); i += 2 {
					_ = enc.WriteField(hpack.HeaderField{Name: f[i], Value: f[i+1]})
				}
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						t.Fatalf("%s %s: %v", method, path, err)
					}
					if f.Header().StreamID != 1 {
						continue
					}
					switch f := f.(type) {
					case *http2.RSTStreamFrame:
						return "reset"
					case *http2.MetaHeadersFrame:
						return f.PseudoValue("status")
					}
				}
			}
			for _, c := range [][]string{
				{"GET /admin", "/p", "idempotency-key", "k1"},
				{"GET /admin", "/p"},
				{"GET", "/p?b c"},
				{"GET\t/admin", "/p", "idempotency-key", "k2"},
			} {
				if got := one(c[0], c[1], c[2:]...); got != "reset" && got != "400" {
					t.Errorf("%q %q: %s, want a reset or 400", c[0], c[1], got)
				}
			}
			if got := one("GET", "/fine?a=b"); got != "200" {
				t.Fatalf("plain request: %s", got)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, l := range b.lines {
				if strings.Count(l, " ") != 2 || strings.ContainsAny(l, "\t") {
					t.Errorf("backend got request line %q", l)
				}
			}
			if len(b.lines) != 1 {
				t.Errorf("backend got %d requests %q, want the plain one", len(b.lines), b.lines)
			}
		})
	}
}
