package wire

import (
	"fmt"
	"math"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// Topic publishes (TopicPub) use PubReq, AppendPubReq and DecodePubReq with
// PubReq.Queue naming the topic.

// maxRead bounds the max field of a read or fetch when decoding; the
// broker rejects anything above its own limit (10000) with a clear error.
const maxRead = 1 << 20

// AppendTopicPubOK encodes a TopicPubOK body.
func AppendTopicPubOK(b []byte, res []broker.TopicResult) []byte {
	b = AppendUvarint(b, uint64(len(res)))
	for _, r := range res {
		b = AppendUvarint(b, r.ID)
		b = AppendUvarint(b, uint64(max(r.Subscribers, 0)))
		b = AppendUvarint(b, uint64(max(r.Queues, 0)))
	}
	return b
}

// DecodeTopicPubOK decodes a TopicPubOK body.
func DecodeTopicPubOK(body []byte) ([]broker.TopicResult, error) {
	d := Decoder{B: body}
	n := d.Int(maxBatch)
	if d.Err == nil && n > len(d.B)/3 {
		d.Err = fmt.Errorf("%w: %d results in %d bytes", ErrMalformed, n, len(d.B))
	}
	var out []broker.TopicResult
	if d.Err == nil {
		out = make([]broker.TopicResult, 0, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		out = append(out, broker.TopicResult{ID: d.Uvarint(), Subscribers: d.Int(1 << 30), Queues: d.Int(1 << 30)})
	}
	return out, d.Done()
}

// TopicSubReq is a TopicSub body.
type TopicSubReq struct {
	Topic  string
	Credit int // messages the server may push before more credit
}

// AppendTopicSubReq encodes a TopicSub body.
func AppendTopicSubReq(b []byte, r *TopicSubReq) []byte {
	b = AppendString(b, r.Topic)
	return AppendUvarint(b, uint64(max(r.Credit, 0)))
}

// DecodeTopicSubReq decodes a TopicSub body.
func DecodeTopicSubReq(body []byte) (TopicSubReq, error) {
	d := Decoder{B: body}
	r := TopicSubReq{Topic: d.String(), Credit: d.Int(1 << 20)}
	return r, d.Done()
}

// unixNano encodes t as non-negative Unix nanoseconds, clamping times
// outside 1970..2262 (whose UnixNano is undefined) to the ends.
func unixNano(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// timeOf reads Unix nanoseconds written by unixNano.
func timeOf(d *Decoder) time.Time {
	v := d.Uvarint()
	if d.Err == nil && v > math.MaxInt64 {
		d.Err = fmt.Errorf("%w: time %d out of range", ErrMalformed, v)
		return time.Time{}
	}
	return time.Unix(0, int64(v)).UTC()
}

// AppendTopicMsgs encodes a TopicMsgs body.
func AppendTopicMsgs(b []byte, ms []broker.TopicMessage) []byte {
	b = AppendUvarint(b, uint64(len(ms)))
	for i := range ms {
		m := &ms[i]
		b = AppendUvarint(b, m.ID)
		b = AppendString(b, m.MsgID)
		b = AppendString(b, m.Key)
		b = AppendUvarint(b, unixNano(m.Time))
		b = AppendHeaders(b, m.Headers)
		b = AppendBytes(b, m.Body)
	}
	return b
}

// DecodeTopicMsgs appends the messages of a TopicMsgs body to dst (which
// may be a reused buffer). Bodies alias body.
func DecodeTopicMsgs(dst []broker.TopicMessage, body []byte) ([]broker.TopicMessage, error) {
	d := Decoder{B: body}
	n := d.Int(maxBatch)
	// A message takes at least 6 bytes (id, time, four empty lengths).
	if d.Err == nil && n > len(d.B)/6 {
		d.Err = fmt.Errorf("%w: %d messages in %d bytes", ErrMalformed, n, len(d.B))
	}
	for i := 0; i < n && d.Err == nil; i++ {
		var m broker.TopicMessage
		m.ID = d.Uvarint()
		m.MsgID = d.String()
		m.Key = d.String()
		m.Time = timeOf(&d)
		m.Headers = d.Headers()
		m.Body = d.Bytes()
		dst = append(dst, m)
	}
	return dst, d.Done()
}

// AppendReq is a StreamAppend body. Only the messages' Headers and Body
// are carried: a stream stores nothing else.
type AppendReq struct {
	Stream string
	Msgs   []broker.Message
}

// AppendAppendReq encodes a StreamAppend body.
func AppendAppendReq(b []byte, r *AppendReq) []byte {
	b = AppendString(b, r.Stream)
	b = AppendUvarint(b, uint64(len(r.Msgs)))
	for i := range r.Msgs {
		b = AppendHeaders(b, r.Msgs[i].Headers)
		b = AppendBytes(b, r.Msgs[i].Body)
	}
	return b
}

// DecodeAppendReq decodes a StreamAppend body. Message bodies alias body.
func DecodeAppendReq(body []byte) (AppendReq, error) {
	d := requestDecoder(body)
	r := AppendReq{Stream: d.String()}
	n := d.Int(maxBatch)
	if d.Err == nil && n > len(d.B)/2 {
		d.Err = fmt.Errorf("%w: %d messages in %d bytes", ErrMalformed, n, len(d.B))
	}
	if d.Err == nil {
		r.Msgs = make([]broker.Message, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		r.Msgs[i].Headers = d.Headers()
		r.Msgs[i].Body = d.Bytes()
	}
	return r, d.Done()
}

// AppendAppendOK encodes an AppendOK body.
func AppendAppendOK(b []byte, offsets []uint64) []byte {
	b = AppendUvarint(b, uint64(len(offsets)))
	for _, o := range offsets {
		b = AppendUvarint(b, o)
	}
	return b
}

// DecodeAppendOK decodes an AppendOK body.
func DecodeAppendOK(body []byte) ([]uint64, error) {
	d := Decoder{B: body}
	n := d.Int(maxBatch)
	if d.Err == nil && n > len(d.B) {
		d.Err = fmt.Errorf("%w: %d offsets in %d bytes", ErrMalformed, n, len(d.B))
	}
	var out []uint64
	if d.Err == nil {
		out = make([]uint64, 0, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		out = append(out, d.Uvarint())
	}
	return out, d.Done()
}

// From says where a stream read starts.
type From uint8

// Read positions. The zero value is the start of the stream.
const (
	FromStart  From = 0 // the first retained message
	FromOffset From = 1 // ReadReq.Offset (older than the first retained: the first)
	FromEnd    From = 2 // the next message to be appended
	FromTime   From = 3 // the first message at or after ReadReq.Time
)

// ReadReq is a StreamRead body.
type ReadReq struct {
	Stream string
	From   From
	Offset uint64    // for FromOffset
	Time   time.Time // for FromTime
	Max    int       // messages at most; 0: the broker's default (100)
	Wait   time.Duration
}

// AppendReadReq encodes a StreamRead body.
func AppendReadReq(b []byte, r *ReadReq) []byte {
	b = AppendString(b, r.Stream)
	b = append(b, byte(r.From))
	switch r.From {
	case FromOffset:
		b = AppendUvarint(b, r.Offset)
	case FromTime:
		b = AppendUvarint(b, unixNano(r.Time))
	default:
		b = AppendUvarint(b, 0)
	}
	b = AppendUvarint(b, uint64(max(r.Max, 0)))
	return AppendUvarint(b, ms(r.Wait))
}

// DecodeReadReq decodes a StreamRead body; an unknown From is an error.
func DecodeReadReq(body []byte) (ReadReq, error) {
	d := Decoder{B: body}
	r := ReadReq{Stream: d.String(), From: From(d.Byte())}
	switch r.From {
	case FromOffset:
		r.Offset = d.Uvarint()
	case FromTime:
		r.Time = timeOf(&d)
	case FromStart, FromEnd:
		if v := d.Uvarint(); d.Err == nil && v != 0 {
			d.Err = fmt.Errorf("%w: position %d with from %d", ErrMalformed, v, r.From)
		}
	default:
		if d.Err == nil {
			d.Err = fmt.Errorf("%w: unknown from %d", ErrMalformed, r.From)
		}
	}
	r.Max = d.Int(maxRead)
	r.Wait = dur(&d)
	return r, d.Done()
}

// FetchReq is a GroupFetch body.
type FetchReq struct {
	Stream string
	Group  string
	Max    int // messages at most; 0: the broker's default (100)
	Wait   time.Duration
}

// AppendFetchReq encodes a GroupFetch body.
func AppendFetchReq(b []byte, r *FetchReq) []byte {
	b = AppendString(b, r.Stream)
	b = AppendString(b, r.Group)
	b = AppendUvarint(b, uint64(max(r.Max, 0)))
	return AppendUvarint(b, ms(r.Wait))
}

// DecodeFetchReq decodes a GroupFetch body.
func DecodeFetchReq(body []byte) (FetchReq, error) {
	d := Decoder{B: body}
	r := FetchReq{Stream: d.String(), Group: d.String(), Max: d.Int(maxRead)}
	r.Wait = dur(&d)
	return r, d.Done()
}

// StreamPage is a StreamMsgs body: messages read from a stream and the
// offset to read (or commit) next.
type StreamPage struct {
	Messages []broker.StreamMessage
	Next     uint64
}

// AppendStreamMsgs encodes a StreamMsgs body.
func AppendStreamMsgs(b []byte, p *StreamPage) []byte {
	b = AppendUvarint(b, p.Next)
	b = AppendUvarint(b, uint64(len(p.Messages)))
	for i := range p.Messages {
		m := &p.Messages[i]
		b = AppendUvarint(b, m.Offset)
		b = AppendUvarint(b, unixNano(m.Time))
		b = AppendHeaders(b, m.Headers)
		b = AppendBytes(b, m.Body)
	}
	return b
}

// DecodeStreamMsgs decodes a StreamMsgs body, appending the messages to
// p.Messages (which may be a reused buffer). Bodies alias body.
func DecodeStreamMsgs(p *StreamPage, body []byte) error {
	d := Decoder{B: body}
	p.Next = d.Uvarint()
	n := d.Int(maxBatch)
	// A message takes at least 4 bytes (offset, time, two empty lengths).
	if d.Err == nil && n > len(d.B)/4 {
		d.Err = fmt.Errorf("%w: %d messages in %d bytes", ErrMalformed, n, len(d.B))
	}
	for i := 0; i < n && d.Err == nil; i++ {
		var m broker.StreamMessage
		m.Offset = d.Uvarint()
		m.Time = timeOf(&d)
		m.Headers = d.Headers()
		m.Body = d.Bytes()
		p.Messages = append(p.Messages, m)
	}
	return d.Done()
}

// CommitReq is a GroupCommit body.
type CommitReq struct {
	Stream string
	Group  string
	Offset uint64 // the next offset the group will read
}

// AppendCommitReq encodes a GroupCommit body.
func AppendCommitReq(b []byte, r *CommitReq) []byte {
	b = AppendString(b, r.Stream)
	b = AppendString(b, r.Group)
	return AppendUvarint(b, r.Offset)
}

// DecodeCommitReq decodes a GroupCommit body.
func DecodeCommitReq(body []byte) (CommitReq, error) {
	d := Decoder{B: body}
	r := CommitReq{Stream: d.String(), Group: d.String(), Offset: d.Uvarint()}
	return r, d.Done()
}

// AppendCommitOK appends a CommitOK body: the committed offset.
func AppendCommitOK(b []byte, offset uint64) []byte { return AppendUvarint(b, offset) }

// DecodeCommitOK decodes a CommitOK body (the committed offset, encoded
// by AppendCommitOK).
func DecodeCommitOK(body []byte) (uint64, error) {
	d := Decoder{B: body}
	o := d.Uvarint()
	return o, d.Done()
}

// AppendCredit appends a Credit body: n more messages for the Sub or
// TopicSub of the frame's id.
func AppendCredit(b []byte, n int) []byte { return AppendUvarint(b, uint64(n)) }

// AppendSubOK encodes a queue subscription's SubOK: the visibility
// timeout of the messages it pushes, in ms rounded up (0: not said; a
// timeout under 1ms truncated to 0 read as not said, and the client
// assumed the default 30s).
func AppendSubOK(b []byte, visibility time.Duration) []byte {
	ms := max(visibility.Milliseconds(), 0)
	if visibility > time.Duration(ms)*time.Millisecond {
		ms++
	}
	return AppendUvarint(b, uint64(ms))
}

// DecodeSubOK decodes a SubOK body: a queue subscription's visibility
// timeout, 0 if the body is empty (a topic subscription's, an Unsub's,
// or a broker that does not say).
func DecodeSubOK(body []byte) (time.Duration, error) {
	if len(body) == 0 {
		return 0, nil
	}
	d := Decoder{B: body}
	ms := d.Uvarint()
	if d.Err == nil && ms > 1<<40 {
		d.Err = fmt.Errorf("%w: visibility %d ms above %d", ErrMalformed, ms, uint64(1<<40))
	}
	if err := d.Done(); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// DecodeCredit decodes a Credit body (at most 1<<30 messages).
func DecodeCredit(body []byte) (int, error) {
	d := Decoder{B: body}
	n := d.Int(1 << 30)
	return n, d.Done()
}
