package wire

import (
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// Limits applied when decoding.
const (
	maxBatch    = 10000
	maxReceipts = 10000
)

// MaxFrameHeaders bounds the distinct header fields (per message) of all
// the messages of one publish or append request together. A field costs as little as 2 to 5
// bytes on the wire but about 100 once decoded, so without a bound a
// frame of tiny headers decoded into some 20 times its size (and took
// seconds of CPU), beyond the memory budget that counts frame bytes.
// 131072 leaves 13 fields to each message of a full 10000-message batch,
// and more than an HTTP publish can carry in its 1 MiB of headers.
const MaxFrameHeaders = 1 << 17

// requestDecoder decodes a request body whose header fields are bounded.
func requestDecoder(body []byte) Decoder {
	return Decoder{B: body, headerBudget: MaxFrameHeaders, bounded: true}
}

func ms(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Millisecond)
}

func dur(d *Decoder) time.Duration {
	return time.Duration(d.Int(1<<40)) * time.Millisecond
}

// PubReq is a (batched) publish request.
type PubReq struct {
	Queue  string
	NoWait bool
	Msgs   []broker.Message
}

// PubReqSize returns how many bytes AppendPubReq appends for r, give or
// take a few, so that a caller can size the buffer once instead of letting
// it grow (and copy) message by message.
func PubReqSize(r *PubReq) int {
	n := 16 + len(r.Queue)
	for i := range r.Msgs {
		m := &r.Msgs[i]
		n += 32 + len(m.ID) + len(m.Key) + len(m.Body) + headersSize(m.Headers)
	}
	return n
}

// MsgsSize returns how many bytes AppendMsgs appends for ds, give or take
// a few (see PubReqSize).
func MsgsSize(ds []broker.Delivery) int {
	n := 8
	for i := range ds {
		m := &ds[i]
		n += 48 + len(m.Receipt) + len(m.MsgID) + len(m.Key) + len(m.Body) + headersSize(m.Headers)
	}
	return n
}

func headersSize(h map[string]string) int {
	n := 4
	for k, v := range h {
		n += 8 + len(k) + len(v)
	}
	return n
}

// AppendPubReq encodes a Pub body.
func AppendPubReq(b []byte, r *PubReq) []byte {
	b = AppendString(b, r.Queue)
	flags := byte(0)
	if r.NoWait {
		flags = 1
	}
	b = append(b, flags)
	b = AppendUvarint(b, uint64(len(r.Msgs)))
	for i := range r.Msgs {
		m := &r.Msgs[i]
		b = AppendString(b, m.ID)
		b = AppendString(b, m.Key)
		b = AppendUvarint(b, ms(m.Delay))
		b = AppendUvarint(b, ms(m.TTL))
		b = AppendHeaders(b, m.Headers)
		b = AppendBytes(b, m.Body)
	}
	return b
}

