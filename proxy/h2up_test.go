package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is a scripted HTTP/2 upstream on loopback: each accepted
// connection, past the preface and SETTINGS exchange, is handed to the
// test, which reads and writes frames by hand (and may misbehave).
type rawH2 struct {
	addr  string
	conns chan *rawConn
}

type rawConn struct {
	nc  net.Conn
	bw  *bufio.Writer
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func startRawH2(t testing.TB) *rawH2 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawH2{addr: ln.Addr().String(), conns: make(chan *rawConn, 16)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				<-ctxDone(t)
				nc.Close()
			}()
			preface := make([]byte, len(http2.ClientPreface))
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
				nc.Close()
				continue
			}
			_ = nc.SetDeadline(time.Time{})
			rc := &rawConn{nc: nc, bw: bufio.NewWriter(nc)}
			rc.fr = http2.NewFramer(rc.bw, nc)
			rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			rc.enc = hpack.NewEncoder(&rc.hb)
			_ = rc.fr.WriteSettings()
			_ = rc.bw.Flush()
			r.conns <- rc
		}
	}()
	return r
}

// ctxDone is closed when the test ends.
func ctxDone(t testing.TB) <-chan struct{} {
	ch := make(chan struct{})
	t.Cleanup(func() { close(ch) })
	return ch
}

func (r *rawH2) accept(t testing.TB) *rawConn {
	t.Helper()
	select {
	case rc := <-r.conns:
		return rc
	case <-time.After(10 * time.Second):
		t.Fatal("no upstream connection within 10s")
		return nil
	}
}

// next reads frames until one that is not connection housekeeping
// (SETTINGS, WINDOW_UPDATE, PING).
func (rc *rawConn) next(t testing.TB) http2.Frame {
	t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("upstream reading: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = rc.fr.WriteSettingsAck()
				_ = rc.bw.Flush()
			}
			continue
		case *http2.WindowUpdateFrame, *http2.PingFrame:
			continue
		}
		return f
	}
}

// request reads the next request's HEADERS, and its DATA up to END_STREAM
// when it has a body.
func (rc *rawConn) request(t testing.TB) (id uint32, path string, body string) {
	t.Helper()
	f := rc.next(t)
	h, ok := f.(*http2.MetaHeadersFrame)
	if !ok {
		t.Fatalf("want HEADERS, got %v", f)
	}
	id, path = h.StreamID, h.PseudoValue("path")
	end := h.StreamEnded()
	for !end {
		f := rc.next(t)
		d, ok := f.(*http2.DataFrame)
		if !ok {
			t.Fatalf("want DATA, got %v", f)
		}
		body += string(d.Data())
		end = d.StreamEnded()
	}
	return id, path, body
}

// requestFor skips frames until the HEADERS of a request for path
// without a body, and returns its stream id.
func (rc *rawConn) requestFor(t testing.TB, path string) uint32 {
	t.Helper()
	for {
		if h, ok := rc.next(t).(*http2.MetaHeadersFrame); ok && h.PseudoValue("path") == path {
			if !h.StreamEnded() {
				t.Fatalf("request for %s: want no body", path)
			}
			return h.StreamID
		}
	}
}

func (rc *rawConn) headers(t testing.TB, id uint32, end bool, kv ...string) {
	t.Helper()
	rc.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = rc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hb.Bytes(), EndHeaders: true, EndStream: end}); err != nil {
		t.Fatal(err)
	}
	_ = rc.bw.Flush()
}

func (rc *rawConn) data(t testing.TB, id uint32, end bool, p []byte) {
	t.Helper()
	if err := rc.fr.WriteData(id, end, p); err != nil {
		t.Fatal(err)
	}
	_ = rc.bw.Flush()
}

func newTestH2(t testing.TB) *h2Transport {
	tr := newH2Transport(PoolConfig{Protocol: ProtocolH2C}, &net.Dialer{Timeout: 5 * time.Second}, nil)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func grpcReq(t testing.TB, ctx context.Context, addr, path, body string) *http.Request {
	t.Helper()
	var rb io.Reader = http.NoBody
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+path, rb)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	return req
}

