// Package httpserver is the gateway's HTTP/1.x server: it serves an
// http.Handler on plain TCP connections with less work per request than
// net/http's server.
//
// Measured on the proxy (docs/benchmarks.md), a large share of net/http's
// per-request cost is not parsing but bookkeeping around it: a goroutine
// started for every request to watch the connection for a client that
// leaves (one more read syscall that fails with EAGAIN, one more goroutine
// wake-up, a condition variable to stop it), two cancellable contexts, and
// the response writer's buffering layers. This server checks each request
// head and body framing against strict rules of its own (framing.go:
// anything with more than one reading, such as Transfer-Encoding with
// Content-Length, obs-fold or bare LF, is refused and the connection
// closed), parses requests with the standard library (http.ReadRequest)
// and writes responses itself:
//
//   - The client connection is watched for a disconnect only once a request
//     has been in the handler for one to two WatchAfter (default 2ms) — long
//     enough that short proxied requests never pay for it, short enough that
//     a client leaving during a slow upstream call cancels it almost at
//     once. One sweeper per server does this, not a timer per request (see
//     watchList).
//   - One context per request (cancelled when the client leaves or the
//     connection closes); one buffered writer per connection, flushed once
//     per response when the handler does not flush itself.
//
// Request contexts carry http.ServerContextKey (a *http.Server holding the
// Handler and limits, never served) and http.LocalAddrContextKey, as with
// net/http's server; httputil.ReverseProxy needs the former to abort a
// response whose upstream body breaks off instead of ending it as if
// complete.
//
// It serves HTTP/1.0 and HTTP/1.1 with keep-alive and pipelining,
// Content-Length and chunked bodies both ways, trailers, Expect:
// 100-continue, 1xx informational responses, Hijack (WebSocket), Flush
// (SSE) and http.ResponseController. Over TLS it serves *tls.Conn
// connections (their handshake done first if it is not yet, within
// ReadHeaderTimeout) and sets each request's TLS, as net/http's server
// does; it does not speak HTTP/2: the gateway's TLS listener hands the
// connections that negotiated h2 to net/http's server and the others here.
//
// Other differences from net/http's server (FuzzServer and TestLikeNetHTTP
// compare the two):
//
//   - No Content-Type sniffing: a response the handler gives none has none.
//   - Stricter framing (framing.go): requests net/http serves but that a
//     proxy in front could frame differently get 400 and a close:
//     Transfer-Encoding with Content-Length or on HTTP/1.0, two
//     Content-Length fields even when equal, obs-fold, bare LF, an
//     HTTP/1.1 request without exactly one non-empty Host field (CONNECT
//     and absolute targets too), an absolute target whose authority
//     differs from Host, a chunk line with bare LF or bad extension bytes.
//     A Transfer-Encoding that does not end in chunked gets 400 (RFC 9112
//     6.3) where net/http answers 501.
//   - "OPTIONS *" goes to the handler, as with net/http's
//     DisableGeneralOptionsHandler; an HTTP version other than 1.x (an
//     HTTP/2 preface "PRI * HTTP/2.0" too) gets 505.
//   - A request head that does not arrive whole within ReadHeaderTimeout
//     is closed without an answer; a request line longer than
//     MaxHeaderBytes gets 414, a longer head 431 (net/http: 431 only).
//   - A request body whose chunked framing is broken, or of which nothing
//     arrives for ReadBodyTimeout, is answered 400 or 408 in place of the
//     handler's answer when that was not sent yet; the connection closes.
//   - A client that accepts no response bytes for WriteTimeout is dropped
//     (net/http's WriteTimeout bounds the whole response instead).
//   - Header fields the handler changes after WriteHeader are still sent
//     while the header is held back (a body under 2 KiB, not flushed);
//     net/http sends the header as it was at WriteHeader.
//   - A 400 answer to a request that does not parse says "malformed
//     request" (the parser's detail, which quotes the client's bytes, goes
//     to ErrorLog only); for requests that parse but fail a check it names
//     the check ("missing required Host header", "invalid header name").
//   - After an answer to a request it rejects, or to one whose unread body
//     is over 256 KiB, the server closes the connection at once, without
//     net/http's half-close and wait for the client to stop sending.
//   - An unread request body is not discarded once the response has begun
//     (it is flushed or over 2 KiB): the connection closes instead.
package httpserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Server serves HTTP/1.x. Set its fields before Serve; do not change them
// afterwards. The zero value is not usable: Handler is required.
type Server struct {
	// Handler answers every request.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request line and headers once the
	// first byte arrived. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 120s.
	IdleTimeout time.Duration
	// ReadBodyTimeout bounds the wait for each read of a request body: a
	// client that sends nothing of its body for this long is answered 408
	// (if the response has not begun) and its connection closed; a slow
	// but steady sender is fine. Default 60s; negative means none.
	ReadBodyTimeout time.Duration
	// WriteTimeout closes a connection whose client accepts no bytes of a
	// response for this long (the deadline is renewed whenever a write makes
	// progress, as nginx's send_timeout): the handler's Write returns an
	// error. Default 60s; negative means none. Hijacked connections are the
	// handler's to time out.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus header fields (and, on
	// its own, a chunked body's trailer). A request line that does not end
	// within it gets 414, a header that does not, 431. Default 16 KiB.
	MaxHeaderBytes int
	// WatchAfter is how long a request may run before its connection is
	// watched for a client disconnect: the watch starts between one and two
	// WatchAfter into the request. Default 2ms; negative watches every
	// request from its start (as net/http does).
	WatchAfter time.Duration
	// ErrorLog receives connection-level errors (malformed requests,
	// handler panics); nil discards them.
	ErrorLog *slog.Logger
	// BaseContext is the parent of every request's context; nil means
	// context.Background().
	BaseContext context.Context

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	inShutdown atomic.Bool
	date       atomic.Pointer[dateCache]
	watches    watchList
}

