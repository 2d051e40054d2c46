package broker

import "time"

// Dead-letter headers set on a message moved to a dead-letter queue.
const (
	HeaderDeadLetterReason = "x-dead-letter-reason"
	HeaderOriginalQueue    = "x-original-queue"
	HeaderDeliveries       = "x-deliveries"
)

// Message is what a producer publishes.
type Message struct {
	Body    []byte
	ID      string            // producer message id (Msg-Id) for dedup; optional
	Key     string            // ordering key (Msg-Key); optional
	Headers map[string]string // optional
	Delay   time.Duration     // deliver no earlier than this from now
	TTL     time.Duration     // expire after this; 0 = the queue's message_ttl
}

// Size is what max_message_size counts: the body, the producer id, the
// key and every header name and value, in bytes.
func (m *Message) Size() int {
	n := len(m.Body) + len(m.ID) + len(m.Key)
	for k, v := range m.Headers {
		n += len(k) + len(v)
	}
	return n
}

// PublishOptions tune one publish.
type PublishOptions struct {
	// NoWait returns as soon as the message is queued for writing, before
	// it is durable (fire-and-forget, at-most-once).
	NoWait bool
}

// PublishResult is the outcome of a publish.
type PublishResult struct {
	Seq       uint64 // the message id inside the queue
	Duplicate bool   // the producer id was seen within the dedup window
}

// ReceiveOptions tune one receive.
type ReceiveOptions struct {
	Max        int           // messages at most; default 1, at most 1000
	Wait       time.Duration // long-poll up to this for the first message; 0 = return at once
	Visibility time.Duration // invisibility after delivery; 0 = the queue's visibility_timeout
	// AutoAck acknowledges messages as they are delivered (at-most-once).
	AutoAck bool
}

// Delivery is a received message.
type Delivery struct {
	Seq         uint64
	Receipt     string // pass to Ack / Nack; valid for this delivery only
	Body        []byte // shared: do not modify
	MsgID       string
	Key         string
	Headers     map[string]string // shared: do not modify
	Deliveries  int               // 1 on first delivery
	PublishedAt time.Time
}

// AckResult reports a batch ack or nack.
type AckResult struct {
	Done   int            `json:"done"`             // receipts applied
	Failed []ReceiptError `json:"failed,omitempty"` // receipts that were not
}

// ReceiptError names a receipt that could not be applied and why.
type ReceiptError struct {
	Receipt string `json:"receipt"`
	Error   string `json:"error"`
}

// QueueInfo describes a queue.
type QueueInfo struct {
	Name         string      `json:"name"`
	Config       QueueConfig `json:"config"`
	Depth        int         `json:"depth"`         // ready + waiting for their key
	InFlight     int         `json:"in_flight"`     // delivered, not acked
	Delayed      int         `json:"delayed"`       // not yet available
	DeadLettered int         `json:"dead_lettered"` // messages in its dead-letter queue
}

// MessageState is where a message is in its queue's life cycle, as
// reported by MessageStatus.
type MessageState string

// Message states. The first five are live messages; Acked, DeadLettered,
// Dropped and Moved are outcomes the queue remembers for its most recently
// settled messages (see SettledMemory); Unknown is everything else.
const (
	StatePending      MessageState = "pending"       // published without confirm, not yet durable
	StateReady        MessageState = "ready"         // deliverable now
	StateWaiting      MessageState = "waiting"       // queued behind an earlier message with the same key
	StateDelayed      MessageState = "delayed"       // deliverable at AvailableAt
	StateInFlight     MessageState = "in_flight"     // delivered, not yet acked; back at VisibleAt
	StateAcked        MessageState = "acked"         // acknowledged by a consumer (or auto-acked)
	StateDeadLettered MessageState = "dead_lettered" // moved to MovedTo because of Reason
	StateDropped      MessageState = "dropped"       // removed without a dead-letter queue because of Reason
	StateMoved        MessageState = "moved"         // redriven out of this (dead-letter) queue to MovedTo
	StateUnknown      MessageState = "unknown"       // never in this queue, or settled and forgotten
)

// SettledMemory is how many settled messages (acked, dead-lettered,
// dropped, moved) each queue remembers for MessageStatus, oldest forgotten
// first. The memory is per queue and in RAM only (roughly 100 bytes an
// entry); on restart it is rebuilt from the records the log still holds.
const SettledMemory = 4096

// MessageStatus describes one message of a queue.
type MessageStatus struct {
	Queue string       `json:"queue"`
	Seq   uint64       `json:"id,string"` // the broker's message id
	State MessageState `json:"state"`
	// Deliveries so far (live messages, and settled ones the queue
	// remembers).
	Deliveries int `json:"deliveries"`
	// MsgID, Key and PublishedAt are known for live messages only.
	MsgID       string    `json:"msg_id,omitempty"`
	Key         string    `json:"key,omitempty"`
	PublishedAt time.Time `json:"published,omitzero"`
	// AvailableAt is when a delayed message becomes deliverable.
	AvailableAt time.Time `json:"available_at,omitzero"`
	// VisibleAt is when an in-flight message comes back unless acked.
	VisibleAt time.Time `json:"visible_at,omitzero"`
	// SettledAt is when a settled message left the queue.
	SettledAt time.Time `json:"settled_at,omitzero"`
	// Reason is why a message was dead-lettered or dropped:
	// max_deliveries, expired or retention.
	Reason string `json:"reason,omitempty"`
	// MovedTo is the queue a dead-lettered or moved message went to.
	MovedTo string `json:"moved_to,omitempty"`
}
