package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

// ErrDisconnected is returned for requests in progress when the connection
// drops. The next request reconnects.
var ErrDisconnected = errors.New("broker connection lost")

// QueueFullError is returned when the broker rejects a publish because the
// queue is at its max_length.
type QueueFullError = broker.QueueFullError

// Options configure a Conn. Zero fields take the defaults.
type Options struct {
	// DialTimeout bounds one connection attempt. Default 5s.
	DialTimeout time.Duration
	// MaxBackoff caps the wait between reconnection attempts (exponential
	// from 50ms). Default 2s.
	MaxBackoff time.Duration
	// Credentials log in on every (re)connection, first thing. Default
	// none (a broker without users).
	Credentials Credentials
	// TLS, if set, connects over TLS (see LoadTLS); a client certificate
	// in it logs in when Credentials are empty. Default plain TCP.
	TLS *tls.Config
}

// Conn is a Client, TopicClient, StreamClient, GroupClient and Admin over
// the native protocol. Requests from many goroutines are pipelined on one TCP
// connection. Safe for concurrent use.
type Conn struct {
	addr string
	opts Options

	mu      sync.Mutex
	cur     *link // nil when disconnected
	nextID  uint32
	closed  bool
	backoff time.Duration
	// quit is closed by Close before it takes mu: a redial loop holding
	// mu (a caller whose ctx never ends, as the kit's ack batcher) stops
	// waiting out its backoff, so Close does not wait for the broker.
	quit     chan struct{}
	quitOnce sync.Once
}

var _ Client = (*Conn)(nil) // and TopicClient, StreamClient, GroupClient: conn_pubsub.go; Admin: admin.go

type result struct {
	t    wire.Type
	body []byte
	ds   []broker.Delivery // a pushed Msgs frame, decoded by the reader
	err  error
}

// link is one TCP connection with its reader and writer goroutines.
type link struct {
	nc      net.Conn
	out     chan []byte
	done    chan struct{} // closed when the link is dead
	mu      sync.Mutex
	pending map[uint32]chan result
	subs    map[uint32]chan result
	err     error
	wg      sync.WaitGroup
}

// Dial connects to a broker's native listener.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	c := &Conn{addr: addr, opts: opts, quit: make(chan struct{})}
	if _, err := c.link(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// link returns the live connection, reconnecting (with backoff) if needed.
// It dials while holding c.mu on purpose: concurrent callers wait for the
// one reconnection instead of dialling in parallel (their own contexts are
// honoured again once they hold the lock).
func (c *Conn) link(ctx context.Context) (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed {
			return nil, broker.ErrClosed
		}
		if c.cur != nil {
			select {
			case <-c.cur.done:
				c.cur = nil
			default:
				return c.cur, nil
			}
		}
		d := net.Dialer{Timeout: c.opts.DialTimeout}
		nc, err := d.DialContext(ctx, "tcp", c.addr)
		if err == nil {
			nc, err = secure(ctx, nc, c.addr, &c.opts)
			if le := (*errLogin)(nil); errors.As(err, &le) || refusedTLS(err) {
				return nil, err // a refused login or certificate: retrying will not help
			}
		}
		if err == nil {
			c.backoff = 0
			c.cur = startLink(nc)
			return c.cur, nil
		}
		if c.backoff == 0 {
			c.backoff = 50 * time.Millisecond
		} else {
			c.backoff = min(2*c.backoff, c.opts.MaxBackoff)
		}
		t := time.NewTimer(c.backoff)
		select {
		case <-t.C:
		case <-c.quit:
			t.Stop()
			return nil, broker.ErrClosed
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connecting to broker %s: %w (last error: %v)", c.addr, ctx.Err(), err)
		}
	}
}

