package message

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// Publisher sends messages.
//
// Publish sends msgs to dest ("queue:NAME", "topic:NAME", "stream:NAME";
// a bare NAME is a queue) and returns only after the backend confirmed
// them durable (for a topic: handed to its live subscribers and stored in
// what the topic stores durably). On error none, some or all of msgs may
// have been stored: publish again with the same broker.Message.ID values
// and the backend's dedup window stores each once. A cancelled ctx
// abandons the wait, not necessarily the messages. An unknown destination
// is broker.ErrNotFound, a bad one broker.ErrInvalid.
type Publisher interface {
	Publish(ctx context.Context, dest string, msgs ...broker.Message) error
}

// Subscriber delivers the messages of a source.
//
// Subscribe calls deliver with each message of source, one at a time on
// one goroutine, until ctx ends (it then returns ctx.Err()) or the
// subscription fails (that error; a lost connection is retried by the
// backend where it can). deliver may block: that is back pressure (see
// SubscribeOptions.Prefetch for how many messages wait meanwhile).
// deliver may also run
// past ctx's end (the Router runs a handler in it when its Concurrency is
// 1); Subscribe returns once it returned. Messages handed to deliver belong to the caller, who
// settles each exactly once with Delivery.Ack or Delivery.Nack, possibly
// on other goroutines and after Subscribe returned, as long as the
// backend is not closed. A message never settled comes back after the
// source's visibility timeout (JetStream: AckWait).
type Subscriber interface {
	Subscribe(ctx context.Context, source string, opts SubscribeOptions, deliver func(*Delivery)) error
}

// SubscribeOptions tune a subscription. The zero value is ready to use.
type SubscribeOptions struct {
	// Prefetch is the subscription's flow control. Default 256.
	//
	// Unsettled: a queue subscription (also a durable topic group's or a
	// stream group's) has at most 4 x Prefetch messages unsettled, that
	// is handed out by the backend (held ahead of deliver, or delivered)
	// and neither acked nor nacked; on switchyard a Prefetch of 1 is one
	// message at a time (one unsettled), as RabbitMQ's prefetch 1. A
	// message stops counting once its Ack or Nack was answered
	// (switchyard; also when the answer is a stale receipt) or sent
	// (JetStream), or once its visibility timeout ran out (it is due
	// again then, and counts again if it comes back to this
	// subscription). So a caller that takes messages and settles
	// none is handed 4 x Prefetch and then nothing more until their
	// visibility timeout. JetStream: the bound is its consumer's
	// MaxAckPending, max(4 x Prefetch, 1024), which all subscriptions of
	// the source share.
	//
	// Held ahead of deliver: at most Prefetch on JetStream (its pull
	// batch) and on a topic without a group (credit returned as deliver
	// takes messages); on switchyard's queues any number up to the
	// 4 x Prefetch unsettled, all of them when deliver and the acks keep
	// up (the broker then pushes large batches after each group commit).
	// A message's visibility timeout runs from the moment the backend
	// handed it out, also while it waits ahead of deliver: with a slow
	// deliver, 4 x Prefetch times the time per message must stay well
	// under the visibility timeout, or messages come again before their
	// turn (lower Prefetch or raise the queue's Visibility).
	Prefetch int
	// Group names the consumer group of a stream source (required there);
	// members of a group share its position. On a topic it makes the
	// subscription durable (where Features().DurableTopicGroups): the
	// group keeps the messages published while none of its members runs,
	// from its first subscription on, and each message goes to one member,
	// acked, redelivered and dead-lettered as a queue's (see
	// CheckTopicGroup for the names allowed). Without a group a topic
	// subscription is live only. Queues ignore it.
	Group string
}

// Backend is a Publisher and Subscriber holding a connection until Close.
// Close ends it: subscriptions return, and settling their messages
// afterwards fails. Safe for concurrent use.
type Backend interface {
	Publisher
	Subscriber
	io.Closer
}

// Declarer creates, changes and deletes destinations. Backends implement
// it beside Backend; a service usually declares at start-up.
//
// Declare creates dest, or changes its settings, and returns once done;
// declaring the same settings again does nothing. Delete removes dest
// and its messages; an unknown one is broker.ErrNotFound.
type Declarer interface {
	Declare(ctx context.Context, dest string, opts DeclareOptions) error
	Delete(ctx context.Context, dest string) error
}

// DeclareOptions are a destination's settings; zero fields take the
// defaults. Only queues read them.
type DeclareOptions struct {
	// Visibility is how long a delivered, unsettled message stays with its
	// consumer before it is redelivered. Default 30s.
	Visibility time.Duration
	// MaxDeliveries is how many times a message is delivered before it is
	// moved to the dead-letter queue. Default 5.
	MaxDeliveries int
	// DeadLetter names the dead-letter queue. Default NAME.dlq; "none"
	// drops such messages instead.
	DeadLetter string
}

