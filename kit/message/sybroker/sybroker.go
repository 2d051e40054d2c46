// Package sybroker is the kit/message backend on switchyard's broker,
// over its native protocol (broker/client.Conn). Importing it registers
// the "switchyard" scheme: message.Open(ctx, "switchyard://HOST:PORT"), or
// with credentials and TLS "switchyard://USER:PASS@HOST:PORT?ca=FILE" (see
// urlOptions in url.go: token_env, token_file, tls, ca, cert, key).
//
// Queues are the broker's queues, with their native acks, delays, key
// ordering, dead-letter queues and dedup window; topics are its topics
// (live subscribers, plus the queues bound to the topic); a durable topic
// group is the queue TOPIC.GROUP bound to the topic (see subscribeGroup);
// streams are its streams, which this package publishes to (Append) but
// does not subscribe to yet: read them with broker/client's GroupClient.
// Declaring a topic creates it if missing and never changes an existing
// one's bindings.
package sybroker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/message"
)

func init() {
	message.Register("switchyard", func(ctx context.Context, u *url.URL) (message.Backend, error) {
		if u.Host == "" {
			return nil, fmt.Errorf("%w: switchyard URL %q: want switchyard://HOST:PORT (the broker's native listener)", broker.ErrInvalid, u.Redacted())
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%w: switchyard URL %q: unexpected path %q", broker.ErrInvalid, u.Redacted(), u.Path)
		}
		opts, err := urlOptions(u)
		if err != nil {
			return nil, fmt.Errorf("%w: switchyard URL %q: %v", broker.ErrInvalid, u.Redacted(), err)
		}
		return DialOptions(ctx, u.Host, opts)
	})
}

// Backend is a message.Backend and message.Declarer over one native
// connection (which reconnects by itself). Safe for concurrent use.
type Backend struct {
	conn *client.Conn

	mu      sync.Mutex
	batches map[string]*ackBatcher // per queue
}

var (
	_ message.Backend  = (*Backend)(nil)
	_ message.Declarer = (*Backend)(nil)
)

// Dial connects to the broker's native listener at addr ("HOST:PORT").
func Dial(ctx context.Context, addr string) (*Backend, error) {
	return DialOptions(ctx, addr, client.Options{})
}

// DialOptions is Dial with the connection's options: credentials and TLS
// for a broker with users.
func DialOptions(ctx context.Context, addr string, opts client.Options) (*Backend, error) {
	c, err := client.Dial(ctx, addr, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to switchyard broker %s: %w", addr, err)
	}
	return New(c), nil
}

// New returns a backend over an open connection; Close closes it.
func New(c *client.Conn) *Backend {
	return &Backend{conn: c, batches: map[string]*ackBatcher{}}
}

// Conn returns the underlying connection, for what the kit does not
// cover (admin, stream reads).
func (b *Backend) Conn() *client.Conn { return b.conn }

// Features implements messagetest's probe: queues keep key order; topic
// groups are durable (a queue bound to the topic per group).
func (b *Backend) Features() message.Features {
	return message.Features{KeyOrder: true, DurableTopicGroups: true}
}

// Close closes the connection.
func (b *Backend) Close() error { return b.conn.Close() }

// Publish implements message.Publisher: a queue batch is one frame and
// one group commit; a topic publish returns once the queues bound to it
// have the messages durably; a stream append once they are durable.
func (b *Backend) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	d, err := message.ParseDest(dest)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	switch d.Kind {
	case message.Topic:
		_, err = b.conn.PublishTopic(ctx, d.Name, msgs...)
	case message.Stream:
		_, err = b.conn.Append(ctx, d.Name, msgs...)
	default:
		_, err = b.conn.Publish(ctx, d.Name, msgs...)
	}
	if err != nil {
		return fmt.Errorf("publishing %d messages to %s: %w", len(msgs), d, err)
	}
	return nil
}

