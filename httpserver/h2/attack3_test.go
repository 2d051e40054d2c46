package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// Tests of the second attacker's pass (h2att17j).

// fields collects a header block's regular fields as "name: value".
func fields(f *http2.MetaHeadersFrame) []string {
	var out []string
	for _, hf := range f.RegularFields() {
		out = append(out, hf.Name+": "+hf.Value)
	}
	return out
}

// response reads stream id's response: the header block's fields
// (:status first), the body and the trailer's fields.
func (r *raw) response(id uint32) (head []string, body string, trailer []string) {
	r.t.Helper()
	var b strings.Builder
	done := false
	if !r.next(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				return false
			}
			if head == nil || strings.HasPrefix(head[0], ":status: 1") {
				head = append([]string{":status: " + f.PseudoValue("status")}, fields(f)...)
			} else {
				trailer = fields(f)
			}
			done = f.StreamEnded()
		case *http2.DataFrame:
			if f.StreamID == id {
				b.Write(f.Data())
				done = f.StreamEnded()
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				r.t.Fatalf("stream %d reset: %v", id, f.ErrCode)
			}
		case *http2.GoAwayFrame:
			r.t.Fatalf("GOAWAY %v", f.ErrCode)
		}
		return done
	}) {
		r.t.Fatal("connection ended before the response")
	}
	return head, b.String(), trailer
}

func sortedFrom(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestHandlerPanicsContained: a handler panicking (before or after its
// head left, with http.ErrAbortHandler or anything else, also while
// another goroutine of it reads the body) resets only its stream; the
// connection serves the next request and the process lives.
func TestHandlerPanicsContained(t *testing.T) {
	var panics atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/before":
			panics.Add(1)
			panic("before")
		case "/after":
			_, _ = w.Write([]byte("part"))
			http.NewResponseController(w).Flush()
			panics.Add(1)
			panic(errors.New("after"))
		case "/abort":
			panics.Add(1)
			panic(http.ErrAbortHandler)
		case "/reading":
			go func() { _, _ = io.Copy(io.Discard, r.Body) }()
			panics.Add(1)
			panic("reading")
		}
		_, _ = w.Write([]byte("fine"))
	})})
	r := dialRaw(t, addr)
	id := uint32(1)
	for _, p := range []string{"/before", "/after", "/abort", "/reading"} {
		r.headers(id, p != "/reading", p)
		if code := r.reset(id); code != http2.ErrCodeInternal {
			t.Fatalf("%s: RST_STREAM %v, want INTERNAL_ERROR", p, code)
		}
		id += 2
	}
	r.headers(id, true, "/ok")
	if head, body, _ := r.response(id); head[0] != ":status: 200" || body != "fine" {
		t.Fatalf("after the panics: %v %q", head, body)
	}
	if panics.Load() != 4 {
		t.Fatalf("%d panics", panics.Load())
	}
}

// TestControllerAfterReset: ResponseController methods called after the
// client reset the stream (and after the handler returned, from a
// goroutine that outlives it) fail or do nothing: no frame for a closed
// stream, no panic, no goroutine left behind.
func TestControllerAfterReset(t *testing.T) {
	before := runtime.NumGoroutine()
	reset := make(chan struct{})
	outlived := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("x"))
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		<-r.Context().Done()
		<-reset
		if err := rc.Flush(); err == nil {
			t.Error("Flush after the client's reset succeeded")
		}
		if _, err := w.Write(make([]byte, 64<<10)); err == nil {
			t.Error("a 64 KiB Write after the client's reset succeeded")
		}
		_ = rc.SetReadDeadline(time.Now())
		_ = rc.SetWriteDeadline(time.Now())
		_ = rc.EnableFullDuplex()
		if _, _, err := rc.Hijack(); err == nil {
			t.Error("Hijack succeeded on HTTP/2")
		}
		go func() {
			time.Sleep(10 * time.Millisecond) // after the handler returned
			_, err := r.Body.Read(make([]byte, 10))
			outlived <- err
		}()
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/")
	if st := r.status(1); st != "200" {
		t.Fatal(st)
	}
	if err := r.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	close(reset)
	if err := <-outlived; err == nil {
		t.Fatal("a body read after the stream's end succeeded")
	}
	r.headers(3, true, "/")
	if st := r.status(3); st != "200" {
		t.Fatalf("next stream %s", st)
	}
	r.c.Close()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before+2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
	}
}

