package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrMiss is returned by Cache.Get when the key is not cached.
	ErrMiss = errors.New("cache: miss")
	// ErrNotFound means the key does not exist in the store. A Loader
	// returns it (or an error wrapping it) for an absent key; the cache then
	// remembers the absence for Options.NegativeTTL and returns ErrNotFound
	// itself until then (negative caching).
	ErrNotFound = errors.New("cache: not found")
	// ErrLoaderPanic is wrapped by the *PanicError returned to every caller
	// sharing a load whose Loader panicked.
	ErrLoaderPanic = errors.New("cache: loader panicked")
	// ErrClosed is returned by loads started after Close.
	ErrClosed = errors.New("cache: closed")
)

// PanicError is the error a panicking Loader becomes. The panic does not
// crash the process (the load runs in its own goroutine) and is not cached:
// the next call loads again.
type PanicError struct {
	Key   string // the key being loaded
	Value any    // what the Loader panicked with
	Stack []byte // the Loader's goroutine stack at the panic
}

// Error names the key and what the Loader panicked with.
func (e *PanicError) Error() string {
	return fmt.Sprintf("cache: loading %q: loader panicked: %v", e.Key, e.Value)
}

// Unwrap returns ErrLoaderPanic.
func (e *PanicError) Unwrap() error { return ErrLoaderPanic }

// Loader loads the value of key from the system of record. It returns
// ErrNotFound (or an error wrapping it) when the key does not exist.
type Loader[V any] func(ctx context.Context, key string) (V, error)

// Options configures a Cache. The zero value is usable: 64 MiB, LRU, no
// expiry, no negative caching, no refresh-ahead.
type Options[V any] struct {
	// MaxBytes bounds the sum of entry sizes (see Sizer). Default 64 MiB.
	MaxBytes int64
	// Policy chooses the eviction order: LRU (default), LFU or FIFO.
	Policy Policy
	// TTL is how long an entry lives after it is set or loaded. 0: until
	// evicted or deleted.
	TTL time.Duration
	// JitterPercent spreads each entry's TTL (and NegativeTTL) uniformly
	// over ±JitterPercent% so entries loaded together do not all expire
	// together and stampede the store. 0..100; default 0.
	JitterPercent float64
	// NegativeTTL is how long a "not found" (ErrNotFound from a Loader, or
	// SetNotFound) is remembered. Keep it shorter than TTL: a key created
	// later stays invisible this long. 0: absence is not cached.
	NegativeTTL time.Duration
	// RefreshAhead, a fraction of the TTL in (0, 1), makes a read that
	// finds an entry within RefreshAhead×TTL of its expiry return the
	// cached value and reload it in the background, so hot keys never
	// expire under their readers (refresh-ahead). Needs TTL > 0. 0: off.
	RefreshAhead float64
	// Sizer returns the bytes an entry accounts for. Default: len(key) +
	// len(value) for string and []byte values (other value types need a
	// Sizer); every entry also adds EntryOverhead.
	Sizer func(key string, v V) int64
	// LoadTimeout bounds one load: its context's deadline (a load runs
	// without its callers' deadlines, so that one caller giving up does
	// not fail the others), and the time after which the load is
	// abandoned, even if its Loader ignores the context: its waiters get
	// an error and the next read of the key loads again. Without it, a
	// Loader stuck on a dead connection held its key's one load for good,
	// and every later read of the key waited on it. Default 30s.
	LoadTimeout time.Duration
	// Now is the clock. Default time.Now; tests pass a fake one.
	Now func() time.Time
}

// EntryOverhead is the bytes each entry adds to its Sizer's answer: the
// entry struct, its map slot and list links, so a cache of tiny values
// cannot grow without bound.
const EntryOverhead = 96

// Validate reports every problem in o at once.
func (o Options[V]) Validate() error {
	var errs []error
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max bytes: %d: must not be negative", o.MaxBytes))
	}
	if o.Policy < LRU || o.Policy > FIFO {
		errs = append(errs, fmt.Errorf("policy: %d: want LRU, LFU or FIFO", o.Policy))
	}
	if o.TTL < 0 || o.NegativeTTL < 0 || o.LoadTimeout < 0 {
		errs = append(errs, fmt.Errorf("ttl %s, negative ttl %s, load timeout %s: must not be negative", o.TTL, o.NegativeTTL, o.LoadTimeout))
	}
	if o.JitterPercent < 0 || o.JitterPercent > 100 {
		errs = append(errs, fmt.Errorf("jitter percent: %g: want 0..100", o.JitterPercent))
	}
	if o.RefreshAhead < 0 || o.RefreshAhead >= 1 {
		errs = append(errs, fmt.Errorf("refresh ahead: %g: want a fraction of the TTL in [0, 1)", o.RefreshAhead))
	}
	if o.RefreshAhead > 0 && o.TTL == 0 {
		errs = append(errs, errors.New("refresh ahead: needs a TTL"))
	}
	if o.Sizer == nil {
		var zero V
		switch any(zero).(type) {
		case string, []byte:
		default:
			errs = append(errs, fmt.Errorf("sizer: values of type %T need a Sizer", zero))
		}
	}
	return errors.Join(errs...)
}