type rtResult struct {
	resp *http.Response
	err  error
}

func roundTripAsync(tr http.RoundTripper, req *http.Request) chan rtResult {
	ch := make(chan rtResult, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		ch <- rtResult{resp, err}
	}()
	return ch
}

func waitRT(t testing.TB, ch chan rtResult) (*http.Response, error) {
	t.Helper()
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("no response within 10s")
		return nil, nil
	}
}

// Two calls on one connection, answered out of order, each with its
// body and trailers.
func TestH2UpMultiplexedWithTrailers(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx := context.Background()
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", "aaa"))
	rc := up.accept(t)
	idA, pathA, bodyA := rc.request(t)
	b := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/B", "bbb"))
	idB, pathB, bodyB := rc.request(t)
	if pathA != "/s/A" || bodyA != "aaa" || pathB != "/s/B" || bodyB != "bbb" || idA == idB {
		t.Fatalf("requests: %d %q %q, %d %q %q", idA, pathA, bodyA, idB, pathB, bodyB)
	}
	rc.headers(t, idB, false, ":status", "200", "content-type", "application/grpc")
	rc.data(t, idB, false, []byte("to-b"))
	rc.headers(t, idB, true, "grpc-status", "0", "x-t", "b")
	rc.headers(t, idA, false, ":status", "200", "content-type", "application/grpc")
	rc.data(t, idA, false, []byte("to-a"))
	rc.headers(t, idA, true, "grpc-status", "3", "grpc-message", "bad")
	for name, ch := range map[string]chan rtResult{"A": a, "B": b} {
		resp, err := waitRT(t, ch)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[string]string{"A": "to-a 3", "B": "to-b 0"}[name]
		if err != nil || string(got)+" "+resp.Trailer.Get("Grpc-Status") != want {
			t.Errorf("%s: body %q trailer %v err %v, want %q", name, got, resp.Trailer, err, want)
		}
	}
	select {
	case <-up.conns:
		t.Error("a second upstream connection was opened")
	default:
	}
}

// A stream whose upstream overruns its window is reset; another stream on
// the connection is not touched.
func TestH2UpStreamWindowOverrun(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx := context.Background()
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", ""))
	rc := up.accept(t)
	idA, _, _ := rc.request(t)
	b := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/B", ""))
	idB, _, _ := rc.request(t)
	rc.headers(t, idA, false, ":status", "200", "content-type", "application/grpc")
	rc.headers(t, idB, false, ":status", "200", "content-type", "application/grpc")
	respA, err := waitRT(t, a)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16384)
	for sent := 0; sent <= h2StreamWindow; sent += len(chunk) {
		rc.data(t, idA, false, chunk)
	}
	// The overrun stream is reset with FLOW_CONTROL_ERROR.
	for {
		f := rc.next(t)
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			if r.StreamID != idA || r.ErrCode != http2.ErrCodeFlowControl {
				t.Fatalf("got RST_STREAM %d %v, want stream %d FLOW_CONTROL_ERROR", r.StreamID, r.ErrCode, idA)
			}
			break
		}
	}
	if _, err := io.ReadAll(respA.Body); err == nil && (respA.Trailer.Get("Grpc-Status") == "" || respA.Trailer.Get("Grpc-Status") == "0") {
		t.Errorf("the overrun stream's body read to its end without an error (trailer %v)", respA.Trailer)
	}
	rc.data(t, idB, false, []byte("still"))
	rc.headers(t, idB, true, "grpc-status", "0")
	respB, err := waitRT(t, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(respB.Body)
	if err != nil || string(got) != "still" {
		t.Fatalf("the other stream: %q %v", got, err)
	}
}

