package wire

import (
	"fmt"
)

// Kind is what a Declare or Delete request names.
type Kind uint8

// Kinds of Declare and Delete.
const (
	KindQueue  Kind = 1
	KindTopic  Kind = 2
	KindStream Kind = 3
)

// String returns "queue", "topic" or "stream".
func (k Kind) String() string {
	switch k {
	case KindQueue:
		return "queue"
	case KindTopic:
		return "topic"
	case KindStream:
		return "stream"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MaxSettings bounds the settings of a Declare, in bytes, as the HTTP API
// bounds its request bodies (1 MiB).
const MaxSettings = 1 << 20

// DeclareReq is a Declare body.
type DeclareReq struct {
	Kind Kind
	Name string
	// Settings is the JSON of a broker.QueueConfig, TopicConfig or
	// StreamConfig, as the HTTP API accepts it; empty means defaults.
	Settings []byte
	// IfAbsent creates the queue, topic or stream only if it does not
	// exist and leaves an existing one as it is (settings, and a topic's
	// bound queues). Encoded as the optional trailing flags field, bit
	// DeclareIfAbsent; a request without it is byte for byte what older
	// clients send.
	IfAbsent bool
}

// Declare flags (the optional trailing field of a Declare body).
const (
	DeclareIfAbsent = 1 << 0
	declareFlags    = DeclareIfAbsent
)

// DeleteReq is a Delete body.
type DeleteReq struct {
	Kind Kind
	Name string
}

// AppendDeclareReq encodes a Declare body.
func AppendDeclareReq(b []byte, r *DeclareReq) []byte {
	b = append(b, byte(r.Kind))
	b = AppendString(b, r.Name)
	b = AppendBytes(b, r.Settings)
	if r.IfAbsent {
		b = AppendUvarint(b, DeclareIfAbsent)
	}
	return b
}

// DecodeDeclareReq decodes a Declare body; Settings aliases body.
func DecodeDeclareReq(body []byte) (DeclareReq, error) {
	d := Decoder{B: body}
	r := DeclareReq{Kind: kind(&d), Name: d.String(), Settings: d.Bytes()}
	if d.Err == nil && len(r.Settings) > MaxSettings {
		d.Err = fmt.Errorf("%w: settings of %d bytes, limit %d", ErrMalformed, len(r.Settings), MaxSettings)
	}
	if d.Err == nil && len(d.B) > 0 {
		f := d.Uvarint()
		if d.Err == nil && f&^declareFlags != 0 {
			d.Err = fmt.Errorf("%w: unknown declare flags %#x", ErrMalformed, f)
		}
		r.IfAbsent = f&DeclareIfAbsent != 0
	}
	return r, d.Done()
}

// AppendDeleteReq encodes a Delete body.
func AppendDeleteReq(b []byte, r *DeleteReq) []byte {
	b = append(b, byte(r.Kind))
	return AppendString(b, r.Name)
}

// DecodeDeleteReq decodes a Delete body.
func DecodeDeleteReq(body []byte) (DeleteReq, error) {
	d := Decoder{B: body}
	r := DeleteReq{Kind: kind(&d), Name: d.String()}
	return r, d.Done()
}

// kind reads a Kind byte, rejecting unknown kinds.
func kind(d *Decoder) Kind {
	k := Kind(d.Byte())
	if d.Err == nil && (k < KindQueue || k > KindStream) {
		d.Err = fmt.Errorf("%w: unknown kind %d", ErrMalformed, k)
		return 0
	}
	return k
}

// Bind operations.
const (
	OpBind   byte = 1
	OpUnbind byte = 2
)

// Bind flags.
const (
	// BindCreateQueue: create the queue with default settings if missing
	// (broker.BindOptions.CreateQueue); bind only.
	BindCreateQueue = 1 << 0
	bindFlags       = BindCreateQueue
)

// BindReq is a Bind body: bind queue to topic (Op OpBind) or unbind it
// (OpUnbind).
type BindReq struct {
	Op    byte
	Topic string
	Queue string
	// CreateQueue: see BindCreateQueue.
	CreateQueue bool
}

// AppendBindReq encodes a Bind body.
func AppendBindReq(b []byte, r *BindReq) []byte {
	b = append(b, r.Op)
	var f uint64
	if r.CreateQueue {
		f |= BindCreateQueue
	}
	b = AppendUvarint(b, f)
	b = AppendString(b, r.Topic)
	return AppendString(b, r.Queue)
}

// DecodeBindReq decodes a Bind body.
func DecodeBindReq(body []byte) (BindReq, error) {
	d := Decoder{B: body}
	r := BindReq{Op: d.Byte()}
	f := d.Uvarint()
	r.Topic, r.Queue = d.String(), d.String()
	switch {
	case d.Err != nil:
	case r.Op != OpBind && r.Op != OpUnbind:
		d.Err = fmt.Errorf("%w: unknown bind operation %d", ErrMalformed, r.Op)
	case f&^bindFlags != 0:
		d.Err = fmt.Errorf("%w: unknown bind flags %#x", ErrMalformed, f)
	case f&BindCreateQueue != 0 && r.Op != OpBind:
		d.Err = fmt.Errorf("%w: create-queue flag on an unbind", ErrMalformed)
	}
	r.CreateQueue = f&BindCreateQueue != 0
	return r, d.Done()
}

// AppendBindOK encodes a BindOK body: whether the request changed the
// binding.
func AppendBindOK(b []byte, changed bool) []byte {
	if changed {
		return append(b, 1)
	}
	return append(b, 0)
}

// DecodeBindOK decodes a BindOK body.
func DecodeBindOK(body []byte) (changed bool, err error) {
	d := Decoder{B: body}
	c := d.Byte()
	if d.Err == nil && c > 1 {
		d.Err = fmt.Errorf("%w: changed %d, want 0 or 1", ErrMalformed, c)
	}
	return c == 1, d.Done()
}
