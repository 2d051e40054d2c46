package httpserver

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// benchHandler answers like a small proxied response.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "hello, world")
})

// BenchmarkServerHTTPServer is one keep-alive GET round trip over
// loopback to this server; compare BenchmarkServerNetHTTP. The client
// writes fixed bytes and parses the answer without allocating, so the
// allocations reported are the server's.
func BenchmarkServerHTTPServer(b *testing.B) {
	ts := startServer(b, benchHandler, nil)
	benchmarkRoundTrip(b, ts.addr)
}

// BenchmarkServerNetHTTP is BenchmarkServerHTTPServer against net/http's
// server, with the timeouts this server defaults to (and the gateway sets
// on both): each costs deadline updates on the connection per request.
func BenchmarkServerNetHTTP(b *testing.B) {
	ts := httptest.NewUnstartedServer(benchHandler)
	ts.Config.ReadHeaderTimeout = DefaultReadHeaderTimeout
	ts.Config.IdleTimeout = DefaultIdleTimeout
	ts.Start()
	defer ts.Close()
	benchmarkRoundTrip(b, ts.Listener.Addr().String())
}

// BenchmarkServerParallel runs the round trip on several connections at
// once, where the servers' CPU per request, not one connection's latency,
// sets the pace.
func BenchmarkServerParallel(b *testing.B) {
	b.Run("HTTPServer", func(b *testing.B) {
		ts := startServer(b, benchHandler, nil)
		benchmarkParallel(b, ts.addr)
	})
	b.Run("NetHTTP", func(b *testing.B) {
		ts := httptest.NewUnstartedServer(benchHandler)
		ts.Config.ReadHeaderTimeout = DefaultReadHeaderTimeout
		ts.Config.IdleTimeout = DefaultIdleTimeout
		ts.Start()
		defer ts.Close()
		benchmarkParallel(b, ts.Listener.Addr().String())
	})
}

func benchmarkParallel(b *testing.B, addr string) {
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		for pb.Next() {
			if _, err := nc.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readSmallResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchmarkRoundTrip(b *testing.B, addr string) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readSmallResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}

// readSmallResponse reads a 200 response with a Content-Length body.
func readSmallResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return err
			}
		}
	}
	if n < 0 {
		return fmt.Errorf("no Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
