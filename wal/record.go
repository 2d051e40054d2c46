package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk record format (all integers little endian):
//
//	offset  size  field
//	0       4     length     uint32, number of payload bytes (N)
//	4       8     sequence   uint64, record sequence number, 1-based, dense
//	12      8     timestamp  int64, append time in Unix nanoseconds, non-decreasing
//	20      4     checksum   uint32, CRC-32C (Castagnoli) of bytes [0,20) and the payload
//	24      N     payload    opaque bytes
//
// A record is therefore 24+N bytes. Records are packed back to back in a
// segment file with no padding; a segment file is named after the sequence of
// its first record (%020d.seg). The checksum covers the length, sequence and
// timestamp as well as the payload, so a flipped bit anywhere in a record is
// detected. A length larger than Options.MaxRecordBytes is treated as
// corruption without reading further.
//
// A record with length 0 is a void record: the log writes one in place of
// a record whose write failed because the disk was full, so that sequences
// stay dense while the failed record never appears. Appending an empty
// payload is refused, and Scan and Read skip void records.
const headerSize = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one entry read back from the log. Payload aliases a buffer owned
// by the caller of the read function only for the duration of a callback
// unless documented otherwise.
type Record struct {
	Seq     uint64
	Time    int64 // Unix nanoseconds
	Payload []byte
}

// errCorrupt is wrapped by every decoding failure.
var errCorrupt = errors.New("corrupt record")

// appendRecord encodes a record at the end of dst and returns the new slice.
func appendRecord(dst []byte, seq uint64, ts int64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	h := dst[start : start+headerSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[4:12], seq)
	binary.LittleEndian.PutUint64(h[12:20], uint64(ts))
	dst = append(dst, payload...)
	crc := crc32.Update(0, castagnoli, h[0:20])
	crc = crc32.Update(crc, castagnoli, dst[start+headerSize:])
	binary.LittleEndian.PutUint32(dst[start+20:start+24], crc)
	return dst
}

// header is a decoded record header.
type header struct {
	length uint32
	seq    uint64
	ts     int64
	crc    uint32
}

func decodeHeader(b []byte) header {
	return header{
		length: binary.LittleEndian.Uint32(b[0:4]),
		seq:    binary.LittleEndian.Uint64(b[4:12]),
		ts:     int64(binary.LittleEndian.Uint64(b[12:20])),
		crc:    binary.LittleEndian.Uint32(b[20:24]),
	}
}

// checkRecord verifies the checksum of a record whose header is hb and whose
// payload is p.
func checkRecord(hb []byte, p []byte) bool {
	crc := crc32.Update(0, castagnoli, hb[0:20])
	crc = crc32.Update(crc, castagnoli, p)
	return crc == binary.LittleEndian.Uint32(hb[20:24])
}

// DecodeRecord decodes one record at the start of b. It returns the record
// (payload aliasing b) and its encoded size. maxPayload bounds the length
// field. It never panics on arbitrary input.
func DecodeRecord(b []byte, maxPayload int) (Record, int, error) {
	if len(b) < headerSize {
		return Record{}, 0, fmt.Errorf("%w: short header (%d bytes)", errCorrupt, len(b))
	}
	h := decodeHeader(b)
	if int64(h.length) > int64(maxPayload) {
		return Record{}, 0, fmt.Errorf("%w: length %d exceeds limit %d", errCorrupt, h.length, maxPayload)
	}
	end := headerSize + int(h.length)
	if len(b) < end {
		return Record{}, 0, fmt.Errorf("%w: short payload (%d of %d bytes)", errCorrupt, len(b)-headerSize, h.length)
	}
	if !checkRecord(b[:headerSize], b[headerSize:end]) {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	return Record{Seq: h.seq, Time: h.ts, Payload: b[headerSize:end]}, end, nil
}
