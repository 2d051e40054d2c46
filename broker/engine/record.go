package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Log record payloads (inside wal records, which add length, sequence,
// timestamp and checksum). The first byte is the operation; integers are
// unsigned varints unless noted, strings are a varint length and bytes.
//
//	publish  op=1 queue-id, from-queue-id (0 if none), from-seq,
//	         available-at (int64 LE, Unix ns, 0 = now),
//	         expires-at (int64 LE, Unix ns, 0 = never), published-at (int64 LE),
//	         msg-id, key, header count, (name, value)..., body (the rest)
//	         A publish with a from-queue-id is a move (dead-lettering or
//	         redrive): it also removes message from-seq from from-queue-id,
//	         atomically.
//	ack      op=2 queue-id, count, seq...   (ack, or drop)
//	deliver  op=3 queue-id, count, seq...   (delivery count +1 each)
//	nack     op=4 queue-id, available-at (int64 LE), count, seq...
//
// The message id inside a queue is the wal sequence of its publish record.
const (
	opPublish byte = 1
	opAck     byte = 2
	opDeliver byte = 3
	opNack    byte = 4
)

var errBadRecord = errors.New("malformed broker record")

// pubRecord is a decoded publish (or move) record.
type pubRecord struct {
	queue       uint32
	fromQueue   uint32
	fromSeq     uint64
	availableAt int64
	expiresAt   int64
	publishedAt int64
	msgID, key  string
	headers     map[string]string
	body        []byte
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendPublish(b []byte, r *pubRecord) []byte {
	b = append(b, opPublish)
	b = binary.AppendUvarint(b, uint64(r.queue))
	b = binary.AppendUvarint(b, uint64(r.fromQueue))
	b = binary.AppendUvarint(b, r.fromSeq)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.availableAt))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.expiresAt))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.publishedAt))
	b = appendString(b, r.msgID)
	b = appendString(b, r.key)
	b = binary.AppendUvarint(b, uint64(len(r.headers)))
	if len(r.headers) > 0 {
		keys := make([]string, 0, len(r.headers))
		for k := range r.headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b = appendString(b, k)
			b = appendString(b, r.headers[k])
		}
	}
	return append(b, r.body...)
}

// appendSeqs encodes an ack, deliver or nack record.
func appendSeqs(b []byte, op byte, queue uint32, availableAt int64, seqs []uint64) []byte {
	b = append(b, op)
	b = binary.AppendUvarint(b, uint64(queue))
	if op == opNack {
		b = binary.LittleEndian.AppendUint64(b, uint64(availableAt))
	}
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	for _, s := range seqs {
		b = binary.AppendUvarint(b, s)
	}
	return b
}

// decoder reads fields from a record, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", errBadRecord)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.err = fmt.Errorf("%w: queue id %d out of range", errBadRecord, v)
	}
	return uint32(v)
}

func (d *decoder) i64() int64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = fmt.Errorf("%w: short int64", errBadRecord)
		return 0
	}
	v := int64(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: string of %d bytes, %d left", errBadRecord, n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// decodePublish decodes a publish record (after the op byte). The body is
// copied.
func decodePublish(b []byte) (pubRecord, error) {
	d := decoder{b: b}
	var r pubRecord
	r.queue = d.u32()
	r.fromQueue = d.u32()
	r.fromSeq = d.uvarint()
	r.availableAt = d.i64()
	r.expiresAt = d.i64()
	r.publishedAt = d.i64()
	r.msgID = d.str()
	r.key = d.str()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %d headers in %d bytes", errBadRecord, n, len(d.b))
	}
	if d.err == nil && n > 0 {
		r.headers = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.str()
			r.headers[k] = d.str()
		}
	}
	if d.err != nil {
		return pubRecord{}, d.err
	}
	r.body = append([]byte(nil), d.b...)
	return r, nil
}

// decodeSeqs decodes an ack, deliver or nack record (after the op byte).
func decodeSeqs(op byte, b []byte) (queue uint32, availableAt int64, seqs []uint64, err error) {
	d := decoder{b: b}
	queue = d.u32()
	if op == opNack {
		availableAt = d.i64()
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %d sequences in %d bytes", errBadRecord, n, len(d.b))
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		seqs = append(seqs, d.uvarint())
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	return queue, availableAt, seqs, d.err
}