// refusedTLS reports whether err is a TLS refusal that a redial would
// meet again: the broker's certificate does not verify, or the broker
// answered with an alert (a client certificate of another CA, expired, of
// the wrong usage; TLS 1.3 delivers that alert at the first read, the
// login).
func refusedTLS(err error) bool {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

func startLink(nc net.Conn) *link {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	l := &link{nc: nc, out: make(chan []byte, 256), done: make(chan struct{}),
		pending: map[uint32]chan result{}, subs: map[uint32]chan result{}}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.writer() }()
	go func() { defer l.wg.Done(); l.reader() }()
	return l
}

func (l *link) kill(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.err = err
	close(l.done)
	l.nc.Close()
	for id, ch := range l.pending {
		ch <- result{err: err}
		delete(l.pending, id)
	}
	for id, ch := range l.subs {
		select {
		case ch <- result{err: err}:
		default:
		}
		delete(l.subs, id)
	}
}

func (l *link) writer() {
	w := bufio.NewWriterSize(l.nc, 64<<10)
	for {
		select {
		case f := <-l.out:
			if _, err := w.Write(f); err != nil {
				l.kill(fmt.Errorf("%w: %v", ErrDisconnected, err))
				return
			}
			if len(l.out) == 0 {
				// Give goroutines about to send a chance to, so that one
				// write carries many frames.
				runtime.Gosched()
			}
			if len(l.out) == 0 {
				if err := w.Flush(); err != nil {
					l.kill(fmt.Errorf("%w: %v", ErrDisconnected, err))
					return
				}
			}
		case <-l.done:
			return
		}
	}
}

func (l *link) reader() {
	r := wire.NewReader(l.nc, 0)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			l.kill(fmt.Errorf("%w: %v", ErrDisconnected, err))
			return
		}
		if f.Type == wire.Ping {
			// The broker checks that an idle connection is alive: answer,
			// or it closes the connection.
			select {
			case l.out <- wire.AppendFrame(nil, wire.Pong, f.ID, nil):
			case <-l.done:
				return
			}
			continue
		}
		l.mu.Lock()
		_, pending := l.pending[f.ID]
		_, sub := l.subs[f.ID]
		l.mu.Unlock()
		var res result
		if !pending && sub && f.Type == wire.Msgs {
			// Decode a push here: the bodies are copied once, out of the
			// read buffer, instead of copying the whole frame first.
			res.t = f.Type
			res.ds, res.err = wire.DecodeMsgs(f.Body)
		} else {
			res = result{t: f.Type, body: append([]byte(nil), f.Body...)}
		}
		l.mu.Lock() // look again: kill may have answered everyone meanwhile
		if ch, ok := l.pending[f.ID]; ok {
			delete(l.pending, f.ID)
			ch <- res
		} else if ch, ok := l.subs[f.ID]; ok {
			select {
			case ch <- res:
			default: // the server never sends more than the credit
			}
		}
		l.mu.Unlock()
	}
}

// roundTrip sends one request and waits for its reply.
func (c *Conn) roundTrip(ctx context.Context, t wire.Type, body func([]byte) []byte) (result, error) {
	return c.roundTripSize(ctx, t, 256, body)
}

// roundTripSize is roundTrip with the expected body size, so that the frame
// buffer is allocated once at the right size.
func (c *Conn) roundTripSize(ctx context.Context, t wire.Type, size int, body func([]byte) []byte) (result, error) {
	l, err := c.link(ctx)
	if err != nil {
		return result{}, err
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	ch := make(chan result, 1)
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return result{}, l.err
	}
	l.pending[id] = ch
	l.mu.Unlock()
	f, start := wire.Begin(make([]byte, 0, 16+size), t, id)
	f = wire.End(body(f), start)
	select {
	case l.out <- f:
	case <-l.done:
	case <-ctx.Done():
		l.forget(id)
		return result{}, ctx.Err()
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r, r.err
		}
		if r.t == wire.Err {
			return r, decodeErr(r.body)
		}
		return r, nil
	case <-ctx.Done():
		l.forget(id)
		return result{}, ctx.Err()
	}
}

func (l *link) forget(id uint32) {
	l.mu.Lock()
	delete(l.pending, id)
	l.mu.Unlock()
}

