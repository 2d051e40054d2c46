// Package h2meta reads HTTP/2 frames with golang.org/x/net/http2's Framer
// and decodes each header block (HEADERS and its CONTINUATIONs) as the
// Framer does with ReadMetaHeaders, with the same checks and errors, but
// into storage reused from one block to the next: the Framer allocates a
// MetaHeadersFrame, its HeadersFrame, its field slice (grown field by
// field) and the decoder's callback state for every header block, about
// eight allocations per block, three blocks per proxied gRPC call on each
// hop.
//
// The MetaHeadersFrame ReadFrame returns, and its Fields, are valid until
// the next ReadFrame (as the Framer's reused DATA frames): the field
// strings themselves are the decoder's and may be kept. Its HeadersFrame
// has no header block fragment (HeaderBlockFragment panics): the block is
// decoded already.
package h2meta

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// maxKeptFields bounds the field slice kept between header blocks: a
// block of many fields does not keep its storage for the connection's life.
const maxKeptFields = 64

// maxKeptBuf bounds the HEADERS payload buffer kept between frames (a
// gRPC call's blocks are a few hundred bytes; a client sending one
// frame of 16 KiB on each of many connections kept 16 KiB each).
const maxKeptBuf = 4 << 10

// Reader reads frames from a Framer whose ReadMetaHeaders is nil.
type Reader struct {
	fr  *http2.Framer
	br  *bufio.Reader // the Framer's reader
	dec *hpack.Decoder
	max uint32 // the Framer's MaxHeaderListSize, or its default

	mh  http2.MetaHeadersFrame
	hf  http2.HeadersFrame
	buf []byte // a HEADERS frame's payload

	// The block being decoded (emit's state).
	headersRemain, trailersRemain uint32
	sawRegular                    bool
	invalid                       error
}

// NewReader reads frames from fr, which reads from br; header blocks are
// decoded with dec, their size bounded by fr.MaxHeaderListSize (0: 16
// MiB, as the Framer). fr.ReadMetaHeaders must be nil.
func NewReader(fr *http2.Framer, br *bufio.Reader, dec *hpack.Decoder) *Reader {
	r := &Reader{fr: fr, br: br, dec: dec, max: fr.MaxHeaderListSize}
	if r.max == 0 {
		r.max = 16 << 20
	}
	r.mh.HeadersFrame = &r.hf
	dec.SetEmitFunc(r.emit)
	return r
}

// ReadFrame returns the next frame; a header block is returned as one
// *http2.MetaHeadersFrame, as by a Framer with ReadMetaHeaders.
func (r *Reader) ReadFrame() (http2.Frame, error) {
	fh, err := r.fr.ReadFrameHeader()
	if err != nil {
		return nil, err
	}
	if fh.Type != http2.FrameHeaders {
		return r.fr.ReadFrameForHeader(fh)
	}
	var p []byte
	if int(fh.Length) <= cap(r.buf) {
		p = r.buf[:fh.Length]
	} else if fh.Length <= maxKeptBuf {
		r.buf = make([]byte, fh.Length)
		p = r.buf
	} else {
		// Not kept: one large block would keep its size for the
		// connection's life (beside the Framer's own buffer).
		p = make([]byte, fh.Length)
	}
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, err
	}
	// As the Framer's parseHeadersFrame.
	if fh.StreamID == 0 {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	r.hf = http2.HeadersFrame{FrameHeader: fh}
	var padLength uint8
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		padLength, p = p[0], p[1:]
	}
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, io.ErrUnexpectedEOF
		}
		v := uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
		r.hf.Priority.StreamDep = v & 0x7fffffff
		r.hf.Priority.Exclusive = v != r.hf.Priority.StreamDep
		r.hf.Priority.Weight = p[4]
		p = p[5:]
	}
	if len(p)-int(padLength) < 0 {
		return nil, http2.StreamError{StreamID: fh.StreamID, Code: http2.ErrCodeProtocol}
	}
	return r.readMeta(p[:len(p)-int(padLength)], fh.Flags.Has(http2.FlagHeadersEndHeaders))
}

// readMeta decodes the block that begins with frag, reading its
// CONTINUATIONs, as the Framer's readMetaFrame.
func (r *Reader) readMeta(frag []byte, ended bool) (http2.Frame, error) {
	mh := &r.mh
	if cap(mh.Fields) > maxKeptFields {
		mh.Fields = nil
	}
	mh.Fields = mh.Fields[:0]
	mh.Truncated = false
	r.headersRemain, r.trailersRemain = r.max, r.max
	r.sawRegular = false
	r.invalid = nil
	r.dec.SetEmitEnabled(true)
	r.dec.SetMaxStringLength(int(r.max))
	for {
		// Too much beyond the limit, or anything after an invalid
		// field: the connection closes (as the Framer).
		if int64(len(frag)) > 2*int64(r.headersRemain+r.trailersRemain) || r.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := r.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		f, err := r.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf := f.(*http2.ContinuationFrame) // the Framer checks the order
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := r.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if r.invalid != nil {
		return nil, http2.StreamError{StreamID: r.hf.StreamID, Code: http2.ErrCodeProtocol, Cause: r.invalid}
	}
	if err := checkPseudos(mh.PseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: r.hf.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return mh, nil
}

var (
	errMixPseudoHeaderTypes = errors.New("mix of request and response pseudo headers")
	errPseudoAfterRegular   = errors.New("pseudo header field after regular")
)

// emit is the decoder's callback, as the Framer's.
func (r *Reader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// The value is not in the error: it may be sensitive.
		r.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if r.sawRegular {
			r.invalid = errPseudoAfterRegular
		}
	} else {
		r.sawRegular = true
		if !validWireHeaderFieldName(hf.Name) {
			r.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if r.invalid != nil {
		r.dec.SetEmitEnabled(false)
		return
	}
	remain := &r.headersRemain
	var size uint32
	if hf.Name == "trailer" {
		remain = &r.trailersRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	} else {
		size = hf.Size()
	}
	if size > *remain {
		r.dec.SetEmitEnabled(false)
		r.mh.Truncated = true
		r.headersRemain, r.trailersRemain = 0, 0
		return
	}
	*remain -= size
	r.mh.Fields = append(r.mh.Fields, hf)
}

func validWireHeaderFieldName(v string) bool {
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if !httpguts.IsTokenRune(c) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errMixPseudoHeaderTypes
	}
	return nil
}