// DecodePubReq decodes a Pub body. Message bodies alias body.
func DecodePubReq(body []byte) (PubReq, error) {
	d := requestDecoder(body)
	var r PubReq
	r.Queue = d.String()
	r.NoWait = d.Byte()&1 != 0
	n := d.Int(maxBatch)
	// A message takes at least 6 bytes (id, key, delay, ttl, header count,
	// body length): a count the body cannot hold is refused before
	// anything is allocated for it.
	if d.Err == nil && n > len(d.B)/6 {
		d.Err = fmt.Errorf("%w: %d messages in %d bytes", ErrMalformed, n, len(d.B))
	}
	if d.Err == nil {
		r.Msgs = make([]broker.Message, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		m := &r.Msgs[i]
		m.ID = d.String()
		m.Key = d.String()
		m.Delay = dur(&d)
		m.TTL = dur(&d)
		m.Headers = d.Headers()
		m.Body = d.Bytes()
	}
	return r, d.Done()
}

// AppendPubOK encodes a PubOK body.
func AppendPubOK(b []byte, res []broker.PublishResult) []byte {
	b = AppendUvarint(b, uint64(len(res)))
	for _, r := range res {
		b = AppendUvarint(b, r.Seq)
		if r.Duplicate {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

// DecodePubOK decodes a PubOK body.
func DecodePubOK(body []byte) ([]broker.PublishResult, error) {
	d := Decoder{B: body}
	n := d.Int(maxBatch)
	// A result takes at least 2 bytes (seq, duplicate).
	if d.Err == nil && n > len(d.B)/2 {
		d.Err = fmt.Errorf("%w: %d results in %d bytes", ErrMalformed, n, len(d.B))
	}
	var out []broker.PublishResult
	if d.Err == nil {
		out = make([]broker.PublishResult, 0, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		out = append(out, broker.PublishResult{Seq: d.Uvarint(), Duplicate: d.Byte() == 1})
	}
	return out, d.Done()
}

// RecvReq is a pull receive (Recv) or a subscription (Sub, where Max is
// the initial credit and Wait is unused).
type RecvReq struct {
	Queue      string
	Max        int
	Wait       time.Duration
	Visibility time.Duration
	AutoAck    bool
}

// AppendRecvReq encodes a Recv or Sub body.
func AppendRecvReq(b []byte, r *RecvReq) []byte {
	b = AppendString(b, r.Queue)
	b = AppendUvarint(b, uint64(max(r.Max, 0)))
	b = AppendUvarint(b, ms(r.Wait))
	b = AppendUvarint(b, ms(r.Visibility))
	if r.AutoAck {
		return append(b, 1)
	}
	return append(b, 0)
}

// DecodeRecvReq decodes a Recv or Sub body.
func DecodeRecvReq(body []byte) (RecvReq, error) {
	d := Decoder{B: body}
	r := RecvReq{Queue: d.String(), Max: d.Int(1 << 20)}
	r.Wait = dur(&d)
	r.Visibility = dur(&d)
	r.AutoAck = d.Byte() == 1
	return r, d.Done()
}

// AppendMsgs encodes a Msgs body.
func AppendMsgs(b []byte, ds []broker.Delivery) []byte {
	b = AppendUvarint(b, uint64(len(ds)))
	for i := range ds {
		m := &ds[i]
		b = AppendUvarint(b, m.Seq)
		b = AppendString(b, m.Receipt)
		b = AppendString(b, m.MsgID)
		b = AppendString(b, m.Key)
		b = AppendUvarint(b, uint64(m.Deliveries))
		b = AppendUvarint(b, uint64(m.PublishedAt.UnixNano()))
		b = AppendHeaders(b, m.Headers)
		b = AppendBytes(b, m.Body)
	}
	return b
}

// DecodeMsgs decodes a Msgs body; bodies are copied.
func DecodeMsgs(body []byte) ([]broker.Delivery, error) {
	d := Decoder{B: body}
	n := d.Int(maxBatch)
	// A delivery takes at least 8 bytes (seq, receipt, msg-id, key,
	// deliveries, time, header count, body length).
	if d.Err == nil && n > len(d.B)/8 {
		d.Err = fmt.Errorf("%w: %d deliveries in %d bytes", ErrMalformed, n, len(d.B))
	}
	var out []broker.Delivery
	if d.Err == nil {
		out = make([]broker.Delivery, 0, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		var m broker.Delivery
		m.Seq = d.Uvarint()
		m.Receipt = d.String()
		m.MsgID = d.String()
		m.Key = d.String()
		m.Deliveries = d.Int(1 << 30)
		m.PublishedAt = time.Unix(0, int64(d.Uvarint()))
		m.Headers = d.Headers()
		m.Body = append([]byte(nil), d.Bytes()...)
		out = append(out, m)
	}
	return out, d.Done()
}

// SettleReq is an Ack or Nack body.
type SettleReq struct {
	Queue    string
	Delay    time.Duration // Nack only
	Receipts []string
}

// AppendSettle encodes an Ack (nack false) or Nack body.
func AppendSettle(b []byte, t Type, r *SettleReq) []byte {
	b = AppendString(b, r.Queue)
	if t == Nack {
		b = AppendUvarint(b, ms(r.Delay))
	}
	b = AppendUvarint(b, uint64(len(r.Receipts)))
	for _, s := range r.Receipts {
		b = AppendString(b, s)
	}
	return b
}

// DecodeSettle decodes an Ack or Nack body.
func DecodeSettle(t Type, body []byte) (SettleReq, error) {
	d := Decoder{B: body}
	r := SettleReq{Queue: d.String()}
	if t == Nack {
		r.Delay = dur(&d)
	}
	n := d.Int(maxReceipts)
	// Each receipt takes at least its length byte: a forged count cannot
	// make this allocate more than the body could hold.
	if d.Err == nil && n > len(d.B) {
		d.Err = fmt.Errorf("%w: %d receipts in %d bytes", ErrMalformed, n, len(d.B))
	}
	if d.Err == nil {
		r.Receipts = make([]string, 0, n)
	}
	for i := 0; i < n && d.Err == nil; i++ {
		r.Receipts = append(r.Receipts, d.String())
	}
	return r, d.Done()
}

// AppendAckOK encodes an AckOK body.
func AppendAckOK(b []byte, r broker.AckResult) []byte {
	b = AppendUvarint(b, uint64(r.Done))
	b = AppendUvarint(b, uint64(len(r.Failed)))
	for _, f := range r.Failed {
		b = AppendString(b, f.Receipt)
		b = AppendString(b, f.Error)
	}
	return b
}

// DecodeAckOK decodes an AckOK body.
func DecodeAckOK(body []byte) (broker.AckResult, error) {
	d := Decoder{B: body}
	r := broker.AckResult{Done: d.Int(1 << 30)}
	n := d.Int(maxReceipts)
	// A failure takes at least 2 bytes (receipt, error).
	if d.Err == nil && n > len(d.B)/2 {
		d.Err = fmt.Errorf("%w: %d failures in %d bytes", ErrMalformed, n, len(d.B))
	}
	for i := 0; i < n && d.Err == nil; i++ {
		r.Failed = append(r.Failed, broker.ReceiptError{Receipt: d.String(), Error: d.String()})
	}
	return r, d.Done()
}

// Error is an Err frame: a failed request.
type Error struct {
	Code    string
	Message string
	Queue   string // for queue_full
	Limit   int    // for queue_full
}

func (e *Error) Error() string { return e.Message }

// AppendErr encodes an Err body.
func AppendErr(b []byte, e *Error) []byte {
	b = AppendString(b, e.Code)
	b = AppendString(b, e.Message)
	b = AppendString(b, e.Queue)
	return AppendUvarint(b, uint64(max(e.Limit, 0)))
}

// DecodeErr decodes an Err body.
func DecodeErr(body []byte) (*Error, error) {
	d := Decoder{B: body}
	e := &Error{Code: d.String(), Message: d.String(), Queue: d.String(), Limit: d.Int(1 << 31)}
	return e, d.Done()
}