// Subscribe implements message.Subscriber. A queue subscription (also a
// durable topic group's) is a push subscription with flow control on
// settlement, as RabbitMQ's prefetch or JetStream's MaxAckPending: the
// broker pushes at most 4 x Prefetch messages that are not settled, and a
// message's credit comes back once its Ack or Nack was answered (also as
// a stale receipt), or once its visibility timeout ran out unsettled (the
// broker then delivers it again; a margin later, see leaseMargin). Held ahead of deliver are any number
// of those, all of them when deliver and the acks keep up; their
// visibility timeout runs from the push (see flow). A topic subscription
// without a group is live: Prefetch messages ahead, credit returned as
// deliver takes them; its Ack and Nack do nothing. A lost connection ends
// Subscribe with client.ErrDisconnected: subscribe again (the Router
// does).
func (b *Backend) Subscribe(ctx context.Context, source string, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	d, err := message.ParseDest(source)
	if err != nil {
		return err
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 256
	}
	// client.Conn.Subscribe cancelled while waiting for the broker's
	// answer leaves the subscription open on the broker, holding up to
	// Prefetch messages until their visibility timeout: do not start one
	// for a caller that already gave up.
	if err := ctx.Err(); err != nil {
		return err
	}
	switch d.Kind {
	case message.Topic:
		return b.subscribeTopic(ctx, d, opts, deliver)
	case message.Stream:
		return b.subscribeStream(ctx, d, opts, deliver)
	}
	return b.subscribeQueue(ctx, d.Name, d, opts, deliver)
}

// unsettledPerPrefetch is how many Prefetch's worth of messages a queue
// subscription may have unsettled: the Router's Prefetch held ahead of
// its handlers plus its settle window of 3 x Prefetch acks in progress.
const unsettledPerPrefetch = 4

// maxWindow is the most credit a subscription may ask for (the broker
// refuses more): a Prefetch above a quarter of it gets this window.
const maxWindow = 1 << 20

// flowSteps returns a queue subscription's window (4 x prefetch, at most
// maxWindow; 1 for a Prefetch of 1) and how many released messages'
// credit goes back in one Credit frame: an eighth of the window
// (prefetch/2), so never more than the window (a step above it,
// prefetch/2 with a capped window, never came and the subscription
// stalled after its first window). A Prefetch of 1 asks for one message
// at a time, as RabbitMQ's prefetch 1: message.Redrive, which hands back
// (and so counts a delivery of) every message pushed to it as it stops
// at Max, and consumers that want one message in flight.
func flowSteps(prefetch int) (window, every int) {
	switch {
	case prefetch <= 1:
		window = 1
	case prefetch < maxWindow/unsettledPerPrefetch:
		window = unsettledPerPrefetch * prefetch
	default:
		window = maxWindow
	}
	return window, max(window/8, 1)
}

