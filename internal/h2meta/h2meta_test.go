package h2meta

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// outcome is what reading one frame gave, comparable between readers.
type outcome struct {
	Type      http2.FrameType
	Flags     http2.Flags
	StreamID  uint32
	Length    uint32
	Priority  http2.PriorityParam
	Fields    []hpack.HeaderField
	Truncated bool
	Data      string
	Err       string
}

func describe(f http2.Frame, err error) outcome {
	if err != nil {
		return outcome{Err: fmt.Sprintf("%T %v", err, err)}
	}
	h := f.Header()
	o := outcome{Type: h.Type, Flags: h.Flags, StreamID: h.StreamID, Length: h.Length}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		o.Priority = f.Priority
		o.Fields = append([]hpack.HeaderField{}, f.Fields...)
		if len(o.Fields) == 0 {
			o.Fields = nil
		}
		o.Truncated = f.Truncated
	case *http2.DataFrame:
		o.Data = string(f.Data())
	}
	return o
}

// readAll reads frames until the first error, through the Framer with
// ReadMetaHeaders (reuse false) or through a Reader.
func readAll(in []byte, maxList uint32, reader bool) []outcome {
	br := bufio.NewReaderSize(bytes.NewReader(in), 4<<10)
	fr := http2.NewFramer(io.Discard, br)
	fr.SetMaxReadFrameSize(16384)
	fr.MaxHeaderListSize = maxList
	var read func() (http2.Frame, error)
	if reader {
		fr.SetReuseFrames()
		read = NewReader(fr, br, hpack.NewDecoder(4096, nil)).ReadFrame
	} else {
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		read = fr.ReadFrame
	}
	var out []outcome
	for len(out) < 100 {
		f, err := read()
		out = append(out, describe(f, err))
		if err != nil {
			if _, ok := err.(http2.StreamError); ok {
				continue // the Framer goes on after a stream error
			}
			break
		}
	}
	return out
}

func compare(t *testing.T, in []byte, maxList uint32) {
	t.Helper()
	want := readAll(in, maxList, false)
	got := readAll(in, maxList, true)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %x (max list %d):\nframer: %+v\nreader: %+v", in, maxList, want, got)
	}
}

// frames builds a frame stream.
type frames struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func newFrames() *frames {
	f := &frames{}
	f.fr = http2.NewFramer(&f.buf, nil)
	f.fr.AllowIllegalWrites = true
	f.enc = hpack.NewEncoder(&f.hbuf)
	return f
}

func (f *frames) block(fields ...string) []byte {
	f.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = f.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), f.hbuf.Bytes()...)
}

func TestMatchesFramer(t *testing.T) {
	req := []string{":method", "POST", ":scheme", "http", ":path", "/bench.Echo/Unary", ":authority", "a",
		"content-type", "application/grpc", "te", "trailers", "grpc-timeout", "1S"}
	cases := map[string]func(f *frames){
		"request": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(req...), EndHeaders: true})
			f.fr.WriteData(1, true, []byte("hello"))
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(req...), EndHeaders: true, EndStream: true})
		},
		"response and trailers": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
			f.fr.WriteData(1, false, []byte("x"))
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block("grpc-status", "0", "grpc-message", ""), EndHeaders: true, EndStream: true})
		},
		"continuations": func(f *frames) {
			b := f.block(req...)
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:3]})
			f.fr.WriteContinuation(1, false, b[3:7])
			f.fr.WriteContinuation(1, true, b[7:])
		},
		"padding and priority": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(req...), EndHeaders: true, PadLength: 7,
				Priority: http2.PriorityParam{StreamDep: 3, Exclusive: true, Weight: 9}})
		},
		"pseudo after regular": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block("a", "b", ":path", "/"), EndHeaders: true})
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(req...), EndHeaders: true})
		},
		"upper case name": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":path", "/", "Foo", "b"), EndHeaders: true})
		},
		"bad value": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":path", "/", "foo", "a\x00b"), EndHeaders: true})
		},
		"invalid then continuation": func(f *frames) {
			b := f.block("Bad", "x", "c", "d")
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:len(b)-2]})
			f.fr.WriteContinuation(1, true, b[len(b)-2:])
		},
		"duplicate and mixed pseudo": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":path", "/", ":path", "/x"), EndHeaders: true})
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(":path", "/", ":status", "200"), EndHeaders: true})
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: f.block(":foo", "/"), EndHeaders: true})
		},
		"truncated": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(req...), EndHeaders: true})
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(":path", "/", "trailer", "a, b, c", "x", strings.Repeat("y", 200)), EndHeaders: true})
		},
		"bad compression": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		},
		"stream zero": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 0, BlockFragment: f.block(req...), EndHeaders: true})
		},
		"stray continuation": func(f *frames) {
			f.fr.WriteContinuation(1, true, f.block(req...))
		},
		"interleaved": func(f *frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(req...)})
			f.fr.WriteData(1, true, []byte("x"))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFrames()
			build(f)
			for _, max := range []uint32{0, 100, 1 << 20} {
				compare(t, f.buf.Bytes(), max)
			}
		})
	}
	// Padding that does not fit, a priority field cut short.
	for _, raw := range [][]byte{
		{0, 0, 1, 1, 0x8 | 0x4, 0, 0, 0, 1, 9},
		{0, 0, 0, 1, 0x8 | 0x4, 0, 0, 0, 1},
		{0, 0, 3, 1, 0x20 | 0x4, 0, 0, 0, 1, 0, 0, 0},
	} {
		compare(t, raw, 0)
	}
}

