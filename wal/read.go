package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

// segView is a snapshot of a segment taken under the lock, so that reads
// can proceed without it.
type segView struct {
	s    *segment
	pos  int64  // where to start reading
	at   uint64 // sequence at pos
	size int64  // readable bytes
	last uint64
}

// viewsFrom returns snapshots of the segments holding from and later.
func (l *Log) viewsFrom(from uint64) []segView {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].last >= from })
	var vs []segView
	for ; i < len(l.segs); i++ {
		s := l.segs[i]
		if s.last < s.base {
			continue
		}
		v := segView{s: s, at: s.base, size: s.size, last: s.last}
		if from > s.base {
			v.pos, v.at = s.locateLocked(from)
		}
		vs = append(vs, v)
	}
	return vs
}

// Scan calls fn for every record with sequence >= from that is readable
// (written to the OS) when the scan reaches it, in order. If from is older
// than the first record, the scan starts at the first record. The payload
// is valid only during the call. fn may return ErrStop to end the scan.
func (l *Log) Scan(from uint64, fn func(Record) error) error {
	var buf []byte
	for _, v := range l.viewsFrom(from) {
		r := bufio.NewReaderSize(io.NewSectionReader(v.s.f, v.pos, v.size-v.pos), 256<<10)
		var hb [headerSize]byte
		for pos := v.pos; pos < v.size; {
			if _, err := io.ReadFull(r, hb[:]); err != nil {
				return l.readErr(v.s, pos, err)
			}
			h := decodeHeader(hb[:])
			if int64(h.length) > int64(l.opts.MaxRecordBytes) || pos+headerSize+int64(h.length) > v.size {
				return fmt.Errorf("reading %q at offset %d: %w: bad length %d", v.s.path, pos, errCorrupt, h.length)
			}
			if cap(buf) < int(h.length) {
				buf = make([]byte, h.length)
			}
			buf = buf[:h.length]
			if _, err := io.ReadFull(r, buf); err != nil {
				return l.readErr(v.s, pos, err)
			}
			if !checkRecord(hb[:], buf) {
				return fmt.Errorf("reading %q at offset %d: %w: checksum mismatch", v.s.path, pos, errCorrupt)
			}
			pos += headerSize + int64(h.length)
			if h.seq < from || h.length == 0 { // before from, or a void record
				continue
			}
			if err := fn(Record{Seq: h.seq, Time: h.ts, Payload: buf}); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

func (l *Log) readErr(s *segment, pos int64, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("reading %q at offset %d: %w (segment deleted by retention)", s.path, pos, ErrNotFound)
	}
	return fmt.Errorf("reading %q at offset %d: %w", s.path, pos, err)
}

// Read returns the record with sequence seq; its payload is a fresh copy.
func (l *Log) Read(seq uint64) (Record, error) {
	var out Record
	found := false
	err := l.Scan(seq, func(r Record) error {
		if r.Seq == seq {
			out = Record{Seq: r.Seq, Time: r.Time, Payload: append([]byte(nil), r.Payload...)}
			found = true
		}
		return ErrStop
	})
	if err != nil {
		return Record{}, err
	}
	if !found {
		return Record{}, fmt.Errorf("reading sequence %d: %w", seq, ErrNotFound)
	}
	return out, nil
}

// SeqAtTime returns the sequence of the first record whose timestamp is at
// or after t, or LastSeq()+1 if there is none.
func (l *Log) SeqAtTime(t time.Time) (uint64, error) {
	ts := t.UnixNano()
	l.mu.Lock()
	i := sort.Search(len(l.segs), func(i int) bool {
		s := l.segs[i]
		return s.last >= s.base && s.lastTS >= ts
	})
	if i == len(l.segs) {
		next := l.written + 1
		l.mu.Unlock()
		return next, nil
	}
	s := l.segs[i]
	_, at := s.locateTimeLocked(ts)
	l.mu.Unlock()
	var found uint64
	err := l.Scan(at, func(r Record) error {
		if r.Time >= ts {
			found = r.Seq
			return ErrStop
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if found == 0 {
		return l.LastSeq() + 1, nil
	}
	return found, nil
}

// DeleteBefore deletes whole sealed segments all of whose records have a
// sequence below seq. The active segment is never deleted. It returns the
// number of segments deleted.
func (l *Log) DeleteBefore(seq uint64) (int, error) {
	l.mu.Lock()
	n := 0
	for n < len(l.segs)-1 && l.segs[n].last < seq {
		n++
	}
	return l.removeFirstLocked(n)
}

// applyRetention deletes sealed segments that are older than MaxAge or that
// make the log larger than MaxBytes, oldest first.
func (l *Log) applyRetention() {
	now := l.opts.Now().UnixNano()
	l.mu.Lock()
	maxAge, maxBytes := l.maxAge, l.maxBytes
	if maxAge <= 0 && maxBytes <= 0 {
		l.mu.Unlock()
		return
	}
	n := 0
	total := l.total
	for n < len(l.segs)-1 {
		s := l.segs[n]
		old := maxAge > 0 && now-s.lastTS > int64(maxAge)
		big := maxBytes > 0 && total > maxBytes
		if !old && !big {
			break
		}
		total -= s.size
		n++
	}
	if _, err := l.removeFirstLocked(n); err != nil {
		l.mu.Lock()
		l.retentionErr = err
		l.mu.Unlock()
	}
}

// ApplyRetention runs age and size retention now.
func (l *Log) ApplyRetention() { l.applyRetention() }

// SetRetention replaces Options.MaxAge and Options.MaxBytes (zero: no
// limit) and applies them at once.
func (l *Log) SetRetention(maxAge time.Duration, maxBytes int64) error {
	if maxAge < 0 || maxBytes < 0 {
		return fmt.Errorf("wal retention: max_age %s and max_bytes %d must not be negative", maxAge, maxBytes)
	}
	l.mu.Lock()
	l.maxAge, l.maxBytes = maxAge, maxBytes
	l.mu.Unlock()
	l.applyRetention()
	return nil
}

// removeFirstLocked removes the first n segments from the list, unlocks,
// and deletes their files.
func (l *Log) removeFirstLocked(n int) (int, error) {
	if n == 0 {
		l.mu.Unlock()
		return 0, nil
	}
	gone := append([]*segment(nil), l.segs[:n]...)
	l.segs = append(l.segs[:0:0], l.segs[n:]...)
	for _, s := range gone {
		l.total -= s.size
	}
	l.mu.Unlock()
	var errs []error
	for _, s := range gone {
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			errs = append(errs, fmt.Errorf("deleting segment: %w", err))
		}
	}
	if err := SyncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}
