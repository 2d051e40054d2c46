package wal

import (
	"context"
	"testing"
	"time"
)

func waitDurable(t *testing.T, l *Log, seq uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for l.DurableSeq() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("record %d not durable after %s (durable: %d)", seq, within, l.DurableSeq())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLazyRecordIsWrittenAfterLazyDelay(t *testing.T) {
	l := openT(t, t.TempDir(), Options{LazyDelay: 10 * time.Millisecond})
	defer l.Close()
	seq, err := l.EnqueueLazy(payload(1))
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, l, seq, 5*time.Second)
	checkAll(t, l, 1, 1)
}

func TestLazyRecordGoesWithTheNextWrite(t *testing.T) {
	// LazyDelay is far away: only another write or a Wait can flush it.
	l := openT(t, t.TempDir(), Options{LazyDelay: time.Hour})
	defer l.Close()
	lazy, err := l.EnqueueLazy(payload(1))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 2, 1)
	if d := l.DurableSeq(); d < lazy {
		t.Fatalf("durable %d after the next append, want the lazy record %d too", d, lazy)
	}
	// A Wait on a lazy record starts the write itself.
	lazy, err = l.EnqueueLazy(payload(3))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Wait(ctx, lazy); err != nil {
		t.Fatalf("wait for a lazy record: %v", err)
	}
	checkAll(t, l, 1, 3)
}