// FuzzMatchesFramer: any byte stream reads the same through a Reader as
// through a Framer with ReadMetaHeaders.
func FuzzMatchesFramer(f *testing.F) {
	fs := newFrames()
	fs.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: fs.block(":method", "GET", ":path", "/", "a", "b"), EndHeaders: true, PadLength: 2})
	b := fs.block(":status", "200", "trailer", "x, y", "c", "d")
	fs.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:2]})
	fs.fr.WriteContinuation(3, true, b[2:])
	fs.fr.WriteData(3, true, []byte("z"))
	f.Add(fs.buf.Bytes(), uint16(0))
	f.Add(fs.buf.Bytes(), uint16(40))
	f.Fuzz(func(t *testing.T, in []byte, maxList uint16) {
		compare(t, in, uint32(maxList))
	})
}

var benchBlock = func() []byte {
	f := newFrames()
	_ = f.block(":method", "POST", ":scheme", "http", ":path", "/bench.Echo/Unary", ":authority", "127.0.0.1:1",
		"content-type", "application/grpc", "user-agent", "grpc-go/1.70.0", "te", "trailers", "grpc-timeout", "1S")
	// The fields are in the encoder's table now: the stream repeats the
	// second, indexed encoding, as a connection does after its first call.
	b := f.block(":method", "POST", ":scheme", "http", ":path", "/bench.Echo/Unary", ":authority", "127.0.0.1:1",
		"content-type", "application/grpc", "user-agent", "grpc-go/1.70.0", "te", "trailers", "grpc-timeout", "1S")
	f.buf.Reset()
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndHeaders: true})
	return f.buf.Bytes()
}()

// loop is a reader that gives the same bytes for ever.
type loop struct {
	b   []byte
	off int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// BenchmarkReadHeaders reads a gRPC request's HEADERS frame (fields
// indexed) through the Framer with ReadMetaHeaders and through a Reader.
func BenchmarkReadHeaders(b *testing.B) {
	// The decoder's table must hold the fields the block indexes: it
	// reads the first block once, then the indexed one for ever.
	f := newFrames()
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: f.block(":method", "POST", ":scheme", "http", ":path", "/bench.Echo/Unary", ":authority", "127.0.0.1:1",
		"content-type", "application/grpc", "user-agent", "grpc-go/1.70.0", "te", "trailers", "grpc-timeout", "1S")})
	first := f.buf.Bytes()
	for _, reader := range []bool{false, true} {
		name := "framer"
		if reader {
			name = "reader"
		}
		b.Run(name, func(b *testing.B) {
			br := bufio.NewReader(io.MultiReader(bytes.NewReader(first), &loop{b: benchBlock}))
			fr := http2.NewFramer(io.Discard, br)
			read := fr.ReadFrame
			if reader {
				read = NewReader(fr, br, hpack.NewDecoder(4096, nil)).ReadFrame
			} else {
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			}
			if _, err := read(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				f, err := read()
				if err != nil || len(f.(*http2.MetaHeadersFrame).Fields) != 8 {
					b.Fatal(f, err)
				}
			}
		})
	}
}

// A large HEADERS frame's payload buffer is not kept for the connection's
// life; a small one is (no allocation per block).
func TestLargeBlockBufferNotKept(t *testing.T) {
	f := newFrames()
	big := strings.Repeat("v", 12<<10)
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":method", "GET", ":scheme", "http", ":path", "/", "x", big), EndHeaders: true})
	f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(":method", "GET", ":scheme", "http", ":path", "/"), EndHeaders: true})
	br := bufio.NewReader(bytes.NewReader(f.buf.Bytes()))
	fr := http2.NewFramer(io.Discard, br)
	fr.SetMaxReadFrameSize(16384)
	r := NewReader(fr, br, hpack.NewDecoder(4096, nil))
	for i := 0; i < 2; i++ {
		mf, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && mf.(*http2.MetaHeadersFrame).PseudoValue("path") != "/" {
			t.Fatal(mf)
		}
		if cap(r.buf) > maxKeptBuf {
			t.Fatalf("after frame %d the reader keeps %d bytes", i, cap(r.buf))
		}
	}
	if cap(r.buf) == 0 {
		t.Fatal("a small block's buffer is not kept")
	}
}
