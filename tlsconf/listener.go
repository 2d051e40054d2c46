package tlsconf

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Listener accepts TCP connections from inner and hands out TLS
// connections whose handshake has completed, each handshake on a
// goroutine of its own while it lasts (an idle one from an earlier
// handshake, or a new one: see handshaker) and bounded by timeout: a
// client that opens connections and never finishes (or trickles) a
// handshake costs a goroutine until the timeout and delays nobody
// else's accept or handshake. A failed
// handshake is logged at debug level and the connection closed.
// net/http's server, given these connections, finds the handshake done
// and reads the ALPN result as usual.
func Listener(inner net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger) net.Listener {
	return newListener(inner, cfg, timeout, log)
}

// SplitListener is Listener with the connections handed out by the
// protocol their handshake negotiated (ALPN): h2 those that chose "h2",
// h1 all others ("http/1.1" or none), so that each goes straight to the
// server for its protocol (the gateway: HTTP/1.x to its own server,
// HTTP/2 to net/http's) without a goroutine in between. Both share one
// accept loop and its handshakes: closing either closes both, and a
// fatal accept error is returned by both. A connection waits in its
// handshake goroutine until its listener's Accept takes it.
func SplitListener(inner net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger) (h1, h2 net.Listener) {
	l := newListener(inner, cfg, timeout, log)
	l.h2ready = make(chan net.Conn)
	return l, &h2View{l}
}

// h2View is SplitListener's HTTP/2 side: the listener's Accept on its
// h2ready channel.
type h2View struct{ l *listener }

func (v *h2View) Accept() (net.Conn, error) { return v.l.accept(v.l.h2ready) }
func (v *h2View) Close() error              { return v.l.Close() }
func (v *h2View) Addr() net.Addr            { return v.l.Addr() }

func newListener(inner net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger) *listener {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &listener{inner: inner, cfg: cfg, timeout: timeout, log: log,
		ready: make(chan net.Conn), done: make(chan struct{}), errc: make(chan error, 1),
		work: make(chan net.Conn), reuse: reuseHandshakers}
	go l.acceptLoop()
	return l
}

type listener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	log     *slog.Logger
	ready   chan net.Conn
	h2ready chan net.Conn // SplitListener: connections that negotiated h2; nil: all go to ready
	done    chan struct{}
	errc    chan error
	once    sync.Once
	// work hands an accepted connection to an idle handshaker (one
	// waiting in handshaker); unbuffered, so a send succeeds only when
	// one is idle.
	work  chan net.Conn
	reuse bool // false: a new goroutine per handshake (the A/B benchmark's "spawn")
}

// reuseHandshakers: handshakes run on goroutines that live on for
// handshakerIdle after one, taking the next connection (see handshaker).
// A variable for BenchmarkListenerHandshake's A/B only.
var reuseHandshakers = true

// handshakerIdle is how long a handshaker waits for another connection
// before it ends.
const handshakerIdle = 10 * time.Second

func (l *listener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as
				// net/http's server does, rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
					return
				}
			}
			l.errc <- err
			return
		}
		backoff = 0
		if !l.reuse {
			go l.handshake(c)
			continue
		}
		select {
		case l.work <- c: // an idle handshaker takes it
		default:
			go l.handshaker(c)
		}
	}
}

// handshaker does c's handshake and then, for up to handshakerIdle each
// time, the next connection's. A TLS handshake needs a deeper stack than
// a new goroutine's: on a fresh goroutine per connection the runtime
// grew (allocated and copied) its stack at every handshake, about a
// tenth of the server side's CPU in BenchmarkListenerHandshake's
// profile; a goroutine that lives on keeps the stack it grew. The
// number of handshakers follows the handshakes in progress (a slow
// client holds one, as before, until the handshake timeout) and idle
// ones end.
func (l *listener) handshaker(c net.Conn) {
	idle := time.NewTimer(handshakerIdle)
	defer idle.Stop()
	for {
		l.handshake(c)
		idle.Reset(handshakerIdle)
		select {
		case c = <-l.work:
		case <-idle.C:
			return
		case <-l.done:
			return
		}
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE,
// ECONNABORTED ...), which net.Error marks Temporary.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (l *listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	// The connection's deadline bounds the handshake (a read or write
	// past it fails it). No context: a cancelable one would cost every
	// handshake a context, a timer and crypto/tls's AfterFunc watcher for
	// the same bound.
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	if err := tc.Handshake(); err != nil {
		l.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err.Error())
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	out := l.ready
	if l.h2ready != nil && tc.ConnectionState().NegotiatedProtocol == "h2" {
		out = l.h2ready
	}
	select {
	case out <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// Accept returns the next connection whose handshake completed (with
// SplitListener: that did not negotiate h2).
func (l *listener) Accept() (net.Conn, error) { return l.accept(l.ready) }

func (l *listener) accept(ready chan net.Conn) (net.Conn, error) {
	select {
	case c := <-ready:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting (both sides of a SplitListener); handshakes in
// progress are abandoned, and connections handed to neither Accept yet
// are closed.
// Closing again (the other side of a SplitListener, whose server shuts
// down too) does nothing and returns nil.
func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (l *listener) Addr() net.Addr { return l.inner.Addr() }
