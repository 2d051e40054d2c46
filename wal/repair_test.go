package wal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// offsetOf returns the offset of record n in a segment of payload(i)
// records starting at first.
func offsetOf(first, n int) int {
	off := 0
	for i := first; i < n; i++ {
		off += headerSize + len(payload(i))
	}
	return off
}

// TestRepairActiveSegment: one flipped byte in the middle of the active
// segment stops Open (200 records, record 75 damaged); Repair drops only
// that record, reports it, and the rest of the log is kept and writable.
func TestRepairActiveSegment(t *testing.T) {
	for _, field := range []struct {
		name string
		off  int
	}{{"length", 2}, {"payload", headerSize + 1}} {
		t.Run(field.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{})
			appendN(t, l, 1, 200)
			l.Close()
			p := lastSegPath(t, dir)
			data, _ := os.ReadFile(p)
			off := offsetOf(1, 75)
			data[off+field.off] ^= 0x40
			os.WriteFile(p, data, 0o644)
			_, err := Open(dir, Options{})
			var ce *CorruptError
			if !errors.As(err, &ce) || !ce.Active || ce.Seq != 75 || ce.IntactSeq != 76 || ce.IntactAt != int64(offsetOf(1, 76)) {
				t.Fatalf("open: %v, want a CorruptError naming record 75 and the intact record 76 after it", err)
			}
			dmg, err := Repair(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := Damage{Segment: p, Offset: int64(off), Bytes: int64(headerSize + len(payload(75))), Records: 1, FirstSeq: 75, LastSeq: 75}
			if len(dmg) != 1 || dmg[0] != want {
				t.Fatalf("repair reported %+v, want %+v", dmg, want)
			}
			if orig, _ := os.ReadFile(p + ".damaged"); !bytes.Equal(orig, data) {
				t.Fatal("the damaged original was not kept")
			}
			l = openT(t, dir, Options{})
			defer l.Close()
			if rec := l.Recovery(); rec.LastSeq != 200 || rec.TruncatedBytes != 0 {
				t.Fatalf("recovery after repair %+v", rec)
			}
			var seqs []uint64
			l.Scan(0, func(r Record) error {
				if !bytes.Equal(r.Payload, payload(int(r.Seq))) {
					t.Fatalf("record %d: payload %q", r.Seq, r.Payload)
				}
				seqs = append(seqs, r.Seq)
				return nil
			})
			if len(seqs) != 199 || seqs[73] != 74 || seqs[74] != 76 {
				t.Fatalf("after repair %d records, around the damage %v", len(seqs), seqs[72:76])
			}
			if _, err := l.Append(context.Background(), payload(201)); err != nil {
				t.Fatal(err)
			}
			if again, err := Repair(t.TempDir(), Options{}); err != nil || len(again) != 0 {
				t.Fatalf("repair of an empty log: %v %v", again, err)
			}
		})
	}
}

// TestRepairSealedAndTornTail: damage in a sealed segment is replaced by
// void records up to the next segment; a torn tail is cut and reported.
func TestRepairSealedAndTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 300})
	appendN(t, l, 1, 30)
	l.Close()
	bases, _ := listSegments(dir)
	sealed := filepath.Join(dir, segName(bases[1]))
	data, _ := os.ReadFile(sealed)
	data[len(data)-3] ^= 1 // the sealed segment's last record
	os.WriteFile(sealed, data, 0o644)
	last := lastSegPath(t, dir)
	f, _ := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("torn"))
	f.Close()
	dmg, err := Repair(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lost := bases[2] - 1
	if len(dmg) != 2 || dmg[0].Segment != sealed || dmg[0].Records != 1 || dmg[0].FirstSeq != lost ||
		dmg[1].Segment != last || !dmg[1].TornTail || dmg[1].Bytes != 4 {
		t.Fatalf("repair reported %v", dmg)
	}
	l = openT(t, dir, Options{SegmentBytes: 300})
	defer l.Close()
	n := 0
	l.Scan(0, func(r Record) error {
		if r.Seq == lost {
			t.Fatalf("lost record %d read back", lost)
		}
		n++
		return nil
	})
	if n != 29 {
		t.Fatalf("%d records after repair, want 29", n)
	}
}

// FuzzSegmentRecovery damages a log of 20 records in arbitrary ways (byte
// flips, a cut, appended bytes): Open never panics, and never returns a
// record that was not written, and whatever Open refuses, Repair turns
// into a log that opens with intact records only.
func FuzzSegmentRecovery(f *testing.F) {
	f.Add(uint16(100), byte(0x10), uint16(0), []byte(nil))
	f.Add(uint16(5), byte(0xff), uint16(30), []byte("junk"))
	f.Add(uint16(600), byte(1), uint16(0), []byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, at uint16, xor byte, cut uint16, tail []byte) {
		dir := t.TempDir()
		l, err := Open(dir, Options{Sync: SyncPolicy{Mode: SyncNever}})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 20; i++ {
			if _, err := l.Append(context.Background(), payload(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		p := lastSegPath(t, dir)
		data, _ := os.ReadFile(p)
		data[int(at)%len(data)] ^= xor
		data = data[:len(data)-int(cut)%len(data)]
		data = append(data, tail...)
		os.WriteFile(p, data, 0o644)
		check := func(l *Log) {
			l.Scan(0, func(r Record) error {
				if r.Seq < 1 || r.Seq > 20 || !bytes.Equal(r.Payload, payload(int(r.Seq))) {
					t.Fatalf("record %d read back as %q", r.Seq, r.Payload)
				}
				return nil
			})
			l.Close()
		}
		if l, err := Open(dir, Options{}); err == nil {
			check(l)
			return
		} else if !errors.As(err, new(*CorruptError)) {
			t.Fatalf("open: %v", err)
		}
		if _, err := Repair(dir, Options{}); err != nil {
			t.Fatal(err)
		}
		l, err = Open(dir, Options{})
		if err != nil {
			t.Fatalf("open after repair: %v", err)
		}
		check(l)
	})
}