// A connection window overflow is a connection error: its calls fail,
// and the next call gets a new connection.
func TestH2UpConnWindowOverflow(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx := context.Background()
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", ""))
	rc := up.accept(t)
	rc.request(t)
	_ = rc.fr.WriteWindowUpdate(0, 1<<31-1)
	_ = rc.bw.Flush()
	if _, err := waitRT(t, a); err == nil {
		t.Fatal("the call on the overflowed connection succeeded")
	}
	b := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/B", ""))
	rc2 := up.accept(t)
	id, _, _ := rc2.request(t)
	rc2.headers(t, id, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "0")
	if _, err := waitRT(t, b); err != nil {
		t.Fatal(err)
	}
}

// A call the upstream did not process (GOAWAY below its id) goes to a new
// connection.
func TestH2UpGoAwayRetriesUnprocessed(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	a := roundTripAsync(tr, grpcReq(t, context.Background(), up.addr, "/s/A", ""))
	rc := up.accept(t)
	rc.request(t)
	_ = rc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	_ = rc.bw.Flush()
	rc2 := up.accept(t)
	id, path, _ := rc2.request(t)
	rc2.headers(t, id, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "0")
	if _, err := waitRT(t, a); err != nil || path != "/s/A" {
		t.Fatalf("retried call: %q %v", path, err)
	}
}

// An upstream that dies mid-stream ends a gRPC response with UNAVAILABLE
// in its trailers, and says so to the health accounting.
func TestH2UpDeathMidStreamIsUnavailable(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	a := roundTripAsync(tr, grpcReq(t, context.Background(), up.addr, "/s/A", ""))
	rc := up.accept(t)
	id, _, _ := rc.request(t)
	rc.headers(t, id, false, ":status", "200", "content-type", "application/grpc")
	rc.data(t, id, false, []byte("part"))
	resp, err := waitRT(t, a)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	rc.nc.Close()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != 0 || resp.Trailer.Get("Grpc-Status") != "14" {
		t.Fatalf("after the upstream died: %q %v, trailer %v; want the end with grpc-status 14", rest, err, resp.Trailer)
	}
	if resp.Body.(*h2Body).upstreamErr() == nil {
		t.Error("the failure is not reported to health accounting")
	}
}

// The client going away resets the upstream's stream (context cancel and
// a body closed before its end); the connection stays up for others.
func TestH2UpCancelResetsUpstreamStream(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", ""))
	rc := up.accept(t)
	idA, _, _ := rc.request(t)
	cancel()
	if f, ok := rc.next(t).(*http2.RSTStreamFrame); !ok || f.StreamID != idA || f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("after cancel the upstream got %v, want RST_STREAM CANCEL on %d", f, idA)
	}
	if _, err := waitRT(t, a); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	b := roundTripAsync(tr, grpcReq(t, context.Background(), up.addr, "/s/B", ""))
	idB, _, _ := rc.request(t)
	rc.headers(t, idB, false, ":status", "200", "content-type", "application/grpc")
	resp, err := waitRT(t, b)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f, ok := rc.next(t).(*http2.RSTStreamFrame); !ok || f.StreamID != idB || f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("after closing the body the upstream got %v, want RST_STREAM CANCEL on %d", f, idB)
	}
}

