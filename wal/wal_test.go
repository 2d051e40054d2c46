package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testclock"
)

var policies = []string{"always", "batch", "interval:5ms", "never"}

func mustPolicy(t testing.TB, s string) SyncPolicy {
	t.Helper()
	p, err := ParseSyncPolicy(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openT(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf("record-%06d-%s", i, bytes.Repeat([]byte{'x'}, i%50)))
}

func appendN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		seq, err := l.Append(ctx, payload(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if seq != uint64(i) {
			t.Fatalf("append %d: got seq %d", i, seq)
		}
	}
}

func checkAll(t testing.TB, l *Log, first, last int) {
	t.Helper()
	want := first
	err := l.Scan(0, func(r Record) error {
		if r.Seq != uint64(want) || !bytes.Equal(r.Payload, payload(want)) {
			return fmt.Errorf("record %d: got seq %d payload %q", want, r.Seq, r.Payload)
		}
		want++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want != last+1 {
		t.Fatalf("scan ended at %d, want %d", want-1, last)
	}
}

func TestRoundTripEveryPolicy(t *testing.T) {
	for _, pol := range policies {
		for _, seg := range []int64{0, 300} {
			t.Run(fmt.Sprintf("%s/seg=%d", pol, seg), func(t *testing.T) {
				dir := t.TempDir()
				o := Options{Sync: mustPolicy(t, pol), SegmentBytes: seg, IndexInterval: 64}
				l := openT(t, dir, o)
				appendN(t, l, 1, 40)
				if got := l.DurableSeq(); got != 40 {
					t.Fatalf("durable %d, want 40", got)
				}
				checkAll(t, l, 1, 40)
				for _, i := range []int{1, 17, 40} {
					r, err := l.Read(uint64(i))
					if err != nil || !bytes.Equal(r.Payload, payload(i)) {
						t.Fatalf("read %d: %v %q", i, err, r.Payload)
					}
				}
				if _, err := l.Read(41); !errors.Is(err, ErrNotFound) {
					t.Fatalf("read 41: %v, want ErrNotFound", err)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = openT(t, dir, o)
				defer l.Close()
				if rec := l.Recovery(); rec.TruncatedBytes != 0 || rec.LastSeq != 40 {
					t.Fatalf("recovery %+v", rec)
				}
				appendN(t, l, 41, 5)
				checkAll(t, l, 1, 45)
			})
		}
	}
}

func TestRotationAndIndex(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 512, IndexInterval: 100})
	defer l.Close()
	appendN(t, l, 1, 200)
	bases, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) < 10 {
		t.Fatalf("got %d segments, want many", len(bases))
	}
	for _, b := range bases {
		st, _ := os.Stat(filepath.Join(dir, segName(b)))
		if st.Size() > 512 {
			t.Fatalf("segment %d is %d bytes, limit 512", b, st.Size())
		}
	}
	for i := 1; i <= 200; i += 7 {
		r, err := l.Read(uint64(i))
		if err != nil || !bytes.Equal(r.Payload, payload(i)) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	// A record bigger than a segment still goes in, alone.
	big := bytes.Repeat([]byte("b"), 2000)
	seq, err := l.Append(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Read(seq)
	if err != nil || !bytes.Equal(r.Payload, big) {
		t.Fatalf("read big: %v", err)
	}
}

func TestSeqAtTime(t *testing.T) {
	clk := testclock.At(time.Unix(1000, 0))
	l := openT(t, t.TempDir(), Options{SegmentBytes: 400, IndexInterval: 50, Now: clk.Now})
	defer l.Close()
	for i := 1; i <= 100; i++ {
		appendN(t, l, i, 1)
		clk.Advance(time.Second)
	}
	for _, c := range []struct {
		at   time.Time
		want uint64
	}{
		{time.Unix(0, 0), 1},
		{time.Unix(1000, 0), 1},
		{time.Unix(1000, 1), 2},
		{time.Unix(1050, 0), 51},
		{time.Unix(1099, 0), 100},
		{time.Unix(2000, 0), 101},
	} {
		got, err := l.SeqAtTime(c.at)
		if err != nil || got != c.want {
			t.Errorf("SeqAtTime(%v) = %d, %v; want %d", c.at.Unix(), got, err, c.want)
		}
	}
}

func TestRetention(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, Options{SegmentBytes: 500, MaxBytes: 2000})
		defer l.Close()
		appendN(t, l, 1, 300)
		l.ApplyRetention()
		if l.Size() > 2000+500 {
			t.Fatalf("size %d after retention, limit 2000", l.Size())
		}
		first := int(l.FirstSeq())
		if first <= 1 {
			t.Fatalf("first seq %d, want segments deleted", first)
		}
		checkAll(t, l, first, 300)
	})
	t.Run("age", func(t *testing.T) {
		clk := testclock.At(time.Unix(1000, 0))
		dir := t.TempDir()
		o := Options{SegmentBytes: 500, MaxAge: time.Hour, Now: clk.Now}
		l := openT(t, dir, o)
		appendN(t, l, 1, 50)
		clk.Advance(2 * time.Hour)
		appendN(t, l, 51, 50)
		l.ApplyRetention()
		first := int(l.FirstSeq())
		if first <= 1 || first > 51 {
			t.Fatalf("first seq %d, want old segments gone and new kept", first)
		}
		checkAll(t, l, first, 100)
		l.Close()
		l = openT(t, dir, o)
		defer l.Close()
		checkAll(t, l, first, 100)
	})
	t.Run("delete-before", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: 500})
		defer l.Close()
		appendN(t, l, 1, 100)
		n, err := l.DeleteBefore(60)
		if err != nil || n == 0 {
			t.Fatalf("DeleteBefore: %d %v", n, err)
		}
		first := int(l.FirstSeq())
		if first > 60 {
			t.Fatalf("first %d > 60: deleted a live record", first)
		}
		checkAll(t, l, first, 100)
		if _, err := l.Read(1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("read deleted: %v", err)
		}
	})
}

