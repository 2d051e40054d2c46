package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestSlowReaderBodyBufferBounded: a handler that reads the body more
// slowly than the client sends it (a proxy relaying an upload to a slower
// upstream) never drains its buffer completely. The buffer must stay
// about a window in size however long the body is, not keep every byte
// already read in front of the unread ones.
func TestSlowReaderBodyBufferBounded(t *testing.T) {
	const (
		window = 65535
		frame  = 8 << 10
		frames = 256 // 2 MiB in all
		chunk  = 4 << 10
	)
	readc := make(chan struct{})
	capc := make(chan int, 1)
	addr := start(t, &Server{StreamWindow: window, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := (*stream)(r.Body.(*body))
		p := make([]byte, chunk)
		peak := 0
		for i := 0; i < (frames+3)*frame/chunk; i++ {
			if _, err := io.ReadFull(r.Body, p); err != nil {
				t.Errorf("read %d: %v", i, err)
				break
			}
			st.c.mu.Lock()
			peak = max(peak, cap(st.buf))
			st.c.mu.Unlock()
			if i < 2*frames {
				readc <- struct{}{}
			}
		}
		capc <- peak
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/up")
	data := bytes.Repeat([]byte{'u'}, frame)
	send := func() {
		if err := r.fr.WriteData(1, false, data); err != nil {
			t.Fatal(err)
		}
		// The server has taken the frame once it answers a PING sent
		// after it.
		if err := r.fr.WritePing(false, [8]byte{7}); err != nil {
			t.Fatal(err)
		}
		if !r.next(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }) {
			t.Fatal("connection ended")
		}
	}
	// Three frames ahead; then one more per two reads of half a frame:
	// the handler is never more than half a frame from the unread end.
	send()
	send()
	send()
	for i := 0; i < frames; i++ {
		<-readc
		<-readc
		send()
	}
	peak := <-capc
	t.Logf("peak buffer %d bytes", peak)
	if peak > 4*window {
		t.Fatalf("body buffer grew to %d bytes for a %d-byte window (%d bytes sent)", peak, window, (frames+3)*frame)
	}
}

// trailerBlock encodes a trailer section.
func (r *raw) trailerBlock(kv ...string) []byte {
	r.hb.Reset()
	for i := 0; i < len(kv); i += 2 {
		_ = r.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(r.hb.Bytes())
}

// TestRequestTrailersNoRace: request trailers arrive on the connection's
// reader while the handler is already using the request (a reverse proxy
// clones r.Trailer first thing). They must reach r.Trailer in the
// handler's goroutine, when the body reaches EOF, never by the reader
// writing a map the handler iterates (go test -race fails on the old code;
// in production that is a "concurrent map iteration and map write" crash).
func TestRequestTrailersNoRace(t *testing.T) {
	got := make(chan http.Header, 1)
	started := make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for k := range r.Trailer { // as http.Request.Clone does
			n += len(k)
		}
		close(started)
		for range 1000 {
			for k := range r.Trailer {
				n += len(k)
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Clone()
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/t", "trailer", "x-t")
	if err := r.fr.WriteData(1, false, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock("x-t", "v", "x-u", "w"), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	tr := <-got
	if tr.Get("X-T") != "v" || tr.Get("X-U") != "w" {
		t.Fatalf("trailer %v", tr)
	}
}

// TestRequestTrailerFramingFieldsRefused: a trailer may not carry the
// fields that frame or route a request (Content-Length, Transfer-Encoding,
// Host, Trailer), as the HTTP/1 server refuses them: a proxy forwarding
// the trailer to an HTTP/1.1 upstream must never see them.
func TestRequestTrailerFramingFieldsRefused(t *testing.T) {
	for _, name := range []string{"content-length", "transfer-encoding", "host", "trailer"} {
		t.Run(name, func(t *testing.T) {
			got := make(chan http.Header, 1)
			addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				got <- r.Trailer.Clone()
			})})
			r := dialRaw(t, addr)
			r.headers(1, false, "/t")
			if err := r.fr.WriteData(1, false, []byte("abc")); err != nil {
				t.Fatal(err)
			}
			if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock(name, "5"), EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
			var code http2.ErrCode = 0xff
			r.next(func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.RSTStreamFrame:
					code = f.ErrCode
					return f.StreamID == 1
				case *http2.MetaHeadersFrame:
					return f.StreamID == 1 // answered: the trailer was taken
				}
				return false
			})
			if code != http2.ErrCodeProtocol {
				t.Fatalf("RST_STREAM code %v, want PROTOCOL_ERROR", code)
			}
			if tr := <-got; len(tr) != 0 {
				t.Fatalf("handler saw trailer %v", tr)
			}
		})
	}
}