// Features says what a backend promises beyond the contract.
type Features struct {
	// KeyOrder: messages of a queue with the same broker.Message.Key are
	// delivered one at a time in publish order, the next only once the
	// previous one was acked, however many consumers run.
	KeyOrder bool
	// DurableTopicGroups: a topic subscription with a Group is durable
	// (see SubscribeOptions.Group); without it such a subscription is
	// refused with broker.ErrInvalid, never silently live only.
	DurableTopicGroups bool
}

// Acker settles a delivery; backends implement it.
type Acker interface {
	Ack(ctx context.Context, d *Delivery) error
	Nack(ctx context.Context, d *Delivery, delay time.Duration) error
}

// AsyncAcker is an Acker that can also ack without waiting: AckAsync
// starts the ack and calls done with its outcome later, on any goroutine.
// The Router uses it so that its workers do not wait for the backend.
type AsyncAcker interface {
	Acker
	AckAsync(d *Delivery, done func(error))
}

// ErrSettled is returned by Ack and Nack of a delivery already settled.
var ErrSettled = errors.New("message already settled")

// Delivery is a received message. Its fields are the backend's: do not
// modify Body or Headers. A Delivery is never reused for another message:
// one kept after its handler returned still reads its own message, and
// settling it again is ErrSettled. Backends may allocate deliveries
// several at a time (the queue adapters: 16), so a delivery kept for long
// can keep other messages' memory with it: keep a copy of what is needed
// (Body, Message) rather than the delivery.
type Delivery struct {
	Source Dest
	// Group is the durable group of a topic source, or the consumer
	// group of a stream source, the message came through; "" otherwise.
	// The Router sets it from RouteOptions.Group.
	Group       string
	Body        []byte
	ID          string            // the producer's message id, if any
	Key         string            // the ordering key, if any
	Headers     map[string]string // never nil; this delivery's own (Message copies it)
	Deliveries  int               // 1 on the first delivery
	PublishedAt time.Time         // zero where the backend does not say

	acker   Acker
	settled atomic.Bool
}

// NewDelivery returns a delivery settled through a; for backends.
func NewDelivery(source Dest, m broker.Message, deliveries int, published time.Time, a Acker) *Delivery {
	d := new(Delivery)
	InitDelivery(d, source, m, deliveries, published, a)
	return d
}

// InitDelivery sets up a new, zero d as NewDelivery would; for backends
// that allocate the Delivery together with their Acker (one allocation
// per message instead of two). d must not have been handed out yet.
func InitDelivery(d *Delivery, source Dest, m broker.Message, deliveries int, published time.Time, a Acker) {
	if m.Headers == nil {
		// Each delivery gets its own map, even an empty one: a map shared
		// by every header-less delivery would carry one handler's write
		// into every other message (an empty map is a small allocation,
		// its buckets come with the first write).
		m.Headers = make(map[string]string)
	}
	d.Source, d.Body, d.ID, d.Key, d.Headers = source, m.Body, m.ID, m.Key, m.Headers
	d.Deliveries, d.PublishedAt, d.acker = deliveries, published, a
}

// Ack tells the backend the message is done with; it is not delivered
// again. It returns once the backend has the ack (switchyard: durable;
// JetStream: sent, applied by the server asynchronously; a lost ack only
// means a redelivery). A second Ack or Nack is ErrSettled.
func (d *Delivery) Ack(ctx context.Context) error {
	if !d.settled.CompareAndSwap(false, true) {
		return ErrSettled
	}
	return d.acker.Ack(ctx, d)
}

// AckAsync is Ack without waiting: done hears the outcome, on another
// goroutine (or this one, for ErrSettled and backends without
// AsyncAcker, whose Ack then runs on a new goroutine).
func (d *Delivery) AckAsync(done func(error)) {
	if !d.settled.CompareAndSwap(false, true) {
		done(ErrSettled)
		return
	}
	if a, ok := d.acker.(AsyncAcker); ok {
		a.AckAsync(d, done)
		return
	}
	go func() { done(d.acker.Ack(context.Background(), d)) }()
}

// Nack gives the message back: it is delivered again after delay (0: at
// once), or dead-lettered once it reached its queue's MaxDeliveries. For
// a live topic subscription Ack and Nack do nothing (it neither stores
// nor redelivers); for a durable topic group they are a queue's. A second Ack or Nack is ErrSettled.
func (d *Delivery) Nack(ctx context.Context, delay time.Duration) error {
	if !d.settled.CompareAndSwap(false, true) {
		return ErrSettled
	}
	return d.acker.Nack(ctx, d, delay)
}

// Settled reports whether Ack or Nack was called.
func (d *Delivery) Settled() bool { return d.settled.Load() }

// Message returns the delivery as a message to publish elsewhere: body,
// id, key and a copy of the headers.
func (d *Delivery) Message() broker.Message {
	h := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		h[k] = v
	}
	return broker.Message{Body: d.Body, ID: d.ID, Key: d.Key, Headers: h}
}
