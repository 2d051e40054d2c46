package h2

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestRapidResetBoundsHandlers (CVE-2023-44487): a client opening and
// resetting streams whose handlers do not return at once never has more
// than MaxConcurrentStreams handlers running; once as many more wait, the
// connection gets GOAWAY ENHANCE_YOUR_CALM.
func TestRapidResetBoundsHandlers(t *testing.T) {
	const max = 4
	var running, peak atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	addr := start(t, &Server{MaxConcurrentStreams: max, MaxResetsPerSecond: 1 << 20, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release // ignores the reset, as a slow handler would
		running.Add(-1)
	})})
	r := dialRaw(t, addr)
	go func() {
		for id := uint32(1); id < 2000; id += 2 {
			if r.tryHeaders(id, true, "/") != nil {
				return
			}
			if r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	if code := r.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
	if p := peak.Load(); p > max {
		t.Fatalf("%d handlers ran at once, limit %d", p, max)
	}
}

// TestResetRateLimited: more client resets of open streams in a second
// than MaxResetsPerSecond get GOAWAY ENHANCE_YOUR_CALM, even when the
// handlers return at once.
func TestResetRateLimited(t *testing.T) {
	addr := start(t, &Server{MaxResetsPerSecond: 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})})
	r := dialRaw(t, addr)
	go func() {
		for id := uint32(1); id < 200; id += 2 {
			if r.tryHeaders(id, false, "/") != nil {
				return
			}
			if r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	if code := r.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
}

// TestContinuationFlood (CVE-2024-27316): a header block that never ends
// is refused once it exceeds what MaxHeaderBytes allows, before it is
// decoded whole; the handler never runs.
func TestContinuationFlood(t *testing.T) {
	var called atomic.Bool
	addr := start(t, &Server{MaxHeaderBytes: 4 << 10, Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) })})
	r := dialRaw(t, addr)
	first := r.block("/")
	var sent atomic.Int64
	go func() {
		if r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first}) != nil {
			return
		}
		// literal fields without indexing, 1000 bytes each, forever
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for i := 0; i < 100000; i++ {
			b.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 1000), Sensitive: true})
			if r.fr.WriteContinuation(1, false, b.Bytes()) != nil {
				return
			}
			sent.Add(int64(b.Len()))
		}
	}()
	if code := r.goAway(); code != http2.ErrCodeProtocol && code != http2.ErrCodeCompression {
		t.Fatalf("GOAWAY %v", code)
	}
	r.closed()
	if called.Load() {
		t.Fatal("handler ran")
	}
}

// TestHPACKBomb: a small header block that decodes to more than
// MaxHeaderBytes (one table entry referenced many times) gets 431 and the
// connection goes on; a table size update over the advertised table size
// is a COMPRESSION_ERROR.
func TestHPACKBomb(t *testing.T) {
	addr := start(t, &Server{MaxHeaderBytes: 8 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	r := dialRaw(t, addr)
	big := strings.Repeat("b", 3000)
	r.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		_ = r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for range 200 { // 600 KB decoded from a few hundred bytes
		_ = r.enc.WriteField(hpack.HeaderField{Name: "x-bomb", Value: big})
	}
	if r.hb.Len() > 4000 {
		t.Fatalf("block of %d bytes: the table was not used", r.hb.Len())
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if st := r.status(1); st != "431" {
		t.Fatalf("status %s, want 431", st)
	}
	r.headers(3, true, "/")
	if st := r.status(3); st != "200" {
		t.Fatalf("next request: status %s", st)
	}

	r2 := dialRaw(t, addr)
	r2.enc.SetMaxDynamicTableSizeLimit(1 << 20)
	r2.enc.SetMaxDynamicTableSize(1 << 20) // emits a size update over 4096
	r2.headers(1, true, "/")
	if code := r2.goAway(); code != http2.ErrCodeCompression {
		t.Fatalf("GOAWAY %v, want COMPRESSION_ERROR", code)
	}
}

// TestWindowOverflow: a WINDOW_UPDATE past 2^31-1 is a flow-control
// error: of the connection on stream 0, of the stream otherwise.
func TestWindowOverflow(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })})
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	if err := r.fr.WriteWindowUpdate(1, 1<<31-1); err != nil {
		t.Fatal(err)
	}
	if code := r.reset(1); code != http2.ErrCodeFlowControl {
		t.Fatalf("RST_STREAM %v", code)
	}
	if err := r.fr.WriteWindowUpdate(0, 1<<31-1); err != nil {
		t.Fatal(err)
	}
	if code := r.goAway(); code != http2.ErrCodeFlowControl {
		t.Fatalf("GOAWAY %v", code)
	}
}

