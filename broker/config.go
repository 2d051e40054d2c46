package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/switchyard/switchyard/broker/internal/seglimit"
	"github.com/switchyard/switchyard/config"
)

// Duration is a time.Duration that reads and writes as a Go duration string
// ("30s", "1m30s") in JSON and YAML: the project's one such type.
type Duration = config.Duration

// DecodeJSON strictly decodes a JSON document, as the HTTP API and the
// native protocol read settings (QueueConfig, TopicConfig, StreamConfig)
// and request bodies: empty (or blank) data leaves v unchanged, and unknown
// fields and trailing data are errors. Callers wrap the error with
// ErrInvalid or their own status.
func DecodeJSON(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Overflow policies for a full queue.
const (
	OverflowReject = "reject"
	OverflowBlock  = "block"
)

// NoDeadLetter as QueueConfig.DeadLetter disables dead-lettering: messages
// over max_deliveries or past their TTL are dropped.
const NoDeadLetter = "none"

// QueueConfig are the settings of one queue. Zero fields take their
// documented defaults (see WithDefaults).
type QueueConfig struct {
	// VisibilityTimeout is how long a received message stays invisible to
	// other consumers before it is redelivered unless acked or nacked.
	// Default 30s; a receive may override it.
	VisibilityTimeout Duration `json:"visibility_timeout,omitempty" yaml:"visibility_timeout"`
	// MaxDeliveries is how many times a message is delivered before it is
	// moved to the dead-letter queue. Default 5.
	MaxDeliveries int `json:"max_deliveries,omitempty" yaml:"max_deliveries"`
	// DeadLetter names the dead-letter queue, created on demand with
	// default settings. Default NAME.dlq; "none" disables dead-lettering.
	// A queue whose name ends in ".dlq" has no dead-letter queue by default.
	DeadLetter string `json:"dead_letter,omitempty" yaml:"dead_letter"`
	// MaxLength bounds the messages held (ready, delayed, in flight).
	// Default 0: unbounded.
	MaxLength int `json:"max_length,omitempty" yaml:"max_length"`
	// Overflow is what a publish to a full queue does: "reject" (the
	// default; the publisher gets a QueueFullError) or "block" (the
	// publisher waits up to BlockTimeout for room, then gets the error).
	Overflow string `json:"overflow,omitempty" yaml:"overflow"`
	// BlockTimeout bounds the wait of a blocked publisher. Default 5s.
	BlockTimeout Duration `json:"block_timeout,omitempty" yaml:"block_timeout"`
	// DedupWindow is how long a producer Msg-Id is remembered; a second
	// publish with the same id within the window is acknowledged as a
	// duplicate and not enqueued. Default 2m; negative disables.
	DedupWindow Duration `json:"dedup_window,omitempty" yaml:"dedup_window"`
	// MessageTTL is the default time to live of a message; an expired
	// message is dead-lettered with reason "expired" instead of delivered.
	// A publish may set a shorter or longer TTL. Default 0: no expiry.
	MessageTTL Duration `json:"message_ttl,omitempty" yaml:"message_ttl"`
	// Retention drops (without dead-lettering) messages older than this,
	// bounding how long an unconsumed message pins the log. Default 0:
	// keep until consumed.
	Retention Duration `json:"retention,omitempty" yaml:"retention"`
	// MaxMessageSize is the largest accepted message, in bytes, counting
	// its body, producer id, key and every header name and value (see
	// Message.Size). Default 1 MiB, at most 64 MiB.
	MaxMessageSize int `json:"max_message_size,omitempty" yaml:"max_message_size"`
	// AsyncAcks answers acks and nacks once they are applied and their log
	// record is queued, without waiting for its fsync (it is durable with
	// the next group commit). Consumers then do not wait for the disk, at
	// the price that a crash can bring back, as redeliveries, messages
	// acked in the last group commit before it (still at-least-once).
	// Default false: an ack is answered once it is on disk.
	AsyncAcks bool `json:"async_acks,omitempty" yaml:"async_acks"`
}

// WithDefaults returns c with zero fields set to their defaults for a queue
// called name.
func (c QueueConfig) WithDefaults(name string) QueueConfig {
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = Duration(30 * time.Second)
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = 5
	}
	if c.DeadLetter == "" {
		if isDLQName(name) {
			c.DeadLetter = NoDeadLetter
		} else {
			c.DeadLetter = name + ".dlq"
		}
	}
	if c.Overflow == "" {
		c.Overflow = OverflowReject
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = Duration(5 * time.Second)
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = Duration(2 * time.Minute)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 1 << 20
	}
	return c
}

