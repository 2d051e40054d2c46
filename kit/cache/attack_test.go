package cache_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/cache"
)

// TestNegativeEntriesCountTheirKey: a negative entry ("not found") was
// accounted at EntryOverhead whatever its key's length, so lookups of
// absent, attacker-chosen long keys (GET /users/<64 KiB of junk>) cached
// thousands of times MaxBytes in keys. Every entry counts its key.
func TestNegativeEntriesCountTheirKey(t *testing.T) {
	c, err := cache.New(cache.Options[[]byte]{MaxBytes: 1 << 20, NegativeTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	notFound := func(ctx context.Context, key string) ([]byte, error) { return nil, cache.ErrNotFound }
	junk := strings.Repeat("x", 64<<10)
	for i := range 200 { // 200 × 64 KiB = 12.5 MiB of keys
		key := junk + string(rune('a'+i%26)) + strings.Repeat("y", i)
		if _, err := c.GetOrLoad(context.Background(), key, notFound); err != cache.ErrNotFound {
			t.Fatal(err)
		}
		c.SetNotFound(key + "!")
	}
	if st := c.Stats(); st.Bytes > 1<<20 || st.Entries > 32 {
		t.Fatalf("cache holds %d entries, %d bytes accounted, of 64 KiB keys under a 1 MiB bound", st.Entries, st.Bytes)
	}
}

// TestStuckLoaderDoesNotHoldItsKey: a load runs without its callers'
// deadlines (one caller giving up must not fail the others), so a
// Loader stuck on a dead connection, honouring its context or not, held
// the key's one load for good: every later read of the key joined it
// and waited until its own deadline, long after the store was back. A
// load is abandoned after LoadTimeout; the next read loads again.
func TestStuckLoaderDoesNotHoldItsKey(t *testing.T) {
	for _, honours := range []bool{true, false} {
		c, err := cache.New(cache.Options[[]byte]{LoadTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		stuck := func(ctx context.Context, key string) ([]byte, error) {
			if honours {
				select {
				case <-ctx.Done():
					return nil, context.Cause(ctx)
				case <-release:
				}
			} else {
				<-release
			}
			return []byte("late"), nil
		}
		// The first reader gives up after 10ms; the stuck load goes on.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		if _, err := c.GetOrLoad(ctx, "k", stuck); err == nil {
			t.Fatal("a read over a stuck load returned no error")
		}
		cancel()
		// The stuck load times out (LoadTimeout).
		for deadline := time.Now().Add(20 * time.Second); c.Stats().LoadErrors == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("loader honours its context %v: the stuck load never timed out", honours)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The store is back: a later read gets the value (before, it
		// joined the stuck load and waited until its own deadline).
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
		v, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, key string) ([]byte, error) { return []byte("ok"), nil })
		cancel()
		if err != nil || string(v) != "ok" {
			t.Fatalf("loader honours its context %v: read after the stuck load: %q, %v", honours, v, err)
		}
		close(release) // the abandoned load ends; its value is not installed
		c.Close()
		if v, err := c.Get("k"); string(v) != "ok" || err != nil {
			t.Fatalf("after the abandoned load ended: %q, %v", v, err)
		}
	}
	// A waiter of the abandoned load hears why.
	c, _ := cache.New(cache.Options[[]byte]{LoadTimeout: 20 * time.Millisecond})
	defer c.Close()
	_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) ([]byte, error) {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	if !errors.Is(err, cache.ErrLoadTimeout) {
		t.Fatalf("a waiter of a load that timed out: %v", err)
	}
}
