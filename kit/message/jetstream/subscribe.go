package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// Subscribe implements message.Subscriber. A queue or stream
// subscription pulls up to Prefetch messages ahead through a durable
// consumer ("sy" for a queue, the group for a stream); when ctx ends the
// consumer is drained and the messages it had buffered are naked for
// immediate redelivery. A topic subscription without a group is a core
// NATS subscription, its Ack and Nack do nothing; with a group it is the
// group's durable consumer of the topic's stream (declared).
func (b *Backend) Subscribe(ctx context.Context, source string, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	d, err := message.ParseDest(source)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 256
	}
	if d.Kind == message.Topic && opts.Group == "" {
		return b.subscribeTopic(ctx, d, opts, deliver)
	}
	stream, _ := streamOf(d)
	q := &queueSub{b: b, src: d, stream: stream, queue: d.Name}
	// Close sends the acks queued meanwhile (see ackQueue) before it
	// closes the connection; once Subscribe returned the timer does.
	b.mu.Lock()
	b.ackQueues[&q.acks] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.ackQueues, &q.acks)
		b.mu.Unlock()
	}()
	ccfg := natsjs.ConsumerConfig{Durable: consumerName, AckPolicy: natsjs.AckExplicitPolicy,
		MaxDeliver: -1, MaxAckPending: max(opts.Prefetch*4, 1024)}
	switch d.Kind {
	case message.Topic:
		// A durable group: a consumer of the topic's stream named after
		// the group, from the messages published after it was first made
		// (as a queue newly bound to a switchyard topic); dead letters go
		// to queue TOPIC.GROUP.dlq, as a bound queue's would.
		if err := message.CheckTopicGroup(d, opts.Group); err != nil {
			return fmt.Errorf("subscribing to %s: %w", d, err)
		}
		stream = topicStream(d.Name)
		q.stream, q.queue = stream, message.TopicGroupQueue(d.Name, opts.Group)
		q.settings = settingsFor(q.queue, message.DeclareOptions{})
		ccfg.Durable = opts.Group
		ccfg.DeliverPolicy = natsjs.DeliverNewPolicy
		ccfg.AckWait = q.settings.visibility
		if _, err := b.js.Stream(ctx, stream); errors.Is(err, natsjs.ErrStreamNotFound) {
			return fmt.Errorf("subscribing to %s as durable group %q: %w: the topic has no stream %s: declare it first",
				d, opts.Group, broker.ErrNotFound, stream)
		}
	case message.Stream:
		if !broker.ValidName(opts.Group) {
			return fmt.Errorf("%w: subscribing to %s: group %q: want a name like a queue's", broker.ErrInvalid, d, opts.Group)
		}
		ccfg.Durable = encName(opts.Group)
		ccfg.DeliverPolicy = natsjs.DeliverAllPolicy
		ccfg.AckWait = 30 * time.Second
		q.settings = queueSettings{deadLetter: broker.NoDeadLetter}
	default:
		s, err := b.queueSettings(ctx, d, stream)
		if err != nil {
			return err
		}
		q.settings = s
		ccfg.AckWait = s.visibility
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, ccfg)
	if err != nil {
		return fmt.Errorf("subscribing to %s (stream %s): %w", d, stream, notFound(err))
	}
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m natsjs.Msg) { q.handle(ctx, m, deliver) },
		natsjs.PullMaxMessages(opts.Prefetch),
		natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
			if errors.Is(err, natsjs.ErrConsumerDeleted) || errors.Is(err, natsjs.ErrConsumerNotFound) {
				select {
				case failed <- err:
				default:
				}
			}
		}))
	if err != nil {
		return fmt.Errorf("subscribing to %s (stream %s): %w", d, stream, notFound(err))
	}
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case ferr := <-failed:
		err = fmt.Errorf("subscription to %s: %w", d, notFound(ferr))
	}
	// Drain hands the buffered messages to the handler, which naks them
	// now that ctx is done; then no more deliver calls.
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(30 * time.Second):
		cc.Stop()
	}
	return err
}