// TestResponseContentLengthKept: a handler's body may not run past its
// Content-Length (the write fails with http.ErrContentLength, as with
// net/http and the HTTP/1 server), and a body shorter than declared ends
// with RST_STREAM, never END_STREAM: a response that contradicts its
// Content-Length is malformed (RFC 9113 8.1.1) and one cut short must not
// pass for whole.
func TestResponseContentLengthKept(t *testing.T) {
	errc := make(chan error, 2)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		switch r.URL.Path {
		case "/long":
			_, err := w.Write([]byte("0123456789abc"))
			errc <- err
			_, err = io.WriteString(w, "0123456789x")
			errc <- err
			_, _ = w.Write([]byte("0123456789"))
		case "/short":
			_, _ = io.WriteString(w, "01234")
		}
	})})
	r := dialRaw(t, addr)
	r.headers(1, true, "/long")
	for range 2 {
		if err := <-errc; err != http.ErrContentLength {
			t.Fatalf("write past Content-Length: %v, want http.ErrContentLength", err)
		}
	}
	var body []byte
	ended := false
	r.next(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			body = append(body, d.Data()...)
			ended = d.StreamEnded()
			return ended
		}
		return false
	})
	if string(body) != "0123456789" || !ended {
		t.Fatalf("body %q, ended %v", body, ended)
	}

	r.headers(3, true, "/short")
	var code http2.ErrCode = 0xff
	r.next(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.DataFrame:
			if f.StreamID == 3 && f.StreamEnded() {
				return true // ended as if whole
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 3 {
				code = f.ErrCode
				return true
			}
		}
		return false
	})
	if code != http2.ErrCodeInternal {
		t.Fatalf("short body: RST_STREAM code %v, want INTERNAL_ERROR", code)
	}
}

// TestNoCrossStreamLeak: many concurrent streams on one connection, each
// answered with its own id in a header, the body (in sizes that take the
// buffered, the piecewise and the flow-controlled paths) and a trailer,
// while every third one is cancelled by the client mid-response and its
// handler keeps writing: every completed response carries only its own
// request's id, everywhere.
func TestNoCrossStreamLeak(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		b, _ := io.ReadAll(r.Body)
		if string(b) != id {
			t.Errorf("stream %s read body %q", id, b)
		}
		w.Header().Set("Trailer", "X-Id-T")
		w.Header().Set("X-Id", id)
		chunk := []byte(strings.Repeat(id+",", 64))
		for written := 0; written < n; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				break // reset: the client cancelled
			}
			if written%(7*len(chunk)) == 0 {
				http.NewResponseController(w).Flush()
			}
		}
		w.Header().Set("X-Id-T", id)
	})})
	client := h2cClient()
	sizes := []int{0, 100, 20 << 10, 200 << 10}
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "s" + strconv.Itoa(i)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/?id="+id+"&n="+strconv.Itoa(sizes[i%len(sizes)]), strings.NewReader(id))
			res, err := client.Do(req)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			defer res.Body.Close()
			if got := res.Header.Get("X-Id"); got != id {
				t.Errorf("%s: X-Id %q", id, got)
			}
			if i%3 == 0 {
				p := make([]byte, 10)
				_, _ = res.Body.Read(p)
				cancel()
				return
			}
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Errorf("%s: body: %v", id, err)
				return
			}
			for _, part := range strings.Split(strings.TrimSuffix(string(b), ","), ",") {
				if part != id && part != "" {
					t.Errorf("%s: body carries %q", id, part)
					return
				}
			}
			if got := res.Trailer.Get("X-Id-T"); got != id {
				t.Errorf("%s: trailer %q", id, got)
			}
		}()
	}
	wg.Wait()
}