// testConnPair is a conn on one end of a pipe whose other end is drained.
func testConnPair(t *testing.T) (*conn, net.Conn) {
	a, b := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, b) }()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newConn(&Server{}, a, bufio.NewReader(a), nil), b
}

// TestExpectContinueAnswered: a request with "Expect: 100-continue" gets
// 100 Continue when the handler first reads the body (as net/http's
// HTTP/2 server), and the handler does not see the Expect field. A client
// waiting for the 100 before it sends the body (curl, Go's transport with
// ExpectContinueTimeout) otherwise waits its whole timeout on every
// upload. Old code: no 100 ever, the test times out waiting for it.
func TestExpectContinueAnswered(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("X-Expect", r.Header.Get("Expect"))
		_, _ = w.Write(b)
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/echo", "expect", "100-continue")
	if st := r.status(1); st != "100" {
		t.Fatalf("first status %s, want 100", st)
	}
	if err := r.fr.WriteData(1, true, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	head, body, _ := r.response(1)
	if head[0] != ":status: 200" || body != "hello" {
		t.Fatalf("response %v %q", head, body)
	}
	for _, h := range head {
		if h == "x-expect: 100-continue" {
			t.Fatal("the handler saw the Expect field")
		}
	}
	// A handler that answers without reading sends no 100.
	r.headers(3, false, "/early", "expect", "100-continue")
	if st := r.status(3); st != "403" {
		t.Fatalf("status %s, want 403 without a 100 first", st)
	}
}

// TestHeaderChangesAfterWriteHeaderIgnored: the response head is the
// header map as it was at WriteHeader; later changes are ignored (as by
// net/http), except declared trailers and http.TrailerPrefix ones. Old
// code sent the map as it was when the head left (the first flush or the
// handler's return), so X-A went out as "changed" and X-B at all.
func TestHeaderChangesAfterWriteHeaderIgnored(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-A", "original")
		h.Set("Date", "fixed")
		h.Set("Trailer", "X-T")
		w.WriteHeader(http.StatusAccepted)
		h.Set("X-A", "changed")
		h.Set("X-B", "late")
		h.Set("Content-Length", "1000")
		h.Del("Trailer")
		_, _ = w.Write([]byte("body"))
		h.Set("X-T", "t")
		h.Set(http.TrailerPrefix+"X-U", "u")
	})})
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	head, body, trailer := r.response(1)
	want := []string{":status: 202", "date: fixed", "trailer: X-T", "x-a: original"}
	if got := sortedFrom(head); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("head %v, want %v", got, want)
	}
	if body != "body" {
		t.Fatalf("body %q", body)
	}
	if got := sortedFrom(trailer); strings.Join(got, "|") != "x-t: t|x-u: u" {
		t.Fatalf("trailer %v", got)
	}
}

// TestResponseTrailerForbiddenFields: a trailer never carries fields that
// frame or route a message, nor connection-specific ones (RFC 9113 8.2.2
// makes such a response malformed; RFC 9110 6.5.1), whether declared with
// Trailer or named with http.TrailerPrefix, and a declared Content-Length
// stays in the head (net/http ignores such declarations). Old code moved
// Content-Length into the trailer and sent transfer-encoding and
// connection there.
func TestResponseTrailerForbiddenFields(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Trailer", "Content-Length, Transfer-Encoding, Connection, X-Ok")
		h.Set("Content-Length", "4")
		_, _ = w.Write([]byte("body"))
		h.Set("Transfer-Encoding", "chunked")
		h.Set("Connection", "close")
		h.Set("X-Ok", "1")
		h.Set(http.TrailerPrefix+"Keep-Alive", "x")
		h.Set(http.TrailerPrefix+"Host", "evil")
		h.Set(http.TrailerPrefix+"Content-Type", "text/evil")
	})})
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	head, body, trailer := r.response(1)
	if !contains(head, "content-length: 4") || body != "body" {
		t.Fatalf("head %v body %q: want content-length 4 in the head", head, body)
	}
	if strings.Join(trailer, "|") != "x-ok: 1" {
		t.Fatalf("trailer %v, want only x-ok", trailer)
	}
}

