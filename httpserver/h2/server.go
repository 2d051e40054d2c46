// Package h2 is the gateway's HTTP/2 server (RFC 9113): it serves an
// http.Handler on h2c connections (prior knowledge) and on TLS connections
// that negotiated "h2" by ALPN, with less work per stream than net/http's
// bundled HTTP/2 server.
//
// net/http's server hands every frame from a reader goroutine to a serve
// goroutine and every write from the handler to the serve goroutine and on
// to a writer goroutine, through channels, a write scheduler and header
// maps (docs/benchmarks.md "grpc17g", "h2srv17"). Here:
//
//   - The connection's reader goroutine reads frames and decodes HPACK
//     itself (golang.org/x/net/http2's Framer with ReadMetaHeaders, whose
//     header list budget also stops CONTINUATION floods before decoding
//     completes) and applies them to the streams under one mutex.
//   - Each stream's handler runs on its own goroutine. Handlers write
//     frames themselves, through one buffered Framer under a lock; the
//     buffer is flushed by the last writer to leave (no goroutine and no
//     flush per frame). A response the handler does not flush leaves as
//     HEADERS, DATA and trailers in one write.
//   - Flow control both ways: request bodies are buffered up to the
//     stream's window and WINDOW_UPDATEs are sent as the handler reads;
//     response DATA waits for the peer's windows.
//
// Connections that are not HTTP/2 (an HTTP/1.x request on a cleartext
// listener, TLS without ALPN "h2") are passed to Server.Other.
//
// Hostile peers: handlers running per connection are bounded
// (MaxConcurrentStreams; streams the client reset count until their
// handler returns, later streams wait in a bounded queue, beyond it the
// connection gets GOAWAY ENHANCE_YOUR_CALM), as are client resets per
// second (CVE-2023-44487); header blocks are bounded while they arrive
// (MaxHeaderBytes; CVE-2024-27316) and so is the HPACK table; control
// frames are answered by the reader itself, so a peer that does not read
// stops being read (no queue grows) until WriteTimeout closes it.
package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the Server's limits.
const (
	DefaultMaxConcurrentStreams = 250
	DefaultMaxHeaderBytes       = 16 << 10
	DefaultStreamWindow         = 1 << 20
	DefaultConnWindow           = 1 << 20 // as net/http's MaxUploadBufferPerConnection: bounds a connection's buffered bodies
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultMaxResetsPerSecond   = 1000
)

// Other serves the connections that are not HTTP/2: *http.Server, or
// httpserver.Server.
type Other interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// Server serves HTTP/2. The zero value with a Handler works.
type Server struct {
	Handler http.Handler
	// Other serves connections that are not HTTP/2; nil closes them.
	Other Other
	// MaxConcurrentStreams is advertised and enforced per connection.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request's header list (decoded size as
	// RFC 9113 counts it, and encoded bytes while they arrive).
	MaxHeaderBytes int
	// StreamWindow and ConnWindow are the receive windows for request
	// bodies per stream and per connection.
	StreamWindow, ConnWindow int32
	// ReadHeaderTimeout bounds the client's preface and first SETTINGS.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection without streams for this long.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write's progress: a write to the
	// connection, or a handler waiting for the client's flow-control
	// window. 0: none.
	WriteTimeout time.Duration
	// ReadBodyTimeout bounds a handler waiting for request body bytes.
	ReadBodyTimeout time.Duration
	// MaxResetsPerSecond bounds the client's resets of open streams per
	// connection and second; beyond, GOAWAY ENHANCE_YOUR_CALM.
	MaxResetsPerSecond int
	// ErrorLog receives connection errors at debug level (nil: none).
	ErrorLog *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	otherLn   *chanListener
	otherOnce sync.Once
	shutting  atomic.Bool
	hs        *http.Server // carried in request contexts as http.ServerContextKey
	date      atomic.Pointer[dateCache]
}

// dateCache is the Date field's value for one second.
type dateCache struct {
	sec int64
	v   string
}

