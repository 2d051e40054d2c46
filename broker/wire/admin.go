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
}

// DeleteReq is a Delete body.
type DeleteReq struct {
	Kind Kind
	Name string
}

// AppendDeclareReq encodes a Declare body.
func AppendDeclareReq(b []byte, r *DeclareReq) []byte {
	b = append(b, byte(r.Kind))
	b = AppendString(b, r.Name)
	return AppendBytes(b, r.Settings)
}

// DecodeDeclareReq decodes a Declare body; Settings aliases body.
func DecodeDeclareReq(body []byte) (DeclareReq, error) {
	d := Decoder{B: body}
	r := DeclareReq{Kind: kind(&d), Name: d.String(), Settings: d.Bytes()}
	if d.Err == nil && len(r.Settings) > MaxSettings {
		d.Err = fmt.Errorf("%w: settings of %d bytes, limit %d", ErrMalformed, len(r.Settings), MaxSettings)
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
