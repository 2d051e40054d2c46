// Package native serves the broker over its binary protocol (package wire).
package native

import (
	"bufio"
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

// Options tune a Server. Zero fields take the defaults.
type Options struct {
	// MaxInflight bounds the requests one connection may have in progress;
	// the server stops reading a connection at the limit. Default 1024.
	MaxInflight int
	// MaxFrame bounds a request frame, in bytes: a longer one is answered
	// with an Err frame (too_large) and the connection closed. Default
	// wire.MaxFrame (65 MiB: one message of the largest max_message_size,
	// 64 MiB, and its fields).
	MaxFrame int
	// MaxBuffered bounds the bytes of request frames above 64 KiB held
	// across all connections (being read or being handled). A frame's
	// claimed length is reserved before its body is read; while the budget
	// is short the server stops reading that connection (back-pressure). A
	// frame longer than the whole budget is answered too_large and the
	// connection closed. Default 256 MiB.
	MaxBuffered int
	// PingInterval is how long a connection may be silent (no byte from
	// the client) before the server sends it a Ping. Default 30s; negative
	// disables pings and idle closing.
	PingInterval time.Duration
	// PingTimeout is how long the server then waits for any frame (the
	// Pong, or anything else) before closing the connection; it also
	// bounds, with PingInterval, silence in the middle of a frame.
	// Default 20s.
	PingTimeout time.Duration
	// WriteTimeout closes a connection when a write (of at most 256 KiB)
	// makes no progress for this long: a client that stopped reading.
	// Default 10s; negative disables.
	WriteTimeout time.Duration
	// Auth, if set, makes every connection log in first (an Auth frame,
	// or a verified TLS client certificate mapped to a user) and checks
	// every request against the user's permissions; its AuthTimeout and
	// MaxUnauthenticated bound connections that have not logged in. Nil:
	// anyone may do anything (an open broker).
	Auth *access.Authenticator
}

// Server serves a broker on the native protocol.
type Server struct {
	b      *engine.Broker
	opts   Options
	frames sync.Pool // *[]byte buffers of delivery frames, back from the writers
	budget *budget

	open    atomic.Int64 // connections being served
	headers atomic.Int64 // frame headers read (for tests)

	pendMu  sync.Mutex
	pending *list.List // of *conn: handshaking or not yet logged in, oldest first
	evicted atomic.Int64

	connsMu sync.Mutex
	conns   map[*conn]struct{} // every connection being served
}

// maxPooledFrame bounds the delivery frame buffers kept for reuse.
const maxPooledFrame = 8 << 20

// frameBuf returns a buffer of at least size bytes capacity for a frame.
// Big frames are where it matters: a fresh multi-megabyte buffer for every
// batch of large messages costs a page fault per 4 KiB on first touch.
func (s *Server) frameBuf(size int) *[]byte {
	if bp, ok := s.frames.Get().(*[]byte); ok {
		if cap(*bp) >= size {
			return bp
		}
		s.frames.Put(bp)
	}
	b := make([]byte, 0, size)
	return &b
}

// outFrame is a frame queued for the writer; pool, if set, is the buffer
// to recycle once it is written. After a last frame the writer flushes
// and ends the connection.
type outFrame struct {
	b    []byte
	pool *[]byte
	last bool
}

// New returns a server for b.
func New(b *engine.Broker, opts Options) *Server {
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 1024
	}
	if opts.MaxFrame <= 0 || opts.MaxFrame > wire.MaxFrame {
		opts.MaxFrame = wire.MaxFrame
	}
	if opts.MaxBuffered <= 0 {
		opts.MaxBuffered = DefaultMaxBuffered
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = DefaultPingTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	return &Server{b: b, opts: opts, budget: newBudget(opts.MaxBuffered), pending: list.New(), conns: map[*conn]struct{}{}}
}

// Serve accepts connections on ln until ctx ends, then closes ln and every
// connection and waits for their goroutines.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accepting: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, nc)
		}()
	}
}

