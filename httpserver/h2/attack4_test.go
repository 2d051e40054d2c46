package h2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Tests of the fourth attacker's pass (h2att17l).

// TestProvokedResetsRateLimited (CVE-2025-8671, "MadeYouReset"): a client
// that makes the server reset its open streams (here a WINDOW_UPDATE of 0
// on each, a stream error) cancels running handlers as RST_STREAM does;
// those resets count against MaxResetsPerSecond too, or the rapid-reset
// limit is bypassed by sending any invalid frame instead of RST_STREAM.
func TestProvokedResetsRateLimited(t *testing.T) {
	var started atomic.Int32
	addr := start(t, &Server{MaxResetsPerSecond: 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-r.Context().Done()
	})})
	r := dialRaw(t, addr)
	r.fr.AllowIllegalWrites = true
	for i := uint32(0); i < 40; i++ {
		id := 1 + 2*i
		r.headers(id, false, "/work")
		if err := r.fr.WriteWindowUpdate(id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.fr.WritePing(false, [8]byte{7}); err != nil {
		t.Fatal(err)
	}
	var code http2.ErrCode
	gotGoAway := false
	r.next(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			code, gotGoAway = f.ErrCode, true
			return true
		case *http2.PingFrame:
			return f.IsAck() && f.Data == [8]byte{7}
		}
		return false
	})
	if !gotGoAway || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("40 provoked resets in a second with a limit of 10: GOAWAY %v (seen %v), %d handlers started", code, gotGoAway, started.Load())
	}
}

// rawBlocks is a client that reads header blocks undecoded, to see the
// HPACK instructions the server's encoder emits.
func rawBlocks(t *testing.T, addr string, settings ...http2.Setting) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fr := http2.NewFramer(c, c)
	if _, err := c.Write(preface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

// TestHeaderTableSizeZeroThenBackSignalled: a SETTINGS frame lowering
// SETTINGS_HEADER_TABLE_SIZE to 0 and raising it again must make the
// encoder signal the smallest size (0) at the start of the next header
// block (RFC 7541 4.2): a decoder that evicted its table on the 0 would
// otherwise be sent references to entries it no longer has.
func TestHeaderTableSizeZeroThenBackSignalled(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("v", 100))
		_, _ = io.WriteString(w, "ok")
	})})
	c, fr := rawBlocks(t, addr)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	req := func(id uint32) {
		hb.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	block := func(id uint32) []byte {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == id {
				return bytes.Clone(h.HeaderBlockFragment())
			}
		}
	}
	req(1) // the encoder's table gets entries
	_ = block(1)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 4096}); err != nil {
		t.Fatal(err)
	}
	req(3)
	b := block(3)
	// A dynamic table size update is 001xxxxx; the value 0 is 0x20.
	if len(b) == 0 || b[0] != 0x20 {
		t.Fatalf("header block after HEADER_TABLE_SIZE 0 then 4096 starts % x, want a table size update to 0 (20)", b[:min(len(b), 4)])
	}
}