// lastSegPath returns the newest segment file.
func lastSegPath(t *testing.T, dir string) string {
	bases, err := listSegments(dir)
	if err != nil || len(bases) == 0 {
		t.Fatal(err)
	}
	return filepath.Join(dir, segName(bases[len(bases)-1]))
}

func TestTornTail(t *testing.T) {
	for _, cut := range []int{1, 10, headerSize, headerSize + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{})
			appendN(t, l, 1, 20)
			l.Close()
			p := lastSegPath(t, dir)
			st, _ := os.Stat(p)
			lastLen := int64(headerSize + len(payload(20)))
			if err := os.Truncate(p, st.Size()-int64(cut)); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, Options{})
			defer l.Close()
			rec := l.Recovery()
			if rec.LastSeq != 19 || rec.TruncatedBytes != lastLen-int64(cut) || rec.Reason == "" {
				t.Fatalf("recovery %+v", rec)
			}
			checkAll(t, l, 1, 19)
			appendN(t, l, 20, 3)
			checkAll(t, l, 1, 22)
		})
	}
	t.Run("garbage-after", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, Options{})
		appendN(t, l, 1, 5)
		l.Close()
		f, _ := os.OpenFile(lastSegPath(t, dir), os.O_APPEND|os.O_WRONLY, 0)
		f.Write(bytes.Repeat([]byte{0xff}, 100))
		f.Close()
		l = openT(t, dir, Options{})
		defer l.Close()
		if rec := l.Recovery(); rec.TruncatedBytes != 100 || rec.LastSeq != 5 {
			t.Fatalf("recovery %+v", rec)
		}
	})
}

