package cache_test

import (
	"context"
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
