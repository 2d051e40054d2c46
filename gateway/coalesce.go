package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"
)

// coalesceListener wraps the accepted connections of net/http's server in
// coalescingConns (see there).
type coalesceListener struct {
	net.Listener
}

func (l coalesceListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newCoalescingConn(c), nil
}

// coalesceLimit is how many bytes a coalescingConn holds unwritten before
// its Write waits for the connection to take them (the backpressure a
// client that reads slowly puts on the server, as a socket buffer does).
const coalesceLimit = 64 << 10

// coalesceSpare is the largest buffer a connection keeps between writes:
// an idle connection holds at most this much.
const coalesceSpare = 16 << 10

// coalesceLinger bounds how long Close waits for held bytes (a final
// GOAWAY) to reach a client before the connection is closed anyway.
const coalesceLinger = 2 * time.Second

// coalescingConn is a connection whose Write copies the bytes and returns
// at once; a writer goroutine (started when bytes are waiting and none
// runs, gone when none are left) hands everything that gathered in the
// meantime to the kernel in one write.
//
// net/http's HTTP/2 server flushes every frame a handler sends as its own
// write: the handler waits for each frame (response HEADERS, DATA, the
// trailers) to be written before it sends the next, so its queue is empty
// after every frame and each flush is a write system call of its own,
// three per unary gRPC call. Here those flushes cost a copy, and the
// frames of one call (and of the connection's other streams) leave in one
// write once the writer runs: it lets every goroutine that was ready to
// run go first (runtime.Gosched) so that more can gather.
//
// A write error is kept and returned by every later Write, and closes the
// connection, so that its reader fails too (as the server then expects).
//
// Only HTTP/2 connections coalesce: a connection starts writing straight
// through (HTTP/1's own buffered writer already writes a response at once,
// and a hijacked connection keeps splice through ReadFrom) and turns
// coalescing on when it is known to carry HTTP/2 before the server wrote
// anything on it: its first read is the HTTP/2 client preface (h2c by
// prior knowledge), or its TLS handshake negotiated "h2" (coalesceH2, from
// the server's ConnContext).
type coalescingConn struct {
	net.Conn

	on      atomic.Bool // coalescing; off: Write and ReadFrom go straight through
	sniffed bool        // the first read was looked at (reads are not concurrent)

	mu      sync.Mutex
	cond    sync.Cond // broadcast when the writer took bytes or stopped
	pending []byte    // bytes written by the server, not yet to the kernel
	spare   []byte    // the writer's last buffer, reused
	writing bool      // a writer goroutine runs
	err     error     // the writer's error; every later Write returns it
	closing bool      // Close was called: the writer closes after its bytes
	closed  bool      // the inner connection was closed
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c}
	cc.cond.L = &cc.mu
	return cc
}

var errCoalesceClosed = errors.New("gateway: write on a closed connection")

// h2Preface is the start of the HTTP/2 client connection preface, as
// much of it as net/http's server reads first (it peeks 14 bytes before
// the rest).
var h2Preface = []byte("PRI * HTTP/2.0")

// Read turns coalescing on when the connection's first bytes are the
// HTTP/2 preface. A first read shorter than the preface's start leaves it
// off: only the speed differs.
func (c *coalescingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.sniffed && n > 0 {
		c.sniffed = true
		if bytes.HasPrefix(p[:n], h2Preface) {
			c.on.Store(true)
		}
	}
	return n, err
}

// coalesceH2 turns coalescing on for a TLS connection whose handshake
// (done before net/http's server sees it) negotiated HTTP/2. It is the
// server's ConnContext: it runs before the connection is served.
func coalesceH2(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok || tc.ConnectionState().NegotiatedProtocol != "h2" {
		return
	}
	if cc, ok := tc.NetConn().(*coalescingConn); ok {
		cc.on.Store(true)
	}
}

// writerOnly hides a coalescingConn's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// ReadFrom keeps the inner connection's ReadFrom (splice, sendfile) for a
// connection that does not coalesce.
func (c *coalescingConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok && !c.on.Load() {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c}, r)
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if !c.on.Load() {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.pending) >= coalesceLimit {
		c.cond.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.closing {
		return 0, errCoalesceClosed
	}
	if len(p) >= coalesceLimit && len(c.pending) == 0 && !c.writing {
		// A large write gains nothing from a copy: it goes as it is,
		// with the writer flag held so that none starts beside it.
		c.writing = true
		c.mu.Unlock()
		n, err := c.Conn.Write(p)
		c.mu.Lock()
		c.writing = false
		c.cond.Broadcast()
		if err != nil {
			c.fail(err)
			return n, err
		}
		if len(c.pending) > 0 || c.closing {
			c.writing = true
			go c.writeLoop()
		}
		return n, nil
	}
	c.pending = append(c.pending, p...)
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
	return len(p), nil
}

// writeLoop writes what is pending until nothing is, then ends; it closes
// the inner connection when Close was called meanwhile.
func (c *coalescingConn) writeLoop() {
	// Let whatever was ready to run (the server's loop, the handlers
	// answering their frames) add its bytes first.
	goruntime.Gosched()
	c.mu.Lock()
	for len(c.pending) > 0 && c.err == nil {
		buf := c.pending
		c.pending = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		if cap(buf) <= coalesceSpare {
			c.spare = buf[:0]
		} else {
			c.spare = nil // a burst: not kept for the connection's life
		}
		c.cond.Broadcast()
		if err != nil {
			c.fail(err)
		}
	}
	c.writing = false
	c.cond.Broadcast()
	if c.closing && !c.closed {
		c.closed = true
		c.mu.Unlock()
		_ = c.Conn.Close()
		return
	}
	c.mu.Unlock()
}

// fail records a write error and closes the inner connection. c.mu is held.
func (c *coalescingConn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	c.pending = nil
	if !c.closed {
		c.closed = true
		go c.Conn.Close() // not under c.mu: Close may wait on a write
	}
}

// Close closes the connection once the bytes written before it reached
// the kernel (at most coalesceLinger later, for a client that does not
// read): net/http writes a GOAWAY and then closes.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.closing || c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.cond.Broadcast()
	if c.writing {
		c.mu.Unlock()
		// The writer closes the connection when done; a client that
		// does not read cannot hold it past the linger time.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(coalesceLinger))
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// drain waits until every byte written reached the kernel (or failed).
func (c *coalescingConn) drain() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && (c.writing || len(c.pending) > 0) {
		c.cond.Wait()
	}
	return c.err
}

// CloseWrite (net/http's HTTP/1 server half-closes before it closes a
// connection it refused) sends what is pending first.
func (c *coalescingConn) CloseWrite() error {
	if err := c.drain(); err != nil {
		return err
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// coalesceServerWrites turns the coalescing of net/http's writes on; the
// benchmarks turn it off to compare.
var coalesceServerWrites = true