// queueSettings returns the settings of queue d, from the cache or the
// stream's description.
func (b *Backend) queueSettings(ctx context.Context, d message.Dest, stream string) (queueSettings, error) {
	b.mu.Lock()
	s, ok := b.settings[stream]
	b.mu.Unlock()
	if ok {
		return s, nil
	}
	st, err := b.js.Stream(ctx, stream)
	if err != nil {
		return s, fmt.Errorf("subscribing to %s (stream %s): %w", d, stream, notFound(err))
	}
	// A description not written here (a stream made by hand) keeps the
	// defaults: the error says what was ignored, and is not fatal.
	s, _ = parseSettings(d.Name, st.CachedInfo().Config.Description)
	b.mu.Lock()
	b.settings[stream] = s
	b.mu.Unlock()
	return s, nil
}

// queueSub is one queue, stream or durable topic group subscription.
type queueSub struct {
	b        *Backend
	src      message.Dest
	stream   string
	queue    string                   // the name dead letters give as x-original-queue
	settings queueSettings            // maxDeliveries 0: no dead-lettering (streams)
	slab     message.Slab[jsDelivery] // for the Consume callback only
	acks     ackQueue
	// delivering is the delivery handed to deliver while it runs (see
	// jsAck.AckAsync).
	delivering atomic.Pointer[message.Delivery]
}

// handle takes one pulled message: naks it if ctx ended, holds back a
// delayed one, dead-letters an expired or over-delivered one, and hands
// the rest to deliver.
func (q *queueSub) handle(ctx context.Context, m natsjs.Msg, deliver func(*message.Delivery)) {
	if ctx.Err() != nil {
		m.Nak()
		return
	}
	delivered, published, ok := ackMeta(m.Reply())
	if !ok {
		m.Term() // not a JetStream message: cannot be settled or counted
		return
	}
	n := int(delivered)
	h := m.Headers()
	// The clock is read only for a delayed or expiring message: time.Now
	// was a tenth of the adapter's cost per message on a VM's clock.
	var now time.Time
	if at, ok := unixHeader(h, HeaderDeliverAt); ok {
		now = time.Now()
		if wait := at.Sub(now); wait > 0 {
			m.NakWithDelay(wait)
			return
		}
		if n > 1 {
			n-- // the early delivery held back above (see the package doc)
		}
	}
	if exp, ok := unixHeader(h, HeaderExpires); ok && !exp.After(clock(&now)) {
		q.deadLetter(context.WithoutCancel(ctx), m, n, "expired")
		return
	}
	if q.settings.maxDeliveries > 0 && n > q.settings.maxDeliveries {
		q.deadLetter(context.WithoutCancel(ctx), m, n-1, "max_deliveries")
		return
	}
	// The delivery and its acker are one value, from a slab of them.
	jd := q.slab.Next()
	jd.a = jsAck{q: q, m: m, n: n}
	message.InitDelivery(&jd.d, q.src, fromNats(m), n, published, &jd.a)
	q.delivering.Store(&jd.d)
	deliver(&jd.d)
	q.delivering.Store(nil)
}

// ackMeta reads the delivery count and the publish time of a JetStream
// message from its ack subject, as nats.go's Msg.Metadata does (same
// token layout, same number parsing) without allocating its
// MsgMetadata per message: "$JS.ACK.<stream>.<consumer>.<delivered>.
// <sseq>.<cseq>.<tm>.<pending>" (9 tokens), or with "<domain>.<account
// hash>." after "$JS.ACK." and one or more tokens after <pending> (11 or
// more). ok is false for anything else.
func ackMeta(reply string) (delivered uint64, published time.Time, ok bool) {
	const prefix = "$JS.ACK."
	n := strings.Count(reply, ".") + 1
	if n < 9 || (n > 9 && n < 11) || !strings.HasPrefix(reply, prefix) {
		return 0, time.Time{}, false
	}
	rest := reply[len(prefix):]
	skip := 2 // stream, consumer
	if n > 9 {
		skip = 4 // domain, account hash, stream, consumer
	}
	for range skip {
		_, rest, _ = strings.Cut(rest, ".")
	}
	tok, rest, _ := strings.Cut(rest, ".")
	delivered = parseNum(tok)
	_, rest, _ = strings.Cut(rest, ".") // stream sequence
	_, rest, _ = strings.Cut(rest, ".") // consumer sequence
	tok, _, _ = strings.Cut(rest, ".")
	return delivered, time.Unix(0, int64(parseNum(tok))), true
}

