package wal

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var pre = Options{Preallocate: 4 << 20}

// recordBytes returns how many bytes the records of segment file p occupy,
// decoding them from the start until the first thing that is not a record.
func recordBytes(t *testing.T, p string) int64 {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for len(data) > 0 {
		_, k, err := DecodeRecord(data, 1<<20)
		if err != nil {
			break
		}
		n += int64(k)
		data = data[k:]
	}
	return n
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// crashImage copies the segment files of a log that is still open into a
// new directory: what a crash right now would leave on disk (every Append
// has returned, so its records are written to the OS).
func crashImage(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return to
}

// openPrealloc opens a log with 20 records whose active segment is
// preallocated, skipping the test where the file system cannot.
func openPrealloc(t *testing.T, o Options) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	l := openT(t, dir, o)
	appendN(t, l, 1, 20)
	probe, err := os.Create(filepath.Join(t.TempDir(), "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if err := fallocate(probe, 0, 4096); errors.Is(err, errors.ErrUnsupported) {
		l.Close()
		t.Skip("this file system cannot preallocate (fallocate unsupported)")
	}
	p := lastSegPath(t, dir)
	if fileSize(t, p) == recordBytes(t, p) {
		t.Fatal("the active segment was not preallocated although fallocate works here")
	}
	return l, dir
}

func TestPreallocatedTailIsTheEndOfTheLog(t *testing.T) {
	l, dir := openPrealloc(t, pre)
	p := lastSegPath(t, dir)
	data := recordBytes(t, p)
	if got := fileSize(t, p); got != 4<<20 {
		t.Errorf("active segment is %d bytes, want the 4 MiB preallocation", got)
	}
	img := crashImage(t, dir)
	l.Close()

	l2 := openT(t, img, pre)
	if rec := l2.Recovery(); rec.LastSeq != 20 || rec.TruncatedBytes != 0 || rec.Reason != "" {
		t.Fatalf("recovery %+v: zeros after the last record are not damage", rec)
	}
	checkAll(t, l2, 1, 20)
	appendN(t, l2, 21, 10)
	checkAll(t, l2, 1, 30)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	ip := lastSegPath(t, img)
	if got, want := fileSize(t, ip), recordBytes(t, ip); got != want || want <= data {
		t.Fatalf("after Close the segment is %d bytes, its records %d (before: %d): the tail was not cut", got, want, data)
	}
	l3 := openT(t, img, pre)
	defer l3.Close()
	checkAll(t, l3, 1, 30)
}

func TestTornRecordInPreallocatedSpace(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int64 // offset after the last record
		junk []byte
	}{
		{"partial-header", 0, []byte{0x10, 0, 0, 0, 0x15, 0, 0, 0, 0, 0}},
		{"zeros-then-data", 1000, []byte{0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := openPrealloc(t, pre)
			img := crashImage(t, dir)
			l.Close()
			p := lastSegPath(t, img)
			end := recordBytes(t, p)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(tc.junk, end+tc.at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			size := fileSize(t, p)

			l2 := openT(t, img, pre)
			rec := l2.Recovery()
			if rec.LastSeq != 20 || rec.TruncatedAt != end || rec.TruncatedBytes != size-end || rec.Reason == "" {
				t.Fatalf("recovery %+v, want the tail cut at %d (%d bytes)", rec, end, size-end)
			}
			checkAll(t, l2, 1, 20)
			appendN(t, l2, 21, 5)
			checkAll(t, l2, 1, 25)
			l2.Close()
			l3 := openT(t, img, pre)
			defer l3.Close()
			checkAll(t, l3, 1, 25)
		})
	}
}

func TestSealedSegmentWithPreallocatedTail(t *testing.T) {
	o := Options{SegmentBytes: 600, Preallocate: 4 << 20}
	dir := t.TempDir()
	l := openT(t, dir, o)
	appendN(t, l, 1, 40)
	bases, _ := listSegments(dir)
	if len(bases) < 3 {
		t.Fatalf("want >= 3 segments, got %d", len(bases))
	}
	for _, b := range bases[:len(bases)-1] {
		p := filepath.Join(dir, segName(b))
		if got, want := fileSize(t, p), recordBytes(t, p); got != want {
			t.Fatalf("sealed segment %d is %d bytes, its records %d", b, got, want)
		}
	}
	l.Close()
	// A crash between sealing and cutting the tail leaves zeros in a
	// segment that is not the last.
	p := filepath.Join(dir, segName(bases[1]))
	want := recordBytes(t, p)
	if err := os.Truncate(p, want+5000); err != nil {
		t.Fatal(err)
	}
	l2 := openT(t, dir, o)
	defer l2.Close()
	if rec := l2.Recovery(); rec.TruncatedBytes != 0 {
		t.Fatalf("recovery %+v", rec)
	}
	checkAll(t, l2, 1, 40)
	if got := fileSize(t, p); got != want {
		t.Fatalf("sealed segment still %d bytes, want its records' %d", got, want)
	}
	// Anything but zeros there is still corruption.
	l2.Close()
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(append(make([]byte, 100), 1))
	f.Close()
	var ce *CorruptError
	if _, err := Open(dir, o); !errors.As(err, &ce) || ce.Path != p || ce.Offset != want {
		t.Fatalf("open: %v, want CorruptError for %s at %d", err, p, want)
	}
}

func TestPreallocateDisabled(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{}) // off by default
	defer l.Close()
	appendN(t, l, 1, 20)
	p := lastSegPath(t, dir)
	if got, want := fileSize(t, p), recordBytes(t, p); got != want {
		t.Fatalf("segment is %d bytes with preallocation off, its records %d", got, want)
	}
}

// FuzzOpen feeds arbitrary bytes to Open as the only segment file: it must
// open (cutting a bad tail, reading zeros as the end) or fail cleanly, and
// an opened log must read back and take new records.
func FuzzOpen(f *testing.F) {
	var seg []byte
	for i := 1; i <= 3; i++ {
		seg = appendRecord(seg, uint64(i), int64(i), payload(i))
	}
	f.Add(seg)
	f.Add(append(append([]byte(nil), seg...), make([]byte, 100)...))
	f.Add(append(append(append([]byte(nil), seg...), make([]byte, 50)...), 7))
	f.Add(seg[:len(seg)-5])
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		o := pre
		o.Sync = SyncPolicy{Mode: SyncNever} // the disk is not the point here
		l, err := Open(dir, o)
		if err != nil {
			return
		}
		defer l.Close()
		rec := l.Recovery()
		n := uint64(0)
		if err := l.Scan(0, func(r Record) error { n++; return nil }); err != nil {
			t.Fatalf("scan after open: %v", err)
		}
		if n != rec.LastSeq {
			t.Fatalf("scanned %d records, recovery says the last is %d", n, rec.LastSeq)
		}
		seq, err := l.Append(context.Background(), []byte("next"))
		if err != nil || seq != rec.LastSeq+1 {
			t.Fatalf("append after open: seq %d, %v; want %d", seq, err, rec.LastSeq+1)
		}
		r, err := l.Read(seq)
		if err != nil || string(r.Payload) != "next" {
			t.Fatalf("read back %d: %q, %v", seq, r.Payload, err)
		}
	})
}