// Limits on settings: a value above them is almost certainly a mistake
// (999999h) and would pin memory or the log for years.
const (
	MaxVisibilityTimeout = 12 * time.Hour       // visibility_timeout, and a receive's visibility (as SQS)
	MaxBlockTimeout      = 5 * time.Minute      // block_timeout
	MaxDedupWindow       = 7 * 24 * time.Hour   // dedup_window
	MaxMessageTTL        = 365 * 24 * time.Hour // message_ttl, and a message's TTL and delay
	MaxRetention         = 365 * 24 * time.Hour // retention
	MaxStreamAge         = 10 * 365 * 24 * time.Hour
	MaxMessageSizeLimit  = 64 << 20 // max_message_size
	// MinSegmentBytes is the smallest segment_bytes (a segment is a file
	// kept open: tiny segments mean a file per message).
	MinSegmentBytes = 1 << 20
)

// CheckSegmentBytes checks a segment_bytes setting (0: the default): key
// names it in the error.
func CheckSegmentBytes(key string, n int64) error {
	if min := seglimit.Min; n != 0 && (n < min || n > 1<<30) {
		return settingErr(key, "%d: must be between %d (1 MiB) and 1 GiB, or 0 for the default (64 MiB)", n, min)
	}
	return nil
}

// settingError is a problem with one setting of a QueueConfig,
// TopicConfig or StreamConfig (or a file's segment_bytes). Its text is
// "KEY VALUE: problem", as the HTTP API and the native protocol return it;
// as a config.KeyPather it is located at KEY in a config file
// (config.Source.Wrap).
type settingError struct {
	key string
	err error // "VALUE: problem"
}

var _ config.KeyPather = (*settingError)(nil)

func settingErr(key, format string, args ...any) error {
	return &settingError{key: key, err: fmt.Errorf(format, args...)}
}

func (e *settingError) Error() string   { return e.key + " " + e.err.Error() }
func (e *settingError) KeyPath() string { return e.key }
func (e *settingError) Unwrap() error   { return e.err }

// checkDur checks a duration setting against 0..limit.
func checkDur(key string, d Duration, limit time.Duration) error {
	if d < 0 || d.Std() > limit {
		return settingErr(key, "%s: must be between 0 and %s", d.Std(), limit)
	}
	return nil
}

func isDLQName(name string) bool { return len(name) > 4 && name[len(name)-4:] == ".dlq" }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$`)

// ValidName reports whether s can name a queue, topic or stream: 1-200 of
// letters, digits, '_', '.', '-', not starting with '.' or '-'.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate reports every problem at once.
func (c QueueConfig) Validate() error {
	var errs []error
	if err := checkDur("visibility_timeout", c.VisibilityTimeout, MaxVisibilityTimeout); err != nil {
		errs = append(errs, err)
	}
	if c.MaxDeliveries < 0 {
		errs = append(errs, settingErr("max_deliveries", "%d: must not be negative", c.MaxDeliveries))
	}
	if c.DeadLetter != "" && c.DeadLetter != NoDeadLetter && !ValidName(c.DeadLetter) {
		errs = append(errs, settingErr("dead_letter", "%q: invalid queue name", c.DeadLetter))
	}
	if c.MaxLength < 0 {
		errs = append(errs, settingErr("max_length", "%d: must not be negative", c.MaxLength))
	}
	if c.Overflow != "" && c.Overflow != OverflowReject && c.Overflow != OverflowBlock {
		errs = append(errs, settingErr("overflow", "%q: want reject or block", c.Overflow))
	}
	if err := checkDur("block_timeout", c.BlockTimeout, MaxBlockTimeout); err != nil {
		errs = append(errs, err)
	}
	if c.DedupWindow.Std() > MaxDedupWindow { // negative disables
		errs = append(errs, settingErr("dedup_window", "%s: must be at most %s (negative disables)", c.DedupWindow.Std(), MaxDedupWindow))
	}
	if err := checkDur("message_ttl", c.MessageTTL, MaxMessageTTL); err != nil {
		errs = append(errs, err)
	}
	if err := checkDur("retention", c.Retention, MaxRetention); err != nil {
		errs = append(errs, err)
	}
	if c.MaxMessageSize < 0 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, settingErr("max_message_size", "%d: must be between 0 and 64 MiB", c.MaxMessageSize))
	}
	return errors.Join(errs...)
}
