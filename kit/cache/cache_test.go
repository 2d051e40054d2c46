package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testclock"
)

// newClock is the tests' manual clock (the one test clock of the tree).
func newClock() *testclock.Clock { return testclock.At(time.Unix(1_700_000_000, 0)) }

func newT[V any](t *testing.T, o Options[V]) *Cache[V] {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// size of an entry with a 2-byte key and a 10-byte value.
const unit = EntryOverhead + 2 + 10

func val(i int) []byte { return fmt.Appendf(nil, "value-%04d", i) } // 10 bytes

func keys(c *Cache[[]byte]) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]bool{}
	for k := range c.s.items {
		m[k] = true
	}
	return m
}

func TestEvictionOrder(t *testing.T) {
	for _, tc := range []struct {
		policy Policy
		evict  string // which of k0,k1,k2 goes when k3 arrives
	}{
		// k0 is read twice, k1 once, k2 never; k0 was inserted first.
		{LRU, "k2"}, // least recently used: k2 (k0, k1 were read after it was set)
		{LFU, "k2"}, // least frequently used: k2
		{FIFO, "k0"},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			c := newT(t, Options[[]byte]{MaxBytes: 3 * unit, Policy: tc.policy})
			for i := range 3 {
				c.Set(fmt.Sprintf("k%d", i), val(i))
			}
			for _, k := range []string{"k0", "k1", "k0"} {
				if _, err := c.Get(k); err != nil {
					t.Fatalf("get %s: %v", k, err)
				}
			}
			c.Set("k3", val(3))
			got := keys(c)
			if got[tc.evict] || len(got) != 3 || !got["k3"] {
				t.Fatalf("after inserting k3: %v, want %s evicted", got, tc.evict)
			}
			if s := c.Stats(); s.Evictions != 1 || s.Bytes != 3*unit || s.Entries != 3 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestLRUvsLFUDiffer(t *testing.T) {
	// k0 is read three times long ago, k1 once just now: LRU evicts k0,
	// LFU keeps it and evicts k1.
	for _, tc := range []struct {
		policy Policy
		evict  string
	}{{LRU, "k0"}, {LFU, "k1"}} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			c := newT(t, Options[[]byte]{MaxBytes: 2 * unit, Policy: tc.policy})
			c.Set("k0", val(0))
			c.Get("k0")
			c.Get("k0")
			c.Set("k1", val(1))
			c.Get("k1")
			c.Set("k2", val(2))
			if got := keys(c); got[tc.evict] {
				t.Fatalf("%v: want %s evicted", got, tc.evict)
			}
		})
	}
}

func TestBytesBound(t *testing.T) {
	for _, p := range []Policy{LRU, LFU, FIFO} {
		t.Run(p.String(), func(t *testing.T) {
			c := newT(t, Options[[]byte]{MaxBytes: 10_000, Policy: p})
			for i := range 2000 {
				v := make([]byte, i%300)
				c.Set(fmt.Sprintf("k%d", i%500), v)
				if i%7 == 0 {
					c.Get(fmt.Sprintf("k%d", (i*31)%500))
				}
				if i%11 == 0 {
					c.Delete(fmt.Sprintf("k%d", (i*17)%500))
				}
				c.mu.Lock()
				var sum int64
				for k, e := range c.s.items {
					sum += e.size
					if e.key != k {
						t.Fatalf("entry under %q says key %q", k, e.key)
					}
				}
				b := c.s.bytes
				c.mu.Unlock()
				if b > 10_000 || sum != b {
					t.Fatalf("step %d: bytes %d (sum of entries %d), max 10000", i, b, sum)
				}
			}
			// A value larger than the whole cache is not stored and evicts nothing.
			before := c.Stats().Entries
			c.Set("huge", make([]byte, 20_000))
			if _, err := c.Get("huge"); !errors.Is(err, ErrMiss) || c.Stats().Entries != before {
				t.Fatalf("huge value: err %v, entries %d -> %d", err, before, c.Stats().Entries)
			}
		})
	}
}

