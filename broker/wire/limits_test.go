package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/switchyard/switchyard/broker"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestReadFrameDoesNotAllocateClaimedLength checks that a header claiming
// a large frame costs memory only as the bytes arrive: a reader given the
// header and 10 bytes allocates far less than the claimed 64 MiB.
func TestReadFrameDoesNotAllocateClaimedLength(t *testing.T) {
	h := binary.BigEndian.AppendUint32(nil, MaxFrame)
	h = append(h, byte(Pub), 0, 0, 0, 1)
	in := append(h, make([]byte, 10)...)
	n := allocated(func() {
		r := NewReader(bytes.NewReader(in), 0)
		if _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated frame: %v, want unexpected EOF", err)
		}
	})
	if n > 1<<20 {
		t.Fatalf("reading a header claiming %d bytes followed by 10 allocated %d bytes", MaxFrame, n)
	}
}

// TestReadFrameGrowsToLength reads frames of many sizes a byte at a time:
// the growing buffer must deliver exactly the body sent, and the Admit
// hook sees every body length before any of the body is read.
func TestReadFrameGrowsToLength(t *testing.T) {
	var in []byte
	sizes := []int{0, 1, 100, 64 << 10, 64<<10 + 1, 300000}
	for i, n := range sizes {
		body := make([]byte, n)
		for j := range body {
			body[j] = byte(i + j)
		}
		in = AppendFrame(in, Type(i+1), uint32(i), body)
	}
	r := NewReader(iotest.HalfReader(bytes.NewReader(in)), 0)
	var admitted []int
	r.Admit = func(typ Type, id uint32, n int) error {
		admitted = append(admitted, n)
		return nil
	}
	for i, n := range sizes {
		f, err := r.ReadFrame()
		if err != nil || f.Type != Type(i+1) || f.ID != uint32(i) || len(f.Body) != n {
			t.Fatalf("frame %d: type %d id %d len %d, %v; want len %d", i, f.Type, f.ID, len(f.Body), err, n)
		}
		for j, c := range f.Body {
			if c != byte(i+j) {
				t.Fatalf("frame %d: byte %d is %d, want %d", i, j, c, byte(i+j))
			}
		}
		if len(admitted) != i+1 || admitted[i] != n {
			t.Fatalf("frame %d: admitted %v", i, admitted)
		}
	}
	// An Admit error ends the read before the body, with the frame's id.
	r = NewReader(bytes.NewReader(AppendFrame(nil, Pub, 42, make([]byte, 1000))), 0)
	no := errors.New("no")
	r.Admit = func(Type, uint32, int) error { return no }
	if f, err := r.ReadFrame(); !errors.Is(err, no) || f.ID != 42 || f.Type != Pub {
		t.Fatalf("refused frame: %+v %v", f, err)
	}
}

// TestOversizedFrameNamesItsID checks that a length above the limit is an
// ErrTooLarge error returned with the frame's type and id, so that a
// server can answer it before closing.
func TestOversizedFrameNamesItsID(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, 2000)
	b = append(b, byte(Pub), 0, 0, 0, 9)
	f, err := NewReader(bytes.NewReader(b), 1000).ReadFrame()
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrMalformed) || f.ID != 9 || f.Type != Pub {
		t.Fatalf("oversized: %+v %v", f, err)
	}
}

// TestDecodersDoNotPreallocateFromCounts feeds bodies whose counts claim
// far more entries than their bytes hold: decoding must allocate in
// proportion to the entries actually present.
func TestDecodersDoNotPreallocateFromCounts(t *testing.T) {
	// A message with 4M headers, all empty name and value (8 MiB of
	// zeros): one distinct header.
	const n = 4 << 20
	body := AppendString(nil, "q")
	body = append(body, 0)
	body = AppendUvarint(body, 1)             // one message
	body = append(body, 0, 0, 0, 0)           // id, key, delay, ttl
	body = AppendUvarint(body, n)             // header count
	body = append(body, make([]byte, 2*n)...) // n x (empty name, empty value)
	body = append(body, 0)                    // empty body
	var err error
	got := allocated(func() { _, err = DecodePubReq(body) })
	if err != nil {
		t.Fatal(err)
	}
	if got > 16<<20 {
		t.Fatalf("decoding %d empty headers (%d bytes) allocated %d bytes", n, len(body), got)
	}
	// A Pub claiming 10000 messages in 10000 bytes cannot hold them (a
	// message takes at least 6 bytes): rejected before allocating.
	body = AppendString(nil, "q")
	body = append(body, 0)
	body = AppendUvarint(body, 10000)
	body = append(body, make([]byte, 10000)...)
	got = allocated(func() { _, err = DecodePubReq(body) })
	if !errors.Is(err, ErrMalformed) || got > 64<<10 {
		t.Fatalf("10000 messages in 10000 bytes: %v, allocated %d bytes", err, got)
	}
	// A Msgs body claiming 10000 deliveries in 10000 bytes (at least 8
	// each) likewise.
	body = AppendUvarint(nil, 10000)
	body = append(body, make([]byte, 10000)...)
	got = allocated(func() { _, err = DecodeMsgs(body) })
	if !errors.Is(err, ErrMalformed) || got > 64<<10 {
		t.Fatalf("10000 deliveries in 10000 bytes: %v, allocated %d bytes", err, got)
	}
	_ = broker.Message{}
}