// TestZeroWindowSlowReader: a client that opens no window never gets the
// body; the handler's write fails after WriteTimeout and the stream is
// reset, and the server holds at most its buffer of the response.
func TestZeroWindowSlowReader(t *testing.T) {
	werr := make(chan error, 1)
	addr := start(t, &Server{WriteTimeout: 50 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 1 << 10 { // 64 MiB
			if _, err := w.Write(chunk); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	})})
	r := dialRaw(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	r.headers(1, true, "/")
	select {
	case err := <-werr:
		if err == nil {
			t.Fatal("64 MiB written to a client with a zero window")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler write still blocked")
	}
	if code := r.reset(1); code != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v", code)
	}
}

// TestInvalidStreams: an even stream id and DATA on an idle stream are
// connection errors; DATA on a closed stream is a stream error; a stream
// id going backwards is a connection error.
func TestInvalidStreams(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	r := dialRaw(t, addr)
	r.headers(2, true, "/")
	if code := r.goAway(); code != http2.ErrCodeProtocol {
		t.Fatalf("even id: GOAWAY %v", code)
	}
	r = dialRaw(t, addr)
	if err := r.fr.WriteData(5, true, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if code := r.goAway(); code != http2.ErrCodeProtocol {
		t.Fatalf("DATA on an idle stream: GOAWAY %v", code)
	}
	r = dialRaw(t, addr)
	r.headers(1, true, "/")
	if st := r.status(1); st != "200" {
		t.Fatalf("status %s", st)
	}
	if err := r.fr.WriteData(1, true, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if code := r.reset(1); code != http2.ErrCodeStreamClosed {
		t.Fatalf("DATA on a closed stream: RST_STREAM %v", code)
	}
	r.headers(7, true, "/")
	r.headers(3, true, "/")
	if code := r.goAway(); code != http2.ErrCodeProtocol {
		t.Fatalf("id backwards: GOAWAY %v", code)
	}
}

// TestHugeFrame: a frame over the advertised 16 KiB is a FRAME_SIZE_ERROR.
func TestHugeFrame(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/")
	// The server closes the connection before it read the whole frame:
	// the write may fail with a reset, the GOAWAY before it is what counts.
	go func() { _ = r.fr.WriteData(1, true, make([]byte, 1<<20)) }()
	if code := r.goAway(); code != http2.ErrCodeFrameSize {
		t.Fatalf("GOAWAY %v", code)
	}
}

// TestHalfPreface: a client that sends part of the preface is closed
// after ReadHeaderTimeout; so is one that never sends SETTINGS.
func TestHalfPreface(t *testing.T) {
	addr := start(t, &Server{ReadHeaderTimeout: 50 * time.Millisecond, Handler: http.NotFoundHandler()})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(preface[:10]); err != nil {
		t.Fatal(err)
	}
	r := &raw{t: t, c: c}
	r.closed()
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write(preface); err != nil {
		t.Fatal(err)
	}
	(&raw{t: t, c: c2}).closed()
}

// TestControlFloodUnread: a client that floods PING and SETTINGS and
// never reads is not answered into a growing queue: the server stops
// reading it and closes it after WriteTimeout.
func TestControlFloodUnread(t *testing.T) {
	addr := start(t, &Server{WriteTimeout: 100 * time.Millisecond, Handler: http.NotFoundHandler()})
	r := dialRaw(t, addr)
	errc := make(chan error, 1)
	go func() {
		var data [8]byte
		for {
			if err := r.fr.WritePing(false, data); err != nil {
				errc <- err
				return
			}
			if err := r.fr.WriteSettings(); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case <-errc: // the server closed the connection
	case <-time.After(20 * time.Second):
		t.Fatal("the flooding client is still connected")
	}
}

// TestPriorityAndWindowUpdateFlood: PRIORITY and small WINDOW_UPDATE
// frames in bulk are absorbed; the connection then still serves.
func TestPriorityAndWindowUpdateFlood(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	r := dialRaw(t, addr)
	go func() {
		for i := uint32(0); i < 20000; i++ {
			_ = r.fr.WritePriority(1001+2*i, http2.PriorityParam{StreamDep: 1, Weight: 7})
			_ = r.fr.WriteWindowUpdate(0, 1)
		}
		_ = r.tryHeaders(50001, true, "/")
	}()
	if st := r.status(50001); st != "200" {
		t.Fatalf("status %s", st)
	}
}

// TestConcurrencyLimit: a stream beyond MaxConcurrentStreams open at once
// is refused.
func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := start(t, &Server{MaxConcurrentStreams: 2, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })})
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	r.headers(3, true, "/")
	r.headers(5, true, "/")
	if code := r.reset(5); code != http2.ErrCodeRefusedStream {
		t.Fatalf("RST_STREAM %v", code)
	}
}
