package ratelimit

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newTestMemory(t testing.TB, maxKeys int) *Memory {
	t.Helper()
	m, err := NewMemory(MemoryConfig{MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMemoryContract(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return newTestMemory(t, 0) })
}

func TestMemoryConfig(t *testing.T) {
	if err := (MemoryConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if _, err := NewMemory(MemoryConfig{MaxKeys: -1}); err == nil {
		t.Error("MaxKeys -1 accepted")
	}
}

// TestMemoryBounded inserts 2M distinct keys into a store capped at 100k,
// while one heavily used key must stay limited throughout.
func TestMemoryBounded(t *testing.T) {
	const maxKeys = 100_000
	churn := 2_000_000
	if testing.Short() {
		churn = 300_000
	}
	m := newTestMemory(t, maxKeys)
	ctx := context.Background()
	hot := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 3}
	cold := Limit{Rate: Rate{N: 1, Per: time.Second}, Burst: 1} // state for 1s, so eviction must fall back to LRU
	now := t0
	for range 3 {
		if d, _ := m.Allow(ctx, "hot", hot, now); !d.Allowed {
			t.Fatal("hot key refused within its burst")
		}
	}
	key := make([]byte, 0, 16)
	for i := range churn {
		now = now.Add(time.Microsecond)
		key = strconv.AppendInt(append(key[:0], "client:"...), int64(i), 10)
		if d, _ := m.Allow(ctx, string(key), cold, now); !d.Allowed {
			t.Fatalf("new key %q refused", key)
		}
		if i%1000 == 0 {
			if d, _ := m.Allow(ctx, "hot", hot, now); d.Allowed {
				t.Fatalf("hot key allowed after %d inserts: its state was evicted", i)
			}
		}
	}
	if n := m.Len(); n > maxKeys {
		t.Errorf("holds %d keys, cap %d", n, maxKeys)
	}
	slots := 0
	for i := range m.shards {
		slots += len(m.shards[i].ents)
	}
	if slots > maxKeys {
		t.Errorf("allocated %d entry slots, cap %d", slots, maxKeys)
	}
	if n := m.Len(); n < maxKeys*9/10 {
		t.Errorf("holds only %d keys of cap %d: shards evict too eagerly", n, maxKeys)
	}
	d, _ := m.Allow(ctx, "hot", hot, now)
	if d.Allowed || d.RetryAfter < time.Hour-3*time.Second {
		t.Errorf("hot key after churn: %+v, want refused for about an hour", d)
	}
}

// TestMemoryEvictionOrder pins what eviction forgets: stateless keys first,
// then the least recently used.
func TestMemoryEvictionOrder(t *testing.T) {
	ctx := context.Background()
	quota := Limit{Kind: KindQuota, Rate: Rate{N: 5, Per: Day}}
	short := Limit{Rate: Rate{N: 10, Per: time.Second}, Burst: 1} // state for 100ms
	long := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 1}

	t.Run("stateless keys go first", func(t *testing.T) {
		m := newTestMemory(t, 10)
		m.Allow(ctx, "quota", quota, t0) // least recently used, but still counting
		for i := range 9 {
			m.Allow(ctx, "short"+strconv.Itoa(i), short, t0)
		}
		later := t0.Add(time.Second) // every short bucket is full again
		m.Allow(ctx, "new", long, later)
		if n := m.Len(); n != 2 {
			t.Errorf("Len %d after evicting the 9 stateless keys, want 2", n)
		}
		if d, _ := m.Allow(ctx, "quota", quota, later); d.Remaining != 3 {
			t.Errorf("quota key lost its count: %+v", d)
		}
	})
	t.Run("then least recently used", func(t *testing.T) {
		m := newTestMemory(t, 3)
		m.Allow(ctx, "a", long, t0)
		m.Allow(ctx, "b", long, t0)
		m.Allow(ctx, "c", long, t0)
		m.Allow(ctx, "a", long, t0) // a is now the most recently used; b the least
		m.Allow(ctx, "d", long, t0) // evicts b
		if d, _ := m.Allow(ctx, "a", long, t0); d.Allowed {
			t.Error("a was evicted instead of b")
		}
		// b was evicted: it starts over with a full bucket (the fairness cost).
		if d, _ := m.Allow(ctx, "b", long, t0); !d.Allowed {
			t.Error("evicted b kept its state")
		}
		if n := m.Len(); n != 3 {
			t.Errorf("Len %d, want 3", n)
		}
	})
	t.Run("key reused with another kind starts over", func(t *testing.T) {
		m := newTestMemory(t, 0)
		m.Allow(ctx, "k", long, t0)
		if d, _ := m.Allow(ctx, "k", quota, t0); !d.Allowed || d.Remaining != 4 {
			t.Errorf("quota on a rate key: %+v", d)
		}
	})
}