type conn struct {
	s    *Server
	nc   *deadlineConn
	ctx  context.Context
	out  chan outFrame
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	subs map[uint32]*sub

	confirms chan confirm // fast-path publishes waiting for their fsync

	// who is the logged-in user (nil: an open broker). The reader sets it
	// before it dispatches any request.
	who    *access.Principal
	authed bool
	cancel context.CancelFunc
	pendEl *list.Element // in s.pending until logged in; guarded by s.pendMu
}

// confirm is a publish request accepted by the reader without waiting; the
// confirmer answers it once its records are durable.
type confirm struct {
	id    uint32
	queue string
	res   []broker.PublishResult
}

type sub struct {
	// perm on the kind's name is what the subscription needs to go on
	// (Revalidate ends it once the user no longer holds it).
	perm       access.Perm
	kind, name string

	cancel context.CancelFunc
	credit atomic.Int64
	more   chan struct{} // signalled when credit is added
	done   chan struct{}
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	s.open.Add(1)
	defer s.open.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	nc := &deadlineConn{Conn: raw, writeTimeout: s.opts.WriteTimeout}
	c := &conn{s: s, nc: nc, ctx: ctx, out: make(chan outFrame, 256), sem: make(chan struct{}, s.opts.MaxInflight), subs: map[uint32]*sub{},
		confirms: make(chan confirm, s.opts.MaxInflight), cancel: cancel, authed: s.opts.Auth == nil}
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	s.connsMu.Lock()
	s.conns[c] = struct{}{}
	s.connsMu.Unlock()
	defer func() {
		s.connsMu.Lock()
		delete(s.conns, c)
		s.connsMu.Unlock()
	}()
	tlsConn, isTLS := raw.(*tls.Conn)
	if isTLS || !c.authed {
		s.addPending(c)
		defer s.removePending(c)
		nc.deadline = time.Now().Add(s.authTimeout())
	}
	if isTLS {
		if tc, ok := tlsConn.NetConn().(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		tlsConn.SetDeadline(nc.deadline)
		err := tlsConn.HandshakeContext(ctx)
		tlsConn.SetDeadline(time.Time{})
		if err != nil {
			cancel()
			raw.Close()
			return
		}
		if s.opts.Auth != nil {
			cs := tlsConn.ConnectionState()
			if p, ok := s.opts.Auth.Certificate(&cs); ok {
				c.mu.Lock()
				c.who, c.authed = p, true
				c.mu.Unlock()
			}
		}
		if c.authed {
			nc.deadline = time.Time{}
			s.removePending(c)
		}
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writer()
		cancel() // a write error ends the connection
		nc.Close()
	}()
	go func() { <-ctx.Done(); nc.Close() }()
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.confirmer() }()
	if c.reader() {
		// The reader queued a last frame (a protocol error): let the
		// writer send it before closing; the write timeout bounds this.
		t := time.NewTimer(max(s.opts.WriteTimeout, time.Second))
		select {
		case <-writerDone:
		case <-t.C:
		}
		t.Stop()
	}
	cancel()
	nc.Close()
	c.wg.Wait()
	<-writerDone
}