// TestTrailersWithoutEndStreamStreamError: a second HEADERS frame without
// END_STREAM makes that request malformed (RFC 9113 8.1): a stream error,
// as in net/http, not a connection error ending every other stream. Old
// code: GOAWAY PROTOCOL_ERROR.
func TestTrailersWithoutEndStreamStreamError(t *testing.T) {
	release := make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/slow")
	r.headers(3, false, "/bad")
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.trailerBlock("x-t", "v"), EndStream: false, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if code := r.reset(3); code != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", code)
	}
	close(release)
	if err := r.fr.WriteData(1, true, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if head, body, _ := r.response(1); head[0] != ":status: 200" || body != "ok" {
		t.Fatalf("the other stream got %v %q", head, body)
	}
}

// TestRequestTrailerInvalidFieldsRefused: a request trailer with a field
// net/http refuses in trailers (httpguts.ValidTrailerHeader: credentials,
// content metadata, ...) is malformed and the handler's body read fails
// rather than ending with EOF. Old code refused only four fields.
func TestRequestTrailerInvalidFieldsRefused(t *testing.T) {
	for _, name := range []string{"authorization", "content-type", "cache-control", "te", "proxy-authorization"} {
		t.Run(name, func(t *testing.T) {
			got := make(chan error, 1)
			addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := io.Copy(io.Discard, r.Body)
				got <- err
			})})
			r := dialRaw(t, addr)
			r.headers(1, false, "/", "trailer", name)
			if err := r.fr.WriteData(1, false, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock(name, "v"), EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
			if code := r.reset(1); code != http2.ErrCodeProtocol {
				t.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", code)
			}
			if err := <-got; err == nil {
				t.Fatal("the body ended without an error")
			}
		})
	}
}

// TestDrainedBodyBufferReleased: a body buffer that grew while the handler
// read slowly (a proxy behind a slow upstream) is let go once drained, as
// net/http's pipe frees its chunks. Old code kept its capacity for the
// stream's life: 250 streams of a connection each pinned up to a window
// (1 MiB) for as long as their clients kept them open.
func TestDrainedBodyBufferReleased(t *testing.T) {
	const sent = 512 << 10
	proceed := make(chan struct{})
	capc := make(chan int, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-proceed
		if _, err := io.ReadFull(r.Body, make([]byte, sent)); err != nil {
			t.Error(err)
		}
		st := (*stream)(r.Body.(*body))
		st.c.mu.Lock()
		capc <- cap(st.buf)
		st.c.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/up")
	chunk := bytes.Repeat([]byte{'u'}, 16<<10)
	for range sent / len(chunk) {
		if err := r.fr.WriteData(1, false, chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.fr.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	r.next(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() })
	close(proceed)
	if c := <-capc; c > 64<<10 {
		t.Fatalf("a drained body buffer keeps %d bytes", c)
	}
	_ = r.fr.WriteData(1, true, nil)
}

// TestSettingsFloodLinear: a SETTINGS frame of thousands of
// INITIAL_WINDOW_SIZE entries is applied once per frame, not once per
// entry across every stream (old code: a channel allocated and every
// stream's window updated per entry, 2,700 x 250 per 16 KiB frame). The
// last value wins (RFC 9113 6.5.3).
func TestSettingsFloodLinear(t *testing.T) {
	c, peer := testConnPair(t)
	defer peer.Close()
	for i := range 100 {
		c.streams[uint32(2*i+1)] = &stream{id: uint32(2*i + 1), sendWindow: 65535}
	}
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	var set []http2.Setting
	for i := range 1000 {
		set = append(set, http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(1000 + i)})
	}
	if err := fr.WriteSettings(set...); err != nil {
		t.Fatal(err)
	}
	f, err := http2.NewFramer(nil, bytes.NewReader(b.Bytes())).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf := f.(*http2.SettingsFrame)
	allocs := testing.AllocsPerRun(5, func() {
		if err := c.processSettings(sf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 20 {
		t.Fatalf("%v allocations for one SETTINGS frame of 1000 entries", allocs)
	}
	if w := c.streams[1].sendWindow; w != 1999 || c.peerInitWindow != 1999 {
		t.Fatalf("window %d, initial %d: want the last value, 1999", w, c.peerInitWindow)
	}
	// An intermediate value that overflows a window is still an error.
	c.streams[1].sendWindow = maxWindow - 10
	fr = http2.NewFramer(&b, nil)
	b.Reset()
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5000}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1999})
	f, _ = http2.NewFramer(nil, bytes.NewReader(b.Bytes())).ReadFrame()
	var ce connError
	if err := c.processSettings(f.(*http2.SettingsFrame)); !errors.As(err, &ce) || ce.code != http2.ErrCodeFlowControl {
		t.Fatalf("overflowing SETTINGS: %v", err)
	}
}

// TestManyEarlyAnswersThenTrailers: a connection on which many uploads are
// answered before their bodies ended (each stream reset NO_ERROR) still
// ignores the trailer a client sent on the first before our reset reached
// it. Old code remembered the last 32 resets only and answered the
// trailer of an older one with GOAWAY PROTOCOL_ERROR, ending every stream.
func TestManyEarlyAnswersThenTrailers(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})})
	r := dialRaw(t, addr)
	const n = 100
	for i := range n {
		id := uint32(2*i + 1)
		r.headers(id, false, "/upload")
		if code := r.reset(id); code != http2.ErrCodeNo {
			t.Fatalf("RST_STREAM %v, want NO_ERROR", code)
		}
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock("x-t", "v"), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	r.headers(2*n+1, true, "/next")
	if head, _, _ := r.response(2*n + 1); head[0] != ":status: 401" {
		t.Fatalf("next %v", head)
	}
}