func TestMemoryAllowAllocs(t *testing.T) {
	m := newTestMemory(t, 0)
	ctx := context.Background()
	for _, lim := range []Limit{
		{Rate: Rate{N: 100, Per: time.Second}, Burst: 200},
		{Kind: KindQuota, Rate: Rate{N: 10000, Per: Day}},
	} {
		key := "client:" + lim.Kind.String()
		now := t0
		m.Allow(ctx, key, lim, now)
		allocs := testing.AllocsPerRun(1000, func() {
			now = now.Add(time.Millisecond)
			m.Allow(ctx, key, lim, now)
		})
		if allocs != 0 {
			t.Errorf("%v: Allow on an existing key allocates %v times", lim.Kind, allocs)
		}
	}
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "client:" + strconv.Itoa(i)
	}
	return keys
}

func BenchmarkMemoryAllow(b *testing.B) {
	ctx := context.Background()
	lim := Limit{Rate: Rate{N: 100, Per: time.Second}, Burst: 200}
	for _, n := range []int{1, 1_000_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			m := newTestMemory(b, n)
			keys := benchKeys(n)
			for _, k := range keys {
				m.Allow(ctx, k, lim, t0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				m.Allow(ctx, keys[i], lim, t0)
				if i++; i == n {
					i = 0
				}
			}
		})
	}
	b.Run("parallel/keys=1M", func(b *testing.B) {
		const n = 1_000_000
		m := newTestMemory(b, n)
		keys := benchKeys(n)
		for _, k := range keys {
			m.Allow(ctx, k, lim, t0)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(time.Now().UnixNano() % n)
			for pb.Next() {
				m.Allow(ctx, keys[i], lim, t0)
				if i++; i == n {
					i = 0
				}
			}
		})
	})
	b.Run("parallel/keys=1", func(b *testing.B) {
		m := newTestMemory(b, 0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Allow(ctx, "one", lim, t0)
			}
		})
	})
	b.Run("churn/new-keys-over-cap", func(b *testing.B) {
		m := newTestMemory(b, 100_000)
		keys := benchKeys(1_000_000)
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			m.Allow(ctx, keys[i], lim, t0)
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

// Keys come from request headers ("header:X-Tenant" limits), up to the
// server's header size (16 KiB by default, up to 1 MiB): MaxKeys of them
// must not hold MaxKeys times that. Long keys are kept as a digest, and
// still each counts on its own.
func TestMemoryLongKeysAreCompact(t *testing.T) {
	const keys, keyLen = 2000, 16 << 10
	m := newTestMemory(t, keys)
	ctx := context.Background()
	lim := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 1}
	base := strings.Repeat("t", keyLen)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keys {
		k := base + strconv.Itoa(i) // distinct only at the end
		if d, _ := m.Allow(ctx, k, lim, t0); !d.Allowed {
			t.Fatalf("first request of long key %d refused", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("%d keys of %d bytes hold %d bytes", keys, keyLen, grown)
	}
	for i := range 3 {
		if d, _ := m.Allow(ctx, base+strconv.Itoa(i), lim, t0); d.Allowed {
			t.Errorf("long key %d: second request allowed beyond its burst", i)
		}
	}
	runtime.KeepAlive(m)
}

// FuzzCompactKey: compacted keys are short, stable and keep distinct keys
// distinct (a short key never equals a long key's compact form).
func FuzzCompactKey(f *testing.F) {
	f.Add("client:1", strings.Repeat("x", 200))
	f.Add(strings.Repeat("a", 128), strings.Repeat("a", 129))
	f.Fuzz(func(t *testing.T, a, b string) {
		ca, cb := compactKey(a), compactKey(b)
		if len(ca) > maxKeyLen+1 || ca != compactKey(a) {
			t.Fatalf("compactKey(%d bytes) = %d bytes, or unstable", len(a), len(ca))
		}
		if (a == b) != (ca == cb) {
			t.Fatalf("keys %q and %q: compact forms %q and %q", a, b, ca, cb)
		}
	})
}