// writer writes queued frames, flushing when no more are waiting.
func (c *conn) writer() {
	w := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		select {
		case f := <-c.out:
			if _, err := w.Write(f.b); err != nil {
				return
			}
			if f.last {
				w.Flush()
				return
			}
			if f.pool != nil && cap(f.b) <= maxPooledFrame {
				*f.pool = f.b[:0]
				c.s.frames.Put(f.pool)
			}
			if len(c.out) == 0 {
				// Give goroutines about to send a chance to, so that one
				// write carries many frames.
				runtime.Gosched()
			}
			if len(c.out) == 0 {
				if err := w.Flush(); err != nil {
					return
				}
			}
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *conn) send(f []byte) { c.sendFrame(outFrame{b: f}) }

func (c *conn) sendFrame(f outFrame) {
	select {
	case c.out <- f:
	case <-c.ctx.Done():
	}
}

func (c *conn) reply(t wire.Type, id uint32, body []byte) {
	c.send(wire.AppendFrame(make([]byte, 0, 9+len(body)), t, id, body))
}

// sendMsgs sends deliveries in one Msgs frame, encoded straight into a
// buffer of the right size (no growing, no second copy into the frame).
func (c *conn) sendMsgs(id uint32, ds []broker.Delivery) {
	bp := c.s.frameBuf(16 + wire.MsgsSize(ds))
	f, start := wire.Begin((*bp)[:0], wire.Msgs, id)
	c.sendFrame(outFrame{b: wire.End(wire.AppendMsgs(f, ds), start), pool: bp})
}

func (c *conn) fail(id uint32, err error) {
	c.reply(wire.Err, id, wire.AppendErr(nil, toWireError(err)))
}

// toWireError maps a broker error to its protocol code.
func toWireError(err error) *wire.Error {
	e := &wire.Error{Code: broker.ErrorCode(err), Message: err.Error()}
	var full *broker.QueueFullError
	switch {
	case errors.As(err, &full):
		e.Queue, e.Limit = full.Queue, full.Limit
	case errors.Is(err, wire.ErrTooLarge):
		e.Code = broker.CodeTooLarge
	case e.Code == broker.CodeInternal && errors.Is(err, wire.ErrMalformed):
		e.Code = broker.CodeBadRequest
	}
	return e
}

// reader reads and dispatches requests until the connection ends. It
// reports whether it queued a last frame (an error before closing).
func (c *conn) reader() (last bool) {
	s := c.s
	r := wire.NewReader(c.nc, s.opts.MaxFrame)
	charge := 0 // budget bytes reserved for the current frame
	first := true
	r.Admit = func(t wire.Type, _ uint32, n int) error {
		s.headers.Add(1)
		charge = 0
		if first {
			first = false
			if t == wire.Auth && n > wire.MaxAuthBody {
				return fmt.Errorf("%w: auth frame of %d bytes, limit %d", wire.ErrMalformed, n, wire.MaxAuthBody)
			}
			if t != wire.Auth && !c.authed {
				return fmt.Errorf("%w: this broker needs a login: the first frame must be Auth (auth version %d), got frame type %d; a client that does not send one is too old for this broker or has no credentials", broker.ErrUnauthorized, wire.AuthVersion, t)
			}
			if t == wire.Auth {
				c.mu.Lock()
				c.authed = false // it may replace a certificate's user
				c.mu.Unlock()
			}
		} else if t == wire.Auth {
			return fmt.Errorf("%w: a second Auth frame: a connection logs in once, first", wire.ErrMalformed)
		}
		if n <= smallFrame {
			return nil
		}
		if err := s.budget.acquire(c.ctx, n); err != nil {
			return err
		}
		charge = n
		return nil
	}
	defer func() { s.budget.release(charge) }()
	idle, pingWait := s.opts.PingInterval, s.opts.PingTimeout
	pinged := false
	for {
		if idle > 0 {
			c.nc.readTimeout = idle
			if pinged {
				c.nc.readTimeout = pingWait
			}
		}
		if err := r.Wait(); err != nil {
			var ne net.Error
			if !c.authed {
				return false // the auth timeout passed
			}
			if idle > 0 && !pinged && errors.As(err, &ne) && ne.Timeout() {
				// Silent for the ping interval: ask for a sign of life.
				pinged = true
				c.reply(wire.Ping, 0, nil)
				continue
			}
			return false
		}
		pinged = false
		if idle > 0 {
			// Within a frame the client cannot answer a ping: silence
			// for both together ends it.
			c.nc.readTimeout = idle + pingWait
		}
		f, err := r.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrMalformed) || errors.Is(err, broker.ErrTooLarge) || errors.Is(err, broker.ErrUnauthorized) {
				c.sendFrame(outFrame{b: wire.AppendFrame(nil, wire.Err, f.ID, wire.AppendErr(nil, toWireError(err))), last: true})
				return true
			}
			return false
		}
		if f.Type == wire.Auth {
			if err := c.login(f); err != nil {
				c.sendFrame(outFrame{b: wire.AppendFrame(nil, wire.Err, f.ID, wire.AppendErr(nil, toWireError(err))), last: true})
				return true
			}
			continue
		}
		if err := c.who.Revoked(); err != nil && f.Type != wire.Pong {
			c.sendFrame(outFrame{b: wire.AppendFrame(nil, wire.Err, f.ID, wire.AppendErr(nil, toWireError(err))), last: true})
			return true
		}
		if c.dispatch(f, charge) {
			// Handed to a goroutine with its body, which releases the
			// reservation.
			r.Detach()
			charge = 0
			continue
		}
		if charge > 0 {
			s.budget.release(charge)
			charge = 0
			r.Detach() // the large buffer goes with its reservation
		}
	}
}

