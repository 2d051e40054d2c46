// Package local is the in-process client of the switchyard broker: the
// interfaces of package broker/client (Client, TopicClient, StreamClient,
// GroupClient, Admin) over a broker engine in the same process.
package local

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

// Client is a client.Client, TopicClient, StreamClient, GroupClient and
// Admin over a broker in the same process.
type Client struct {
	B *engine.Broker
}

// New returns a Client of b.
func New(b *engine.Broker) Client { return Client{B: b} }

var (
	_ client.Client       = Client{}
	_ client.TopicClient  = Client{}
	_ client.StreamClient = Client{}
	_ client.GroupClient  = Client{}
	_ client.Admin        = Client{}
)

// Publish implements Publisher.
func (e Client) Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error) {
	res := make([]broker.PublishResult, len(msgs))
	msgs = broker.WithTraceContext(ctx, msgs)
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
func (e Client) Receive(ctx context.Context, queue string, opts broker.ReceiveOptions) ([]broker.Delivery, error) {
	return e.B.Receive(ctx, queue, opts)
}

// Ack implements Consumer.
func (e Client) Ack(ctx context.Context, queue string, receipts ...string) (broker.AckResult, error) {
	return e.B.Ack(ctx, queue, receipts)
}

// Nack implements Consumer.
func (e Client) Nack(ctx context.Context, queue string, delay time.Duration, receipts ...string) (broker.AckResult, error) {
	return e.B.Nack(ctx, queue, receipts, delay)
}

// Close does nothing: the broker belongs to the caller.
func (e Client) Close() error { return nil }

// Status returns the state of message seq of the queue.
func (e Client) Status(_ context.Context, queue string, seq uint64) (broker.MessageStatus, error) {
	return e.B.MessageStatus(queue, seq)
}

// PublishTopic implements TopicClient.
func (e Client) PublishTopic(ctx context.Context, topic string, msgs ...broker.Message) ([]broker.TopicResult, error) {
	return e.B.PublishTopicBatch(ctx, topic, broker.WithTraceContext(ctx, msgs), broker.PublishOptions{})
}

// SubscribeTopic implements TopicClient; the subscription buffers up to the
// topic's buffer.
func (e Client) SubscribeTopic(ctx context.Context, topic string, _ client.TopicOptions) (client.TopicSubscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := e.B.Subscribe(topic)
	if err != nil {
		return nil, err
	}
	return &subscription{topic: topic, s: s}, nil
}

// embeddedSub is a client.TopicSubscription over a engine.Subscription.
type subscription struct {
	topic string
	s     *engine.Subscription
}

func (s *subscription) Next(ctx context.Context) (broker.TopicMessage, error) {
	select {
	case m, ok := <-s.s.C:
		if ok {
			return m, nil
		}
		if err := s.s.Err(); err != nil {
			return broker.TopicMessage{}, fmt.Errorf("topic %q subscription: %w", s.topic, err)
		}
		return broker.TopicMessage{}, client.ErrSubscriptionClosed
	case <-ctx.Done():
		return broker.TopicMessage{}, ctx.Err()
	}
}

func (s *subscription) Close() error {
	s.s.Close()
	return nil
}

// Append implements StreamClient.
func (e Client) Append(ctx context.Context, stream string, msgs ...broker.Message) ([]uint64, error) {
	return e.B.AppendBatch(ctx, stream, broker.WithTraceContext(ctx, msgs))
}

// ReadStream implements StreamClient.
func (e Client) ReadStream(ctx context.Context, stream string, from client.Position, opts broker.ReadOptions) (client.StreamPage, error) {
	if err := client.CheckRead(opts); err != nil {
		return client.StreamPage{}, err
	}
	var (
		off uint64
		err error
	)
	kind, offset, at := from.Where()
	switch kind {
	case wire.FromOffset:
		off = offset // Read reports an unknown stream
	case wire.FromTime:
		off, err = e.B.OffsetAtTime(stream, at)
	default:
		off, err = e.B.OffsetAt(stream, from.String())
	}
	if err != nil {
		return client.StreamPage{}, err
	}
	ms, err := e.B.Read(ctx, stream, off, opts)
	if err != nil {
		return client.StreamPage{}, err
	}
	return page(ms, off), nil
}

// Fetch implements GroupClient.
func (e Client) Fetch(ctx context.Context, stream, group string, opts broker.ReadOptions) (client.StreamPage, error) {
	if err := client.CheckRead(opts); err != nil {
		return client.StreamPage{}, err
	}
	info, err := e.B.Stream(stream)
	if err != nil {
		return client.StreamPage{}, err
	}
	ms, err := e.B.Fetch(ctx, stream, group, opts)
	if err != nil {
		return client.StreamPage{}, err
	}
	return page(ms, max(info.Groups[group], info.FirstOffset)), nil
}

// Commit implements GroupClient.
func (e Client) Commit(ctx context.Context, stream, group string, offset uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.Commit(stream, group, offset)
}

// DeclareQueue implements Admin.
func (e Client) DeclareQueue(ctx context.Context, name string, cfg broker.QueueConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.Declare(name, cfg)
}

// DeleteQueue implements Admin.
func (e Client) DeleteQueue(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.DeleteQueue(name)
}

// DeclareTopic implements Admin.
func (e Client) DeclareTopic(ctx context.Context, name string, cfg broker.TopicConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.DeclareTopic(name, cfg)
}

// DeclareQueueIfAbsent creates the queue unless it exists; an existing
// queue keeps its settings (as the native and HTTP clients' own).
func (e Client) DeclareQueueIfAbsent(ctx context.Context, name string, cfg broker.QueueConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := e.B.DeclareIfAbsent(name, cfg)
	return err
}

// DeclareTopicIfAbsent creates the topic unless it exists; an existing
// topic keeps its settings and bound queues.
func (e Client) DeclareTopicIfAbsent(ctx context.Context, name string, cfg broker.TopicConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := e.B.DeclareTopicIfAbsent(name, cfg)
	return err
}

// DeleteTopic implements Admin.
func (e Client) DeleteTopic(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.DeleteTopic(name)
}

// BindQueue implements Admin.
func (e Client) BindQueue(ctx context.Context, topic, queue string, opts broker.BindOptions) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return e.B.BindQueue(topic, queue, opts)
}

// UnbindQueue implements Admin.
func (e Client) UnbindQueue(ctx context.Context, topic, queue string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return e.B.UnbindQueue(topic, queue)
}

// DeclareStream implements Admin.
func (e Client) DeclareStream(ctx context.Context, name string, cfg broker.StreamConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.DeclareStream(name, cfg)
}

// DeleteStream implements Admin.
func (e Client) DeleteStream(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.B.DeleteStream(name)
}

// page builds the answer of a read that started at from.
func page(ms []broker.StreamMessage, from uint64) client.StreamPage {
	p := client.StreamPage{Messages: ms, Next: from}
	if len(ms) > 0 {
		p.Next = ms[len(ms)-1].Offset + 1
	}
	return p
}