// decodeErr turns an Err frame into an error that errors.Is/As recognise
// like the broker's own errors.
func decodeErr(body []byte) error {
	e, err := wire.DecodeErr(body)
	if err != nil {
		return err
	}
	if e.Code == broker.CodeQueueFull {
		return &broker.QueueFullError{Queue: e.Queue, Limit: e.Limit}
	}
	if err := broker.CodeError(e.Code, e.Message); err != nil {
		return &answerError{msg: e.Message, err: err}
	}
	return e
}

func expect(r result, t wire.Type) error {
	if r.t != t {
		return fmt.Errorf("%w: reply type %#x, want %#x", wire.ErrMalformed, r.t, t)
	}
	return nil
}

// Publish implements Publisher: the batch travels in one frame and costs
// one group commit.
func (c *Conn) Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error) {
	return c.publish(ctx, &wire.PubReq{Queue: queue, Msgs: broker.WithTraceContext(ctx, msgs)})
}

// PublishNoWait publishes without waiting for durability (at-most-once).
func (c *Conn) PublishNoWait(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error) {
	return c.publish(ctx, &wire.PubReq{Queue: queue, NoWait: true, Msgs: broker.WithTraceContext(ctx, msgs)})
}

func (c *Conn) publish(ctx context.Context, req *wire.PubReq) ([]broker.PublishResult, error) {
	r, err := c.roundTripSize(ctx, wire.Pub, wire.PubReqSize(req), func(b []byte) []byte { return wire.AppendPubReq(b, req) })
	if err != nil {
		return nil, err
	}
	if err := expect(r, wire.PubOK); err != nil {
		return nil, err
	}
	return wire.DecodePubOK(r.body)
}

// Receive implements Consumer.
func (c *Conn) Receive(ctx context.Context, queue string, opts broker.ReceiveOptions) ([]broker.Delivery, error) {
	req := wire.RecvReq{Queue: queue, Max: opts.Max, Wait: opts.Wait, Visibility: opts.Visibility, AutoAck: opts.AutoAck}
	r, err := c.roundTrip(ctx, wire.Recv, func(b []byte) []byte { return wire.AppendRecvReq(b, &req) })
	if err != nil {
		return nil, err
	}
	if err := expect(r, wire.Msgs); err != nil {
		return nil, err
	}
	return wire.DecodeMsgs(r.body)
}

// Ack implements Consumer.
func (c *Conn) Ack(ctx context.Context, queue string, receipts ...string) (broker.AckResult, error) {
	return c.settle(ctx, wire.Ack, &wire.SettleReq{Queue: queue, Receipts: receipts})
}

// Nack implements Consumer.
func (c *Conn) Nack(ctx context.Context, queue string, delay time.Duration, receipts ...string) (broker.AckResult, error) {
	return c.settle(ctx, wire.Nack, &wire.SettleReq{Queue: queue, Delay: delay, Receipts: receipts})
}

func (c *Conn) settle(ctx context.Context, t wire.Type, req *wire.SettleReq) (broker.AckResult, error) {
	// The frame's size, so that a batch of hundreds of receipts does not
	// grow its buffer a doubling at a time: each receipt is its length
	// (a byte or two) and its bytes.
	size := len(req.Queue) + 24
	for _, r := range req.Receipts {
		size += len(r) + 2
	}
	r, err := c.roundTripSize(ctx, t, size, func(b []byte) []byte { return wire.AppendSettle(b, t, req) })
	if err != nil {
		return broker.AckResult{}, err
	}
	if err := expect(r, wire.AckOK); err != nil {
		return broker.AckResult{}, err
	}
	return wire.DecodeAckOK(r.body)
}

// Close closes the connection; requests in progress fail.
func (c *Conn) Close() error {
	c.quitOnce.Do(func() { close(c.quit) })
	c.mu.Lock()
	c.closed = true
	l := c.cur
	c.cur = nil
	c.mu.Unlock()
	if l != nil {
		l.kill(broker.ErrClosed)
		l.wg.Wait()
	}
	return nil
}