// parseNum is nats.go's: decimal digits only (anything else is 0),
// wrapping on overflow.
func parseNum(d string) (n uint64) {
	for i := 0; i < len(d); i++ {
		c := d[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

// clock returns *now, reading the clock into it first if it is zero.
func clock(now *time.Time) time.Time {
	if now.IsZero() {
		*now = time.Now()
	}
	return *now
}

func unixHeader(h nats.Header, k string) (time.Time, bool) {
	v := h.Get(k)
	if v == "" {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// deadLetter moves m to the queue's dead-letter queue (or drops it with
// "none") and acks it. If the move fails, m is naked and tried again.
func (q *queueSub) deadLetter(ctx context.Context, m natsjs.Msg, deliveries int, reason string) error {
	if q.settings.deadLetter == broker.NoDeadLetter {
		return m.Ack()
	}
	meta, err := m.Metadata()
	if err != nil {
		m.Term() // not a JetStream message (handle checked its subject)
		return fmt.Errorf("dead-lettering a message of %s: %w", q.src, err)
	}
	dm := fromNats(m)
	if dm.Headers == nil {
		dm.Headers = make(map[string]string, 3)
	}
	dm.Headers[broker.HeaderDeadLetterReason] = reason
	dm.Headers[broker.HeaderOriginalQueue] = q.queue
	dm.Headers[broker.HeaderDeliveries] = strconv.Itoa(deliveries)
	nm := toNats("", dm, time.Now())
	dlq := message.Dest{Kind: message.Queue, Name: q.settings.deadLetter}
	_, nm.Subject = streamOf(dlq)
	// Dedup by the message's id, or else by its position (marked as not
	// the producer's): a retry after a crash between the publish and the
	// ack stores it once.
	if dm.ID == "" {
		nm.Header[natsjs.MsgIDHeader] = []string{fmt.Sprintf("dlq:%s:%d", q.stream, meta.Sequence.Stream)}
		nm.Header[headerNoID] = []string{"1"}
	}
	_, err = q.b.js.PublishMsg(ctx, nm, natsjs.WithRetryAttempts(0))
	if errors.Is(notFound(err), broker.ErrNotFound) {
		// Created on demand, as the broker does.
		if err = q.b.ensureQueue(ctx, dlq.Name); err == nil {
			_, err = q.b.js.PublishMsg(ctx, nm, natsjs.WithRetryAttempts(0))
		}
	}
	if err != nil {
		m.NakWithDelay(time.Second)
		return fmt.Errorf("dead-lettering a message of %s to %s: %w", q.src, dlq, err)
	}
	return m.Ack()
}

// jsDelivery is a delivery with its acker.
type jsDelivery struct {
	d message.Delivery
	a jsAck
}

// jsAck settles one JetStream delivery.
type jsAck struct {
	q *queueSub
	m natsjs.Msg
	n int
}

func (a *jsAck) Ack(context.Context, *message.Delivery) error {
	if err := a.m.Ack(); err != nil {
		return fmt.Errorf("acking a message of %s: %w", a.q.src, err)
	}
	return nil
}

// AckAsync implements message.AsyncAcker: the ack waits up to ackDelay
// in the subscription's ackQueue and is published with the others given
// meanwhile; done hears the outcome of its publish (a JetStream ack is
// not confirmed anyway).
//
// An ack given on the subscription's goroutine while it delivers the
// message (the Router's handler with Concurrency 1 runs there) is
// published at once, as before: that goroutine's acks already went out
// together (about 2,300 writes per 100,000 messages), and queued they
// waited for the timer, which lowered that router's throughput by a
// third on a busy machine (8 rounds alternated, load 17).
func (a *jsAck) AckAsync(d *message.Delivery, done func(error)) {
	if a.q.delivering.Load() == d {
		done(a.Ack(context.Background(), d))
		return
	}
	a.q.acks.enqueue(a, done)
}

// ackDelay is how long an asynchronous ack may wait in an ackQueue.
const ackDelay = time.Millisecond

// ackQueue holds a subscription's asynchronous acks (the Router's, given
// on its handlers' goroutines) for up to ackDelay, or until ackBurst of
// them are pending, then publishes them back to back from one
// goroutine. Published by each handler's goroutine as it finished, they
// woke the connection's flusher for a write of a few acks whenever one
// of those goroutines parked: with 16 handlers about twice the writes of
// one (strace: 5,000 against 2,300 per 100,000
// messages, bench BenchmarkRouter and BenchmarkRouterConc1), the largest
// cost the router added on JetStream. Sent in bursts (each millisecond,
// or each ackBurst acks), they take about the writes of one handler. The
// delay is not a redelivery risk (AckWait is seconds) and holds at most
// ackBurst messages (or a millisecond's) longer against MaxAckPending.
type ackQueue struct {
	n       atomic.Int32 // len(pending), read without the lock
	mu      sync.Mutex
	pending []ackReq
	spare   []ackReq // a sent batch's slice, for the next pending
	timer   *time.Timer
	armed   bool // the timer will fire and send pending
}

type ackReq struct {
	a    *jsAck
	done func(error)
}

// ackBurst is how many pending acks the goroutine that adds the last
// of them sends at once, without waiting for the timer: a timer that
// fires late on a busy machine holds back no more than these against
// the consumer's MaxAckPending (1024 or more). Lower, the handlers'
// goroutines sent most bursts themselves and the writes came back
// (64: three quarters of them).
const ackBurst = 256

func (q *ackQueue) enqueue(a *jsAck, done func(error)) {
	q.mu.Lock()
	q.pending = append(q.pending, ackReq{a: a, done: done})
	n := len(q.pending)
	q.n.Store(int32(n))
	if n >= ackBurst {
		q.mu.Unlock()
		q.send()
		return
	}
	if !q.armed {
		q.armed = true
		if q.timer == nil {
			q.timer = time.AfterFunc(ackDelay, q.timed)
		} else {
			q.timer.Reset(ackDelay)
		}
	}
	q.mu.Unlock()
}

// timed sends what is pending when the timer fires; an ack enqueued
// from here on arms it again.
func (q *ackQueue) timed() {
	q.mu.Lock()
	q.armed = false
	q.mu.Unlock()
	q.send()
}

// send publishes the pending acks and tells their done.
func (q *ackQueue) send() {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	batch := q.pending
	q.pending, q.spare = q.spare[:0], nil
	q.n.Store(0)
	q.mu.Unlock()
	for _, r := range batch {
		r.done(r.a.Ack(context.Background(), nil))
	}
	clear(batch) // no messages or callbacks kept alive by the spare
	q.mu.Lock()
	if q.spare == nil {
		q.spare = batch[:0]
	}
	q.mu.Unlock()
}

// Nack naks the message with delay, or dead-letters it at the queue's
// max deliveries.
func (a *jsAck) Nack(ctx context.Context, _ *message.Delivery, delay time.Duration) error {
	if a.q.settings.maxDeliveries > 0 && a.n >= a.q.settings.maxDeliveries {
		return a.q.deadLetter(ctx, a.m, a.n, "max_deliveries")
	}
	var err error
	if delay > 0 {
		err = a.m.NakWithDelay(delay)
	} else {
		err = a.m.Nak()
	}
	if err != nil {
		return fmt.Errorf("nacking a message of %s: %w", a.q.src, err)
	}
	return nil
}

func (b *Backend) subscribeTopic(ctx context.Context, d message.Dest, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	ch := make(chan *nats.Msg, opts.Prefetch)
	s, err := b.nc.ChanSubscribe(topicSubject(d.Name), ch)
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", d, err)
	}
	defer s.Unsubscribe()
	// The subscription is live once the server has it.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = b.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("subscribing to %s: %w", d, err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case nm := <-ch:
			m := broker.Message{Body: nm.Data, Headers: make(map[string]string, len(nm.Header))}
			for k, vs := range nm.Header {
				switch {
				case len(vs) == 0:
				case k == natsjs.MsgIDHeader:
					m.ID = vs[0]
				case k == HeaderKey:
					m.Key = vs[0]
				default:
					m.Headers[k] = vs[0]
				}
			}
			deliver(message.NewDelivery(d, m, 1, time.Now(), noAck{}))
		}
	}
}

// noAck settles topic messages: nothing to do.
type noAck struct{}

func (noAck) Ack(context.Context, *message.Delivery) error                 { return nil }
func (noAck) Nack(context.Context, *message.Delivery, time.Duration) error { return nil }