// FuzzH2UpstreamFrames: whatever frames an upstream sends in answer to a
// call, the call ends (a response or an error) without a panic or a hang,
// and the transport serves the next call on a good upstream.
func FuzzH2UpstreamFrames(f *testing.F) {
	seed := func(frames func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		var hb bytes.Buffer
		frames(fr, hpack.NewEncoder(&hb), &hb)
		return b.Bytes()
	}
	hdr := func(enc *hpack.Encoder, hb *bytes.Buffer, kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	f.Add(seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr(enc, hb, ":status", "200"), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("x"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr(enc, hb, "grpc-status", "0"), EndHeaders: true, EndStream: true})
	}))
	f.Add(seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr(enc, hb, ":status", "200")})
		_ = fr.WriteData(1, false, []byte("junk"))
	}))
	f.Add(seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		for range 50 {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		}
		_ = fr.WriteWindowUpdate(1, 0)
		_ = fr.WriteRSTStream(1, http2.ErrCodeEnhanceYourCalm)
		_ = fr.WriteData(3, true, []byte("closed"))
		_ = fr.WriteGoAway(7, http2.ErrCodeNo, nil)
	}))
	f.Add(seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr(enc, hb, ":status", "200")})
		for range 100 {
			_ = fr.WriteContinuation(1, false, hdr(enc, hb, "x-a", strings.Repeat("a", 1000)))
		}
	}))
	f.Fuzz(func(t *testing.T, frames []byte) {
		up := startRawH2(t)
		tr := newTestH2(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond) // a call the frames left open, or resent to a new connection, ends here
		defer cancel()
		ch := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", "body"))
		rc := up.accept(t)
		go func() {
			_, _ = rc.nc.Write(frames)
			// End of input: the transport reads every frame, then EOF,
			// so a call the frames left open ends at once instead of at
			// the context's deadline (keeps each input fast to run).
			_ = rc.nc.(*net.TCPConn).CloseWrite()
		}()
		resp, err := waitRT(t, ch)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		rc.nc.Close()
		// A good upstream afterwards: served on a new connection (a call
		// may still be sent on the closed one before the transport sees
		// it close, and fail: the next try gets the new one).
		for try := 0; ; try++ {
			next := roundTripAsync(tr, grpcReq(t, context.Background(), up.addr, "/s/B", ""))
			select {
			case rc2 := <-up.conns:
				// The new connection may carry the first call too, before
				// the call after: when the old connection failed before
				// the first call's HEADERS were written, the transport
				// rightly sent it again here (and later cancelled it).
				// Answer the call after's own stream.
				id := rc2.requestFor(t, "/s/B")
				rc2.headers(t, id, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "0")
				if _, err := waitRT(t, next); err != nil {
					t.Fatalf("the call after: %v", err)
				}
				return
			case r := <-next:
				if r.err == nil || try == 3 {
					t.Fatalf("the call after went to the closed connection: %v", r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the call after got neither a connection nor an error within 10s")
			}
		}
	})
}

// The context is watched from the first body read that waits (not from
// the start of the call): a cancel while the caller waits for the body
// resets the upstream's stream and ends the read; a cancel while the
// request body's goroutine waits on a body that never comes, with the
// caller waiting for the header, does the same.
func TestH2UpCancelWhileReadingBody(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", ""))
	rc := up.accept(t)
	idA, _, _ := rc.request(t)
	rc.headers(t, idA, false, ":status", "200", "content-type", "application/grpc")
	resp, err := waitRT(t, a)
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		read <- err
	}()
	// The read waits (nothing sent): then the cancel.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b := resp.Body.(*h2Body).s
		b.mu.Lock()
		w := b.watching
		b.mu.Unlock()
		if w {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the body read never began watching the context")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if f, ok := rc.next(t).(*http2.RSTStreamFrame); !ok || f.StreamID != idA || f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("after cancel the upstream got %v, want RST_STREAM CANCEL on %d", f, idA)
	}
	select {
	case err := <-read:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the body read did not end after the cancel")
	}
	resp.Body.Close()

	// A request body that never ends, the caller waiting for the header.
	ctx2, cancel2 := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequestWithContext(ctx2, "POST", "http://"+up.addr+"/s/B", pr)
	req.Header.Set("Content-Type", "application/grpc")
	req.ContentLength = -1
	b := roundTripAsync(tr, req)
	go func() { _, _ = pw.Write([]byte("hello")) }()
	var idB uint32
	for idB == 0 {
		if h, ok := rc.next(t).(*http2.MetaHeadersFrame); ok {
			idB = h.StreamID
		}
	}
	if d, ok := rc.next(t).(*http2.DataFrame); !ok || string(d.Data()) != "hello" {
		t.Fatalf("want DATA hello, got %v", d)
	}
	cancel2()
	if f, ok := rc.next(t).(*http2.RSTStreamFrame); !ok || f.StreamID != idB || f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("after cancel the upstream got %v, want RST_STREAM CANCEL on %d", f, idB)
	}
	if _, err := waitRT(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
}

