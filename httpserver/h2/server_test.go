package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestUnaryWithTrailers: a request body arrives whole, the response's
// declared and http.TrailerPrefix trailers arrive as trailers, not as
// header fields.
func TestUnaryWithTrailers(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		if r.Proto != "HTTP/2.0" || r.Host != "x.test" || r.URL.Path != "/svc/Call" || r.URL.RawQuery != "q=1" {
			t.Errorf("request %s %s %q %q", r.Proto, r.Host, r.URL.Path, r.URL.RawQuery)
		}
		if r.Context().Value(http.ServerContextKey) == nil || r.Context().Value(http.LocalAddrContextKey) == nil {
			t.Error("request context lacks ServerContextKey or LocalAddrContextKey")
		}
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(bytes.ToUpper(b))
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "fine")
	})})
	req, _ := http.NewRequest("POST", "http://"+addr+"/svc/Call?q=1", strings.NewReader("hello"))
	req.Host = "x.test"
	res, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "HELLO" || res.ProtoMajor != 2 {
		t.Fatalf("body %q proto %d", b, res.ProtoMajor)
	}
	if res.Header.Get("Grpc-Status") != "" {
		t.Errorf("trailer sent as a header field: %v", res.Header)
	}
	if res.Trailer.Get("Grpc-Status") != "0" || res.Trailer.Get("Grpc-Message") != "fine" {
		t.Errorf("trailers %v", res.Trailer)
	}
}

// TestStreamingBothWays: each request chunk is answered (flushed) before
// the client sends the next; the request body arrives as it is sent.
func TestStreamingBothWays(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(bytes.ToUpper(buf[:n]))
				if err := http.NewResponseController(w).Flush(); err != nil {
					t.Errorf("flush: %v", err)
				}
			}
			if err != nil {
				return
			}
		}
	})})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+addr+"/chat", pr)
	res, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 64)
	for i := range 5 {
		msg := fmt.Sprintf("message %d", i)
		if _, err := pw.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := io.ReadAtLeast(res.Body, buf, len(msg))
		if err != nil || string(buf[:n]) != strings.ToUpper(msg) {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, strings.ToUpper(msg))
		}
	}
	pw.Close()
	if rest, _ := io.ReadAll(res.Body); len(rest) != 0 {
		t.Fatalf("more after the end: %q", rest)
	}
}

// TestLargeBodiesBothWays: bodies far over the stream and connection
// windows pass whole both ways (flow control both ways).
func TestLargeBodiesBothWays(t *testing.T) {
	const size = 9 << 20
	addr := start(t, &Server{StreamWindow: 256 << 10, ConnWindow: 512 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil || n != size {
			t.Errorf("read %d, %v", n, err)
		}
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		_, _ = io.Copy(w, io.LimitReader(zeros{}, size))
	})})
	res, err := h2cClient().Post("http://"+addr+"/up", "", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	want := sha256.Sum256(make([]byte, size))
	if err != nil || n != size || res.Header.Get("X-Sum") != fmt.Sprintf("%x", want) {
		t.Fatalf("read %d, %v, sum %s", n, err, res.Header.Get("X-Sum"))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestContextCancelledOnClientReset: a client that cancels its request
// (RST_STREAM) cancels the handler's context and ends its body.
func TestContextCancelledOnClientReset(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		_, err := r.Body.Read(make([]byte, 1))
		cancelled <- err
	})})
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/", pr)
	go func() {
		<-started
		cancel()
	}()
	_, _ = h2cClient().Do(req)
	select {
	case err := <-cancelled:
		if err == nil {
			t.Fatal("body read after the reset succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler context not cancelled after the client reset")
	}
}

// TestConnectionLossCancels: the connection closing cancels running
// handlers.
func TestConnectionLossCancels(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(cancelled)
	})})
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	<-started
	r.c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("handler context not cancelled after the connection closed")
	}
}

// TestOtherServesHTTP1: a cleartext connection that does not start with
// the HTTP/2 preface goes to Other.
func TestOtherServesHTTP1(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	addr := start(t, &Server{Handler: h, Other: &http.Server{Handler: h}})
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "HTTP/1.1" {
		t.Fatalf("HTTP/1 answered %q", b)
	}
	res, err = h2cClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Fatalf("HTTP/2 answered %q", b)
	}
}

