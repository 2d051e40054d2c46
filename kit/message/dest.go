package message

import (
	"fmt"
	"strings"

	"github.com/switchyard/switchyard/broker"
)

// Kind is the kind of a destination or source.
type Kind uint8

// Kinds of destinations. A queue delivers each message to one consumer,
// with acks, redelivery and a dead-letter queue; a topic hands each
// message to the subscribers live when it is published; a stream is an
// append-only log read by consumer groups.
const (
	Queue Kind = iota + 1
	Topic
	Stream
)

// String returns the kind's prefix word: queue, topic or stream.
func (k Kind) String() string {
	switch k {
	case Queue:
		return "queue"
	case Topic:
		return "topic"
	case Stream:
		return "stream"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Dest is a parsed destination (where Publish sends) or source (what
// Subscribe reads): "queue:NAME", "topic:NAME" or "stream:NAME"; a bare
// NAME is a queue.
type Dest struct {
	Kind Kind
	Name string
}

// String returns the destination in its canonical "kind:name" form.
func (d Dest) String() string { return d.Kind.String() + ":" + d.Name }

// ParseDest parses "queue:NAME", "topic:NAME", "stream:NAME" or a bare
// NAME (a queue). NAME follows the broker's naming rules (broker.ValidName:
// 1-200 of letters, digits, '_', '.', '-', not starting with '.' or '-'),
// on every backend, so that a service moves between backends unchanged.
func ParseDest(s string) (Dest, error) {
	kind, name := Queue, s
	if k, n, ok := strings.Cut(s, ":"); ok {
		switch k {
		case "queue":
			kind = Queue
		case "topic":
			kind = Topic
		case "stream":
			kind = Stream
		default:
			return Dest{}, fmt.Errorf("%w: destination %q: unknown kind %q, want queue, topic or stream", broker.ErrInvalid, s, k)
		}
		name = n
	}
	if !broker.ValidName(name) {
		return Dest{}, fmt.Errorf("%w: destination %q: name %q must be 1-200 of letters, digits, '_', '.', '-', not starting with '.' or '-'", broker.ErrInvalid, s, name)
	}
	return Dest{Kind: kind, Name: name}, nil
}