// moveTrailer: the trailer fields (kept as fields until EOF) become
// resp.Trailer's values, a repeated field's values in order, replacing
// what a key held; none: resp.Trailer is untouched.
func TestH2UpMoveTrailer(t *testing.T) {
	s := &h2Stream{resp: &http.Response{Trailer: http.Header{"Grpc-Status": {"stale"}}}}
	s.moveTrailer()
	if len(s.resp.Trailer) != 1 {
		t.Fatalf("no fields: %v", s.resp.Trailer)
	}
	s.trailer = append(s.trailerArr[:0], hpack.HeaderField{Name: "grpc-status", Value: "0"},
		hpack.HeaderField{Name: "x-a", Value: "1"}, hpack.HeaderField{Name: "grpc-message", Value: ""},
		hpack.HeaderField{Name: "x-a", Value: "2"}, hpack.HeaderField{Name: "x-b", Value: "3"})
	s.moveTrailer()
	want := http.Header{"Grpc-Status": {"0"}, "X-A": {"1", "2"}, "Grpc-Message": {""}, "X-B": {"3"}}
	if fmt.Sprint(s.resp.Trailer) != fmt.Sprint(want) || s.trailer != nil {
		t.Fatalf("got %v (left %v), want %v", s.resp.Trailer, s.trailer, want)
	}
	s.resp.Trailer["X-A"] = append(s.resp.Trailer["X-A"], "3") // a copy: X-B's value stays
	if s.resp.Trailer.Get("X-B") != "3" {
		t.Fatalf("appending to X-A changed X-B: %v", s.resp.Trailer)
	}
}

// waitBuffered waits until the stream holds n unread response bytes.
func waitBuffered(t *testing.T, s *h2Stream, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.buf) - s.off
		s.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes never buffered", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A response whose every Read finds data (a server stream read at a slow
// client's pace: the window keeps the buffer full) still ends with its
// request's context: the upstream's stream is reset at the first Read
// after the cancel (the watch, armed only by a Read that waits, never
// was), not kept streaming past the gateway's timeout.
func TestH2UpCancelWhileDataBuffered(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", ""))
	rc := up.accept(t)
	idA, _, _ := rc.request(t)
	rc.headers(t, idA, false, ":status", "200", "content-type", "application/grpc")
	resp, err := waitRT(t, a)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := resp.Body.(*h2Body).s
	rc.data(t, idA, false, []byte("abc"))
	waitBuffered(t, s, 3)
	if n, err := resp.Body.Read(make([]byte, 3)); n != 3 || err != nil {
		t.Fatalf("read: %d %v", n, err)
	}
	rc.data(t, idA, false, []byte("def"))
	waitBuffered(t, s, 3)
	cancel()
	_, _ = resp.Body.Read(make([]byte, 3)) // data still there: no wait
	if f, ok := rc.next(t).(*http2.RSTStreamFrame); !ok || f.StreamID != idA || f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("after cancel and a read the upstream got %v, want RST_STREAM CANCEL on %d", f, idA)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}

// A stream whose reads found data, its caller then blocked elsewhere (the
// proxy writing to a slow client) when the context ends: the upstream's
// stream is reset then, not at the caller's next Read, which may be much
// later (the old AfterFunc from roundTrip did so).
func TestH2UpCancelBetweenReads(t *testing.T) {
	up := startRawH2(t)
	tr := newTestH2(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := roundTripAsync(tr, grpcReq(t, ctx, up.addr, "/s/A", ""))
	rc := up.accept(t)
	idA, _, _ := rc.request(t)
	rc.headers(t, idA, false, ":status", "200", "content-type", "application/grpc")
	resp, err := waitRT(t, a)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := resp.Body.(*h2Body).s
	for _, msg := range []string{"abc", "def"} {
		rc.data(t, idA, false, []byte(msg))
		waitBuffered(t, s, len(msg))
		if n, err := resp.Body.Read(make([]byte, 3)); n != 3 || err != nil {
			t.Fatalf("read: %d %v", n, err)
		}
	}
	cancel() // no Read follows
	if f, ok := rc.next(t).(*http2.RSTStreamFrame); !ok || f.StreamID != idA || f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("after cancel the upstream got %v, want RST_STREAM CANCEL on %d", f, idA)
	}
}