func TestBitFlips(t *testing.T) {
	fields := []struct {
		name string
		off  int
	}{{"length", 1}, {"sequence", 5}, {"timestamp", 13}, {"checksum", 21}, {"payload", headerSize + 2}}
	for _, f := range fields {
		t.Run("tail/"+f.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{})
			appendN(t, l, 1, 10)
			l.Close()
			p := lastSegPath(t, dir)
			data, _ := os.ReadFile(p)
			// Offset of record 10, the last: damage there is a torn tail.
			off := 0
			for i := 1; i < 10; i++ {
				off += headerSize + len(payload(i))
			}
			data[off+f.off] ^= 0x10
			os.WriteFile(p, data, 0o644)
			l = openT(t, dir, Options{})
			defer l.Close()
			rec := l.Recovery()
			if rec.LastSeq != 9 || rec.TruncatedAt != int64(off) {
				t.Fatalf("recovery %+v, want cut at record 10 offset %d", rec, off)
			}
			checkAll(t, l, 1, 9)
		})
		t.Run("active-middle/"+f.name, func(t *testing.T) {
			// Damage with intact records after it is not a torn write:
			// Open refuses instead of cutting the records off.
			dir := t.TempDir()
			l := openT(t, dir, Options{})
			appendN(t, l, 1, 10)
			l.Close()
			p := lastSegPath(t, dir)
			data, _ := os.ReadFile(p)
			off := 0
			for i := 1; i < 8; i++ {
				off += headerSize + len(payload(i))
			}
			data[off+f.off] ^= 0x10
			os.WriteFile(p, data, 0o644)
			_, err := Open(dir, Options{})
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != p || ce.Offset != int64(off) || ce.Seq != 8 {
				t.Fatalf("open: %v, want CorruptError for %s at %d", err, p, off)
			}
			if st, _ := os.Stat(p); st.Size() != int64(len(data)) {
				t.Fatalf("the damaged segment was changed: %d bytes, had %d", st.Size(), len(data))
			}
		})
		t.Run("sealed/"+f.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{SegmentBytes: 300})
			appendN(t, l, 1, 30)
			l.Close()
			bases, _ := listSegments(dir)
			if len(bases) < 3 {
				t.Fatalf("want >= 3 segments, got %d", len(bases))
			}
			p := filepath.Join(dir, segName(bases[1]))
			data, _ := os.ReadFile(p)
			data[f.off] ^= 0x10
			os.WriteFile(p, data, 0o644)
			_, err := Open(dir, Options{SegmentBytes: 300})
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != p || ce.Offset != 0 || ce.Seq != bases[1] {
				t.Fatalf("open: %v, want CorruptError for %s at 0", err, p)
			}
		})
	}
	t.Run("missing-middle-segment", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, Options{SegmentBytes: 300})
		appendN(t, l, 1, 30)
		l.Close()
		bases, _ := listSegments(dir)
		os.Remove(filepath.Join(dir, segName(bases[1])))
		var ce *CorruptError
		if _, err := Open(dir, Options{}); !errors.As(err, &ce) {
			t.Fatalf("open: %v, want CorruptError", err)
		}
	})
}

func TestConcurrentGroupCommit(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentBytes: 16 << 10})
	defer l.Close()
	const workers, each = 16, 100
	var wg sync.WaitGroup
	seqs := make([][]uint64, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				seq, err := l.Append(context.Background(), []byte(fmt.Sprintf("w%d-%d", w, i)))
				if err != nil {
					t.Error(err)
					return
				}
				if l.DurableSeq() < seq {
					t.Errorf("append %d returned before durable (%d)", seq, l.DurableSeq())
				}
				seqs[w] = append(seqs[w], seq)
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, s := range seqs {
		for _, q := range s {
			if seen[q] {
				t.Fatalf("duplicate seq %d", q)
			}
			seen[q] = true
		}
	}
	if len(seen) != workers*each || l.LastSeq() != workers*each {
		t.Fatalf("got %d records, last %d", len(seen), l.LastSeq())
	}
	if s := l.Syncs(); s >= workers*each {
		t.Fatalf("%d fsyncs for %d appends: no group commit", s, workers*each)
	} else {
		t.Logf("%d appends shared %d fsyncs", workers*each, s)
	}
}

func TestAlwaysSyncsEachRecord(t *testing.T) {
	l := openT(t, t.TempDir(), Options{Sync: SyncPolicy{Mode: SyncAlways}})
	defer l.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); appendAny(t, l, 10) }()
	}
	wg.Wait()
	if s := l.Syncs(); s < 40 {
		t.Fatalf("%d fsyncs for 40 appends under always", s)
	}
}

