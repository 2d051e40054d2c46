package h2

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHandlerGoexitResetsStream: a handler ending its goroutine with
// runtime.Goexit (t.FailNow-like helpers) resets its stream as a panic
// does: the stream was left open with no handler, the client waiting for
// ever, and the connection never idle again.
func TestHandlerGoexitResetsStream(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/goexit" {
			runtime.Goexit()
		}
		_, _ = w.Write([]byte("fine"))
	})})
	r := dialRaw(t, addr)
	r.headers(1, true, "/goexit")
	if code := r.reset(1); code != http2.ErrCodeInternal {
		t.Fatalf("RST_STREAM %v, want INTERNAL_ERROR", code)
	}
	r.headers(3, true, "/ok")
	if head, body, _ := r.response(3); head[0] != ":status: 200" || body != "fine" {
		t.Fatalf("after the Goexit: %v %q", head, body)
	}
}

// TestIdleWorkersBoundedByWorkBuffer: the streams handed to idle workers
// that have not taken them yet count as waiting workers: a worker that
// finished its handler while maxIdleWorkers streams sit in c.work must not
// wait too, or the next startLocked blocks on the full channel while
// holding c.mu (and deadlocks with workers taking c.mu as the connection
// ends).
func TestIdleWorkersBoundedByWorkBuffer(t *testing.T) {
	var handedRan atomic.Int32
	s := &Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/handed" {
			handedRan.Add(1)
		}
	})}
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	go func() { _, _ = io.Copy(io.Discard, cc) }()
	c := newConn(s, sc, bufio.NewReader(sc), nil)
	defer c.cancelCtx()
	first, _ := http.NewRequest("GET", "http://x/first", nil)
	handed, _ := http.NewRequest("GET", "http://x/handed", nil)
	// maxIdleWorkers workers were handed a stream each (idleWorkers is
	// back to 0) and have not taken it yet: their streams fill c.work.
	c.mu.Lock()
	for i := range maxIdleWorkers {
		c.work <- newStream(c, uint32(2*i+3), handed, -1)
	}
	c.running = 1
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.worker(newStream(c, 1, first, -1)); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	// A worker that waited beside the full buffer took a stream handed
	// to another (here, with none to take them, it runs them all).
	if n := handedRan.Load(); n > 0 {
		t.Fatalf("the worker waited beside %d handed streams (and ran %d): the next startLocked blocks holding c.mu", maxIdleWorkers, n)
	}
	select {
	case <-done:
	default:
		t.Fatal("the worker neither waits nor ends")
	}
}