// WithDefaults returns o with zero fields set to their defaults.
func (o Options[V]) WithDefaults() Options[V] {
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = 30 * time.Second
	}
	return o
}

// Stats is a snapshot of a cache's counters.
type Stats struct {
	Hits         uint64 // reads answered with a cached value
	NegativeHits uint64 // reads answered with a cached "not found"
	Misses       uint64 // reads that found nothing (or an expired entry)
	Loads        uint64 // Loader calls (misses share one per key)
	LoadErrors   uint64 // Loader calls that failed or panicked (ErrNotFound is not a failure)
	Refreshes    uint64 // background refresh-ahead loads started
	Evictions    uint64 // entries dropped to stay under MaxBytes
	Expirations  uint64 // entries found expired and dropped
	Entries      int    // entries cached now
	Bytes        int64  // bytes accounted now
}

// HitRatio returns (Hits+NegativeHits) / all reads, or 0 before any read.
func (s Stats) HitRatio() float64 {
	n := s.Hits + s.NegativeHits + s.Misses
	if n == 0 {
		return 0
	}
	return float64(s.Hits+s.NegativeHits) / float64(n)
}

type counters struct {
	hits, negHits, misses, loads, loadErrs, refreshes, evictions, expirations atomic.Uint64
}

// Cache is a bounded in-process cache with TTLs, negative caching,
// refresh-ahead and one load per key at a time. Its methods are the
// cache-aside helpers (Get, Set, Delete, GetOrLoad); it is also the Layer
// the write strategies (WriteThrough, WriteAround, WriteBehind) and Tiered
// wrap. Safe for concurrent use.
type Cache[V any] struct {
	opts   Options[V]
	sizer  func(string, V) int64
	mu     sync.Mutex // guards s
	s      store[V]
	fmu    sync.Mutex // guards flights; taken before mu when both are held
	flight map[string]*call[V]
	c      counters

	// life is canceled by Close: background loads derive from it, so it is
	// the one context a Cache keeps (it owns those goroutines).
	life   context.Context
	stop   context.CancelFunc
	loads  sync.WaitGroup
	closed atomic.Bool
	// expiring is set once any entry can expire (a TTL option, or SetTTL);
	// until then reads skip the clock.
	expiring atomic.Bool
}

// call is one in-flight load shared by every caller of the same key.
type call[V any] struct {
	done  chan struct{}
	once  sync.Once // finish: the load's end or its abandonment, whichever first
	val   V
	err   error
	stale bool // a Set or Delete happened during the load, or it was abandoned: do not install
}

// finish gives the waiters their answer (once).
func (cl *call[V]) finish(v V, err error) {
	cl.once.Do(func() {
		cl.val, cl.err = v, err
		close(cl.done)
	})
}

// ErrLoadTimeout is wrapped by the error of a load that ran longer than
// Options.LoadTimeout.
var ErrLoadTimeout = errors.New("cache: load timed out")

// New returns a cache configured by opts (see Options for defaults).
func New[V any](opts Options[V]) (*Cache[V], error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("cache options: %w", err)
	}
	opts = opts.WithDefaults()
	c := &Cache[V]{opts: opts, flight: make(map[string]*call[V]), sizer: opts.Sizer}
	if c.sizer == nil {
		c.sizer = defaultSizer[V]
	}
	c.s.init(opts.Policy, opts.MaxBytes)
	c.expiring.Store(opts.TTL > 0 || opts.NegativeTTL > 0)
	c.life, c.stop = context.WithCancel(context.Background())
	return c, nil
}

func defaultSizer[V any](key string, v V) int64 {
	switch x := any(v).(type) {
	case []byte:
		return int64(len(key) + len(x))
	case string:
		return int64(len(key) + len(x))
	}
	return int64(len(key))
}

// Close cancels background loads and waits for them. The cache stays
// readable; loads started after Close fail with ErrClosed.
func (c *Cache[V]) Close() error {
	c.closed.Store(true)
	c.stop()
	c.loads.Wait()
	return nil
}