func appendAny(t testing.TB, l *Log, n int) {
	for range n {
		if _, err := l.Append(context.Background(), []byte("x")); err != nil {
			t.Error(err)
		}
	}
}

func TestIntervalAndNeverDoNotSyncPerAppend(t *testing.T) {
	for _, pol := range []string{"never", "interval:1h"} {
		t.Run(pol, func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: mustPolicy(t, pol)})
			appendAny(t, l, 50)
			if s := l.Syncs(); s != 0 {
				t.Fatalf("%d fsyncs under %s", s, pol)
			}
			if err := l.Sync(context.Background()); err != nil || l.Syncs() != 1 {
				t.Fatalf("Sync: %v, syncs %d", err, l.Syncs())
			}
			l.Close()
		})
	}
	t.Run("interval-ticks", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{Sync: mustPolicy(t, "interval:10ms")})
		defer l.Close()
		appendAny(t, l, 5)
		deadline := time.Now().Add(2 * time.Second)
		for l.Syncs() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if l.Syncs() == 0 {
			t.Fatal("interval policy never synced")
		}
	})
}

func TestStickyWriteError(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	appendAny(t, l, 1)
	l.mu.Lock()
	l.segs[len(l.segs)-1].f.Close() // make the next write fail
	l.mu.Unlock()
	_, err1 := l.Append(context.Background(), []byte("a"))
	if err1 == nil {
		t.Fatal("append after file closed: want error")
	}
	_, err2 := l.Append(context.Background(), []byte("b"))
	if err2 == nil || err2.Error() != err1.Error() {
		t.Fatalf("second append: %v, want sticky %v", err2, err1)
	}
	if l.Err() == nil {
		t.Fatal("Err() is nil")
	}
	l.Close()
}

func TestLimitsAndErrors(t *testing.T) {
	l := openT(t, t.TempDir(), Options{MaxRecordBytes: 10})
	if _, err := l.Append(context.Background(), make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	l.Close()
	if _, err := l.Append(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if err := (Options{SegmentBytes: -1, MaxAge: -1, Sync: SyncPolicy{Mode: SyncInterval}}).Validate(); err == nil {
		t.Fatal("Validate accepted bad options")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l2 := openT(t, t.TempDir(), Options{})
	defer l2.Close()
	seq, err := l2.Append(ctx, []byte("x"))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	if err := l2.Wait(context.Background(), seq); err != nil {
		t.Fatalf("record of cancelled append not written: %v", err)
	}
}

func TestParseSyncPolicy(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		bad  bool
	}{
		{"", "batch", false}, {"batch", "batch", false}, {"always", "always", false}, {"never", "never", false},
		{"interval:100ms", "interval:100ms", false}, {"interval:0s", "", true}, {"interval:x", "", true}, {"sometimes", "", true},
	} {
		p, err := ParseSyncPolicy(c.in)
		if (err != nil) != c.bad || (!c.bad && p.String() != c.want) {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", c.in, p, err)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []string{"one", "two"} {
		if err := WriteFileAtomic(dir, "m.json", []byte(s)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "m.json"))
		if string(b) != s {
			t.Fatalf("got %q", b)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, 1, 2, []byte("hello")))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := DecodeRecord(b, 1<<20)
		if err != nil {
			return
		}
		if n > len(b) || n != headerSize+len(r.Payload) {
			t.Fatalf("bad size %d", n)
		}
		again := appendRecord(nil, r.Seq, r.Time, r.Payload)
		if !bytes.Equal(again, b[:n]) {
			t.Fatal("re-encoding differs")
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, pol := range []string{"batch", "interval:100ms", "never", "always"} {
		for _, size := range []int{128, 1024} {
			b.Run(fmt.Sprintf("%s/%dB", pol, size), func(b *testing.B) {
				l := openT(b, b.TempDir(), Options{Sync: mustPolicy(b, pol)})
				defer l.Close()
				p := make([]byte, size)
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.SetParallelism(16)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := l.Append(ctx, p); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
