package wal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestNoSpaceVoidsAndRecovers: a write that fails with ENOSPC fails its
// records cleanly (the publish-like ones are voided, never written later),
// later Enqueues are refused at once, kept records (bookkeeping) are held
// and written once space returns, and the log recovers by itself.
func TestNoSpaceVoidsAndRecovers(t *testing.T) {
	for _, policy := range []string{"batch", "always", "never"} {
		t.Run(policy, func(t *testing.T) {
			var full atomic.Bool
			dir := t.TempDir()
			opts := Options{Sync: mustPolicy(t, policy), RetryInterval: 5 * time.Millisecond, WriteHook: func(path string, off int64, n int) error {
				if full.Load() {
					return fmt.Errorf("injected: %w", syscall.ENOSPC)
				}
				return nil
			}}
			l := openT(t, dir, opts)
			ctx := context.Background()
			appendN(t, l, 1, 3)
			full.Store(true)
			if _, err := l.Append(ctx, payload(4)); !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append on a full disk: %v, want ErrNoSpace wrapping ENOSPC", err)
			}
			if _, err := l.Enqueue(payload(5)); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("enqueue while full: %v, want ErrNoSpace at once", err)
			}
			k, err := l.EnqueueKept([]byte("kept"))
			if err != nil {
				t.Fatalf("kept record while full: %v", err)
			}
			if err := l.Wait(ctx, k); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("wait for a held record while full: %v, want ErrNoSpace", err)
			}
			if l.Err() != nil {
				t.Fatalf("a full disk made the log fail for good: %v", l.Err())
			}
			full.Store(false)
			deadline := time.Now().Add(5 * time.Second)
			for l.Wait(ctx, k) != nil {
				if time.Now().After(deadline) {
					t.Fatal("held record not written within 5s after space returned")
				}
				time.Sleep(time.Millisecond)
			}
			s, err := l.Append(ctx, payload(6))
			if err != nil {
				t.Fatalf("append after space returned: %v", err)
			}
			if err := l.Wait(ctx, 4); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("wait for the voided record: %v, want ErrNoSpace", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, Options{})
			defer l.Close()
			var got []string
			if err := l.Scan(0, func(r Record) error { got = append(got, fmt.Sprintf("%d:%s", r.Seq, r.Payload)); return nil }); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("[1:%s 2:%s 3:%s %d:kept %d:%s]", payload(1), payload(2), payload(3), k, s, payload(6))
			if fmt.Sprint(got) != want {
				t.Fatalf("after reopen %v, want %s", got, want)
			}
			if _, err := l.Read(4); !errors.Is(err, ErrNotFound) {
				t.Fatalf("read of the voided record: %v, want ErrNotFound", err)
			}
			if fi, _ := os.Stat(lastSegPath(t, dir)); fi.Size() == 0 {
				t.Fatal("empty segment")
			}
		})
	}
}