// httpDate is the current time in the HTTP date format, formatted once
// per second.
func (s *Server) httpDate() string {
	now := time.Now()
	if d := s.date.Load(); d != nil && d.sec == now.Unix() {
		return d.v
	}
	d := &dateCache{sec: now.Unix(), v: now.UTC().Format(http.TimeFormat)}
	s.date.Store(d)
	return d.v
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams == 0 {
		return DefaultMaxConcurrentStreams
	}
	return s.MaxConcurrentStreams
}

func (s *Server) maxHeaderBytes() uint32 {
	if s.MaxHeaderBytes <= 0 {
		return DefaultMaxHeaderBytes
	}
	return uint32(s.MaxHeaderBytes)
}

func orInt32(v, d int32) int32 {
	if v <= 0 {
		return d
	}
	return v
}

func (s *Server) streamWindow() int32 { return orInt32(s.StreamWindow, DefaultStreamWindow) }
func (s *Server) connWindow() int32 {
	w := orInt32(s.ConnWindow, DefaultConnWindow)
	if w < 65535 {
		w = 65535
	}
	return w
}
func (s *Server) maxResets() int {
	if s.MaxResetsPerSecond <= 0 {
		return DefaultMaxResetsPerSecond
	}
	return s.MaxResetsPerSecond
}

func (s *Server) logf(msg string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Debug(msg, args...)
	}
}

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	if s.hs == nil {
		s.hs = &http.Server{Handler: s.Handler, MaxHeaderBytes: int(s.maxHeaderBytes())}
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	if s.Other != nil {
		s.otherOnce.Do(func() {
			s.otherLn = newChanListener(ln.Addr())
			go func() { _ = s.Other.Serve(s.otherLn) }()
		})
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go s.serveConn(nc)
	}
}

var preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// serveConn decides whether nc speaks HTTP/2 and serves it, or hands it to
// Other.
func (s *Server) serveConn(nc net.Conn) {
	rht := s.ReadHeaderTimeout
	if rht <= 0 {
		rht = DefaultReadHeaderTimeout
	}
	var tlsState *tls.ConnectionState
	if tc, ok := nc.(*tls.Conn); ok {
		_ = nc.SetDeadline(time.Now().Add(rht))
		if err := tc.Handshake(); err != nil {
			s.logf("h2: TLS handshake", "remote", nc.RemoteAddr().String(), "err", err)
			nc.Close()
			return
		}
		_ = nc.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol != "h2" {
			s.other(nc)
			return
		}
		tlsState = &cs
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	_ = nc.SetReadDeadline(time.Now().Add(rht))
	for n := 1; n <= len(preface); n++ {
		b, err := br.Peek(n)
		if err != nil {
			if len(b) > 0 && tlsState == nil && b[len(b)-1] != preface[len(b)-1] {
				s.other(&prefixConn{Conn: nc, r: br})
				return
			}
			nc.Close() // a half-sent preface, or nothing
			return
		}
		if b[n-1] != preface[n-1] {
			if tlsState != nil {
				nc.Close() // ALPN said h2
				return
			}
			_ = nc.SetReadDeadline(time.Time{})
			s.other(&prefixConn{Conn: nc, r: br})
			return
		}
	}
	_, _ = br.Discard(len(preface))
	c := newConn(s, nc, br, tlsState)
	if !s.track(c, true) {
		nc.Close()
		return
	}
	defer s.track(c, false)
	c.serve(rht)
}

func (s *Server) other(nc net.Conn) {
	if s.otherLn == nil || !s.otherLn.deliver(nc) {
		nc.Close()
	}
}

func (s *Server) track(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.shutting.Load() {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// Shutdown stops accepting, sends GOAWAY to every connection, lets their
// running streams finish and returns when all connections closed or ctx
// ends (then ctx's error), after shutting down Other.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		go c.goAway()
	}
	s.mu.Unlock()
	var otherErr error
	if s.Other != nil {
		if s.otherLn != nil {
			s.otherLn.Close()
		}
		otherErr = s.Other.Shutdown(ctx)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return otherErr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	if s.Other != nil {
		if s.otherLn != nil {
			s.otherLn.Close()
		}
		return s.Other.Close()
	}
	return nil
}

// prefixConn is a connection whose first bytes were read into r.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// chanListener hands connections to Other.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }
