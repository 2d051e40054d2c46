package httpx

import (
	"crypto/rand"
	"encoding/hex"
)

// ValidRequestID reports whether a client-sent X-Request-Id may be kept:
// 1 to 128 visible ASCII characters.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// NewRequestID returns a random 32-hex-digit request id.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var out [32]byte // hex.EncodeToString made a slice and then the string
	hex.Encode(out[:], b[:])
	return string(out[:])
}

// ChildTraceparent continues a W3C trace context: the trace id and flags
// of a valid incoming traceparent are kept and a new span id becomes the
// parent; otherwise a new sampled trace starts.
func ChildTraceparent(in string) string {
	// version(2) - trace-id(32) - parent-id(16) - flags(2)
	var out [55]byte
	var rnd [24]byte // 16 bytes of trace id (when new) + 8 of span id
	_, _ = rand.Read(rnd[:])
	copy(out[:3], "00-")
	out[35], out[52] = '-', '-'
	hex.Encode(out[36:52], rnd[16:])
	if len(in) == 55 && in[2] == '-' && in[35] == '-' && in[52] == '-' && in[:2] != "ff" &&
		isHex(in[:2]) && isHex(in[3:35]) && isHex(in[36:52]) && isHex(in[53:]) &&
		in[3:35] != "00000000000000000000000000000000" &&
		in[36:52] != "0000000000000000" {
		copy(out[3:35], in[3:35])
		copy(out[53:], in[53:])
	} else {
		hex.Encode(out[3:35], rnd[:16])
		copy(out[53:], "01")
	}
	return string(out[:])
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
