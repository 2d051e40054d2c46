package cache

import (
	"context"
	"fmt"
	"testing"
)

func benchKeys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprintf("key-%08d", i)
	}
	return k
}

// BenchmarkGet: hits on a warm cache of 10k entries.
func BenchmarkGet(b *testing.B) {
	for _, p := range []Policy{LRU, LFU, FIFO} {
		b.Run(p.String(), func(b *testing.B) {
			keys := benchKeys(10_000)
			c, _ := New(Options[[]byte]{Policy: p})
			val := make([]byte, 64)
			for _, k := range keys {
				c.Set(k, val)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := c.Get(keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGetParallel: hits from every P at once (one lock).
func BenchmarkGetParallel(b *testing.B) {
	keys := benchKeys(10_000)
	c, _ := New(Options[[]byte]{})
	for _, k := range keys {
		c.Set(k, make([]byte, 64))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i%len(keys)])
			i++
		}
	})
}

// BenchmarkSetEvict: inserts into a full cache, each evicting one entry.
func BenchmarkSetEvict(b *testing.B) {
	for _, p := range []Policy{LRU, LFU, FIFO} {
		b.Run(p.String(), func(b *testing.B) {
			keys := benchKeys(100_000)
			val := make([]byte, 64)
			c, _ := New(Options[[]byte]{Policy: p, MaxBytes: 1000 * (EntryOverhead + 12 + 64)})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				c.Set(keys[i%len(keys)], val)
			}
		})
	}
}

// BenchmarkGetOrLoadHit: the read-through path on a hit.
func BenchmarkGetOrLoadHit(b *testing.B) {
	c, _ := New(Options[[]byte]{})
	load := func(context.Context, string) ([]byte, error) { return make([]byte, 64), nil }
	ctx := context.Background()
	c.GetOrLoad(ctx, "k", load)
	b.ReportAllocs()
	for b.Loop() {
		c.GetOrLoad(ctx, "k", load)
	}
}

// BenchmarkZipf: LRU on a Zipf stream, with the hit ratio as a metric.
func BenchmarkZipf(b *testing.B) {
	for _, p := range []Policy{LRU, LFU, FIFO} {
		b.Run(p.String(), func(b *testing.B) {
			b.ReportAllocs()
			n := max(b.N, 1000)
			b.ReportMetric(zipfRun(p, 1.01, 100_000, 1000, n, false), "hit-ratio")
		})
	}
}

// BenchmarkWriteBehindSet: acknowledged (fsynced) writes, 16 writers at
// once sharing commits; ns/op is per acknowledged write.
func BenchmarkWriteBehindSet(b *testing.B) {
	dir := b.TempDir()
	s := openSQLStore(b, dir+"/store.db")
	c, _ := New(Options[[]byte]{})
	w, err := OpenWriteBehind(c, s, WriteBehindOptions[[]byte]{Path: dir + "/buf.db", Codec: BytesCodec()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	keys := benchKeys(1000)
	val := make([]byte, 100)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // 16 writers on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := w.Set(ctx, keys[i%len(keys)], val); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(w.commits.Load()), "writes/commit")
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