// Defaults of the Server's limits (a zero field means the default).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultReadBodyTimeout   = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	defaultWatchAfter        = 2 * time.Millisecond
	bufSize                  = 4 << 10
)

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return DefaultReadHeaderTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (s *Server) readBodyTimeout() time.Duration {
	switch {
	case s.ReadBodyTimeout < 0:
		return 0
	case s.ReadBodyTimeout == 0:
		return DefaultReadBodyTimeout
	}
	return s.ReadBodyTimeout
}

func (s *Server) writeTimeout() time.Duration {
	switch {
	case s.WriteTimeout < 0:
		return 0
	case s.WriteTimeout == 0:
		return DefaultWriteTimeout
	}
	return s.WriteTimeout
}

func (s *Server) maxHeaderBytes() int64 {
	if s.MaxHeaderBytes > 0 {
		return int64(s.MaxHeaderBytes)
	}
	return DefaultMaxHeaderBytes
}

func (s *Server) watchAfter() time.Duration {
	switch {
	case s.WatchAfter < 0:
		return 0
	case s.WatchAfter == 0:
		return defaultWatchAfter
	}
	return s.WatchAfter
}

func (s *Server) logf(msg string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Warn(msg, args...)
	}
}

// Serve accepts connections on ln and serves each on its own goroutine
// until Shutdown or Close; it then returns ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("httpserver: Server.Handler is nil")
	}
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	s.listeners[&ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()

	base := s.BaseContext
	if base == nil {
		base = context.Background()
	}
	// As net/http's server: handlers find the server in the request's
	// context (httputil.ReverseProxy aborts a response whose upstream body
	// breaks off, with http.ErrAbortHandler, only when it is there).
	base = context.WithValue(base, http.ServerContextKey, s.stdServer())
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if temporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("accept error; retrying", "error", err.Error(), "in", backoff.String())
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc, base)
		if !s.track(c) {
			_ = nc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// stdServer describes s as a net/http Server, for http.ServerContextKey:
// its Handler and limits, never served.
func (s *Server) stdServer() *http.Server {
	return &http.Server{Handler: s.Handler, ReadHeaderTimeout: s.readHeaderTimeout(), IdleTimeout: s.idleTimeout(),
		MaxHeaderBytes: int(s.maxHeaderBytes())}
}

// temporary reports accept errors worth retrying (too many open files,
// connection aborted before accept), as net/http does.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, closes idle connections, lets requests in
// progress finish (their connections close after the response) and
// returns once every connection is closed, or with ctx's error when ctx
// ends first (then the remaining connections are left to Close).
// Hijacked connections are not tracked.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	s.closeListenersLocked()
	s.mu.Unlock()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeIdle closes connections waiting for a request and reports whether
// no connection is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Load() == stateIdle {
			c.closeFromOutside()
		}
	}
	return len(s.conns) == 0
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeListenersLocked()
	for c := range s.conns {
		c.closeFromOutside()
	}
	return nil
}

func (s *Server) closeListenersLocked() {
	for ln := range s.listeners {
		_ = (*ln).Close()
	}
}
