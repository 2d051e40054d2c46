package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// start serves s on loopback until the test ends.
func start(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = s.Close(); <-done })
	return ln.Addr().String()
}

// h2cClient speaks h2c with prior knowledge (x/net's transport).
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, Timeout: 20 * time.Second}
}

// raw is a hand-driven HTTP/2 client for hostile cases.
type raw struct {
	t   testing.TB
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func dialRaw(t testing.TB, addr string, settings ...http2.Setting) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c}
	r.fr = http2.NewFramer(c, c)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.hb)
	if _, err := c.Write(preface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return r
}

// block encodes a request head for path (plus extra name, value pairs).
func (r *raw) block(path string, extra ...string) []byte {
	r.hb.Reset()
	f := []string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", path}
	f = append(f, extra...)
	for i := 0; i < len(f); i += 2 {
		_ = r.enc.WriteField(hpack.HeaderField{Name: f[i], Value: f[i+1]})
	}
	return bytes.Clone(r.hb.Bytes())
}

func (r *raw) headers(id uint32, end bool, path string, extra ...string) {
	r.t.Helper()
	if err := r.tryHeaders(id, end, path, extra...); err != nil {
		r.t.Fatal(err)
	}
}

// tryHeaders is headers for other goroutines than the test's.
func (r *raw) tryHeaders(id uint32, end bool, path string, extra ...string) error {
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(path, extra...), EndStream: end, EndHeaders: true})
}

// next reads frames until match returns true; false when the connection
// ended first. The deadline only guards against a hang.
func (r *raw) next(match func(http2.Frame) bool) bool {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatal("no frame within 10s")
			}
			return false
		}
		if match(f) {
			return true
		}
	}
}

// goAway waits for GOAWAY and returns its code.
func (r *raw) goAway() http2.ErrCode {
	r.t.Helper()
	var code http2.ErrCode
	if !r.next(func(f http2.Frame) bool {
		if g, ok := f.(*http2.GoAwayFrame); ok {
			code = g.ErrCode
			return true
		}
		return false
	}) {
		r.t.Fatal("connection ended without GOAWAY")
	}
	return code
}

// reset waits for RST_STREAM on id and returns its code.
func (r *raw) reset(id uint32) http2.ErrCode {
	r.t.Helper()
	var code http2.ErrCode
	if !r.next(func(f http2.Frame) bool {
		if g, ok := f.(*http2.RSTStreamFrame); ok && g.StreamID == id {
			code = g.ErrCode
			return true
		}
		return false
	}) {
		r.t.Fatal("connection ended without RST_STREAM")
	}
	return code
}

// status waits for the response HEADERS of id and returns :status.
func (r *raw) status(id uint32) string {
	r.t.Helper()
	var st string
	if !r.next(func(f http2.Frame) bool {
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
			st = h.PseudoValue("status")
			return true
		}
		return false
	}) {
		r.t.Fatal("connection ended without a response")
	}
	return st
}

// closed waits until the server closes the connection.
func (r *raw) closed() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, r.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatal("connection still open after 10s")
	}
}

// windowInvariant checks the connection receive window's accounting
// under c.mu: what the client may still send, plus what was consumed and
// not yet given back, plus the streams' unread body bytes, is the
// connection window.
func windowInvariant(c *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var unread int64
	for _, st := range c.streams {
		unread += int64(len(st.buf) - st.off)
	}
	if got, want := c.recvWindow+c.recvUnacked+unread, int64(c.srv.connWindow()); got != want {
		return fmt.Errorf("connection window: %d free + %d unacked + %d unread = %d, want %d", c.recvWindow, c.recvUnacked, unread, got, want)
	}
	return nil
}

// checkWindows makes every connection check windowInvariant as its reader
// stops, until the test ends; the first violation fails the test then.
func checkWindows(t testing.TB) {
	var first atomic.Pointer[error]
	h := func(c *conn) {
		if err := windowInvariant(c); err != nil {
			first.CompareAndSwap(nil, &err)
		}
	}
	testHookTeardown.Store(&h)
	t.Cleanup(func() {
		testHookTeardown.Store(nil)
		if err := first.Load(); err != nil {
			t.Error(*err)
		}
	})
}