// TestMethodNotATokenRefused: a :method that is no token (a space, a
// tab, a slash...) is malformed (RFC 9113 8.3.1, RFC 9110 9.1) and never
// reaches the route: passed on to an HTTP/1.1 upstream it would write a
// request line of more than three parts ("GET /admin /public HTTP/1.1"),
// which servers split differently from the gateway's routing.
func TestMethodNotATokenRefused(t *testing.T) {
	var reached atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	})})
	r := dialRaw(t, addr)
	for i, m := range []string{"GET /admin", "GET\t/admin", "GE(T", "", "G\x7fT"} {
		id := uint32(1 + 2*i)
		r.hb.Reset()
		for _, kv := range [][2]string{{":method", m}, {":scheme", "http"}, {":authority", "x"}, {":path", "/public"}} {
			_ = r.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if code := r.reset(id); code != http2.ErrCodeProtocol {
			t.Fatalf(":method %q: RST_STREAM %v, want PROTOCOL_ERROR", m, code)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("%d requests with an invalid method reached the handler", n)
	}
}

// TestFieldValueEdgeWhitespaceTrimmed: a field value starting or ending
// with SP or HTAB (which RFC 9113 8.2.1 forbids) reaches the route
// trimmed, as the same request over HTTP/1.1 does: passed on as it came,
// the route saw " key" (header matches, rate-limit and hash keys) where
// an HTTP/1.1 upstream, which trims it, sees "key". Trailers likewise.
func TestFieldValueEdgeWhitespaceTrimmed(t *testing.T) {
	seen := make(chan string, 8)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		seen <- r.Header.Get("X-Api-Key") + "|" + r.Trailer.Get("X-T") + "|" + fmt.Sprint(r.ContentLength)
	})})
	r := dialRaw(t, addr)
	for i, v := range []string{" key", "key ", "\tkey", "key\t", " \tkey\t "} {
		id := uint32(1 + 2*i)
		r.headers(id, true, "/", "x-api-key", v)
		if st := r.status(id); st != "200" {
			t.Fatalf("value %q: status %s", v, st)
		}
		if got := <-seen; got != "key||0" {
			t.Fatalf("value %q reached the route as %q", v, got)
		}
	}
	r.headers(11, true, "/", "x-api-key", "a b\tc")
	_ = r.status(11)
	if got := <-seen; got != "a b\tc||0" {
		t.Fatalf("inner whitespace: %q", got)
	}
	r.headers(13, false, "/", "content-length", " 2 ")
	if err := r.fr.WriteData(13, false, []byte("ab")); err != nil {
		t.Fatal(err)
	}
	r.hb.Reset()
	_ = r.enc.WriteField(hpack.HeaderField{Name: "x-t", Value: " tv\t"})
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 13, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	_ = r.status(13)
	if got := <-seen; got != "|tv|2" {
		t.Fatalf("trailer: %q", got)
	}
}

var _ = context.Background
var _ = fmt.Sprint
var _ = runtime.Gosched

// TestNegativeWindowRecovers: a client that lowers INITIAL_WINDOW_SIZE
// below what a stream was already sent (its window goes negative, RFC
// 9113 6.9.2) and raises it again gets the rest of the body, whole, with
// END_STREAM, and never a frame larger than its windows allow.
func TestNegativeWindowRecovers(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 12<<10) // 192 KiB
	addr := start(t, &Server{WriteTimeout: 20 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	})})
	r := dialRaw(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 50000})
	if err := r.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	r.headers(1, true, "/")
	var got []byte
	window := int64(50000)
	phase := 0
	ended := false
	for !ended {
		if !r.next(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.DataFrame:
				if f.StreamID != 1 {
					return false
				}
				got = append(got, f.Data()...)
				window -= int64(f.Length)
				if window < 0 {
					t.Fatalf("DATA past the stream window: %d", window)
				}
				ended = f.StreamEnded()
				return true
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				t.Fatalf("%v", f)
			}
			return false
		}) {
			t.Fatal("connection ended")
		}
		if window == 0 && !ended {
			switch phase {
			case 0: // window 50000 used up: lower to 10000 (window -40000), then give 30000 (-10000)
				_ = r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10000})
				_ = r.fr.WriteWindowUpdate(1, 30000)
				window = -10000
				// nothing may come now: raise to 60000 (+50000) -> 40000
				_ = r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 60000})
				window = 40000
			default:
				_ = r.fr.WriteWindowUpdate(1, 1<<20)
				window = 1 << 20
			}
			phase++
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes, want %d", len(got), len(body))
	}
}

// TestEndStreamWithLengthRefused: HEADERS with END_STREAM that declares a
// content-length above 0 is malformed (RFC 9113 8.1.1); the route never
// sees it, and the connection goes on.
func TestEndStreamWithLengthRefused(t *testing.T) {
	var reached atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	})})
	r := dialRaw(t, addr)
	r.headers(1, true, "/", "content-length", "5")
	if code := r.reset(1); code != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v", code)
	}
	r.headers(3, true, "/", "content-length", "0")
	if st := r.status(3); st != "200" {
		t.Fatal(st)
	}
	if reached.Load() != 1 {
		t.Fatalf("reached %d", reached.Load())
	}
}