// TestMalformedRequestHeadsRefused: header injection (CR, LF, NUL in a
// value), invalid names, connection-specific fields and pseudo-header
// abuse are each a stream error PROTOCOL_ERROR; the handler never runs.
// After them, the connection still serves a request.
func TestMalformedRequestHeadsRefused(t *testing.T) {
	var calls atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
	})})
	base := []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}
	with := func(kv ...string) []string { return append(append([]string{}, base...), kv...) }
	cases := map[string][]string{
		"crlf value":          with("x-a", "v\r\nx-injected: 1"),
		"lf value":            with("x-a", "v\nGET / HTTP/1.1"),
		"nul value":           with("x-a", "v\x00w"),
		"uppercase name":      with("X-A", "v"),
		"space in name":       with("x a", "v"),
		"colon in name":       with("x:a", "v"),
		"connection":          with("connection", "close"),
		"transfer-encoding":   with("transfer-encoding", "chunked"),
		"te gzip":             with("te", "gzip"),
		"upgrade":             with("upgrade", "websocket"),
		"keep-alive":          with("keep-alive", "1"),
		"two lengths":         with("content-length", "1", "content-length", "2"),
		"bad length":          with("content-length", "-1"),
		"dup :path":           with(":path", "/b"),
		"pseudo after":        {":method", "GET", ":scheme", "http", "x-a", "v", ":path", "/"},
		"empty :path":         {":method", "GET", ":scheme", "http", ":authority", "x", ":path", ""},
		"no :scheme":          {":method", "GET", ":authority", "x", ":path", "/"},
		"absolute :path":      {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "http://evil/"},
		":status":             with(":status", "200"),
		"unknown pseudo":      with(":foo", "1"),
		"CONNECT with path":   {":method", "CONNECT", ":authority", "x:1", ":path", "/"},
		"* not OPTIONS":       {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "*"},
		"host not :authority": with("host", "evil"),
		"scheme ftp":          {":method", "GET", ":scheme", "ftp", ":authority", "x", ":path", "/"},
		"userinfo":            {":method", "GET", ":scheme", "http", ":authority", "u:p@x", ":path", "/"},
		"bad host chars":      {":method", "GET", ":scheme", "http", ":authority", "x y", ":path", "/"},
		"bad host field":      {":method", "GET", ":scheme", "http", ":path", "/", "host", "x\"y"},
		"two hosts":           {":method", "GET", ":scheme", "http", ":path", "/", "host", "x", "host", "y"},
	}
	r := dialRaw(t, addr)
	id := uint32(1)
	for name, kv := range cases {
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.trailerBlock(kv...), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		var code http2.ErrCode = 0xff
		r.next(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				code = f.ErrCode
				return f.StreamID == id
			case *http2.MetaHeadersFrame:
				return f.StreamID == id
			}
			return false
		})
		if code != http2.ErrCodeProtocol {
			t.Errorf("%s: RST_STREAM code %v, want PROTOCOL_ERROR", name, code)
		}
		id += 2
	}
	// The same authority in both is fine, in any case.
	r.headers(id, true, "/ok", "host", "X")
	if st := r.status(id); st != "200" {
		t.Fatalf("after the malformed ones: status %s", st)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
}