// subscribeQueue consumes queue, its deliveries naming source (the queue,
// or the topic of a durable group).
func (b *Backend) subscribeQueue(ctx context.Context, queue string, source message.Dest, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	batcher := b.batcher(queue)
	window, every := flowSteps(opts.Prefetch)
	f := newFlow(every)
	defer f.close()
	var slab message.Slab[syDelivery] // the handler below runs on this goroutine only
	err := b.conn.SubscribeFlow(ctx, queue, client.FlowOptions{
		SubscribeOptions: client.SubscribeOptions{Credit: window},
		Started:          f.start,
	}, func(ms []broker.Delivery, credit func(int) bool) {
		lb := f.push(ms, credit)
		for i := range ms {
			m := &ms[i]
			msg := broker.Message{Body: m.Body, ID: m.MsgID, Key: m.Key, Headers: m.Headers}
			// The delivery and its receipt are one value, from a slab.
			sd := slab.Next()
			sd.r.b, sd.r.r, sd.r.lb, sd.r.i = batcher, m.Receipt, lb, i
			lb.ds[i].Store(sd)
			message.InitDelivery(&sd.d, source, msg, m.Deliveries, m.PublishedAt, &sd.r)
			deliver(&sd.d)
		}
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("subscribing to %s: %w", source, err)
	}
	return err
}

// flow is a queue subscription's flow control. The broker pushes at most
// the subscription's window beyond the credit returned; a message's
// credit returns (release) once it is settled, and a message never
// settled gives its credit back when its visibility timeout, counted from
// the push, ran out (the broker made it due again): an unsettled message
// cannot hold its slot for longer, so a subscription whose caller loses
// deliveries does not stall for good. Credit goes back to the broker in
// steps of every messages (one frame each).
type flow struct {
	every   int64
	credit  func(int) bool // set by the first push, before any delivery exists
	pending atomic.Int64   // released, not yet returned
	closed  atomic.Bool    // Subscribe returned: credit goes nowhere

	lease time.Duration // visibility timeout, from the broker's SubOK
	stop  chan struct{}

	mu   sync.Mutex
	live map[*leaseBatch]struct{} // pushed batches with unsettled messages
}

// leaseBatch is one pushed batch: its messages' common visibility
// deadline and those not yet released.
type leaseBatch struct {
	f    *flow
	due  time.Time
	left atomic.Int64
	ds   []atomic.Pointer[syDelivery] // nil once released
}

// defaultLease is the broker's default visibility timeout, for a broker
// that does not say the subscription's.
const defaultLease = 30 * time.Second

// leaseMargin is how long after its visibility timeout an unsettled
// message's credit comes back: the broker takes an expired message back
// at its next tick (20ms by default), and credit returned before that
// let it push other messages while the expired ones still counted (the
// sweeper's period divides the timeout, so its tick fell a millisecond
// after the broker's deadline: twice the window leased).
func leaseMargin(lease time.Duration) time.Duration {
	return min(max(lease/8, 100*time.Millisecond), 5*time.Second)
}

func newFlow(every int) *flow {
	return &flow{every: int64(every), lease: defaultLease, live: map[*leaseBatch]struct{}{}}
}

// start runs once the broker started the subscription, before the first
// push: it learns the visibility timeout and starts the sweeper.
func (f *flow) start(visibility time.Duration) {
	if visibility > 0 {
		f.lease = visibility
	}
	f.stop = make(chan struct{})
	go f.sweep(min(max(f.lease/4, 10*time.Millisecond), time.Second))
}

// push registers a pushed batch; it runs on the subscription's goroutine.
func (f *flow) push(ms []broker.Delivery, credit func(int) bool) *leaseBatch {
	if f.credit == nil {
		f.credit = credit
	}
	lb := &leaseBatch{f: f, due: time.Now().Add(f.lease + leaseMargin(f.lease)), ds: make([]atomic.Pointer[syDelivery], len(ms))}
	lb.left.Store(int64(len(ms)))
	f.mu.Lock()
	f.live[lb] = struct{}{}
	f.mu.Unlock()
	return lb
}

// give returns n released messages' credit, in steps of every.
func (f *flow) give(n int64) {
	if f.pending.Add(n) < f.every {
		return
	}
	if n = f.pending.Swap(0); n > 0 && !f.closed.Load() {
		f.credit(int(n)) // false: the connection is gone, and the subscription with it
	}
}

func (f *flow) close() {
	f.closed.Store(true)
	if f.stop != nil {
		close(f.stop)
	}
}

// sweep releases, each period, the messages of the batches whose
// visibility timeout ran out, until the subscription ends.
func (f *flow) sweep(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	var due []*leaseBatch
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		f.mu.Lock()
		for lb := range f.live {
			if !now.Before(lb.due) {
				due = append(due, lb)
			}
		}
		f.mu.Unlock()
		for _, lb := range due {
			for i := range lb.ds {
				if sd := lb.ds[i].Load(); sd != nil {
					sd.r.release()
				}
			}
		}
		clear(due)
		due = due[:0]
	}
}

// subscribeGroup is a durable topic group: the queue TOPIC.GROUP
// (message.TopicGroupQueue), created with default settings (dead letters
// to TOPIC.GROUP.dlq) and bound to the topic in one atomic step on the
// broker by the group's first subscription, holds the group's messages;
// its members consume it as competing consumers. The queue outlives the
// subscriptions: the group keeps what is published while none of its
// members runs. Remove a group by deleting its queue (which unbinds it):
// Delete(ctx, "queue:TOPIC.GROUP"), and its dead-letter queue.
func (b *Backend) subscribeGroup(ctx context.Context, d message.Dest, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	if err := message.CheckTopicGroup(d, opts.Group); err != nil {
		return fmt.Errorf("subscribing to %s: %w", d, err)
	}
	queue := message.TopicGroupQueue(d.Name, opts.Group)
	if _, err := b.conn.BindQueue(ctx, d.Name, queue, broker.BindOptions{CreateQueue: true}); err != nil {
		return fmt.Errorf("subscribing to %s as durable group %q (queue %s bound to the topic): %w", d, opts.Group, queue, err)
	}
	return b.subscribeQueue(ctx, queue, d, opts, deliver)
}

func (b *Backend) subscribeTopic(ctx context.Context, d message.Dest, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	if opts.Group != "" {
		return b.subscribeGroup(ctx, d, opts, deliver)
	}
	sub, err := b.conn.SubscribeTopic(ctx, d.Name, client.TopicOptions{Credit: opts.Prefetch})
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", d, err)
	}
	defer sub.Close()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("subscription to %s: %w", d, err)
		}
		msg := broker.Message{Body: m.Body, ID: m.MsgID, Key: m.Key, Headers: m.Headers}
		deliver(message.NewDelivery(d, msg, 1, m.Time, noAck{}))
	}
}

