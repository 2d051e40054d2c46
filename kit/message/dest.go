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

// DeadLetterQueue returns the name of the queue that DeadLetter (and,
// for queues and durable topic groups, the backends) sends the poison
// messages of source to, read through group (a durable topic group; ""
// otherwise):
//
//   - queue NAME: NAME.dlq
//   - topic TOPIC, durable group GROUP: TOPIC.GROUP.dlq (TopicGroupQueue)
//   - topic TOPIC without a group (a live subscription), or a stream:
//     TOPIC.-topic.dlq, STREAM.-stream.dlq
//
// The last segment before ".dlq" of the last two starts with '-', which a
// group name cannot (CheckTopicGroup): no topic group's queue, and no
// dead-letter queue the backends make, has that name; only a queue
// deliberately called TOPIC.-topic has it as its own. Names with a '.'
// segment that starts with '-' are best left to the kit. The result is a
// valid queue name while the source's name leaves room for the suffix
// (a topic up to 189 characters; DeadLetter's publish fails beyond).
func DeadLetterQueue(source Dest, group string) string {
	switch {
	case source.Kind == Queue:
		return source.Name + ".dlq"
	case source.Kind == Topic && group != "":
		return TopicGroupQueue(source.Name, group) + ".dlq"
	}
	return source.Name + ".-" + source.Kind.String() + ".dlq"
}

// MaxTopicGroupLen is the longest durable topic group name.
const MaxTopicGroupLen = 64

// TopicGroupQueue returns the name of the queue that holds a durable
// topic group's messages where a backend keeps them in one (switchyard:
// the queue bound to the topic; JetStream: the name its dead letters
// give as x-original-queue): "TOPIC.GROUP".
func TopicGroupQueue(topic, group string) string { return topic + "." + group }

// CheckTopicGroup reports whether group may name a durable group of
// topic d, on every backend alike: 1-64 of letters, digits, '_' and '-',
// not starting with '-' (a NATS consumer name: no '.', spaces or the
// wildcards '*' and '>'), and "TOPIC.GROUP" with its ".dlq" at most 200
// characters (a queue name). The error is broker.ErrInvalid.
func CheckTopicGroup(d Dest, group string) error {
	bad := ""
	switch {
	case group == "":
		bad = "is empty"
	case len(group) > MaxTopicGroupLen:
		bad = fmt.Sprintf("is %d characters long, at most %d allowed", len(group), MaxTopicGroupLen)
	case group[0] == '-':
		bad = "starts with '-'"
	default:
		for i := 0; i < len(group); i++ {
			c := group[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				bad = fmt.Sprintf("has %q at byte %d", c, i)
				break
			}
		}
	}
	if bad == "" && len(TopicGroupQueue(d.Name, group))+len(".dlq") > 200 {
		bad = fmt.Sprintf("with the topic makes %q plus \".dlq\" longer than 200 characters", TopicGroupQueue(d.Name, group))
	}
	if bad != "" {
		return fmt.Errorf("%w: durable group %q of %s %s: want 1-%d of letters, digits, '_', '-', not starting with '-'",
			broker.ErrInvalid, group, d, bad, MaxTopicGroupLen)
	}
	return nil
}