func TestSizerForOtherTypes(t *testing.T) {
	if _, err := New(Options[int]{}); err == nil {
		t.Fatal("int values without a Sizer: want an error")
	}
	c := newT(t, Options[int]{MaxBytes: 2 * (EntryOverhead + 8), Sizer: func(string, int) int64 { return 8 }})
	c.Set("a", 1)
	c.Set("b", 2)
	c.Set("c", 3)
	if s := c.Stats(); s.Entries != 2 || s.Evictions != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestOptionsValidateJoinsEveryProblem(t *testing.T) {
	err := Options[[]byte]{MaxBytes: -1, Policy: 7, TTL: -1, JitterPercent: 101, RefreshAhead: 1.5}.Validate()
	for _, want := range []string{"max bytes: -1", "policy: 7", "ttl -1ns", "jitter percent: 101", "refresh ahead: 1.5"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v: want it to mention %q", err, want)
		}
	}
	if err := (Options[[]byte]{RefreshAhead: 0.2}).Validate(); err == nil || !contains(err.Error(), "needs a TTL") {
		t.Errorf("refresh ahead without TTL: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestTTLAndJitter(t *testing.T) {
	clk := newClock()
	c := newT(t, Options[[]byte]{TTL: 100 * time.Second, JitterPercent: 10, Now: clk.Now})
	for i := range 200 {
		c.Set(fmt.Sprintf("k%d", i), val(i))
	}
	var min, max int64 = 1 << 62, 0
	now := clk.Now().UnixNano()
	c.mu.Lock()
	for _, e := range c.s.items {
		life := e.expires - now
		min, max = Min(min, life), Max(max, life)
	}
	c.mu.Unlock()
	if min < int64(90*time.Second) || max > int64(110*time.Second) || max-min < int64(5*time.Second) {
		t.Fatalf("lifetimes spread over [%s, %s], want within ±10%% of 100s and spread", time.Duration(min), time.Duration(max))
	}
	clk.Advance(89 * time.Second)
	if s := c.Stats(); s.Entries != 200 {
		t.Fatalf("entries %d before any expiry", s.Entries)
	}
	clk.Advance(22 * time.Second) // 111s: everything expired
	for i := range 200 {
		if _, err := c.Get(fmt.Sprintf("k%d", i)); !errors.Is(err, ErrMiss) {
			t.Fatalf("k%d after its TTL: %v", i, err)
		}
	}
	if s := c.Stats(); s.Expirations != 200 || s.Entries != 0 || s.Bytes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func Min(a, b int64) int64 { return min(a, b) }
func Max(a, b int64) int64 { return max(a, b) }

func TestNegativeCaching(t *testing.T) {
	clk := newClock()
	c := newT(t, Options[[]byte]{TTL: time.Minute, NegativeTTL: 5 * time.Second, Now: clk.Now})
	var calls atomic.Int32
	load := func(ctx context.Context, key string) ([]byte, error) {
		calls.Add(1)
		return nil, fmt.Errorf("row %s: %w", key, ErrNotFound)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := c.GetOrLoad(ctx, "ghost", load); !errors.Is(err, ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader called %d times within the negative TTL, want 1", calls.Load())
	}
	if _, err := c.Get("ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a cached absence: %v", err)
	}
	clk.Advance(6 * time.Second)
	c.GetOrLoad(ctx, "ghost", load)
	if calls.Load() != 2 {
		t.Fatalf("loader called %d times after the negative TTL, want 2", calls.Load())
	}
	if s := c.Stats(); s.NegativeHits != 3 || s.LoadErrors != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Without NegativeTTL the absence is not cached.
	c2 := newT(t, Options[[]byte]{})
	c2.GetOrLoad(ctx, "ghost", load)
	c2.GetOrLoad(ctx, "ghost", load)
	if calls.Load() != 4 {
		t.Fatalf("no negative caching: loader calls %d, want 4", calls.Load())
	}
}

func TestStampedeOneLoadPerKey(t *testing.T) {
	c := newT(t, Options[[]byte]{})
	release := make(chan struct{})
	var calls atomic.Int32
	load := func(ctx context.Context, key string) ([]byte, error) {
		calls.Add(1)
		<-release
		return []byte("v-" + key), nil
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			v, err := c.GetOrLoad(context.Background(), "hot", load)
			if err == nil && string(v) != "v-hot" {
				err = fmt.Errorf("got %q", v)
			}
			errs <- err
		})
	}
	waitFor(t, func() bool { return calls.Load() == 1 && c.Stats().Misses == n })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d loads for one key", calls.Load())
	}
}