// noAck settles topic messages: nothing to do.
type noAck struct{}

func (noAck) Ack(context.Context, *message.Delivery) error                 { return nil }
func (noAck) Nack(context.Context, *message.Delivery, time.Duration) error { return nil }

// Declare implements message.Declarer.
func (b *Backend) Declare(ctx context.Context, dest string, opts message.DeclareOptions) error {
	d, err := message.ParseDest(dest)
	if err != nil {
		return err
	}
	switch d.Kind {
	case message.Topic:
		// Created if missing, else left as it is: the queues others
		// bound to it (switchyard hitch up, the broker's config, the
		// groups of other services) and its settings stay. Bindings are
		// changed one at a time by binding (Conn.BindQueue).
		err = b.conn.DeclareTopicIfAbsent(ctx, d.Name, broker.TopicConfig{})
	case message.Stream:
		err = b.conn.DeclareStream(ctx, d.Name, broker.StreamConfig{})
	default:
		err = b.conn.DeclareQueue(ctx, d.Name, broker.QueueConfig{
			VisibilityTimeout: broker.Duration(opts.Visibility),
			MaxDeliveries:     opts.MaxDeliveries,
			DeadLetter:        opts.DeadLetter,
		})
	}
	if err != nil {
		return fmt.Errorf("declaring %s: %w", d, err)
	}
	return nil
}

// Delete implements message.Declarer.
func (b *Backend) Delete(ctx context.Context, dest string) error {
	d, err := message.ParseDest(dest)
	if err != nil {
		return err
	}
	switch d.Kind {
	case message.Topic:
		err = b.conn.DeleteTopic(ctx, d.Name)
	case message.Stream:
		err = b.conn.DeleteStream(ctx, d.Name)
	default:
		err = b.conn.DeleteQueue(ctx, d.Name)
	}
	if err != nil {
		return fmt.Errorf("deleting %s: %w", d, err)
	}
	return nil
}

func (b *Backend) batcher(queue string) *ackBatcher {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.batches[queue]
	if a == nil {
		a = &ackBatcher{conn: b.conn, queue: queue}
		b.batches[queue] = a
	}
	return a
}

// syDelivery is a queue delivery with its receipt.
type syDelivery struct {
	d message.Delivery
	r receipt
}

// receipt settles one queue delivery.
type receipt struct {
	b        *ackBatcher
	r        string
	lb       *leaseBatch // its pushed batch, for the credit
	i        int         // its index in lb
	released atomic.Bool // credit given back
}

// release gives the message's credit back, once: its ack or nack was
// answered, or its visibility timeout ran out.
func (r *receipt) release() {
	if r.take() {
		r.lb.f.give(1)
	}
}

// take marks the message released and reports whether it was not yet:
// the caller then owes its flow one credit.
func (r *receipt) take() bool {
	lb := r.lb
	if !r.released.CompareAndSwap(false, true) {
		return false
	}
	lb.ds[r.i].Store(nil) // the batch no longer keeps the message alive
	if lb.left.Add(-1) == 0 {
		lb.f.mu.Lock()
		delete(lb.f.live, lb)
		lb.f.mu.Unlock()
	}
	return true
}

func (r *receipt) Ack(ctx context.Context, _ *message.Delivery) error { return r.b.ack(ctx, r) }

// AckAsync implements message.AsyncAcker: the receipt joins the next ack
// batch and done hears its answer.
func (r *receipt) AckAsync(_ *message.Delivery, done func(error)) { r.b.enqueue(r, done) }

func (r *receipt) Nack(ctx context.Context, _ *message.Delivery, delay time.Duration) error {
	res, err := r.b.conn.Nack(ctx, r.b.queue, delay, r.r)
	if err != nil {
		// Perhaps never sent: the message keeps its credit until its
		// visibility timeout.
		return fmt.Errorf("nacking a message of queue %q: %w", r.b.queue, err)
	}
	r.release() // answered: applied, or stale (due again already)
	if len(res.Failed) > 0 {
		return fmt.Errorf("nacking a message of queue %q: %w: %s", r.b.queue, ErrStale, res.Failed[0].Error)
	}
	return nil
}

// ErrStale is returned by Ack or Nack when the broker no longer knows the
// receipt: the visibility timeout ran out and the message was (or will
// be) delivered again.
var ErrStale = errors.New("stale receipt")

