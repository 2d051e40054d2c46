package outbox

import (
	"context"
	"fmt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
)

// Publisher is what the relay publishes through. Publish returns nil only
// once the broker has confirmed every message of the batch durable; on
// error any of them may or may not have been stored, and the relay
// publishes the whole batch again (with the same ids) later. Messages
// arrive in the order their keys must keep.
type Publisher interface {
	Publish(ctx context.Context, dest string, msgs ...broker.Message) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, dest string, msgs ...broker.Message) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	return f(ctx, dest, msgs...)
}

// Broker publishes to the switchyard broker through its client: queues
// (Publish), topics (PublishTopic) and streams (Append), as the
// destination's kind says (ParseDest). A nil field makes destinations of
// that kind an error. Every call waits for the broker's durability
// confirm (never the NoWait variants).
type Broker struct {
	Queues  client.Publisher
	Topics  client.TopicClient
	Streams client.StreamClient
}

var _ Publisher = Broker{}

// NewBroker is a Broker that sends everything over one native connection.
func NewBroker(c *client.Conn) Broker {
	return Broker{Queues: c, Topics: c, Streams: c}
}

// Publish implements Publisher.
func (b Broker) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	kind, name, err := ParseDest(dest)
	if err != nil {
		return err
	}
	switch {
	case kind == Queue && b.Queues != nil:
		_, err = b.Queues.Publish(ctx, name, msgs...)
	case kind == Topic && b.Topics != nil:
		_, err = b.Topics.PublishTopic(ctx, name, msgs...)
	case kind == Stream && b.Streams != nil:
		_, err = b.Streams.Append(ctx, name, msgs...)
	default:
		return fmt.Errorf("%w %q: this publisher has no client for %ss", ErrDest, dest, kind)
	}
	if err != nil {
		return fmt.Errorf("publishing %d messages to %s: %w", len(msgs), dest, err)
	}
	return nil
}
