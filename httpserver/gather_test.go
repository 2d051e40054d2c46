package httpserver

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A body larger than the write buffer, written in one Write after the
// head (an edge cache hit), leaves with the head in one writev (or, past
// gatherMax, writev then pieces): every byte arrives, in order, for
// several sizes around the buffer and gatherMax, on one keep-alive
// connection, HEAD included; the write timeout still applies.
func TestLargeWriteGathered(t *testing.T) {
	sizes := []int{bufSize - 100, bufSize, bufSize + 1, 100 << 10, gatherMax - 50, gatherMax + 1, gatherMax + writePiece + 7, 1 << 20}
	bodies := map[string][]byte{}
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte('a' + (i+j)%26)
		}
		bodies["/"+strconv.Itoa(n)] = b
	}
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := bodies[r.URL.Path]
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("X-Padding", string(bytes.Repeat([]byte("p"), 2000))) // a head of some size
		_, _ = w.Write(b)
	}), nil)
	c := dial(t, ts.addr)
	for _, n := range sizes {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			c.send(method + " /" + strconv.Itoa(n) + " HTTP/1.1\r\nHost: test\r\n\r\n")
			resp, body := c.response(method)
			if resp.ContentLength != int64(n) {
				t.Fatalf("%s %d: Content-Length %d", method, n, resp.ContentLength)
			}
			want := bodies["/"+strconv.Itoa(n)]
			if method == http.MethodHead {
				want = nil
			}
			if !bytes.Equal([]byte(body), want) {
				t.Fatalf("%s %d: body of %d bytes differs", method, n, len(body))
			}
		}
	}
}

// A client that stops reading a large gathered write is dropped after
// the write timeout, and the handler's Write reports it.
func TestLargeWriteGatheredTimeout(t *testing.T) {
	errc := make(chan error, 1)
	body := make([]byte, 64<<20) // more than the socket buffers hold
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, err := w.Write(body)
		errc <- err
	}), func(s *Server) { s.WriteTimeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	if _, err := io.WriteString(nc, get("/")); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, errc, "the handler's Write to fail"); err == nil {
		t.Fatal("Write to a client that reads nothing succeeded")
	}
}
