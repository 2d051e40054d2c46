package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// progressDeadlines gives listeners served by net/http's server (TLS, h2c,
// server.http1: net/http) the same server.write_timeout and
// server.read_body_timeout as switchyard's own HTTP/1.x server: deadlines
// renewed on progress rather than net/http's WriteTimeout and ReadTimeout,
// which bound the whole exchange (and would cut long downloads and SSE).
// Before each write (or flush) of the response the write deadline is set
// to now + write, before each read of the body the read deadline to now +
// readBody, through http.ResponseController (per stream on HTTP/2). A
// handler write blocked longer than write fails, and net/http closes the
// connection (HTTP/1) or resets the stream (HTTP/2). A body that stalls
// longer than readBody fails its read; the answer is then 408 if the
// handler had not begun its own.
//
// Unlike switchyard's server, progress is counted per Write call, not per
// byte: a single Write of more than the client reads in write fails. The
// proxy copies in pieces of 32 KiB, so this matters only for clients
// slower than 32 KiB per write timeout.
//
// A deadline is renewed at most once per eighth of its timeout, to
// timeout plus that eighth: each renewal on HTTP/2 is a message to the
// connection's serve goroutine and a timer reset (a gRPC call wrote and
// read several times per message, a large part of its CPU cost). A write
// or read that blocks still gets at least the whole timeout, and at most
// an eighth more.
func progressDeadlines(next http.Handler, write, readBody time.Duration) http.Handler {
	if write <= 0 && readBody <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		pw := &progressWriter{ResponseWriter: w, rc: rc, timeout: write}
		if readBody > 0 && r.Body != nil && r.Body != http.NoBody {
			pw.body = &progressBody{ReadCloser: r.Body, rc: rc, timeout: readBody, h2: r.ProtoMajor == 2}
			r.Body = pw.body
		}
		next.ServeHTTP(pw, r)
		if pw.body != nil {
			pw.body.finish()
		}
		if !pw.wroteHeader && !pw.hijacked && pw.body != nil && pw.body.timedOut() {
			// net/http cancelled the request when the read failed, so
			// the handler took the client for gone and answered nothing.
			pw.WriteHeader(http.StatusRequestTimeout)
		}
	})
}

// progressWriter renews the write deadline before each write.
type progressWriter struct {
	http.ResponseWriter
	rc          *http.ResponseController
	timeout     time.Duration
	body        *progressBody
	wroteHeader bool
	hijacked    bool
	renewAt     time.Time // the deadline set is still a whole timeout away before this
}

// renewSlack is the part of a timeout by which a deadline is set further
// than the timeout, so that it needs renewing only once per that part.
func renewSlack(timeout time.Duration) time.Duration { return timeout / 8 }

func (w *progressWriter) renew() {
	if w.timeout <= 0 || w.hijacked {
		return
	}
	now := time.Now()
	if now.Before(w.renewAt) {
		return
	}
	slack := renewSlack(w.timeout)
	w.renewAt = now.Add(slack)
	_ = w.rc.SetWriteDeadline(now.Add(w.timeout + slack))
}

func (w *progressWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		if w.body != nil && w.body.timedOut() {
			// The handler answers a body that never arrived whole: the
			// client is told why, and the connection closes.
			code = http.StatusRequestTimeout
			w.Header().Set("Connection", "close")
		}
	}
	w.renew()
	w.ResponseWriter.WriteHeader(code)
}

func (w *progressWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.renew()
	return w.ResponseWriter.Write(p)
}

// FlushError is Flush for http.ResponseController.
func (w *progressWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.renew()
	return w.rc.Flush()
}

func (w *progressWriter) Flush() { _ = w.FlushError() }

// Hijack hands over the connection without the deadlines set so far.
func (w *progressWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := w.rc.Hijack()
	if err == nil {
		w.hijacked = true
		_ = c.SetDeadline(time.Time{})
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the rest (deadlines, full
// duplex).
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// progressBody renews the read deadline before each read of the body.
type progressBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	renewAt time.Time // as progressWriter's; read and set by Read only
	// h2: the request came on HTTP/2, where a read deadline left after
	// the body's end is harmless (its timer closes a body that has ended,
	// and the stream's end stops it): it is not cleared at EOF, which
	// saves a message to the connection's serve goroutine per call.
	h2 bool

	mu      sync.Mutex
	expired bool
	// done: the handler returned. A streamed body (gRPC) may still be
	// read by the upstream transport's goroutine then, but the stream's
	// deadlines must not be touched: net/http's HTTP/2 writer has let go
	// of the stream state (SetReadDeadline would dereference nil).
	done bool
}

// setReadDeadline sets the read deadline unless the handler returned.
func (b *progressBody) setReadDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		_ = b.rc.SetReadDeadline(t)
	}
}

// finish marks the handler returned; it waits for a deadline being set.
func (b *progressBody) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

func (b *progressBody) Read(p []byte) (int, error) {
	if now := time.Now(); !now.Before(b.renewAt) {
		slack := renewSlack(b.timeout)
		b.renewAt = now.Add(slack)
		b.setReadDeadline(now.Add(b.timeout + slack))
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		b.mu.Lock()
		b.expired = true
		b.mu.Unlock()
	}
	if err == io.EOF && !b.h2 {
		// HTTP/1: the connection's deadline, which would otherwise cut
		// the next request (or the background read that watches for the
		// client going away).
		b.renewAt = time.Time{}
		b.setReadDeadline(time.Time{})
	}
	return n, err
}

func (b *progressBody) timedOut() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.expired
}