// TestDataAfterOurResetIgnored: DATA the client sent before our
// RST_STREAM NO_ERROR (an early answer) reached it is ignored (RFC 9113
// 5.1: "MUST ignore frames that it receives on closed streams after it has
// sent a RST_STREAM"), but still counts against the connection window and
// is given back. Old code answered every such frame with another
// RST_STREAM (STREAM_CLOSED).
func TestDataAfterOurResetIgnored(t *testing.T) {
	addr := start(t, &Server{ConnWindow: 65535, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/upload")
	if code := r.reset(1); code != http2.ErrCodeNo {
		t.Fatalf("RST_STREAM %v, want NO_ERROR", code)
	}
	// 384 KiB through a 64 KiB connection window: the dropped bytes
	// must be given back (else GOAWAY FLOW_CONTROL_ERROR).
	chunk := make([]byte, 16<<10)
	for round := range 8 {
		for range 3 {
			if err := r.fr.WriteData(1, false, chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.fr.WritePing(false, [8]byte{byte(round)}); err != nil {
			t.Fatal(err)
		}
		r.next(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				t.Fatalf("RST_STREAM %v for DATA sent before our reset", f.ErrCode)
			case *http2.GoAwayFrame:
				t.Fatalf("GOAWAY %v", f.ErrCode)
			case *http2.PingFrame:
				return f.IsAck()
			}
			return false
		})
	}
}

// TestReadDeadlineErrorIsDeadlineExceeded: a body read ended by a read
// deadline (ResponseController.SetReadDeadline, or ReadBodyTimeout) fails
// with an error that is os.ErrDeadlineExceeded, as net/http's, so that
// code checking errors.Is(err, os.ErrDeadlineExceeded) (the gateway's 408
// path) works on either server. Old code: a plain error.
func TestReadDeadlineErrorIsDeadlineExceeded(t *testing.T) {
	got := make(chan error, 2)
	addr := start(t, &Server{ReadBodyTimeout: 50 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/rc" {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		}
		_, err := io.ReadAll(r.Body)
		got <- err
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/rc")
	r.headers(3, false, "/timeout")
	for range 2 {
		err := <-got
		var ne interface{ Timeout() bool }
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read error %v: not os.ErrDeadlineExceeded", err)
		}
	}
}

// TestEmptyContinuationFloodIdle: a header block continued forever by
// empty CONTINUATION frames spends no header budget (x/net's Framer lets
// them through), so only IdleTimeout ends it: the connection has no
// stream, GOAWAY and the close follow.
func TestEmptyContinuationFloodIdle(t *testing.T) {
	var called atomic.Bool
	addr := start(t, &Server{IdleTimeout: 100 * time.Millisecond, Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) })})
	r := dialRaw(t, addr)
	first := r.block("/")
	go func() {
		if r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first}) != nil {
			return
		}
		for r.fr.WriteContinuation(1, false, nil) == nil {
		}
	}()
	if code := r.goAway(); code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", code)
	}
	r.closed()
	if called.Load() {
		t.Fatal("handler ran")
	}
}

