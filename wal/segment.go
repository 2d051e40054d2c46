package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const segSuffix = ".seg"

// indexEntry is one sparse index point: the record with sequence seq and
// timestamp ts starts at byte pos of its segment.
type indexEntry struct {
	seq uint64
	ts  int64
	pos int64
}

// segment is one log file. base is immutable; f is written only by the
// flusher goroutine (with WriteAt at the end) and read by anyone with
// ReadAt. The remaining fields are guarded by Log.mu.
type segment struct {
	base uint64
	path string
	f    *os.File

	last      uint64 // last sequence present; base-1 when empty
	firstTS   int64
	lastTS    int64
	size      int64 // bytes of complete records readable
	index     []indexEntry
	nextIndex int64 // add an index entry for the first record at or after this offset

	alloc int64 // file size (data plus preallocated zeros); only the flusher uses it
}

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// listSegments returns the bases of the segment files in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", dir, err)
	}
	var bases []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || e.IsDir() {
			continue
		}
		b, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || b == 0 {
			return nil, fmt.Errorf("unexpected segment file name %q in %q", name, dir)
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// addIndexLocked records an index point for a record if due.
func (s *segment) addIndexLocked(seq uint64, ts int64, pos int64, interval int) {
	if pos >= s.nextIndex {
		s.index = append(s.index, indexEntry{seq: seq, ts: ts, pos: pos})
		s.nextIndex = pos + int64(interval)
	}
}

// addRecordLocked accounts for a record of n bytes written at pos.
func (s *segment) addRecordLocked(seq uint64, ts int64, pos, n int64, interval int) {
	s.addIndexLocked(seq, ts, pos, interval)
	if s.last < s.base {
		s.firstTS = ts
	}
	s.last = seq
	s.lastTS = ts
	s.size = pos + n
}

// scanResult is what a full scan of a segment file found.
type scanResult struct {
	bad      error // first problem found, nil if the whole file is valid
	badPos   int64 // offset of the first bad record
	fileLen  int64
	zeroTail bool // the file ends in preallocated zeros after s.size
}

// scan reads the whole segment file, verifying every record, and fills the
// segment's metadata for the valid prefix. An I/O error is returned; a
// corrupt record is reported in scanResult.bad.
func (s *segment) scan(maxRecord, interval int) (scanResult, error) {
	st, err := s.f.Stat()
	if err != nil {
		return scanResult{}, fmt.Errorf("stat %q: %w", s.path, err)
	}
	res := scanResult{fileLen: st.Size()}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, st.Size()), 1<<20)
	var (
		hb   [headerSize]byte
		buf  []byte
		pos  int64
		want = s.base
	)
	s.last = s.base - 1
	for pos < res.fileLen {
		if _, err := io.ReadFull(r, hb[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				res.bad, res.badPos = fmt.Errorf("%w: torn header (%d bytes left)", errCorrupt, res.fileLen-pos), pos
				return res, nil
			}
			return res, fmt.Errorf("reading %q: %w", s.path, err)
		}
		if hb == ([headerSize]byte{}) {
			// No record has sequence 0: this is preallocated space if
			// everything to the end of the file is zero too.
			zero, err := zerosToEnd(r)
			if err != nil {
				return res, fmt.Errorf("reading %q: %w", s.path, err)
			}
			if zero {
				res.zeroTail = true
				return res, nil
			}
		}
		h := decodeHeader(hb[:])
		if int64(h.length) > int64(maxRecord) {
			res.bad, res.badPos = fmt.Errorf("%w: length %d exceeds limit %d", errCorrupt, h.length, maxRecord), pos
			return res, nil
		}
		if pos+headerSize+int64(h.length) > res.fileLen {
			res.bad, res.badPos = fmt.Errorf("%w: torn record (length %d, %d bytes left)", errCorrupt, h.length, res.fileLen-pos-headerSize), pos
			return res, nil
		}
		if cap(buf) < int(h.length) {
			buf = make([]byte, h.length)
		}
		buf = buf[:h.length]
		if _, err := io.ReadFull(r, buf); err != nil {
			return res, fmt.Errorf("reading %q: %w", s.path, err)
		}
		if !checkRecord(hb[:], buf) {
			res.bad, res.badPos = fmt.Errorf("%w: checksum mismatch", errCorrupt), pos
			return res, nil
		}
		if h.seq != want {
			res.bad, res.badPos = fmt.Errorf("%w: sequence %d, want %d", errCorrupt, h.seq, want), pos
			return res, nil
		}
		n := int64(headerSize) + int64(h.length)
		s.addRecordLocked(h.seq, h.ts, pos, n, interval)
		pos += n
		want++
	}
	return res, nil
}

// zerosToEnd reports whether r holds only zero bytes until its end.
func zerosToEnd(r io.Reader) (bool, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// locate returns the offset of the last index entry at or before seq, and the
// sequence found there. Caller holds Log.mu.
func (s *segment) locateLocked(seq uint64) (int64, uint64) {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].seq > seq })
	if i == 0 {
		return 0, s.base
	}
	return s.index[i-1].pos, s.index[i-1].seq
}

// locateTimeLocked returns the offset of the last index entry whose
// timestamp is before ts (so that scanning from there finds the first record
// at or after ts).
func (s *segment) locateTimeLocked(ts int64) (int64, uint64) {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].ts >= ts })
	if i == 0 {
		return 0, s.base
	}
	return s.index[i-1].pos, s.index[i-1].seq
}

func openSegment(dir string, base uint64, create bool) (*segment, error) {
	p := filepath.Join(dir, segName(base))
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening segment %q: %w", p, err)
	}
	return &segment{base: base, path: p, f: f, last: base - 1}, nil
}

// CorruptError reports a corrupt record in a sealed segment, a corrupt
// record followed by intact ones in the last segment (not a torn write), or
// a gap between segments. Such damage is never repaired automatically (see
// Repair).
type CorruptError struct {
	Path   string // segment file
	Offset int64  // byte offset of the bad record
	Seq    uint64 // sequence expected at Offset
	Err    error  // what is wrong

	Active    bool   // in the last segment, with intact records after it
	IntactAt  int64  // offset of the first intact record after the damage (Active)
	IntactSeq uint64 // its sequence
}

func (e *CorruptError) Error() string {
	if e.Active {
		return fmt.Sprintf("corrupt segment %q at offset %d (expected sequence %d): %v; "+
			"an intact record (sequence %d) follows at offset %d, so this is not a torn write and cutting the tail would lose records: "+
			"the log is not opened; restore the file, or repair it to skip only the damaged bytes",
			e.Path, e.Offset, e.Seq, e.Err, e.IntactSeq, e.IntactAt)
	}
	return fmt.Sprintf("corrupt sealed segment %q at offset %d (expected sequence %d): %v; "+
		"records after it would be lost, so the log is not opened: restore the file, or repair it to skip only the damaged bytes",
		e.Path, e.Offset, e.Seq, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }
