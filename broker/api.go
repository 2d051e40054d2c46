package broker

import "time"

// The HTTP API's JSON shapes, defined once for the server (broker/httpapi)
// and its client (broker/client.HTTP). docs/broker.md documents them.

// ErrorBody is the JSON of every error answer: an RFC 9457 problem
// details object (Content-Type application/problem+json) with Type
// "about:blank", Title the status's text, Status the HTTP status as a
// number and Detail what went wrong. Code (one of the Code* constants),
// Error (the same text as Detail, as clients of the older
// {"error","code"} bodies read it), and on a queue_full answer the queue
// and its limit are extension members.
type ErrorBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Error  string `json:"error"`
	Queue  string `json:"queue,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// PublishAnswer is the answer of a queue publish: the message id (a
// decimal string) and whether the producer id was a duplicate.
type PublishAnswer struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// ReceivedMessage is one message of a receive answer (an array); the body
// is base64 in JSON.
type ReceivedMessage struct {
	ID         string            `json:"id"`
	Receipt    string            `json:"receipt,omitempty"`
	Body       []byte            `json:"body"`
	Headers    map[string]string `json:"headers"`
	Key        string            `json:"key,omitempty"`
	MsgID      string            `json:"msg_id,omitempty"`
	Deliveries int               `json:"deliveries"`
	Published  time.Time         `json:"published"`
}

// TopicEvent is the data of one "message" event of a topic subscription's
// event stream (SSE).
type TopicEvent struct {
	ID      string            `json:"id"`
	Body    []byte            `json:"body"`
	Headers map[string]string `json:"headers,omitempty"`
	Key     string            `json:"key,omitempty"`
	MsgID   string            `json:"msg_id,omitempty"`
	Time    time.Time         `json:"time"`
}

// SubscriptionEnded is the data of the "error" event that ends a topic
// subscription's event stream. Reason says why, so that clients can act on
// it without matching the message: lagged (the subscriber fell more than
// the topic's buffer behind), not_found (the topic was deleted) or closed
// (the broker is closing).
type SubscriptionEnded struct {
	Error  string `json:"error"`
	Code   string `json:"code"` // always subscription_ended
	Reason string `json:"reason,omitempty"`
}

// ReadPage is the answer of a stream read or group fetch.
type ReadPage struct {
	Messages []StreamMessage `json:"messages"`
	Next     uint64          `json:"next"` // offset to read next
}

// SettleRequest is the body of a queue ack or nack: the receipts to
// settle and, for nack only, how long to delay the redelivery (a duration
// such as "5s"; the server also reads a bare number as seconds).
type SettleRequest struct {
	Receipts []string `json:"receipts"`
	Delay    string   `json:"delay,omitempty"`
}

// RedriveAnswer is the answer of a queue redrive: how many dead letters
// moved back to the queues they came from, and how many stayed because
// their x-original-queue names no queue (see RedriveKeptError).
type RedriveAnswer struct {
	Moved int    `json:"moved"`
	Kept  int    `json:"kept,omitempty"`
	First string `json:"first_kept,omitempty"`        // the first kept one's x-original-queue
	DLQ   string `json:"dead_letter_queue,omitempty"` // where the kept ones are
}

// OffsetAnswer is the answer of a stream append (the message's offset)
// and of a group commit (the committed offset, the next one the group
// reads); a commit's body has the same shape.
type OffsetAnswer struct {
	Offset uint64 `json:"offset"`
}

// HealthAnswer is the answer of GET /healthz: status "ok".
type HealthAnswer struct {
	Status string `json:"status"`
}