// dispatch serves a request: control frames and fast-path publishes on
// the reader goroutine (false: the body is free again once it returns),
// the rest on a goroutine of its own (true: the goroutine owns the body,
// and releases charge budget bytes when done).
func (c *conn) dispatch(f wire.Frame, charge int) bool {
	switch f.Type {
	case wire.Credit:
		n, err := wire.DecodeCredit(f.Body)
		if err != nil {
			c.fail(f.ID, err)
			return false
		}
		c.mu.Lock()
		sb := c.subs[f.ID]
		c.mu.Unlock()
		if sb != nil {
			sb.credit.Add(int64(n))
			select {
			case sb.more <- struct{}{}:
			default:
			}
		}
		return false
	case wire.Unsub:
		c.mu.Lock()
		sb := c.subs[f.ID]
		delete(c.subs, f.ID)
		c.mu.Unlock()
		if sb != nil {
			sb.cancel()
			<-sb.done
		}
		c.reply(wire.SubOK, f.ID, nil)
		return false
	case wire.Ping:
		c.reply(wire.Pong, f.ID, nil)
		return false
	case wire.Pong:
		return false // the answer to the server's ping: it arrived
	case wire.Pub:
		if c.fastPublish(f.ID, f.Body) {
			return false
		}
	}
	body := f.Body
	if charge == 0 {
		body = append([]byte(nil), f.Body...)
	}
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		c.s.budget.release(charge)
		return true
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.sem }()
		defer c.s.budget.release(charge)
		c.handle(f.Type, f.ID, body)
	}()
	return true
}