// TestPaddedBodyExact: a body in padded DATA frames (up to 255 bytes of
// padding, also frames of padding only) arrives exactly, and the padding
// counts in, and returns to, the windows (checkWindows).
func TestPaddedBodyExact(t *testing.T) {
	checkWindows(t)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		_, _ = fmt.Fprintf(w, "%d:%x", len(b), b[:min(8, len(b))])
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/", "content-length", "200000")
	pad := make([]byte, 255)
	sent := 0
	for i := 0; sent < 200000; i++ {
		n := min(200000-sent, 16384-256, 1000+i)
		if i%7 == 3 {
			n = 0
		}
		if err := r.fr.WriteDataPadded(1, sent+n == 200000, bytes.Repeat([]byte{byte(i)}, n), pad[:i%256]); err != nil {
			t.Fatal(err)
		}
		sent += n
		if i%50 == 0 {
			_ = r.fr.WriteWindowUpdate(0, 1)
		}
	}
	_, body, _ := r.response(1)
	if !strings.HasPrefix(body, "200000:") {
		t.Fatalf("body %q", body)
	}
}

// TestClosedConnNotKeptByIdleTimer: a connection that closed while a
// handler ran is let go once the handler returns: the handler's end re-armed
// the idle timer of the closed connection, whose closure kept it (its
// framer, buffers, HPACK tables, stream map) for IdleTimeout more; a
// client opening and dropping connections with a request each grew the
// gateway's memory by IdleTimeout's worth of them.
func TestClosedConnNotKeptByIdleTimer(t *testing.T) {
	conns := make(chan *conn, 1)
	release := make(chan struct{})
	returned := make(chan struct{})
	s := &Server{IdleTimeout: time.Hour, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { returned <- struct{}{} }()
		<-r.Context().Done()
		<-release
	})}
	h := func(c *conn) {
		if c.srv == s { // not the connections of earlier tests ending now
			conns <- c
		}
	}
	testHookTeardown.Store(&h)
	t.Cleanup(func() { testHookTeardown.Store(nil) })
	addr := start(t, s)
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	r.ping()
	r.c.Close()
	c := <-conns
	deadline := time.Now().Add(10 * time.Second)
	for { // the hook runs as teardown begins: let it end first
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection not torn down")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-returned
	for {
		c.mu.Lock()
		running := c.running
		c.mu.Unlock()
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("handler still counted")
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	armed := c.idleTimer.Stop()
	c.mu.Unlock()
	if armed {
		t.Fatal("the closed connection's idle timer was re-armed: it keeps the connection for IdleTimeout")
	}
}

// ping sends PING and waits for its ACK (every frame sent before was
// processed).
func (r *raw) ping() {
	r.t.Helper()
	if err := r.fr.WritePing(false, [8]byte{'p'}); err != nil {
		r.t.Fatal(err)
	}
	if !r.next(func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck() && p.Data == [8]byte{'p'}
	}) {
		r.t.Fatal("no PING ACK")
	}
}

// TestPathWithSpaceRefused: a :path with a space is no request target
// (RFC 9113 8.3.1, RFC 3986); url.ParseRequestURI keeps it in the query,
// and http.Request.Write (the proxy's HTTP/1.1 transports) then writes it
// raw into the upstream's request line: "GET /a?b c HTTP/1.1", four
// parts, which HTTP/1.1 servers split each their own way.
func TestPathWithSpaceRefused(t *testing.T) {
	var reached atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		var b bytes.Buffer
		_ = r.Write(&b) // what an HTTP/1.1 upstream would get
		line, _, _ := strings.Cut(b.String(), "\r\n")
		if strings.Count(line, " ") != 2 {
			t.Errorf("request line %q", line)
		}
	})})
	r := dialRaw(t, addr)
	for i, p := range []string{"/a?b c", "/a?x HTTP/1.1", "/a b"} {
		id := uint32(1 + 2*i)
		r.headers(id, true, p)
		if code := r.reset(id); code != http2.ErrCodeProtocol {
			t.Fatalf(":path %q: RST_STREAM %v, want PROTOCOL_ERROR", p, code)
		}
	}
	r.headers(7, true, "/a?b%20c")
	if st := r.status(7); st != "200" {
		t.Fatal(st)
	}
	if reached.Load() != 1 {
		t.Fatalf("reached %d", reached.Load())
	}
}