// FuzzReadFrameGrowing reads arbitrary input in small pieces and checks
// every frame against a plain parse of the same bytes: the growing buffer
// must deliver exactly the body, Admit must see its length first, and an
// oversized length must come back as ErrTooLarge with the frame's id.
func FuzzReadFrameGrowing(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, Ping, 1, nil), Pub, 2, make([]byte, 70000)), uint16(1000))
	f.Add([]byte{0, 0, 0x10, 0, 1, 0, 0, 0, 3, 1, 2, 3}, uint16(100))
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0, 3}, uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		max := int(limit) + 5
		r := NewReader(iotest.HalfReader(bytes.NewReader(in)), max)
		admitted := -1
		r.Admit = func(_ Type, _ uint32, n int) error { admitted = n; return nil }
		rest := in
		for {
			admitted = -1
			fr, err := r.ReadFrame()
			if len(rest) < headerLen {
				if err == nil {
					t.Fatalf("frame read from %d bytes", len(rest))
				}
				return
			}
			n := int(binary.BigEndian.Uint32(rest))
			id := binary.BigEndian.Uint32(rest[5:])
			if fr.ID != id || fr.Type != Type(rest[4]) {
				t.Fatalf("header: %+v, want type %d id %d (%v)", fr, rest[4], id, err)
			}
			switch {
			case n > max:
				if !errors.Is(err, ErrTooLarge) || admitted != -1 {
					t.Fatalf("length %d above %d: %v, admitted %d", n, max, err, admitted)
				}
				return
			case n < 5:
				if !errors.Is(err, ErrMalformed) || admitted != -1 {
					t.Fatalf("length %d: %v", n, err)
				}
				return
			case len(rest) < 4+n:
				if !errors.Is(err, io.ErrUnexpectedEOF) || admitted != n-5 {
					t.Fatalf("short frame: %v, admitted %d", err, admitted)
				}
				return
			}
			if err != nil || admitted != n-5 || !bytes.Equal(fr.Body, rest[headerLen:4+n]) {
				t.Fatalf("frame of %d: %v, admitted %d, body %d bytes", n, err, admitted, len(fr.Body))
			}
			rest = rest[4+n:]
		}
	})
}

// manyHeaders returns n distinct headers of 3-byte names and empty values
// (5 bytes each on the wire, about 100 bytes each once decoded).
func manyHeaders(n int) map[string]string {
	h := make(map[string]string, n)
	for i := range n {
		h[string([]byte{byte(i), byte(i >> 8), byte(i >> 16)})] = ""
	}
	return h
}

// TestRequestHeaderEntriesAreBounded: a publish or append frame holds at
// most MaxFrameHeaders header fields in all. Without the bound, a 47 MiB
// frame of 10 million tiny headers cost the broker about 500 MB and a
// minute of CPU to decode (four such frames: 2 GB), far beyond the
// memory budget that counts frame bytes.
func TestRequestHeaderEntriesAreBounded(t *testing.T) {
	over := AppendPubReq(nil, &PubReq{Queue: "q", Msgs: []broker.Message{
		{Body: []byte("a"), Headers: manyHeaders(MaxFrameHeaders / 2)},
		{Body: []byte("b"), Headers: manyHeaders(MaxFrameHeaders/2 + 1)},
	}})
	var err error
	n := allocated(func() { _, err = DecodePubReq(over) })
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("publish with %d headers: %v, want malformed", MaxFrameHeaders+1, err)
	}
	if n > 32<<20 { // what the fields before the bound cost
		t.Errorf("refusing %d headers allocated %d bytes", MaxFrameHeaders+1, n)
	}
	app := AppendAppendReq(nil, &AppendReq{Stream: "s", Msgs: []broker.Message{{Headers: manyHeaders(MaxFrameHeaders + 1)}}})
	if _, err := DecodeAppendReq(app); !errors.Is(err, ErrMalformed) {
		t.Errorf("append with %d headers: %v, want malformed", MaxFrameHeaders+1, err)
	}

	// At the bound, and spread over a full batch, it decodes.
	msgs := make([]broker.Message, 2)
	msgs[0].Headers, msgs[1].Headers = manyHeaders(MaxFrameHeaders/2), manyHeaders(MaxFrameHeaders/2)
	if r, err := DecodePubReq(AppendPubReq(nil, &PubReq{Queue: "q", Msgs: msgs})); err != nil || len(r.Msgs[1].Headers) != MaxFrameHeaders/2 {
		t.Errorf("publish with %d headers: %v", MaxFrameHeaders, err)
	}
	batch := make([]broker.Message, maxBatch)
	few := map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9", "j": "10"}
	for i := range batch {
		batch[i].Headers = few
	}
	if _, err := DecodeAppendReq(AppendAppendReq(nil, &AppendReq{Stream: "s", Msgs: batch})); err != nil {
		t.Errorf("append of %d messages with %d headers each: %v", maxBatch, len(few), err)
	}
}