// ackBatcher sends the acks of one queue: while maxAckFlights ack
// requests are in flight the acks that arrive wait and go together in the
// next (group commit, as the broker's fsync), so concurrent handlers cost
// one round trip and a share of one fsync per batch rather than per
// message; several requests in flight share the broker's group commits.
type ackBatcher struct {
	conn  *client.Conn
	queue string

	mu      sync.Mutex
	pending []ackWait
	flights int // flush goroutines running
	// spare and spareRS are the slices of batches sent, kept for the
	// next (one per request in flight and one more): a batch of a few
	// hundred receipts allocated two slices of that size per request.
	spare   [][]ackWait
	spareRS [][]string
}

type ackWait struct {
	r    *receipt
	done func(error)
}

// maxAckBatch bounds the receipts of one ack request; maxAckFlights the
// ack requests of one queue in flight at once. With credit returned on
// settlement, four in flight let the acks of several pushed batches
// share one group commit and come back together, each with its credit,
// as client.Consume's do: 40,000 messages cost the broker about 50-60
// fsyncs instead of 90-110 with one in flight (one flight was as good
// while credit came back as deliver took messages; docs/benchmarks.md,
// credit12i).
const (
	maxAckBatch   = 512
	maxAckFlights = 4
)

func (a *ackBatcher) ack(ctx context.Context, r *receipt) error {
	ch := make(chan error, 1)
	a.enqueue(r, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue adds receipt r to the next batch; done hears the answer.
func (a *ackBatcher) enqueue(r *receipt, done func(error)) {
	w := ackWait{r: r, done: done}
	a.mu.Lock()
	a.pending = append(a.pending, w)
	lead := a.flights < maxAckFlights
	if lead {
		a.flights++
	}
	a.mu.Unlock()
	if lead {
		go a.flush()
	}
}

// flush sends batches until none is pending, each waiter answered as its
// batch returns. The ack that finds the batcher idle starts it.
func (a *ackBatcher) flush() {
	for {
		a.mu.Lock()
		n := min(len(a.pending), maxAckBatch)
		if n == 0 {
			a.flights--
			a.mu.Unlock()
			return
		}
		var batch []ackWait
		if n == len(a.pending) {
			// All of it: the pending slice becomes the batch, the
			// spare one the next pending.
			batch, a.pending = a.pending, nil
			if k := len(a.spare); k > 0 {
				a.pending, a.spare = a.spare[k-1], a.spare[:k-1]
			}
		} else {
			batch = make([]ackWait, n)
			copy(batch, a.pending)
			a.pending = append(a.pending[:0], a.pending[n:]...)
		}
		var rs []string
		if k := len(a.spareRS); k > 0 {
			rs, a.spareRS = a.spareRS[k-1], a.spareRS[:k-1]
		}
		a.mu.Unlock()
		for _, w := range batch {
			rs = append(rs, w.r.r)
		}
		// The ack is sent for every waiter, whatever their ctx: an ack
		// given up by one caller still settles the message.
		res, err := a.conn.Ack(context.Background(), a.queue, rs...)
		var failed map[string]string
		if err == nil && len(res.Failed) > 0 {
			failed = make(map[string]string, len(res.Failed))
			for _, f := range res.Failed {
				failed[f.Receipt] = f.Error
			}
		}
		if err == nil {
			// Answered, acked or stale (due again already): the credit
			// goes back before done, the batch's at once (one Credit
			// frame, so the broker pushes large batches, as for
			// client.Consume). A request that failed leaves it to the
			// visibility timeout.
			var (
				f *flow
				n int64
			)
			for _, w := range batch {
				if !w.r.take() {
					continue
				}
				if g := w.r.lb.f; g != f {
					if n > 0 {
						f.give(n)
					}
					f, n = g, 0
				}
				n++
			}
			if n > 0 {
				f.give(n)
			}
		}
		for _, w := range batch {
			switch {
			case err != nil:
				w.done(fmt.Errorf("acking a message of queue %q: %w", a.queue, err))
			case failed != nil && failed[w.r.r] != "":
				w.done(fmt.Errorf("acking a message of queue %q: %w: %s", a.queue, ErrStale, failed[w.r.r]))
			default:
				w.done(nil)
			}
		}
		clear(batch) // no receipts or callbacks kept alive by the spare
		clear(rs)
		a.mu.Lock()
		if len(a.spare) <= maxAckFlights && cap(batch) <= 2*maxAckBatch {
			a.spare = append(a.spare, batch[:0])
		}
		if len(a.spareRS) <= maxAckFlights && cap(rs) <= 2*maxAckBatch {
			a.spareRS = append(a.spareRS, rs[:0])
		}
		a.mu.Unlock()
	}
}