// Frames an upstream sends on a stream after its END_STREAM (the request
// body still going up, so the stream is not finished) are a stream error
// (RFC 9113 5.1, half-closed remote: STREAM_CLOSED), not more body after
// the trailers, nor a second set of trailers merged into the first.
func TestH2UpFramesAfterEndStream(t *testing.T) {
	for _, after := range []string{"data", "trailers"} {
		t.Run(after, func(t *testing.T) {
			up := startRawH2(t)
			tr := newTestH2(t)
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequest("POST", "http://"+up.addr+"/s/A", pr)
			req.Header.Set("Content-Type", "application/grpc")
			req.ContentLength = -1
			a := roundTripAsync(tr, req)
			go func() { _, _ = pw.Write([]byte("hello")) }()
			rc := up.accept(t)
			var id uint32
			for id == 0 {
				if h, ok := rc.next(t).(*http2.MetaHeadersFrame); ok {
					id = h.StreamID
				}
			}
			rc.headers(t, id, false, ":status", "200", "content-type", "application/grpc")
			rc.data(t, id, false, []byte("ok"))
			rc.headers(t, id, true, "grpc-status", "0")
			if after == "data" {
				rc.data(t, id, false, []byte("smuggled"))
			} else {
				rc.headers(t, id, true, "grpc-status", "13", "x-extra", "1")
			}
			// The upstream's connection answers it (a stream reset), and
			// goes on: what follows it is read only after.
			for {
				f := rc.next(t)
				if r, ok := f.(*http2.RSTStreamFrame); ok {
					if r.StreamID != id || r.ErrCode != http2.ErrCodeStreamClosed {
						t.Fatalf("got %v, want RST_STREAM STREAM_CLOSED on %d", r, id)
					}
					break
				}
				if _, ok := f.(*http2.DataFrame); !ok {
					t.Fatalf("got %v, want RST_STREAM STREAM_CLOSED on %d", f, id)
				}
			}
			resp, err := waitRT(t, a)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "ok" || err != nil || fmt.Sprint(resp.Trailer) != "map[Grpc-Status:[0]]" {
				t.Fatalf("body %q err %v trailer %v, want \"ok\" and grpc-status 0 alone", body, err, resp.Trailer)
			}
		})
	}
}

// An upstream header block over the list size the transport advertised
// (the decoder dropped fields past it) is an error, not a response or
// trailers short of what was sent: a gRPC status dropped so reached the
// client as a call without one.
func TestH2UpTruncatedHeaderBlock(t *testing.T) {
	for _, where := range []string{"header", "trailers"} {
		t.Run(where, func(t *testing.T) {
			up := startRawH2(t)
			tr := newTestH2(t)
			a := roundTripAsync(tr, grpcReq(t, context.Background(), up.addr, "/s/A", ""))
			rc := up.accept(t)
			id, _, _ := rc.request(t)
			var kv []string
			for i := 0; len(kv) < 2*300; i++ {
				kv = append(kv, "x-pad", strings.Repeat("p", 4000)) // indexed after the first
			}
			kv = append(kv, "grpc-status", "0")
			if where == "header" {
				kv = append([]string{":status", "200", "content-type", "application/grpc"}, kv...)
			} else {
				rc.headers(t, id, false, ":status", "200", "content-type", "application/grpc")
			}
			rc.hb.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				_ = rc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			// One frame (the list size is exceeded by indexed fields):
			// no CONTINUATION after the limit, which would fail the
			// whole connection.
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hb.Bytes(), EndStream: true, EndHeaders: true})
			_ = rc.bw.Flush()
			resp, err := waitRT(t, a)
			if where == "header" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("a truncated response header gave a response: %d %d fields", resp.StatusCode, len(resp.Header))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.Trailer.Get("Grpc-Status"); got == "" || got == "0" || len(resp.Trailer) > 2 {
				t.Fatalf("truncated trailers: grpc-status %q, %d fields", got, len(resp.Trailer))
			}
		})
	}
}