func (c *conn) handle(t wire.Type, id uint32, body []byte) {
	b := c.s.b
	switch t {
	case wire.Pub:
		req, err := wire.DecodePubReq(body)
		if err == nil {
			err = c.who.Check(access.Publish, access.Queue, req.Queue)
		}
		if err != nil {
			c.fail(id, err)
			return
		}
		res, err := publishBatch(c.ctx, b, &req)
		if err != nil {
			c.fail(id, err)
			return
		}
		c.reply(wire.PubOK, id, wire.AppendPubOK(nil, res))
	case wire.Recv:
		req, err := wire.DecodeRecvReq(body)
		if err == nil {
			err = c.who.Check(access.Consume, access.Queue, req.Queue)
		}
		if err != nil {
			c.fail(id, err)
			return
		}
		ds, err := b.Receive(c.ctx, req.Queue, broker.ReceiveOptions{Max: req.Max, Wait: req.Wait, Visibility: req.Visibility, AutoAck: req.AutoAck})
		if err != nil {
			c.fail(id, err)
			return
		}
		c.sendMsgs(id, ds)
	case wire.Ack, wire.Nack:
		req, err := wire.DecodeSettle(t, body)
		if err == nil {
			err = c.who.Check(access.Consume, access.Queue, req.Queue)
		}
		if err != nil {
			c.fail(id, err)
			return
		}
		var res broker.AckResult
		if t == wire.Ack {
			res, err = b.Ack(c.ctx, req.Queue, req.Receipts)
		} else {
			res, err = b.Nack(c.ctx, req.Queue, req.Receipts, req.Delay)
		}
		if err != nil {
			c.fail(id, err)
			return
		}
		c.reply(wire.AckOK, id, wire.AppendAckOK(nil, res))
	case wire.Sub:
		req, err := wire.DecodeRecvReq(body)
		if err == nil {
			err = c.who.Check(access.Consume, access.Queue, req.Queue)
		}
		if err != nil {
			c.fail(id, err)
			return
		}
		if _, err := b.QueueConfig(req.Queue); err != nil {
			c.fail(id, err)
			return
		}
		c.subscribe(id, req)
	default:
		if !c.handlePubSub(t, id, body) && !c.handleAdmin(t, id, body) {
			c.fail(id, fmt.Errorf("%w: unknown frame type %d", wire.ErrMalformed, t))
		}
	}
}

// publishBatch publishes every message of the request without waiting and
// then waits once for the last one, so a batch costs one group commit.
func publishBatch(ctx context.Context, b *engine.Broker, req *wire.PubReq) ([]broker.PublishResult, error) {
	res := make([]broker.PublishResult, len(req.Msgs))
	if len(req.Msgs) == 1 || req.NoWait {
		for i, m := range req.Msgs {
			r, err := b.Publish(ctx, req.Queue, m, broker.PublishOptions{NoWait: req.NoWait})
			if err != nil {
				return nil, fmt.Errorf("message %d of %d: %w", i, len(req.Msgs), err)
			}
			res[i] = r
		}
		return res, nil
	}
	for i, m := range req.Msgs {
		r, err := b.Publish(ctx, req.Queue, m, broker.PublishOptions{NoWait: true})
		if err != nil {
			return nil, fmt.Errorf("message %d of %d (earlier ones were accepted): %w", i, len(req.Msgs), err)
		}
		res[i] = r
	}
	if err := b.Confirm(ctx, req.Queue, res); err != nil {
		return nil, err
	}
	return res, nil
}

// addSub registers a push subscription (queue or topic) under the
// request id with the initial credit. It answers the error itself and
// returns false if the id is taken. The caller closes sb.done when its
// push loop ends; ctx ends on Unsub or when the connection closes.
func (c *conn) addSub(id uint32, credit int, perm access.Perm, kind, name string) (context.Context, *sub, bool) {
	ctx, cancel := context.WithCancel(c.ctx)
	sb := &sub{perm: perm, kind: kind, name: name, cancel: cancel, more: make(chan struct{}, 1), done: make(chan struct{})}
	sb.credit.Store(int64(credit))
	c.mu.Lock()
	if old := c.subs[id]; old != nil {
		c.mu.Unlock()
		cancel()
		c.fail(id, fmt.Errorf("%w: subscription id %d in use", broker.ErrInvalid, id))
		return nil, nil, false
	}
	c.subs[id] = sb
	c.mu.Unlock()
	return ctx, sb, true
}

