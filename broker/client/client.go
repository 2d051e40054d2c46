// Package client is the Go client of the switchyard broker: small
// interfaces for queues (Publisher, Consumer), topics (TopicClient),
// streams (StreamClient, GroupClient) and declaring them (Admin), with a
// native-protocol TCP implementation (Conn) that reconnects and an HTTP
// implementation (HTTP); package broker/local implements them in process.
// One contract suite tests all three. It imports the broker's public face
// (package broker) and its wire format, never the engine.
package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

// Publisher publishes messages to a queue.
//
// Publish returns once every message is durable (one group commit for the
// whole batch). On error, none, some or all of the messages may have been
// stored: retry with the same Message.ID values and the broker's dedup
// window turns the retry into exactly-once enqueueing.
type Publisher interface {
	Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error)
}

// Consumer receives and settles messages.
//
// Receive waits up to opts.Wait for the first message; received messages
// are invisible to other consumers until acked, nacked or their visibility
// timeout passes. Ack and Nack return once durable; stale receipts are
// reported in AckResult.Failed. Cancelling ctx abandons the wait, not the
// messages: unacked messages are redelivered after their visibility timeout.
type Consumer interface {
	Receive(ctx context.Context, queue string, opts broker.ReceiveOptions) ([]broker.Delivery, error)
	Ack(ctx context.Context, queue string, receipts ...string) (broker.AckResult, error)
	Nack(ctx context.Context, queue string, delay time.Duration, receipts ...string) (broker.AckResult, error)
}

// Client is a Publisher and a Consumer that holds resources until Close.
// A NATS JetStream backend would implement this same interface.
type Client interface {
	Publisher
	Consumer
	Close() error
}

// TopicClient publishes to topics and subscribes to them.
//
// PublishTopic hands each message to the topic's live subscribers and
// publishes it to the queues bound to the topic, returning once those
// records are durable (one group commit per batch over the native
// protocol and in process; HTTP sends one request per message). Each
// result says how many subscribers and bound queues the message reached.
// On error, earlier messages of the batch were delivered: retrying with
// the same Message.ID values is safe for bound queues (they dedup), but
// live subscribers see the retried messages again.
//
// SubscribeTopic returns once the subscription is live: it receives the
// messages published from then on, never earlier ones. ctx bounds only
// the subscribing; the subscription lasts until Close or until it ends.
type TopicClient interface {
	PublishTopic(ctx context.Context, topic string, msgs ...broker.Message) ([]broker.TopicResult, error)
	SubscribeTopic(ctx context.Context, topic string, opts TopicOptions) (TopicSubscription, error)
}

// TopicSubscription is a live topic subscription. Next and Close may be
// called from different goroutines; Next itself is not safe for concurrent
// use.
//
// Next waits for the next message. If ctx ends first it returns ctx.Err()
// and the subscription stays usable. Once the subscription has ended Next
// returns why, every time: broker.ErrLagged (it fell more than the topic's
// buffer behind and was dropped; the messages already pushed come first),
// broker.ErrNotFound (the topic was deleted), broker.ErrClosed (the broker
// or the Conn closed), ErrDisconnected (the connection was lost) or
// ErrSubscriptionClosed (after Close). A subscription does not survive a
// reconnect, like Conn.Subscribe: subscribe again, and bind a queue to the
// topic (or use a stream) if messages published in between matter. A
// message's Body may be shared with other subscribers: do not modify it.
//
// Close ends the subscription; calling it again does nothing.
type TopicSubscription interface {
	Next(ctx context.Context) (broker.TopicMessage, error)
	Close() error
}

// ErrSubscriptionClosed is returned by TopicSubscription.Next after Close.
var ErrSubscriptionClosed = errors.New("topic subscription closed")

// TopicOptions tune a topic subscription. The zero value is ready to use.
type TopicOptions struct {
	// Credit is how many messages the broker may push ahead of Next over
	// the native protocol (flow control). Default 256. Beyond the credit
	// the broker holds up to the topic's buffer for the subscriber, then
	// drops it with broker.ErrLagged. broker/local and HTTP ignore it (they
	// have the topic's buffer, and HTTP also TCP's flow control).
	Credit int
}

// StreamClient appends to streams and reads them by position.
//
// Append returns the messages' offsets once all are durable (one group
// commit per batch over the native protocol and in process; HTTP sends one
// request per message); only Headers and Body are stored. On error, some
// of the messages may be stored.
//
// ReadStream returns up to opts.Max messages (default 100, at most 10000)
// from the position, waiting up to opts.Wait (at most 60s over the native
// protocol and HTTP) for the first if there is none yet. The page's Next
// is the offset to read next.
type StreamClient interface {
	Append(ctx context.Context, stream string, msgs ...broker.Message) ([]uint64, error)
	ReadStream(ctx context.Context, stream string, from Position, opts broker.ReadOptions) (StreamPage, error)
}

