package cache

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// zipfRun replays a Zipf-distributed key stream against a cache holding
// capacity entries of the keyspace and returns the hit ratio. With shift,
// the popular keys change halfway (yesterday's favourites go cold).
func zipfRun(p Policy, s float64, keys, capacity, requests int, shift bool) float64 {
	const valSize = 100
	c, err := New(Options[[]byte]{Policy: p, MaxBytes: int64(capacity) * (EntryOverhead + 8 + valSize)})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, s, 1, uint64(keys-1))
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("k%07d", i) // 8 bytes
	}
	val := make([]byte, valSize)
	for i := range requests {
		k := int(z.Uint64())
		if shift && i >= requests/2 {
			k = (k + keys/2) % keys
		}
		if _, err := c.Get(names[k]); err != nil {
			c.Set(names[k], val)
		}
	}
	return c.Stats().HitRatio()
}

// TestZipfHitRatio checks the policies rank as expected on a skewed
// workload, and LFU's known weakness when the popular keys change. The full
// matrix (numbers in docs/kit.md) is TestZipfHitRatioMatrix.
func TestZipfHitRatio(t *testing.T) {
	const keys, requests = 20_000, 60_000
	ratio := func(p Policy, shift bool) float64 { return zipfRun(p, 1.01, keys, keys/100, requests, shift) }
	lru, lfu, fifo := ratio(LRU, false), ratio(LFU, false), ratio(FIFO, false)
	t.Logf("stable: LRU %.3f LFU %.3f FIFO %.3f", lru, lfu, fifo)
	if !(lfu > lru && lru > fifo) {
		t.Errorf("stable skew: want LFU > LRU > FIFO")
	}
	lru, lfu = ratio(LRU, true), ratio(LFU, true)
	t.Logf("hot set moves halfway: LRU %.3f LFU %.3f", lru, lfu)
	if !(lru > lfu) {
		t.Errorf("shifting skew: want LRU > LFU (LFU keeps yesterday's favourites)")
	}
}

// TestZipfHitRatioMatrix prints the hit ratios docs/kit.md quotes:
//
//	KIT_CACHE_ZIPF=1 go test -run ZipfHitRatioMatrix -v ./kit/cache
func TestZipfHitRatioMatrix(t *testing.T) {
	if os.Getenv("KIT_CACHE_ZIPF") == "" {
		t.Skip("set KIT_CACHE_ZIPF=1 (about 20 s)")
	}
	const keys, requests = 100_000, 400_000
	for _, shift := range []bool{false, true} {
		for _, s := range []float64{1.01, 1.2} {
			for _, capPct := range []int{1, 10} {
				ratio := map[Policy]float64{}
				for _, p := range []Policy{LRU, LFU, FIFO} {
					ratio[p] = zipfRun(p, s, keys, keys*capPct/100, requests, shift)
				}
				t.Logf("| %.2f | %d%% | %v | %.3f | %.3f | %.3f |", s, capPct, shift, ratio[LRU], ratio[LFU], ratio[FIFO])
			}
		}
	}
}