func TestFailingOrPanickingLoaderDoesNotPoison(t *testing.T) {
	c := newT(t, Options[[]byte]{NegativeTTL: time.Hour})
	ctx := context.Background()
	boom := errors.New("db down")
	release := make(chan struct{})
	panicky := func(ctx context.Context, key string) ([]byte, error) {
		<-release
		panic("nil map")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() {
			_, err := c.GetOrLoad(ctx, "k", panicky)
			errs <- err
		})
	}
	waitFor(t, func() bool { return c.Stats().Misses == 5 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		var pe *PanicError
		if !errors.As(err, &pe) || !errors.Is(err, ErrLoaderPanic) || pe.Value != "nil map" || len(pe.Stack) == 0 {
			t.Fatalf("waiter got %v, want the PanicError", err)
		}
	}
	if _, err := c.GetOrLoad(ctx, "k", func(context.Context, string) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("after a panic the next call must load again: %v", err)
	}
	v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(v) != "ok" {
		t.Fatalf("after an error the next call must load again: %q %v", v, err)
	}
	if s := c.Stats(); s.LoadErrors != 2 || s.Loads != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCallerCancelDoesNotCancelSharedLoad(t *testing.T) {
	c := newT(t, Options[[]byte]{})
	release := make(chan struct{})
	var loadErr atomic.Value
	load := func(ctx context.Context, key string) ([]byte, error) {
		<-release
		if ctx.Err() != nil {
			loadErr.Store(ctx.Err())
		}
		return []byte("v"), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.GetOrLoad(ctx, "k", load)
		done <- err
	}()
	waitFor(t, func() bool { return c.Stats().Loads == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	close(release)
	v, err := c.GetOrLoad(context.Background(), "k", load)
	if err != nil || string(v) != "v" || loadErr.Load() != nil {
		t.Fatalf("load after the first caller left: %q %v (load ctx err %v)", v, err, loadErr.Load())
	}
	if c.Stats().Loads != 1 {
		t.Fatal("the second caller should have joined the first load or hit its result")
	}
}

func TestSetDuringLoadWins(t *testing.T) {
	c := newT(t, Options[[]byte]{})
	release := make(chan struct{})
	load := func(ctx context.Context, key string) ([]byte, error) {
		<-release
		return []byte("old"), nil
	}
	done := make(chan []byte)
	go func() {
		v, _ := c.GetOrLoad(context.Background(), "k", load)
		done <- v
	}()
	waitFor(t, func() bool { return c.Stats().Loads == 1 })
	c.Set("k", []byte("new"))
	close(release)
	if v := <-done; string(v) != "old" {
		t.Fatalf("the loading caller gets what it loaded: %q", v)
	}
	if v, err := c.Get("k"); string(v) != "new" || err != nil {
		t.Fatalf("a load that started before Set overwrote it: %q %v", v, err)
	}
}

func TestRefreshAhead(t *testing.T) {
	clk := newClock()
	c := newT(t, Options[[]byte]{TTL: 100 * time.Second, RefreshAhead: 0.2, Now: clk.Now})
	var gen atomic.Int32
	load := func(ctx context.Context, key string) ([]byte, error) {
		return fmt.Appendf(nil, "gen%d", gen.Add(1)), nil
	}
	ctx := context.Background()
	if v, _ := c.GetOrLoad(ctx, "k", load); string(v) != "gen1" {
		t.Fatalf("first load: %q", v)
	}
	clk.Advance(70 * time.Second) // 30s left: not yet in the last 20%
	if v, _ := c.GetOrLoad(ctx, "k", load); string(v) != "gen1" || c.Stats().Refreshes != 0 {
		t.Fatalf("at 70s: %q, refreshes %d", v, c.Stats().Refreshes)
	}
	clk.Advance(15 * time.Second) // 15s left: refresh in the background, serve the old value
	if v, _ := c.GetOrLoad(ctx, "k", load); string(v) != "gen1" {
		t.Fatalf("at 85s: %q, want the cached value while refreshing", v)
	}
	waitFor(t, func() bool { v, _ := c.Get("k"); return string(v) == "gen2" })
	clk.Advance(50 * time.Second) // 135s: past the old expiry, before the new refresh point (165s)
	if v, err := c.GetOrLoad(ctx, "k", load); string(v) != "gen2" || err != nil {
		t.Fatalf("after the old expiry: %q %v", v, err)
	}
	if s := c.Stats(); s.Refreshes != 1 || s.Loads != 2 || s.Misses != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCloseStopsLoads(t *testing.T) {
	c, _ := New(Options[[]byte]{})
	started := make(chan struct{})
	var sawCancel atomic.Bool
	go c.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) ([]byte, error) {
		close(started)
		<-ctx.Done()
		sawCancel.Store(errors.Is(context.Cause(ctx), ErrClosed))
		return nil, ctx.Err()
	})
	<-started
	c.Close()
	if !sawCancel.Load() {
		t.Fatal("Close returned before the load saw its cancellation")
	}
	if _, err := c.GetOrLoad(context.Background(), "x", func(context.Context, string) ([]byte, error) { return nil, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("load after Close: %v", err)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSetTTLPerEntry(t *testing.T) {
	clk := newClock()
	c := newT(t, Options[[]byte]{Now: clk.Now}) // no default TTL
	c.Set("forever", val(0))
	c.SetTTL("short", val(1), 10*time.Second)
	c.SetTTL("long", val(2), time.Hour)
	clk.Advance(11 * time.Second)
	if _, err := c.Get("short"); !errors.Is(err, ErrMiss) {
		t.Fatalf("short after its TTL: %v", err)
	}
	for _, k := range []string{"forever", "long"} {
		if _, err := c.Get(k); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
}