// TestMaxFrameSizeLoweredMidWrite: a client that lowers
// SETTINGS_MAX_FRAME_SIZE gets no larger DATA frame once the server
// ACKed it, even from a write whose flow window was taken before (the
// frame size was fixed with the window, outside the write lock).
func TestMaxFrameSizeLoweredMidWrite(t *testing.T) {
	acked := make(chan struct{})
	var once atomic.Bool
	hook := func() {
		if once.CompareAndSwap(false, true) {
			<-acked
		}
	}
	testHookAfterWaitFlow.Store(&hook)
	t.Cleanup(func() { testHookAfterWaitFlow.Store(nil) })
	body := bytes.Repeat([]byte("x"), 100000)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body) // over bufSize: written as the windows allow
	})})
	r := dialRaw(t, addr, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	r.fr.SetMaxReadFrameSize(1 << 20)
	_ = r.fr.WriteWindowUpdate(0, 1<<30)
	r.ping() // the settings are in force
	r.headers(1, true, "/")
	_ = r.status(1)
	if err := r.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384}); err != nil {
		t.Fatal(err)
	}
	if !r.next(func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() }) {
		t.Fatal("no SETTINGS ACK")
	}
	close(acked)
	n := 0
	r.next(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			if d.Length > 16384 {
				t.Fatalf("DATA of %d bytes after MAX_FRAME_SIZE 16384 was ACKed", d.Length)
			}
			n += len(d.Data())
			return d.StreamEnded()
		}
		return false
	})
	if n != len(body) {
		t.Fatalf("%d bytes", n)
	}
}

// TestReusedWorkerStartsClean: a connection's handler goroutines are
// reused; what a handler left behind (header fields, trailers, read and
// write deadlines in the past, a closed body, a panic, a reset) is never
// seen by the next stream's handler on the same worker: its header map is
// empty, its context live, its body reads and its writes work.
func TestReusedWorkerStartsClean(t *testing.T) {
	var bad atomic.Value
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(w.Header()) != 0 || r.Context().Err() != nil && r.URL.Path != "/wait" || r.Trailer != nil {
			bad.Store(fmt.Sprintf("%s: header %v, ctx %v, trailer %v", r.URL.Path, w.Header(), r.Context().Err(), r.Trailer))
		}
		b, err := io.ReadAll(r.Body)
		if (err != nil || string(b) != "body") && r.URL.Path != "/wait" { // (/wait may be reset before it reads)
			bad.Store(fmt.Sprintf("%s: body %q %v", r.URL.Path, b, err))
		}
		w.Header().Set("Trailer", "X-T")
		w.Header().Set("X-Left", r.URL.Path)
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Unix(1, 0))
		_ = rc.SetWriteDeadline(time.Unix(1, 0))
		_, _ = io.WriteString(w, "answer")
		w.Header().Set("X-T", "t")
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/goexit":
			runtime.Goexit()
		case "/wait":
			<-r.Context().Done()
		}
	})})
	r := dialRaw(t, addr)
	paths := []string{"/panic", "/ok", "/wait", "/goexit", "/ok"}
	for i := 0; i < 60; i++ {
		id := uint32(1 + 2*i)
		p := paths[i%len(paths)]
		r.headers(id, false, p, "content-length", "4")
		if err := r.fr.WriteData(id, true, []byte("body")); err != nil {
			t.Fatal(err)
		}
		switch p {
		case "/ok":
			head, body, trailer := r.response(id)
			if head[0] != ":status: 200" || body != "answer" || !contains(trailer, "x-t: t") || !contains(head, "x-left: /ok") {
				t.Fatalf("stream %d: %v %q %v", id, head, body, trailer)
			}
		case "/wait":
			if err := r.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
		default:
			if code := r.reset(id); code != http2.ErrCodeInternal {
				t.Fatalf("stream %d: %v", id, code)
			}
		}
		if v := bad.Load(); v != nil {
			t.Fatal(v)
		}
	}
}