// TestNoGoroutineLeakOnConnectionLoss: handlers blocked every way a
// handler can block on the connection (reading a body the client stopped
// sending, writing into a zero window, flushing, waiting in the queue
// behind MaxConcurrentStreams) all return when the client vanishes, and
// the server's goroutines for the connection end.
func TestNoGoroutineLeakOnConnectionLoss(t *testing.T) {
	before := runtime.NumGoroutine()
	var started, returned atomic.Int32
	s := &Server{MaxConcurrentStreams: 8, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		defer returned.Add(1)
		switch r.URL.Path {
		case "/read":
			_, _ = io.Copy(io.Discard, r.Body)
		case "/write":
			big := make([]byte, 64<<10)
			for {
				if _, err := w.Write(big); err != nil {
					return
				}
			}
		case "/flush":
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				if err := http.NewResponseController(w).Flush(); err != nil {
					return
				}
			}
		}
	})}
	addr := start(t, s)
	r := dialRaw(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	id := uint32(1)
	for i := range 12 { // 8 run, 4 wait
		path := []string{"/read", "/write", "/flush"}[i%3]
		r.headers(id, false, path)
		if err := r.fr.WriteData(id, false, []byte("part")); err != nil {
			t.Fatal(err)
		}
		id += 2
	}
	// Wait (polling, bounded) until 8 handlers run.
	deadline := time.Now().Add(10 * time.Second)
	for started.Load() < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers started", started.Load())
		}
		time.Sleep(time.Millisecond)
	}
	r.c.Close()
	for returned.Load() != started.Load() || runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after the connection's loss: %d of %d handlers returned, %d goroutines (%d before)\n%s",
				returned.Load(), started.Load(), runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
	if started.Load() != 8 {
		t.Fatalf("%d handlers ran, want the 8 running when the client left (the queued ones never start)", started.Load())
	}
}

// TestBodyCloseWakesBlockedRead: closing the request body ends a Read
// blocked in another goroutine (as a transport's body-writing goroutine
// is when the upstream answered before the body ended), as net/http's
// does: it must not wait for the client's next bytes or the stream's end.
func TestBodyCloseWakesBlockedRead(t *testing.T) {
	readErr := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			readErr <- err
		}()
		st := (*stream)(r.Body.(*body))
		// Wait (bounded) until the reader took the part and blocks.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			st.c.mu.Lock()
			drained := st.received == 4 && st.off == len(st.buf)
			st.c.mu.Unlock()
			if drained || time.Now().After(deadline) {
				break
			}
		}
		_ = r.Body.Close()
		select {
		case err := <-readErr:
			if err == nil {
				t.Error("the blocked Read ended without an error")
			}
		case <-time.After(5 * time.Second): // a hang guard, below the client's
			t.Error("a Read blocked when the body was closed is still blocked")
		}
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/")
	if err := r.fr.WriteData(1, false, []byte("part")); err != nil {
		t.Fatal(err)
	}
	if st := r.status(1); st != "200" {
		t.Fatalf("status %s", st)
	}
}

// TestTrailersAfterOurResetIgnored: a route that answers before the body
// ended makes the server reset the stream (NO_ERROR); the client's
// trailer may already be on its way. It is ignored (RFC 9113 5.1: frames
// on a stream we reset), not a connection error that kills every other
// stream of the connection.
func TestTrailersAfterOurResetIgnored(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/upload")
	if err := r.fr.WriteData(1, false, []byte("part")); err != nil {
		t.Fatal(err)
	}
	if code := r.reset(1); code != http2.ErrCodeNo {
		t.Fatalf("RST_STREAM %v, want NO_ERROR", code)
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.trailerBlock("x-t", "v"), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	r.headers(3, true, "/next")
	var got string
	r.next(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			got = "GOAWAY " + f.ErrCode.String()
			return true
		case *http2.MetaHeadersFrame:
			if f.StreamID == 3 {
				got = f.PseudoValue("status")
				return true
			}
		}
		return false
	})
	if got != "401" {
		t.Fatalf("the next stream got %q, want 401", got)
	}
}

// TestStreamIDNotReusedAfterMalformedHead: a HEADERS frame refused for a
// malformed field still opens (and closes) its stream: the same id again
// is not a new request, and neither is a lower one.
func TestStreamIDNotReusedAfterMalformedHead(t *testing.T) {
	var calls atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
	})})
	r := dialRaw(t, addr)
	r.headers(5, true, "/", "x-a", "v\r\nx")
	if code := r.reset(5); code != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v", code)
	}
	r.headers(5, true, "/again")
	r.headers(3, true, "/lower")
	var got string
	r.next(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			got = "GOAWAY"
			return true
		case *http2.MetaHeadersFrame:
			got = "response on stream " + strconv.Itoa(int(f.StreamID))
			return true
		}
		return false
	})
	if got != "GOAWAY" || calls.Load() != 0 {
		t.Fatalf("got %s, handler ran %d times; want GOAWAY and no handler", got, calls.Load())
	}
}