// GroupClient reads streams through consumer groups.
//
// Fetch reads like ReadStream from the group's committed offset (the start
// of the stream for a new group) and does not move it. Commit durably
// records offset as the next one the group reads: commit StreamPage.Next
// after processing a page. A group shares one offset, so it has one active
// reader at a time. Group names follow the rules of queue names.
type GroupClient interface {
	Fetch(ctx context.Context, stream, group string, opts broker.ReadOptions) (StreamPage, error)
	Commit(ctx context.Context, stream, group string, offset uint64) error
}

// Admin declares and deletes queues, topics and streams.
//
// A declare creates the queue, topic or stream, or replaces its settings
// with cfg (zero fields take their defaults, as in the config file); it
// returns once the change is durable. Invalid settings or names are
// broker.ErrInvalid. A delete drops the messages or data; an unknown name
// is broker.ErrNotFound. Deleting a queue fails its waiting consumers and
// publishers with broker.ErrNotFound, deleting a topic ends its
// subscriptions with it.
type Admin interface {
	QueueAdmin
	TopicAdmin
	StreamAdmin
}

// QueueAdmin declares (creates, or changes the settings of) and deletes
// queues.
type QueueAdmin interface {
	DeclareQueue(ctx context.Context, name string, cfg broker.QueueConfig) error
	DeleteQueue(ctx context.Context, name string) error
}

// TopicAdmin declares and deletes topics and binds queues to them.
// DeclareTopic sets the topic's whole list of bound queues (cfg.Queues);
// BindQueue and UnbindQueue add or remove one, atomically, leaving the
// others, and report whether anything changed (they are idempotent). A
// missing topic, or a missing queue to bind without
// broker.BindOptions.CreateQueue, is broker.ErrNotFound.
type TopicAdmin interface {
	DeclareTopic(ctx context.Context, name string, cfg broker.TopicConfig) error
	DeleteTopic(ctx context.Context, name string) error
	BindQueue(ctx context.Context, topic, queue string, opts broker.BindOptions) (changed bool, err error)
	UnbindQueue(ctx context.Context, topic, queue string) (changed bool, err error)
}

// StreamAdmin declares and deletes streams.
type StreamAdmin interface {
	DeclareStream(ctx context.Context, name string, cfg broker.StreamConfig) error
	DeleteStream(ctx context.Context, name string) error
}

// StreamPage is the answer of a stream read or group fetch.
type StreamPage struct {
	Messages []broker.StreamMessage
	// Next is the offset to read next: after the last message, or the
	// position read from when there was none.
	Next uint64
}

// Position is where a stream read starts: FromStart, FromEnd, FromOffset
// or FromTime. The zero Position is the start of the stream.
type Position struct {
	from   wire.From
	offset uint64
	time   time.Time
}

// FromStart is the first retained message.
func FromStart() Position { return Position{from: wire.FromStart} }

// FromEnd is the next message to be appended (a tail).
func FromEnd() Position { return Position{from: wire.FromEnd} }

// FromOffset is the message at offset; an offset older than the first
// retained message starts at the first.
func FromOffset(offset uint64) Position { return Position{from: wire.FromOffset, offset: offset} }

// FromTime is the first message appended at or after t.
func FromTime(t time.Time) Position { return Position{from: wire.FromTime, time: t} }

// Where returns the position's parts: its kind, and the offset of a
// FromOffset or the time of a FromTime position.
func (p Position) Where() (from wire.From, offset uint64, t time.Time) {
	return p.from, p.offset, p.time
}

// String returns the position as the HTTP API's from parameter: start,
// end, a decimal offset or an RFC 3339 time.
func (p Position) String() string {
	switch p.from {
	case wire.FromEnd:
		return "end"
	case wire.FromOffset:
		return strconv.FormatUint(p.offset, 10)
	case wire.FromTime:
		return p.time.UTC().Format(time.RFC3339Nano)
	}
	return "start"
}

// CheckRead rejects read options that no implementation accepts, so that
// all of them (and broker/local's) answer alike.
func CheckRead(opts broker.ReadOptions) error {
	if opts.Max < 0 || opts.Max > 10000 {
		return fmt.Errorf("%w: read max %d: want 1..10000 (0: 100)", broker.ErrInvalid, opts.Max)
	}
	if opts.Wait < 0 {
		return fmt.Errorf("%w: read wait %s: must not be negative", broker.ErrInvalid, opts.Wait)
	}
	return nil
}

// page builds the answer of a read that started at from.
func page(ms []broker.StreamMessage, from uint64) StreamPage {
	p := StreamPage{Messages: ms, Next: from}
	if len(ms) > 0 {
		p.Next = ms[len(ms)-1].Offset + 1
	}
	return p
}
