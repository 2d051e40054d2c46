package wal

import (
	"sync"
	"testing"
	"time"
)

// fsyncRecorder is an Options.OnFsync that remembers every call.
type fsyncRecorder struct {
	mu      sync.Mutex
	records []int
	total   time.Duration
}

func (r *fsyncRecorder) observe(d time.Duration, records int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, records)
	r.total += d
}

func (r *fsyncRecorder) snapshot() ([]int, int, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := 0
	for _, n := range r.records {
		sum += n
	}
	return append([]int(nil), r.records...), sum, r.total
}

func TestOnFsyncReportsBatchSizes(t *testing.T) {
	const workers, each = 8, 25
	cases := []struct {
		name   string
		policy string
		seg    int64 // segment size; small ones make rotations fsync mid-batch
		single bool  // every fsync covers exactly one record
	}{
		{"batch", "batch", 0, false},
		{"batch-rotating", "batch", 256, false},
		{"always", "always", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fsyncRecorder{}
			l := openT(t, t.TempDir(), Options{Sync: mustPolicy(t, tc.policy), SegmentBytes: tc.seg, OnFsync: rec.observe})
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() { defer wg.Done(); appendAny(t, l, each) }()
			}
			wg.Wait()
			calls, sum, total := rec.snapshot()
			if uint64(len(calls)) != l.Syncs() {
				t.Fatalf("OnFsync called %d times for %d fsyncs", len(calls), l.Syncs())
			}
			if sum != workers*each {
				t.Fatalf("fsyncs covered %d records in all, want %d (calls %v)", sum, workers*each, calls)
			}
			if total <= 0 {
				t.Fatalf("fsync durations sum to %s", total)
			}
			for i, n := range calls {
				if tc.single && n != 1 {
					t.Fatalf("fsync %d covered %d records under always", i, n)
				}
			}
			if !tc.single && len(calls) >= workers*each {
				t.Fatalf("%d fsyncs for %d appends: no group commit", len(calls), workers*each)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			calls, _, _ = rec.snapshot()
			if last := calls[len(calls)-1]; last != 0 {
				t.Fatalf("close fsync of an idle log covered %d records, want 0", last)
			}
		})
	}
}

func TestOnFsyncIntervalCountsWrittenRecords(t *testing.T) {
	rec := &fsyncRecorder{}
	l := openT(t, t.TempDir(), Options{Sync: mustPolicy(t, "interval:1h"), OnFsync: rec.observe})
	appendAny(t, l, 7)
	if calls, _, _ := rec.snapshot(); len(calls) != 0 {
		t.Fatalf("fsyncs before Sync: %v", calls)
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls, _, _ := rec.snapshot(); len(calls) != 1 || calls[0] != 7 {
		t.Fatalf("Sync after 7 appends: OnFsync calls %v, want [7]", calls)
	}
	l.Close()
}
