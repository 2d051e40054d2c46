package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// findNext looks in data, from offset from on, for the first intact record
// (checksum valid) with a sequence in [want, want+len(data)/headerSize]:
// one that a damaged record (expected sequence want) hides. A random match
// needs both a plausible sequence and a CRC-32C hit.
func findNext(data []byte, from int, want uint64, maxRecord int) (pos int, seq uint64, ok bool) {
	limit := want + uint64(len(data)/headerSize) + 1
	for p := from; p+headerSize <= len(data); p++ {
		s := binary.LittleEndian.Uint64(data[p+4 : p+12])
		if s < want || s > limit {
			continue
		}
		if _, _, err := DecodeRecord(data[p:], maxRecord); err == nil {
			return p, s, true
		}
	}
	return 0, 0, false
}

// intactAfter reports whether an intact record follows the damaged one at
// badPos in the segment file (expected sequence want): then the damage is
// corruption, not a torn write, and cutting the file there would drop
// intact records.
func (s *segment) intactAfter(badPos, fileLen int64, want uint64, maxRecord int) (int64, uint64, bool, error) {
	data := make([]byte, fileLen-badPos)
	if _, err := s.f.ReadAt(data, badPos); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, false, fmt.Errorf("reading %q: %w", s.path, err)
	}
	p, seq, ok := findNext(data, 1, want, maxRecord)
	return badPos + int64(p), seq, ok, nil
}

// Damage is one damaged stretch of a segment that Repair replaced.
type Damage struct {
	Segment  string // file
	Offset   int64  // where the damage starts
	Bytes    int64  // damaged bytes dropped
	Records  uint64 // records lost (0 for a torn tail, whose count is unknown)
	FirstSeq uint64 // the sequences lost, if Records > 0
	LastSeq  uint64
	TornTail bool // damage at the end of the last segment, nothing intact after it
}

func (d Damage) String() string {
	if d.TornTail {
		return fmt.Sprintf("%s: torn tail at offset %d: %d bytes cut", d.Segment, d.Offset, d.Bytes)
	}
	return fmt.Sprintf("%s: damage at offset %d: %d bytes, %d records lost (sequences %d-%d)",
		d.Segment, d.Offset, d.Bytes, d.Records, d.FirstSeq, d.LastSeq)
}

// Repair rewrites the damaged segments of the log in dir, which must not be
// open: every intact record is kept, each damaged stretch is replaced by
// void records for the sequences it held (so that the sequences stay
// dense), and a torn tail of the last segment is cut. The original of a
// rewritten segment is kept beside it as NAME.seg.damaged. It returns what
// was dropped; nothing if the log was intact. A gap between segments (a
// missing file) is not repaired.
func Repair(dir string, opts Options) ([]Damage, error) {
	opts = opts.withDefaults()
	bases, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	var all []Damage
	for i, base := range bases {
		p := filepath.Join(dir, segName(base))
		data, err := os.ReadFile(p)
		if err != nil {
			return all, fmt.Errorf("reading %q: %w", p, err)
		}
		last := i == len(bases)-1
		var next uint64 // the first sequence of the next segment
		if !last {
			next = bases[i+1]
		}
		out, dmg, changed := repairSegment(p, data, base, next, opts.MaxRecordBytes)
		if !changed {
			continue
		}
		all = append(all, dmg...)
		if err := os.WriteFile(p+".damaged", data, 0o644); err != nil {
			return all, fmt.Errorf("keeping the damaged original of %q: %w", p, err)
		}
		if err := WriteFileAtomic(dir, filepath.Base(p), out); err != nil {
			return all, fmt.Errorf("rewriting %q: %w", p, err)
		}
	}
	return all, nil
}

// repairSegment returns the repaired content of segment p (first sequence
// base; next is the next segment's first sequence, 0 for the last one).
func repairSegment(p string, data []byte, base, next uint64, maxRecord int) ([]byte, []Damage, bool) {
	var (
		out     []byte
		dmg     []Damage
		changed bool
		want    = base
		pos     = 0
		ts      int64 // of the last intact record: void records keep times ordered
	)
	for pos < len(data) {
		if r, n, err := DecodeRecord(data[pos:], maxRecord); err == nil && r.Seq == want {
			ts = r.Time
			out = append(out, data[pos:pos+n]...)
			pos += n
			want++
			continue
		}
		if allZero(data[pos:]) {
			changed = true // preallocated space: cut
			break
		}
		changed = true
		np, seq, ok := findNext(data, pos+1, want, maxRecord)
		if !ok {
			d := Damage{Segment: p, Offset: int64(pos), Bytes: int64(len(data) - pos)}
			if next == 0 {
				d.TornTail = true
			} else if next > want {
				d.Records, d.FirstSeq, d.LastSeq = next-want, want, next-1
				out = appendVoids(out, want, next-1, ts)
			}
			dmg = append(dmg, d)
			break
		}
		d := Damage{Segment: p, Offset: int64(pos), Bytes: int64(np - pos)}
		if seq > want {
			d.Records, d.FirstSeq, d.LastSeq = seq-want, want, seq-1
			out = appendVoids(out, want, seq-1, ts)
		}
		dmg = append(dmg, d)
		pos, want = np, seq
	}
	return out, dmg, changed
}

func appendVoids(b []byte, from, to uint64, ts int64) []byte {
	for s := from; s <= to; s++ {
		b = appendRecord(b, s, ts, nil)
	}
	return b
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