// TestShutdownLetsStreamsFinish: Shutdown sends GOAWAY, a running stream
// still completes, then Shutdown returns and new connections are refused.
func TestShutdownLetsStreamsFinish(t *testing.T) {
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
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if code := r.goAway(); code != 0 {
		t.Fatalf("GOAWAY %v, want NO_ERROR", code)
	}
	close(release)
	if st := r.status(1); st != "200" {
		t.Fatalf("status %s", st)
	}
	r.closed()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("still accepting after Shutdown")
	}
}

// TestIdleTimeout: a connection without streams gets GOAWAY and is
// closed after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	addr := start(t, &Server{IdleTimeout: 50 * time.Millisecond, Handler: http.NotFoundHandler()})
	r := dialRaw(t, addr)
	r.headers(1, true, "/")
	if st := r.status(1); st != "404" {
		t.Fatalf("status %s", st)
	}
	if code := r.goAway(); code != 0 {
		t.Fatalf("GOAWAY %v", code)
	}
	r.closed()
}

// TestReadDeadlineFromAnotherGoroutine: a past read deadline set while a
// body read is blocked (the proxy's abort) ends that read.
func TestReadDeadlineFromAnotherGoroutine(t *testing.T) {
	readErr := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// before or during the read: either order must end it
		go func() { _ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0)) }()
		_, err := r.Body.Read(make([]byte, 10))
		readErr <- err
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/")
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("read succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read not ended by the past deadline")
	}
}

// TestBodyTimeoutIs408: a body of which nothing arrives for
// ReadBodyTimeout fails the handler's read; a handler that then answers
// nothing gets 408.
func TestBodyTimeoutIs408(t *testing.T) {
	addr := start(t, &Server{ReadBodyTimeout: 20 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
	})})
	r := dialRaw(t, addr)
	r.headers(1, false, "/")
	if st := r.status(1); st != "408" {
		t.Fatalf("status %s, want 408", st)
	}
}

// TestShutdownSendsLastResponses: a response finished while Shutdown
// waits reaches the client whole (body and trailers) before the
// connection closes: the frames the last stream buffered are flushed
// before the write half closes, and the handler workers waiting on the
// connection end with it.
func TestShutdownSendsLastResponses(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write([]byte("last words"))
		w.Header().Set("Grpc-Status", "0")
	})}
	addr := start(t, s)
	client := h2cClient()
	type result struct {
		body, trailer string
		err           error
	}
	results := make(chan result, 4)
	for range 4 {
		go func() {
			res, err := client.Get("http://" + addr + "/")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			results <- result{string(b), res.Trailer.Get("Grpc-Status"), err}
		}()
	}
	for range 4 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers did not start")
		}
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	close(release)
	for range 4 {
		r := <-results
		if r.err != nil || r.body != "last words" || r.trailer != "0" {
			t.Fatalf("response %q trailer %q err %v", r.body, r.trailer, r.err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A response's X-Request-Id (new with every response) is sent as a
// literal never indexed: it would only cycle through the client's HPACK
// table. Other fields are indexed as before.
func TestRequestIDNotIndexed(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", r.URL.Path)
		w.Header().Set("Content-Type", "text/plain")
	})})
	r := dialRaw(t, addr)
	for i, id := range []uint32{1, 3} {
		r.headers(id, true, "/call"+strconv.Itoa(i))
		var fields []hpack.HeaderField
		if !r.next(func(f http2.Frame) bool {
			mh, ok := f.(*http2.MetaHeadersFrame)
			if ok && mh.StreamID == id {
				fields = mh.Fields
			}
			return ok && mh.StreamID == id
		}) {
			t.Fatal("no response")
		}
		for _, f := range fields {
			if f.Name == "x-request-id" && !f.Sensitive || f.Name == "content-type" && f.Sensitive {
				t.Fatalf("response %d: %+v (x-request-id never indexed, content-type indexed)", i, f)
			}
		}
	}
}
