package native

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

// Defaults of the connection limits (see Options).
const (
	DefaultMaxBuffered  = 256 << 20
	DefaultPingInterval = 30 * time.Second
	DefaultPingTimeout  = 20 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// smallFrame is the largest frame body read without the memory budget: a
// connection's reader holds at most one such buffer (and its handlers at
// most MaxInflight), so pings, acks and small publishes never wait for
// memory held by large frames.
const smallFrame = 64 << 10

// budget bounds the bytes of large frame bodies held across all
// connections: a frame's claimed length is reserved before its body is
// read (the buffer itself grows only as bytes arrive) and released when
// the request is handled. A reader that cannot reserve waits, reading
// nothing more from its connection (back-pressure). Whole-frame
// reservations cannot deadlock: every admitted frame needs only its own
// client's bytes to finish, and a client that stops sending them is
// disconnected after PingInterval+PingTimeout of silence.
type budget struct {
	mu      sync.Mutex
	total   int
	used    int
	waiting int
	freed   chan struct{} // closed (and replaced) when bytes are released
}

func newBudget(total int) *budget {
	return &budget{total: total, freed: make(chan struct{})}
}

// acquire reserves n bytes, waiting until they are free or ctx ends.
func (b *budget) acquire(ctx context.Context, n int) error {
	if n > b.total {
		return fmt.Errorf("%w: frame body of %d bytes is above the broker's native memory budget of %d bytes", broker.ErrTooLarge, n, b.total)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used+n > b.total {
		freed := b.freed
		b.waiting++
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiting--
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	b.used += n
	return nil
}

func (b *budget) release(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

func (b *budget) inUse() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

func (b *budget) waiters() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// writeChunk bounds one write under the write timeout, so a large frame to
// a slow but reading client is not cut off.
const writeChunk = 256 << 10

// deadlineConn sets a fresh deadline before every read (readTimeout, set
// by the reader goroutine only) and every write of at most writeChunk
// bytes (writeTimeout): a connection is cut off when no byte moves for
// that long, not when a long frame takes long.
type deadlineConn struct {
	net.Conn
	readTimeout  time.Duration
	writeTimeout time.Duration
	// deadline, if set, is when reading ends whatever readTimeout says:
	// the end of the time to log in.
	deadline time.Time
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	switch {
	case !c.deadline.IsZero() && (c.readTimeout <= 0 || time.Until(c.deadline) < c.readTimeout):
		c.Conn.SetReadDeadline(c.deadline)
	case c.readTimeout > 0:
		c.Conn.SetReadDeadline(time.Now().Add(c.readTimeout))
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.writeTimeout <= 0 {
		return c.Conn.Write(p)
	}
	n := 0
	for len(p) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		m, err := c.Conn.Write(p[:min(len(p), writeChunk)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// Validate reports every out-of-range option at once, naming them as the
// broker's flags do. Zero fields are valid (they take the defaults).
func (o Options) Validate() error {
	var errs []error
	if o.MaxFrame < 0 || o.MaxFrame > wire.MaxFrame {
		errs = append(errs, fmt.Errorf("--native-max-frame %d: must be at most %d bytes (0: the default)", o.MaxFrame, wire.MaxFrame))
	}
	if o.MaxBuffered < 0 {
		errs = append(errs, fmt.Errorf("--native-max-buffered %d: must not be negative", o.MaxBuffered))
	}
	if o.PingTimeout < 0 {
		errs = append(errs, fmt.Errorf("--native-ping-timeout %s: must not be negative", o.PingTimeout))
	}
	return errors.Join(errs...)
}