// subscribe starts a push subscription owned by the connection.
func (c *conn) subscribe(id uint32, req wire.RecvReq) {
	ctx, sb, ok := c.addSub(id, req.Max, access.Consume, access.Queue, req.Queue)
	if !ok {
		return
	}
	// SubOK says the visibility timeout of what will be pushed, so that
	// a client returning credit as messages are settled can take back
	// the credit of a message never settled once it is due again. The
	// subscription keeps that timeout: the queue's, redeclared longer
	// meanwhile, would lease messages past the point where the client
	// took their credit back (a subscription settling nothing was
	// pushed a window more at each announced timeout).
	vis := req.Visibility
	if vis == 0 {
		if cfg, err := c.s.b.QueueConfig(req.Queue); err == nil {
			vis = cfg.VisibilityTimeout.Std()
		}
	}
	c.reply(wire.SubOK, id, wire.AppendSubOK(nil, vis))
	defer close(sb.done)
	for {
		for sb.credit.Load() <= 0 {
			select {
			case <-sb.more:
			case <-ctx.Done():
				return
			}
		}
		n := int(min(sb.credit.Load(), 256))
		ds, err := c.s.b.Receive(ctx, req.Queue, broker.ReceiveOptions{Max: n, Wait: time.Second, Visibility: vis, AutoAck: req.AutoAck})
		if err != nil {
			if ctx.Err() == nil {
				c.fail(id, err)
				c.mu.Lock()
				delete(c.subs, id)
				c.mu.Unlock()
			}
			return
		}
		if len(ds) > 0 {
			sb.credit.Add(-int64(len(ds)))
			c.sendMsgs(id, ds)
		}
	}
}

// fastPublish handles a publish on the reader goroutine when it cannot
// block (the queue's overflow is not "block"): the messages are queued for
// writing at once and the confirmer answers when they are durable, so a
// connection's pipelined publishes share fsyncs without a goroutine each.
// It returns false to leave the request to the general path.
func (c *conn) fastPublish(id uint32, body []byte) bool {
	req, err := wire.DecodePubReq(body)
	if err == nil {
		err = c.who.Check(access.Publish, access.Queue, req.Queue)
	}
	if err != nil {
		c.fail(id, err)
		return true
	}
	cfg, err := c.s.b.QueueConfig(req.Queue)
	if err != nil {
		c.fail(id, err)
		return true
	}
	if cfg.Overflow == broker.OverflowBlock {
		return false
	}
	res := make([]broker.PublishResult, len(req.Msgs))
	for i, m := range req.Msgs {
		r, err := c.s.b.Publish(c.ctx, req.Queue, m, broker.PublishOptions{NoWait: true})
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("message %d of %d (earlier ones were accepted): %w", i, len(req.Msgs), err)
			}
			c.fail(id, err)
			return true
		}
		res[i] = r
	}
	if req.NoWait {
		c.reply(wire.PubOK, id, wire.AppendPubOK(nil, res))
		return true
	}
	select {
	case c.confirms <- confirm{id: id, queue: req.Queue, res: res}:
	case <-c.ctx.Done():
	}
	return true
}

// confirmer answers fast-path publishes in batches: it waits once for the
// newest record of everything queued, then replies to all of them.
func (c *conn) confirmer() {
	var batch []confirm
	for {
		batch = batch[:0]
		select {
		case cf := <-c.confirms:
			batch = append(batch, cf)
		case <-c.ctx.Done():
			return
		}
	drain:
		for {
			select {
			case cf := <-c.confirms:
				batch = append(batch, cf)
			default:
				break drain
			}
		}
		// Records are durable in sequence order: waiting for the newest
		// covers the batch; Confirm also makes them visible.
		done := map[string]error{}
		for i := len(batch) - 1; i >= 0; i-- {
			cf := batch[i]
			if _, ok := done[cf.queue]; !ok {
				done[cf.queue] = c.s.b.Confirm(c.ctx, cf.queue, cf.res)
			}
		}
		for _, cf := range batch {
			if err := done[cf.queue]; err != nil {
				c.fail(cf.id, err)
				continue
			}
			c.reply(wire.PubOK, cf.id, wire.AppendPubOK(nil, cf.res))
		}
	}
}

// authTimeout is how long a connection has for its TLS handshake and login.
func (s *Server) authTimeout() time.Duration {
	if s.opts.Auth != nil {
		return s.opts.Auth.AuthTimeout()
	}
	return access.DefaultAuthTimeout
}

