package wire

import (
	"errors"
	"testing"
	"time"
)

// A queue subscription's SubOK carries its visibility timeout; an empty
// body (a topic subscription's, an Unsub's, an older broker's) is 0.
func TestSubOK(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 30 * time.Second, 12 * time.Hour} {
		got, err := DecodeSubOK(AppendSubOK(nil, d))
		if err != nil || got != d {
			t.Errorf("%s: decoded %s, %v", d, got, err)
		}
	}
	// Sub-millisecond timeouts (the broker allows them) round up: 0
	// would read as "not said".
	for d, want := range map[time.Duration]time.Duration{500 * time.Microsecond: time.Millisecond, 1: time.Millisecond,
		1500 * time.Microsecond: 2 * time.Millisecond} {
		if got, err := DecodeSubOK(AppendSubOK(nil, d)); err != nil || got != want {
			t.Errorf("%s: decoded %s, %v; want %s", d, got, err, want)
		}
	}
	if got, err := DecodeSubOK(nil); got != 0 || err != nil {
		t.Errorf("empty body: %s, %v; want 0, nil", got, err)
	}
	if got, _ := DecodeSubOK(AppendSubOK(nil, -time.Second)); got != 0 {
		t.Errorf("negative visibility encoded as %s, want 0", got)
	}
	body := AppendSubOK(nil, 30*time.Second) // a multi-byte uvarint
	for _, bad := range [][]byte{
		body[:1],                              // truncated
		append(body[:len(body):len(body)], 0), // trailing byte
		AppendUvarint(nil, 1<<41),             // above the limit
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // overlong
	} {
		if _, err := DecodeSubOK(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzDecodeSubOK(f *testing.F) {
	f.Add(AppendSubOK(nil, 30*time.Second))
	f.Add([]byte{})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeSubOK(b)
		if err != nil {
			return
		}
		if d < 0 || d > time.Duration(1<<40)*time.Millisecond {
			t.Fatalf("%x decoded to %s", b, d)
		}
		if len(b) > 0 {
			if back, err := DecodeSubOK(AppendSubOK(nil, d)); err != nil || back != d {
				t.Fatalf("%x: %s does not round-trip: %s, %v", b, d, back, err)
			}
		}
	})
}