// stressHandler is TestInterleavingStress's handler: echo with flushes,
// big responses with trailers, early answers, panics, waits for the
// client to go.
func stressHandler(running *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		rc := http.NewResponseController(w)
		switch r.URL.Path {
		case "/echo":
			p := make([]byte, 4<<10)
			for {
				n, err := r.Body.Read(p)
				if n > 0 {
					if _, werr := w.Write(p[:n]); werr != nil {
						return
					}
					if rc.Flush() != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		case "/big":
			w.Header().Set("Trailer", "X-Sum")
			p := make([]byte, 8<<10)
			for range 32 {
				if _, err := w.Write(p); err != nil {
					return
				}
			}
			w.Header().Set("X-Sum", "1")
		case "/early":
			w.WriteHeader(http.StatusForbidden)
		case "/panic":
			_, _ = r.Body.Read(make([]byte, 10))
			panic("stress")
		case "/wait":
			_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			go func() { _, _ = io.Copy(io.Discard, r.Body) }()
			<-r.Context().Done()
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set(http.TrailerPrefix+"X-T", "t")
			_, _ = w.Write([]byte("ok"))
		}
	})
}

// TestInterleavingStress: client resets, handler writes and flushes,
// INITIAL_WINDOW_SIZE changes, Shutdown's GOAWAY and Close interleaved at
// random on many streams (run with -race): no race, no panic outside a
// handler, every handler returns and no goroutine is left.
func TestInterleavingStress(t *testing.T) {
	checkWindows(t)
	before := runtime.NumGoroutine()
	var running atomic.Int32
	paths := []string{"/echo", "/big", "/early", "/panic", "/wait", "/other"}
	for _, ending := range []string{"cancel", "shutdown", "close"} {
		s := &Server{MaxConcurrentStreams: 16, WriteTimeout: 2 * time.Second, Handler: stressHandler(&running)}
		addr := start(t, s)
		tr := h2cClient().Transport.(*http2.Transport)
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		done := make(chan struct{})
		var clients atomic.Int32
		for g := range 24 {
			clients.Add(1)
			go func() {
				defer func() {
					if clients.Add(-1) == 0 {
						close(done)
					}
				}()
				for i := range 8 {
					path := paths[(g+i)%len(paths)]
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration((g*7+i*3)%20)*time.Millisecond+time.Millisecond)
					pr, pw := io.Pipe()
					go func() {
						for k := range 4 {
							if _, err := pw.Write(bytes.Repeat([]byte{byte(k)}, 3000)); err != nil {
								return
							}
						}
						pw.Close()
					}()
					req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+path, pr)
					if res, err := client.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
					cancel()
					pr.CloseWithError(io.ErrClosedPipe)
				}
			}()
		}
		// A raw client beside them: streams reset at once, windows
		// changed under writing handlers, then its GOAWAY.
		r := dialRaw(t, addr)
		go func() { _, _ = io.Copy(io.Discard, r.c) }()
		for i := range 40 {
			id := uint32(2*i + 1)
			_ = r.tryHeaders(id, i%3 == 0, paths[i%len(paths)])
			_ = r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(i * 1000 % 70000)})
			if i%2 == 0 {
				_ = r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			_ = r.fr.WriteWindowUpdate(0, 10000)
		}
		_ = r.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		switch ending {
		case "shutdown":
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_ = s.Shutdown(ctx)
			cancel()
			_ = s.Close()
		case "close":
			_ = s.Close()
		}
		<-done
		r.c.Close()
		tr.CloseIdleConnections()
		_ = s.Close()
	}
	for deadline := time.Now().Add(20 * time.Second); running.Load() != 0 || runtime.NumGoroutine() > before+4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d handlers running, %d goroutines (%d before)\n%s", running.Load(), runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// TestLastResponseFlushedBeforeClose: after GOAWAY, the connection's
