// Package client is the Go client of the switchyard broker: a small
// Publisher/Consumer interface with an in-process implementation
// (Embedded), a native-protocol TCP implementation (Conn) that reconnects,
// and an HTTP implementation (HTTP). One contract suite tests all three.
package client

import (
	"context"
	"time"

	"github.com/switchyard/switchyard/broker"
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

// Embedded is a Client over a broker in the same process.
type Embedded struct {
	B *broker.Broker
}

var _ Client = Embedded{}

// Publish implements Publisher.
func (e Embedded) Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error) {
	res := make([]broker.PublishResult, len(msgs))
	if len(msgs) == 1 {
		r, err := e.B.Publish(ctx, queue, msgs[0], broker.PublishOptions{})
		res[0] = r
		return res, err
	}
	for i, m := range msgs {
		r, err := e.B.Publish(ctx, queue, m, broker.PublishOptions{NoWait: true})
		if err != nil {
			return nil, err
		}
		res[i] = r
	}
	return res, e.B.Confirm(ctx, queue, res)
}

// Receive implements Consumer.
func (e Embedded) Receive(ctx context.Context, queue string, opts broker.ReceiveOptions) ([]broker.Delivery, error) {
	return e.B.Receive(ctx, queue, opts)
}

// Ack implements Consumer.
func (e Embedded) Ack(ctx context.Context, queue string, receipts ...string) (broker.AckResult, error) {
	return e.B.Ack(ctx, queue, receipts)
}

// Nack implements Consumer.
func (e Embedded) Nack(ctx context.Context, queue string, delay time.Duration, receipts ...string) (broker.AckResult, error) {
	return e.B.Nack(ctx, queue, receipts, delay)
}

// Close does nothing: the broker belongs to the caller.
func (e Embedded) Close() error { return nil }

// Status returns the state of message seq of the queue.
func (e Embedded) Status(_ context.Context, queue string, seq uint64) (broker.MessageStatus, error) {
	return e.B.MessageStatus(queue, seq)
}