// Stats returns a snapshot of the counters.
func (c *Cache[V]) Stats() Stats {
	c.mu.Lock()
	n, b := len(c.s.items), c.s.bytes
	c.mu.Unlock()
	return Stats{
		Hits: c.c.hits.Load(), NegativeHits: c.c.negHits.Load(), Misses: c.c.misses.Load(),
		Loads: c.c.loads.Load(), LoadErrors: c.c.loadErrs.Load(), Refreshes: c.c.refreshes.Load(),
		Evictions: c.c.evictions.Load(), Expirations: c.c.expirations.Load(),
		Entries: n, Bytes: b,
	}
}

// hit is what a read needs of an entry.
type hit[V any] struct {
	val       V
	neg       bool
	refreshAt int64
}

// now returns the clock in unix nanoseconds, or 0 when nothing can expire
// (no TTLs configured): reads then skip the clock.
func (c *Cache[V]) now() int64 {
	if !c.expiring.Load() {
		return 0
	}
	return c.opts.Now().UnixNano()
}

// lookup returns what a read needs of key's live entry. Expired entries
// are dropped.
func (c *Cache[V]) lookup(key string, now int64) (h hit[V], ok bool) {
	c.mu.Lock()
	p := c.s.items[key]
	if p == nil {
		c.mu.Unlock()
		c.c.misses.Add(1)
		return h, false
	}
	if p.expires != 0 && now >= p.expires {
		c.s.removeEntry(p)
		c.mu.Unlock()
		c.c.expirations.Add(1)
		c.c.misses.Add(1)
		return h, false
	}
	c.s.touch(p)
	h = hit[V]{val: p.val, neg: p.neg, refreshAt: p.refreshAt}
	c.mu.Unlock()
	if h.neg {
		c.c.negHits.Add(1)
	} else {
		c.c.hits.Add(1)
	}
	return h, true
}

// Get returns the cached value of key: ErrMiss if nothing is cached,
// ErrNotFound if the key's absence is cached.
func (c *Cache[V]) Get(key string) (V, error) {
	e, ok := c.lookup(key, c.now())
	if !ok {
		var zero V
		return zero, ErrMiss
	}
	if e.neg {
		return e.val, ErrNotFound
	}
	return e.val, nil
}

// Set caches v under key for the configured TTL (with jitter). A load of
// key in flight when Set is called will not overwrite it.
func (c *Cache[V]) Set(key string, v V) {
	c.invalidateFlight(key)
	c.put(key, v, false)
}

// SetTTL caches v under key for ttl (with jitter) instead of the
// configured TTL; ttl 0 means until evicted or deleted.
func (c *Cache[V]) SetTTL(key string, v V, ttl time.Duration) {
	if ttl > 0 && !c.expiring.Load() {
		c.expiring.Store(true)
	}
	c.invalidateFlight(key)
	c.putTTL(key, v, false, ttl)
}

// SetNotFound caches key's absence for NegativeTTL (with jitter); a no-op
// when NegativeTTL is 0.
func (c *Cache[V]) SetNotFound(key string) {
	c.invalidateFlight(key)
	if c.opts.NegativeTTL > 0 {
		var zero V
		c.put(key, zero, true)
	}
}

// Delete drops key. A load of key in flight will not install its result.
func (c *Cache[V]) Delete(key string) {
	c.invalidateFlight(key)
	c.mu.Lock()
	if p := c.s.items[key]; p != nil {
		c.s.removeEntry(p)
	}
	c.mu.Unlock()
}

// Clear drops every entry.
func (c *Cache[V]) Clear() {
	c.fmu.Lock()
	for _, cl := range c.flight {
		cl.stale = true
	}
	c.fmu.Unlock()
	c.mu.Lock()
	c.s.clear()
	c.mu.Unlock()
}

func (c *Cache[V]) invalidateFlight(key string) {
	c.fmu.Lock()
	if cl := c.flight[key]; cl != nil {
		cl.stale = true
	}
	c.fmu.Unlock()
}

// jittered returns d spread by ±JitterPercent%.
func (c *Cache[V]) jittered(d time.Duration) int64 {
	if c.opts.JitterPercent == 0 || d == 0 {
		return int64(d)
	}
	f := 1 + c.opts.JitterPercent/100*(2*rand.Float64()-1)
	return int64(float64(d) * f)
}

func (c *Cache[V]) put(key string, v V, neg bool) {
	ttl := c.opts.TTL
	if neg {
		ttl = c.opts.NegativeTTL
	}
	c.putTTL(key, v, neg, ttl)
}