// write half is closed once its last stream ended. A response's last
// frames that its writer left in the buffer for a writer waiting behind
// it (a PING's ack, a WINDOW_UPDATE) to flush must still leave before
// the FIN. Old code shut the write half at once: the waiting writer's
// flush failed and the client got GOAWAY and EOF without the response.
func TestLastResponseFlushedBeforeClose(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})}
	addr := start(t, s)
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	<-started
	go func() { _ = s.Shutdown(context.Background()) }()
	if code := r.goAway(); code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", code)
	}
	s.mu.Lock()
	var c *conn
	for k := range s.conns {
		c = k
	}
	s.mu.Unlock()
	c.writers.Add(1) // a writer waiting for the lock: the response's writer leaves the flush to it
	defer c.writers.Add(-1)
	close(release)
	var body string
	ended := false
	r.next(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			body += string(d.Data())
			ended = d.StreamEnded()
		}
		return ended
	})
	if !ended || body != "done" {
		t.Fatalf("the connection closed before the response ended (body %q)", body)
	}
}

// TestTooLargeHeadWithBody: a request head over MaxHeaderBytes is
// answered 431; when the request has a body coming, the stream is then
// reset NO_ERROR (RFC 9113 8.1) and the client's trailer already on its
// way is ignored. Old code sent no RST_STREAM, and the trailer (without
// DATA before it) was GOAWAY PROTOCOL_ERROR for the whole connection.
func TestTooLargeHeadWithBody(t *testing.T) {
	addr := start(t, &Server{MaxHeaderBytes: 1 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	r := dialRaw(t, addr)
	v := strings.Repeat("b", 500) // each under the HPACK string limit
	r.headers(1, false, "/", "x-a", v, "x-b", v, "x-c", v, "x-d", v)
	if st := r.status(1); st != "431" {
		t.Fatalf("status %s", st)
	}
	if code := r.reset(1); code != http2.ErrCodeNo {
		t.Fatalf("RST_STREAM %v", code)
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock("x-t", "v"), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	r.headers(3, true, "/")
	if head, _, _ := r.response(3); head[0] != ":status: 200" {
		t.Fatalf("next %v", head)
	}
}

// TestShortBodyWindowNotDoubled: a body that ends (END_STREAM) short of
// its content-length is a stream error, and its bytes return to the
// connection window once. Old code counted the last frame's bytes twice:
// every such request gave the client up to 16 KiB more connection window
// than it used, so that the 1 MiB bound on a connection's buffered bodies
// grew without limit (to 250 streams' windows).
func TestShortBodyWindowNotDoubled(t *testing.T) {
	addr := start(t, &Server{ConnWindow: 65535, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})})
	r := dialRaw(t, addr)
	chunk := make([]byte, 16<<10)
	sent, given := 0, 0
	for i := range 6 {
		id := uint32(2*i + 1)
		r.headers(id, false, "/", "content-length", "100000")
		if err := r.fr.WriteData(id, true, chunk); err != nil {
			t.Fatal(err)
		}
		sent += len(chunk)
		if err := r.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		r.next(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.WindowUpdateFrame:
				if f.StreamID == 0 {
					given += int(f.Increment)
				}
			case *http2.PingFrame:
				return f.IsAck()
			}
			return false
		})
	}
	if given > sent {
		t.Fatalf("connection window given back %d bytes for %d sent", given, sent)
	}
}

// TestUnreadWholeBodyWindowReturned: a request whose whole body arrived
// (END_STREAM) but which its handler answered without reading gives its
// bytes back to the connection window. Old code dropped them uncounted
// (closeRemote emptied the buffer before endStreamLocked counted it):
// every such request (a POST answered 401 or 404) shrank the connection
// window for good, until uploads on the connection stalled (a client
// that honours the window) or got GOAWAY FLOW_CONTROL_ERROR.
func TestUnreadWholeBodyWindowReturned(t *testing.T) {
	addr := start(t, &Server{ConnWindow: 65535, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := (*stream)(r.Body.(*body))
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			st.c.mu.Lock()
			done := st.remoteDone
			st.c.mu.Unlock()
			if done {
				break
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
	})})
	r := dialRaw(t, addr)
	chunk := make([]byte, 16<<10)
	for i := range 12 { // 192 KiB through a 64 KiB window
		id := uint32(2*i + 1)
		r.headers(id, false, "/")
		if err := r.fr.WriteData(id, true, chunk); err != nil {
			t.Fatal(err)
		}
		if head, _, _ := r.response(id); head[0] != ":status: 401" {
			t.Fatalf("stream %d: %v", id, head)
		}
	}
}

