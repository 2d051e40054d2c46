package broker

import (
	"errors"
	"fmt"
	"time"
)

// TopicConfig are the settings of a publish/subscribe topic. A topic
// delivers each message to the subscribers connected when it is published
// (new subscribers see only new messages) and, durably, to the queues bound
// to it.
type TopicConfig struct {
	// Queues are bound queues: every message published to the topic is
	// also published (durably, with the same Msg-Id, key and headers) to
	// each of them, giving durable fan-out. Default none. The queues must
	// exist when the topic is declared. Declaring a topic sets the whole
	// list; one binding is added or removed, atomically and leaving the
	// others, by binding (Broker.BindQueue, PUT
	// /v1/topics/NAME/queues/QUEUE, switchyard broker bind). At most
	// MaxTopicQueues.
	Queues []string `json:"queues,omitempty" yaml:"queues"`
	// Buffer is each live subscriber's buffer, in messages; a subscriber
	// that falls further behind is disconnected with ErrLagged. Default 1024.
	Buffer int `json:"buffer,omitempty" yaml:"buffer"`
	// MaxMessageSize is the largest accepted message, in bytes: body, id,
	// key and header names and values (Message.Size). Default 1 MiB.
	MaxMessageSize int `json:"max_message_size,omitempty" yaml:"max_message_size"`
}

// MaxTopicQueues bounds the queues bound to one topic: every publish to
// the topic is a publish to each of them.
const MaxTopicQueues = 1024

// WithDefaults fills zero fields.
func (c TopicConfig) WithDefaults() TopicConfig {
	if c.Buffer == 0 {
		c.Buffer = 1024
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 1 << 20
	}
	return c
}

// Validate reports every problem at once.
func (c TopicConfig) Validate() error {
	var errs []error
	if len(c.Queues) > MaxTopicQueues {
		errs = append(errs, settingErr("queues", "%d queues: at most %d may be bound to a topic", len(c.Queues), MaxTopicQueues))
	}
	for i, q := range c.Queues {
		if !ValidName(q) {
			errs = append(errs, settingErr(fmt.Sprintf("queues[%d]", i), "%q: invalid queue name", q))
		}
	}
	if c.Buffer < 0 || c.Buffer > 1<<20 {
		errs = append(errs, settingErr("buffer", "%d: must be between 0 and 1048576", c.Buffer))
	}
	if c.MaxMessageSize < 0 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, settingErr("max_message_size", "%d: must be between 0 and 64 MiB", c.MaxMessageSize))
	}
	return errors.Join(errs...)
}

// BindOptions tune a bind.
type BindOptions struct {
	// CreateQueue creates the queue, with default settings (and so its
	// dead-letter queue QUEUE.dlq), when it does not exist, in the same
	// atomic step as the bind: a durable topic group's queue.
	CreateQueue bool
}

// BindAnswer is the answer of binding a queue to a topic or unbinding it
// (HTTP PUT and DELETE /v1/topics/NAME/queues/QUEUE): whether the queue
// is bound now, and whether this request changed that (false: it already
// was, or was not, bound).
type BindAnswer struct {
	Topic   string `json:"topic"`
	Queue   string `json:"queue"`
	Bound   bool   `json:"bound"`
	Changed bool   `json:"changed"`
}

// TopicMessage is a message delivered to a live subscriber.
type TopicMessage struct {
	ID      uint64 // per-topic, increasing, not persisted
	Body    []byte // shared: do not modify
	Headers map[string]string
	Key     string
	MsgID   string
	Time    time.Time
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name        string      `json:"name"`
	Config      TopicConfig `json:"config"`
	Subscribers int         `json:"subscribers"`
	Published   uint64      `json:"published"` // since start
}

// TopicResult is the outcome of a topic publish.
type TopicResult struct {
	ID          uint64 `json:"id"`
	Subscribers int    `json:"subscribers"` // live subscribers it was handed to
	Queues      int    `json:"queues"`      // bound queues it was durably published to
}

// StreamConfig are the settings of a stream: an append-only, replayable log
// read by offset (or time), with consumer groups that commit offsets.
type StreamConfig struct {
	// MaxAge deletes whole segments whose newest message is older than
	// this. Default 0: keep forever.
	MaxAge Duration `json:"max_age,omitempty" yaml:"max_age"`
	// MaxBytes deletes the oldest segments while the stream is larger than
	// this many bytes. Default 0: no limit.
	MaxBytes int64 `json:"max_bytes,omitempty" yaml:"max_bytes"`
	// SegmentBytes is the segment size in bytes, the unit of retention.
	// Default 64 MiB.
	SegmentBytes int64 `json:"segment_bytes,omitempty" yaml:"segment_bytes"`
	// MaxMessageSize is the largest accepted message, in bytes: body, id,
	// key and header names and values (Message.Size). Default 1 MiB.
	MaxMessageSize int `json:"max_message_size,omitempty" yaml:"max_message_size"`
}

// WithDefaults fills zero fields.
func (c StreamConfig) WithDefaults() StreamConfig {
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 64 << 20
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 1 << 20
	}
	return c
}

// Validate reports every problem at once.
func (c StreamConfig) Validate() error {
	var errs []error
	if err := checkDur("max_age", c.MaxAge, MaxStreamAge); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBytes < 0 {
		errs = append(errs, settingErr("max_bytes", "%d: must not be negative", c.MaxBytes))
	}
	if err := CheckSegmentBytes("segment_bytes", c.SegmentBytes); err != nil {
		errs = append(errs, err)
	}
	if c.MaxMessageSize < 0 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, settingErr("max_message_size", "%d: must be between 0 and 64 MiB", c.MaxMessageSize))
	}
	return errors.Join(errs...)
}

// StreamInfo describes a stream.
type StreamInfo struct {
	Name        string            `json:"name"`
	Config      StreamConfig      `json:"config"`
	FirstOffset uint64            `json:"first_offset"` // 0 if empty
	LastOffset  uint64            `json:"last_offset"`  // 0 if empty
	Bytes       int64             `json:"bytes"`
	Groups      map[string]uint64 `json:"groups"` // committed offsets: the next offset each group reads
}

// StreamMessage is a message read from a stream.
type StreamMessage struct {
	Offset  uint64            `json:"offset"`
	Time    time.Time         `json:"time"`
	Body    []byte            `json:"body"`
	Headers map[string]string `json:"headers,omitempty"`
}

// ReadOptions tune a stream read.
type ReadOptions struct {
	Max  int           // messages at most; default 100, at most 10000
	Wait time.Duration // wait up to this for a message at or after the offset
}