func (c *Cache[V]) putTTL(key string, v V, neg bool, ttl time.Duration) {
	var now int64
	if ttl > 0 {
		now = c.opts.Now().UnixNano()
	}
	e := entry[V]{val: v, neg: neg, size: EntryOverhead}
	if neg {
		e.size += int64(len(key)) // the key is held all the same
	} else {
		e.size += c.sizer(key, v)
	}
	if ttl > 0 {
		life := c.jittered(ttl)
		e.expires = now + life
		if !neg && c.opts.RefreshAhead > 0 {
			e.refreshAt = e.expires - int64(float64(life)*c.opts.RefreshAhead)
		}
	}
	c.mu.Lock()
	evicted, _ := c.s.insert(key, e)
	c.mu.Unlock()
	if evicted > 0 {
		c.c.evictions.Add(uint64(evicted))
	}
}

// GetOrLoad returns key's cached value, or loads it with load, caches and
// returns it (cache-aside in one call). Concurrent callers missing the
// same key share one load; each stops waiting when its own ctx ends, and
// the load goes on for the others (it runs under ctx's values but only
// Close cancels it). A load that fails or panics is not cached, so the
// next call tries again; ErrNotFound is cached for NegativeTTL. With
// RefreshAhead set, a hit close to expiry also starts a background reload.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load Loader[V]) (V, error) {
	now := c.now()
	if e, ok := c.lookup(key, now); ok {
		if e.neg {
			return e.val, ErrNotFound
		}
		if e.refreshAt != 0 && now >= e.refreshAt {
			c.startLoad(ctx, key, load, true)
		}
		return e.val, nil
	}
	cl, err := c.startLoad(ctx, key, load, false)
	if err != nil {
		var zero V
		return zero, err
	}
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-ctx.Done():
		var zero V
		return zero, fmt.Errorf("cache: waiting for %q: %w", key, context.Cause(ctx))
	}
}

// startLoad joins key's load in flight or starts one. A refresh joins
// nothing and starts nothing if a load is already running.
func (c *Cache[V]) startLoad(ctx context.Context, key string, load Loader[V], refresh bool) (*call[V], error) {
	c.fmu.Lock()
	if cl := c.flight[key]; cl != nil {
		c.fmu.Unlock()
		return cl, nil
	}
	if c.closed.Load() {
		c.fmu.Unlock()
		return nil, ErrClosed
	}
	cl := &call[V]{done: make(chan struct{})}
	c.flight[key] = cl
	c.loads.Add(1)
	c.fmu.Unlock()
	if refresh {
		c.c.refreshes.Add(1)
	}
	go c.run(ctx, key, load, cl)
	return cl, nil
}

func (c *Cache[V]) run(ctx context.Context, key string, load Loader[V], cl *call[V]) {
	defer c.loads.Done()
	timeout := fmt.Errorf("%w: loading %q took more than %s", ErrLoadTimeout, key, c.opts.LoadTimeout)
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	lctx, cancelT := context.WithTimeoutCause(lctx, c.opts.LoadTimeout, timeout)
	stop := context.AfterFunc(c.life, func() { cancel(ErrClosed) })
	// Abandon the load at its deadline even if the Loader ignores it.
	abandon := time.AfterFunc(c.opts.LoadTimeout, func() {
		c.fmu.Lock()
		cl.stale = true
		if c.flight[key] == cl {
			delete(c.flight, key)
		}
		c.fmu.Unlock()
		c.c.loadErrs.Add(1)
		var zero V
		cl.finish(zero, timeout)
	})
	c.c.loads.Add(1)
	val, err := safeLoad(lctx, key, load)
	abandoned := !abandon.Stop()
	stop()
	cancelT()
	cancel(nil)
	if abandoned {
		return // counted and answered by the timer
	}

	notFound := errors.Is(err, ErrNotFound)
	if err != nil && !notFound {
		c.c.loadErrs.Add(1)
	}
	if notFound {
		var zero V
		val, err = zero, ErrNotFound
	}
	c.fmu.Lock()
	if !cl.stale {
		switch {
		case err == nil:
			c.put(key, val, false)
		case notFound && c.opts.NegativeTTL > 0:
			c.put(key, val, true)
		}
	}
	if c.flight[key] == cl {
		delete(c.flight, key)
	}
	c.fmu.Unlock()
	cl.finish(val, err)
}

func safeLoad[V any](ctx context.Context, key string, load Loader[V]) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Key: key, Value: r, Stack: debug.Stack()}
		}
	}()
	return load(ctx, key)
}

// Put is Set for the Layer interface; it never fails.
func (c *Cache[V]) Put(_ context.Context, key string, v V) error {
	c.Set(key, v)
	return nil
}

// Invalidate is Delete for the Layer interface; it never fails.
func (c *Cache[V]) Invalidate(_ context.Context, key string) error {
	c.Delete(key)
	return nil
}

var _ Layer[[]byte] = (*Cache[[]byte])(nil)
