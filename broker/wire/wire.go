// Package wire is the broker's native binary protocol: length-prefixed,
// pipelined frames carrying batched publishes, receives, acks and
// credit-based push subscriptions for queues and topics, batched appends,
// reads and consumer-group offsets for streams, and declaring and deleting
// queues, topics and streams.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame layout (integers big endian):
//
//	offset size field
//	0      4    length N of the rest of the frame (type + id + body), 5..MaxFrame
//	4      1    type
//	5      4    id: chosen by the client per request and echoed in the reply,
//	            so requests can be pipelined and answered out of order; for
//	            subscription pushes, the id of the Sub request
//	9      N-5  body, whose layout depends on the type (see the Type constants)
//
// Inside bodies, integers are unsigned varints, strings and byte strings a
// varint length then the bytes.
const (
	headerLen = 9
	// MaxFrame bounds a frame's length field: 65 MiB, room for one
	// message of the largest max_message_size (64 MiB) and its fields.
	MaxFrame = 65 << 20
)

// Type is a frame type.
type Type uint8

// Requests (client to server) and replies (server to client).
const (
	// Pub: queue, flags (bit 0: no wait), count, count x message
	// (msg-id, key, delay ms, ttl ms, header count, (name, value)..., body).
	// Reply PubOK: count, count x (seq, duplicate 0|1), or Err.
	Pub Type = 1
	// Recv: queue, max, wait ms, visibility ms, auto-ack 0|1. Reply Msgs.
	Recv Type = 2
	// Ack: queue, count, receipts. Reply AckOK.
	Ack Type = 3
	// Nack: queue, delay ms, count, receipts. Reply AckOK.
	Nack Type = 4
	// Sub: queue, initial credit, visibility ms, auto-ack 0|1. Reply SubOK,
	// then Msgs frames with the Sub's id, one credit per message.
	Sub Type = 5
	// Credit: (id = the Sub's or TopicSub's id) more credit n.
	Credit Type = 6
	// Unsub: (id = the Sub's or TopicSub's id). Reply SubOK when the
	// subscription ended.
	Unsub Type = 7
	// Ping: empty. Reply Pong with the same id. Either side may ping: the
	// server pings (id 0) a connection silent for its ping interval and
	// closes it if nothing arrives within its ping timeout.
	Ping Type = 8
	// TopicPub: the body of Pub naming a topic (bit 0 of flags: do not wait
	// for the bound queues' records to be durable; delay and ttl apply to
	// the bound queues). Reply TopicPubOK, or Err.
	TopicPub Type = 9
	// TopicSub: topic, initial credit. Reply SubOK (the subscriber sees
	// only messages published after it), then TopicMsgs frames with the
	// TopicSub's id, one credit per message; Credit and Unsub work as for
	// Sub. An Err frame with that id ends the subscription: code lagged
	// (it fell more than the topic's buffer behind), not_found (the topic
	// was deleted) or closed (the broker is closing).
	TopicSub Type = 10
	// StreamAppend: stream, count, count x (header count, (name, value)...,
	// body). Reply AppendOK once every message is durable, or Err.
	StreamAppend Type = 11
	// StreamRead: stream, from (see From), position (the offset for
	// FromOffset, Unix ns for FromTime, else 0), max (0: 100), wait ms.
	// Reply StreamMsgs.
	StreamRead Type = 12
	// GroupFetch: stream, group, max (0: 100), wait ms: a read from the
	// group's committed offset. Reply StreamMsgs.
	GroupFetch Type = 13
	// GroupCommit: stream, group, offset (the next offset the group will
	// read). Reply CommitOK once durable.
	GroupCommit Type = 14
	// Declare: kind (1 byte: 1 queue, 2 topic, 3 stream), name, settings
	// (the JSON the HTTP API's PUT accepts, at most MaxSettings bytes;
	// empty: defaults), and optionally flags (bit 0, DeclareIfAbsent:
	// create only if missing, leave an existing one as it is; brokers
	// older than the field answer Err bad_request). Creates the queue,
	// topic or stream or replaces its settings (a topic's: its bound
	// queues too). Reply DeclareOK once the change is durable, or Err
	// (bad_request for invalid settings or unknown fields).
	Declare Type = 15
	// Delete: kind, name. Reply DeleteOK, or Err (not_found).
	Delete Type = 16
	// Auth: version (AuthVersion), method (1 byte, see AuthMethod), user,
	// secret (bytes; the password or token, empty for AuthCertificate).
	// The first frame of a connection to a broker with users; any other
	// first frame is answered Err unauthorized and the connection closed,
	// as is a failed login. At most MaxAuthBody bytes. Reply AuthOK.
	Auth Type = 17
	// Bind: operation (1 byte: 1 bind, 2 unbind), flags (bit 0,
	// BindCreateQueue: create the queue if missing; bind only), topic,
	// queue. Adds or removes one queue of the topic's bound queues,
	// atomically, leaving the others. Reply BindOK once durable, or Err
	// (not_found naming the missing topic or queue, bad_request). Brokers
	// older than this frame answer Err bad_request (unknown frame type).
	Bind Type = 18

	// PubOK: see Pub.
	PubOK Type = 0x81
	// Msgs: count, count x delivery (seq, receipt, msg-id, key, deliveries,
	// published Unix ns, header count, (name, value)..., body).
	Msgs Type = 0x82
	// AckOK: done, failed count, failed x (receipt, error).
	AckOK Type = 0x83
	// SubOK: empty; answering a Sub, the visibility timeout in ms of the
	// messages it pushes (clients that do not read it ignore it).
	SubOK Type = 0x85
	// Pong: empty; also sent by clients, answering the server's Ping.
	Pong Type = 0x88
	// TopicPubOK: count, count x (id, subscribers, queues).
	TopicPubOK Type = 0x89
	// TopicMsgs: count, count x message (id, msg-id, key, time Unix ns,
	// header count, (name, value)..., body).
	TopicMsgs Type = 0x8A
	// AppendOK: count, count x offset.
	AppendOK Type = 0x8B
	// StreamMsgs: next offset to read, count, count x message (offset, time
	// Unix ns, header count, (name, value)..., body).
	StreamMsgs Type = 0x8C
	// CommitOK: the committed offset.
	CommitOK Type = 0x8E
	// DeclareOK: empty.
	DeclareOK Type = 0x8F
	// DeleteOK: empty.
	DeleteOK Type = 0x90
	// AuthOK: version, the user logged in ("" on a broker without users).
	AuthOK Type = 0x91
	// BindOK: changed (1 byte, 0 or 1: 0 when the queue already was, or
	// was not, bound).
	BindOK Type = 0x92
	// Err: code, message, queue, limit. Codes are those of the HTTP API
	// (not_found, bad_request, too_large, queue_full, closed, timeout,
	// internal), plus lagged for an ended topic subscription.
	Err Type = 0xFF
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed frame")

// ErrTooLarge is wrapped (with ErrMalformed) by the error for a frame
// whose length field is above the reader's limit.
var ErrTooLarge = errors.New("frame too large")

// Frame is one decoded frame. Body aliases the reader's buffer until the
// next ReadFrame (unless Detach is called).
type Frame struct {
	Type Type
	ID   uint32
	Body []byte
}

// firstChunk is the buffer a frame body starts with; it doubles as bytes
// arrive, up to the frame's length.
const firstChunk = 64 << 10

// Reader reads frames. Not safe for concurrent use.
//
// A frame's length field is a claim, not an allocation: the body buffer
// grows (geometrically, from 64 KiB) as the bytes actually arrive, so a
// header claiming 64 MiB followed by silence costs at most 64 KiB.
type Reader struct {
	r   *bufio.Reader
	buf []byte
	max int
	// Admit, if set, is called with a frame's type, id and body length
	// once its header is read and before any of its body is; it may block
	// (back-pressure). An error ends ReadFrame with that error and the
	// frame's type and id.
	Admit func(t Type, id uint32, n int) error
}

// NewReader returns a reader accepting frames up to max bytes (0: MaxFrame).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Wait blocks until at least one byte of the next frame has arrived.
func (r *Reader) Wait() error {
	_, err := r.r.Peek(1)
	return err
}

// Detach hands the last frame's body to the caller for good (and lets the
// reader forget a large buffer): the next ReadFrame reads into a new one.
func (r *Reader) Detach() { r.buf = nil }

// ReadFrame reads the next frame. On an error after the header (a length
// out of range, an Admit error, a short body), the returned Frame carries
// the header's type and id.
func (r *Reader) ReadFrame() (Frame, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		return Frame{}, err
	}
	n := int(binary.BigEndian.Uint32(h[0:4]))
	f := Frame{Type: Type(h[4]), ID: binary.BigEndian.Uint32(h[5:9])}
	if n > r.max {
		return f, fmt.Errorf("%w: %w: length %d above the limit of %d bytes", ErrMalformed, ErrTooLarge, n, r.max)
	}
	if n < 5 {
		return f, fmt.Errorf("%w: length %d below the minimum of 5", ErrMalformed, n)
	}
	n -= 5
	if r.Admit != nil {
		if err := r.Admit(f.Type, f.ID, n); err != nil {
			return f, err
		}
	}
	if cap(r.buf) < min(n, firstChunk) {
		r.buf = make([]byte, 0, firstChunk)
	}
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		if len(r.buf) == cap(r.buf) {
			nb := make([]byte, len(r.buf), min(n, 2*cap(r.buf)))
			copy(nb, r.buf)
			r.buf = nb
		}
		m, err := r.r.Read(r.buf[len(r.buf):min(n, cap(r.buf))])
		r.buf = r.buf[:len(r.buf)+m]
		if err != nil && len(r.buf) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return f, err
		}
	}
	f.Body = r.buf
	return f, nil
}