// TestDateAdded: a response without a Date field gets one, as from
// net/http's server and the HTTP/1 server (RFC 9110 6.6.1: an origin
// server with a clock sends it); the handler's own is kept. Old code sent
// none.
func TestDateAdded(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/own" {
			w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		}
	})})
	res, err := h2cClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	d, err := http.ParseTime(res.Header.Get("Date"))
	if err != nil || time.Since(d).Abs() > time.Minute {
		t.Fatalf("Date %q: %v", res.Header.Get("Date"), err)
	}
	res, err = h2cClient().Get("http://" + addr + "/own")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if v := res.Header.Values("Date"); len(v) != 1 || v[0] != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Fatalf("Date %q", v)
	}
}

// TestHugeRequestTrailerRefused: a request trailer over MaxHeaderBytes
// resets the stream and fails the handler's read; old code passed the
// fields that fit and silently dropped the rest (a proxied gRPC status
// among them), ending the body with EOF as if whole. The connection goes
// on.
func TestHugeRequestTrailerRefused(t *testing.T) {
	got := make(chan error, 1)
	addr := start(t, &Server{MaxHeaderBytes: 4 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/", "trailer", "x-t")
	if err := r.fr.WriteData(1, false, []byte("x")); err != nil {
		t.Fatal(err)
	}
	var kv []string
	for i := range 12 {
		kv = append(kv, "x-t"+strconv.Itoa(i), strings.Repeat("v", 500))
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock(kv...), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if code := r.reset(1); code != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v", code)
	}
	if err := <-got; err == nil {
		t.Fatal("the body ended without an error")
	}
	r.headers(3, true, "/")
	if st := r.status(3); st != "200" {
		t.Fatalf("next %s", st)
	}
}

// TestStalledUploadsBounded: streams opened and never ended hold at most
// MaxConcurrentStreams handlers (further streams are refused), each
// handler's read ends after ReadBodyTimeout with 408, and then the
// connection takes new streams again.
func TestStalledUploadsBounded(t *testing.T) {
	addr := start(t, &Server{MaxConcurrentStreams: 4, ReadBodyTimeout: 100 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})})
	r := dialRaw(t, addr)
	for i := range 4 {
		r.headers(uint32(2*i+1), false, "/stall")
	}
	r.headers(9, false, "/stall")
	if code := r.reset(9); code != http2.ErrCodeRefusedStream {
		t.Fatalf("fifth stream: RST_STREAM %v, want REFUSED_STREAM", code)
	}
	got := map[uint32]string{}
	r.next(func(f http2.Frame) bool {
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			got[h.StreamID] = h.PseudoValue("status")
		}
		return len(got) == 4
	})
	for id, st := range got {
		if st != "408" {
			t.Fatalf("stream %d: %s, want 408", id, st)
		}
	}
	r.headers(11, true, "/")
	if st := r.status(11); st != "200" {
		t.Fatalf("after the stalled streams ended: %s", st)
	}
}

// TestHeadersOnStreamClosedBothWays: HEADERS on a stream whose request
// and response both ended is a connection error STREAM_CLOSED (RFC 9113
// 5.1), also in the moment between the response's END_STREAM and the
// stream's removal by the handler's goroutine (held open here by ending
// the response from inside the handler). Old code answered RST_STREAM in
// that moment: h2spec -S failed its case 5.1/12 in 2 of 6 runs.
func TestHeadersOnStreamClosedBothWays(t *testing.T) {
	release := make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := w.(*responseWriter)
		rw.WriteHeader(http.StatusOK)
		_ = rw.send(true) // END_STREAM now; the stream is removed after the handler returns
		rw.ended = true
		<-release
	})})
	defer close(release)
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	r.next(func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamEnded() })
	r.headers(1, true, "/")
	if code := r.goAway(); code != http2.ErrCodeStreamClosed {
		t.Fatalf("GOAWAY %v", code)
	}
}