// addPending counts c among the connections not yet logged in; beyond the
// cap the oldest of them is closed, so a flood of idle or half-sent logins
// cannot keep a client from connecting (a real client logs in within
// milliseconds of connecting).
func (s *Server) addPending(c *conn) {
	limit := access.DefaultMaxUnauthenticated
	if s.opts.Auth != nil {
		limit = s.opts.Auth.MaxUnauthenticated()
	}
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	for s.pending.Len() >= limit {
		old := s.pending.Remove(s.pending.Front()).(*conn)
		old.pendEl = nil
		old.cancel()
		old.nc.Close()
		s.evicted.Add(1)
	}
	c.pendEl = s.pending.PushBack(c)
}

// removePending forgets c as not logged in (it did, or it ended).
func (s *Server) removePending(c *conn) {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	if c.pendEl != nil {
		s.pending.Remove(c.pendEl)
		c.pendEl = nil
	}
}

// login serves a connection's Auth frame: it logs the user in (and then
// the connection may send requests) or returns the error to answer before
// closing. A failed login waits (access.Config.FailureDelay), on this
// connection only.
func (c *conn) login(f wire.Frame) error {
	req, err := wire.DecodeAuthReq(f.Body)
	if err != nil {
		return err
	}
	a := c.s.opts.Auth
	var who *access.Principal
	switch {
	case a == nil:
		// An open broker: any login is the anonymous user.
	case req.Method == wire.AuthPassword:
		who, err = a.Password(c.ctx, access.RemoteIP(c.nc.RemoteAddr().String()), req.User, string(req.Secret))
	case req.Method == wire.AuthToken:
		who, err = a.Token(c.ctx, access.RemoteIP(c.nc.RemoteAddr().String()), string(req.Secret))
	default: // AuthCertificate
		var ok bool
		if tc, isTLS := c.nc.Conn.(*tls.Conn); isTLS {
			cs := tc.ConnectionState()
			who, ok = a.Certificate(&cs)
		}
		if !ok {
			err = fmt.Errorf("%w: no verified client certificate of a known user on this connection", broker.ErrUnauthorized)
		}
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.who, c.authed = who, true
	c.mu.Unlock()
	c.nc.deadline = time.Time{}
	c.s.removePending(c)
	name := ""
	if who != nil {
		name = who.Name
	}
	c.reply(wire.AuthOK, f.ID, wire.AppendAuthOK(nil, name))
	return nil
}

// Revalidate applies a reload of the users (access.Authenticator.Reload)
// to the open connections at once, without waiting for their next
// request: a connection whose user or credential was revoked is sent an
// Err frame (code unauthorized, request id 0) and closed; a push
// subscription (queue or topic) whose user no longer holds consume on it
// is ended with an Err frame (code forbidden) under its id, the
// connection staying open. Other requests check the new permissions as
// they come. It returns the connections closed and subscriptions ended.
func (s *Server) Revalidate() (closed, ended int) {
	s.connsMu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connsMu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		who, authed := c.who, c.authed
		c.mu.Unlock()
		if !authed || who == nil {
			continue
		}
		if err := who.Revoked(); err != nil {
			f := outFrame{b: wire.AppendFrame(nil, wire.Err, 0, wire.AppendErr(nil, toWireError(err))), last: true}
			select {
			case c.out <- f: // the writer sends it, then ends the connection
			default:
				c.cancel() // a writer this far behind gets no goodbye
			}
			closed++
			continue
		}
		c.mu.Lock()
		for id, sb := range c.subs {
			if who.Allowed(sb.perm, sb.kind, sb.name) {
				continue
			}
			sb.cancel()
			delete(c.subs, id)
			ended++
			// The error follows the subscription's last push.
			go func() {
				<-sb.done
				c.fail(id, who.Check(sb.perm, sb.kind, sb.name))
			}()
		}
		c.mu.Unlock()
	}
	return closed, ended
}