// AppendFrame appends a frame with the given body to dst.
func AppendFrame(dst []byte, t Type, id uint32, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(5+len(body)))
	dst = append(dst, byte(t))
	dst = binary.BigEndian.AppendUint32(dst, id)
	return append(dst, body...)
}

// Begin starts a frame in dst whose body the caller appends; End fills in
// the length. It avoids copying large bodies.
func Begin(dst []byte, t Type, id uint32) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(t))
	dst = binary.BigEndian.AppendUint32(dst, id)
	return dst, start
}

// End completes a frame started at start by Begin.
func End(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendUvarint, AppendString and AppendBytes encode body fields.
func AppendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendString appends a length-prefixed string.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends a length-prefixed byte string.
func AppendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// AppendHeaders appends a header map (count, then name/value pairs).
func AppendHeaders(b []byte, h map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(h)))
	for k, v := range h {
		b = AppendString(b, k)
		b = AppendString(b, v)
	}
	return b
}

// Decoder reads body fields, remembering the first error.
type Decoder struct {
	B   []byte
	Err error

	// headerBudget is how many more distinct header fields Headers may
	// read when bounded (a request's bound, MaxFrameHeaders).
	headerBudget int
	bounded      bool
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Err = fmt.Errorf("%w: bad varint", ErrMalformed)
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Int reads a uvarint that must fit in a non-negative int below limit.
func (d *Decoder) Int(limit int) int {
	v := d.Uvarint()
	if d.Err == nil && v > uint64(limit) {
		d.Err = fmt.Errorf("%w: value %d above %d", ErrMalformed, v, limit)
		return 0
	}
	return int(v)
}

// Bytes reads a length-prefixed byte string (aliasing the body).
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.Err = fmt.Errorf("%w: %d bytes wanted, %d left", ErrMalformed, n, len(d.B))
		return nil
	}
	p := d.B[:n:n]
	d.B = d.B[n:]
	return p
}

// String reads a length-prefixed string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.Err != nil {
		return 0
	}
	if len(d.B) == 0 {
		d.Err = fmt.Errorf("%w: missing byte", ErrMalformed)
		return 0
	}
	c := d.B[0]
	d.B = d.B[1:]
	return c
}

// Headers reads a header map; nil when empty.
func (d *Decoder) Headers() map[string]string {
	n := d.Uvarint()
	if d.Err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(d.B))/2 {
		d.Err = fmt.Errorf("%w: %d headers in %d bytes", ErrMalformed, n, len(d.B))
		return nil
	}

	// The count is a claim: size the map for what arrives, not for it.
	h := make(map[string]string, min(n, 8))
	for i := uint64(0); i < n && d.Err == nil; i++ {
		k := d.String()
		if _, dup := h[k]; !dup && d.bounded {
			// Only distinct names cost memory.
			if d.headerBudget == 0 {
				d.Err = fmt.Errorf("%w: more than %d distinct header fields in one frame", ErrMalformed, MaxFrameHeaders)
				return nil
			}
			d.headerBudget--
		}
		h[k] = d.String()
	}
	return h
}

// Done reports the first error, or an error if bytes are left over.
func (d *Decoder) Done() error {
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.B))
	}
	return d.Err
}
