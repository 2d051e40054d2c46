package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// TieredOptions configures a Tiered cache.
type TieredOptions[V any] struct {
	// Client is the Redis every replica shares. Required.
	Client redis.UniversalClient
	// Prefix namespaces this cache's Redis keys (Prefix+key) and, by
	// default, its invalidation channel. Required: replicas of one service
	// use the same Prefix, different caches different ones.
	Prefix string
	// Channel is the pub/sub channel invalidations travel on. Default
	// Prefix+"invalidate".
	Channel string
	// Codec encodes values for Redis. Required.
	Codec Codec[V]
	// TTL is how long a value lives in Redis. Default 5 minutes.
	TTL time.Duration
	// NegativeTTL is how long a "not found" lives in Redis. 0: absence is
	// not shared (the L1 may still cache it, see Options.NegativeTTL).
	NegativeTTL time.Duration
	// JitterPercent spreads Redis TTLs by ±JitterPercent%. 0..100.
	JitterPercent float64
}

// Validate reports every problem in o at once.
func (o TieredOptions[V]) Validate() error {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("client: required"))
	}
	if o.Prefix == "" {
		errs = append(errs, errors.New("prefix: required (namespaces the Redis keys)"))
	}
	if o.Codec.Encode == nil || o.Codec.Decode == nil {
		errs = append(errs, errors.New("codec: Encode and Decode are required"))
	}
	if o.TTL < 0 || o.NegativeTTL < 0 {
		errs = append(errs, fmt.Errorf("ttl %s, negative ttl %s: must not be negative", o.TTL, o.NegativeTTL))
	}
	if o.JitterPercent < 0 || o.JitterPercent > 100 {
		errs = append(errs, fmt.Errorf("jitter percent: %g: want 0..100", o.JitterPercent))
	}
	return errors.Join(errs...)
}

// TieredStats counts the Redis tier's traffic; the L1's own Stats are on
// the *Cache.
type TieredStats struct {
	L2Hits        uint64 // L1 misses answered by Redis
	L2Misses      uint64 // L1 misses Redis did not have (the Loader ran)
	L2Errors      uint64 // Redis commands that failed (reads fell back to the Loader)
	Invalidations uint64 // invalidations received from other replicas
	Resyncs       uint64 // times the L1 was cleared because invalidations may have been missed
}

// Tiered is a two-level cache: a per-replica in-process L1 (*Cache) over
// a Redis L2 every replica shares. A read tries L1, then Redis, then the
// Loader (filling both). A write or invalidation updates Redis and is
// broadcast on a pub/sub channel so every other replica drops the key from
// its L1. When the subscription drops (Redis restart, network), the L1 is
// cleared on reconnect, since invalidations sent meanwhile are lost.
//
// A read whose Loader runs while another replica writes the same key
// fills Redis with SET NX, so it never overwrites that write; a fill racing
// an Invalidate (not a Put) can still leave the loaded, older value in
// Redis until its TTL. Prefer Put (write-through) for keys that change.
//
// Safe for concurrent use; Close stops the subscriber.
type Tiered[V any] struct {
	l1   *Cache[V]
	opts TieredOptions[V]
	id   string // this replica's id in invalidation messages
	sub  *redis.PubSub
	done chan struct{}
	once sync.Once
	shut atomic.Bool

	l2Hits, l2Misses, l2Errs, invals, resyncs atomic.Uint64
}

// Tags in front of encoded values in Redis.
const (
	tagValue    = 'v'
	tagNotFound = 'n'
)

// NewTiered subscribes to the invalidation channel (returning once the
// subscription is confirmed) and returns the two-level cache over l1.
func NewTiered[V any](ctx context.Context, l1 *Cache[V], opts TieredOptions[V]) (*Tiered[V], error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("tiered cache options: %w", err)
	}
	if l1 == nil {
		return nil, errors.New("tiered cache: the L1 cache is required")
	}
	if opts.Channel == "" {
		opts.Channel = opts.Prefix + "invalidate"
	}
	if opts.TTL == 0 {
		opts.TTL = 5 * time.Minute
	}
	var id [8]byte
	rand.Read(id[:])
	t := &Tiered[V]{l1: l1, opts: opts, id: hex.EncodeToString(id[:]), done: make(chan struct{})}
	t.sub = opts.Client.Subscribe(ctx, opts.Channel)
	if _, err := t.sub.Receive(ctx); err != nil {
		t.sub.Close()
		return nil, fmt.Errorf("tiered cache: subscribing to %q: %w", opts.Channel, err)
	}
	go t.listen()
	return t, nil
}

// L1 returns the in-process level.
func (t *Tiered[V]) L1() *Cache[V] { return t.l1 }

// Stats returns a snapshot of the tier's counters.
func (t *Tiered[V]) Stats() TieredStats {
	return TieredStats{L2Hits: t.l2Hits.Load(), L2Misses: t.l2Misses.Load(), L2Errors: t.l2Errs.Load(),
		Invalidations: t.invals.Load(), Resyncs: t.resyncs.Load()}
}

func (t *Tiered[V]) listen() {
	defer close(t.done)
	backoff := 10 * time.Millisecond
	subscribed := true
	for {
		m, err := t.sub.Receive(context.Background())
		if err != nil {
			if t.shut.Load() || errors.Is(err, redis.ErrClosed) {
				return
			}
			// Invalidations may be lost while the subscription is down.
			if subscribed {
				t.resync()
				subscribed = false
			}
			time.Sleep(backoff) // the PubSub reconnects on the next Receive
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && !subscribed {
				t.resync() // resubscribed: drop what we may have missed meanwhile
			}
			subscribed = true
		case *redis.Message:
			from, key, ok := parseInvalidation(m.Payload)
			if !ok || from == t.id {
				continue
			}
			t.invals.Add(1)
			t.l1.Delete(key)
		}
	}
}

func (t *Tiered[V]) resync() {
	t.resyncs.Add(1)
	t.l1.Clear()
}

func (t *Tiered[V]) ttl(d time.Duration) time.Duration {
	if t.opts.JitterPercent == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + t.opts.JitterPercent/100*(2*mrand.Float64()-1)))
}

// GetOrLoad returns key's value from L1, else Redis, else load (filling
// Redis and L1). One load per key per replica at a time; a Redis outage
// makes reads fall through to load, not fail.
func (t *Tiered[V]) GetOrLoad(ctx context.Context, key string, load Loader[V]) (V, error) {
	return t.l1.GetOrLoad(ctx, key, func(ctx context.Context, key string) (V, error) {
		var zero V
		rk := t.opts.Prefix + key
		raw, err := t.opts.Client.Get(ctx, rk).Bytes()
		switch {
		case err == nil:
			v, notFound, derr := decodeL2(t.opts.Codec, raw)
			switch {
			case derr != nil:
				t.l2Errs.Add(1) // undecodable (another writer's format?): load again
			case notFound:
				t.l2Hits.Add(1)
				return zero, ErrNotFound
			default:
				t.l2Hits.Add(1)
				return v, nil
			}
		case errors.Is(err, redis.Nil):
			t.l2Misses.Add(1)
		default:
			t.l2Errs.Add(1)
		}
		v, lerr := load(ctx, key)
		switch {
		case lerr == nil:
			if enc, eerr := t.opts.Codec.Encode(v); eerr == nil {
				t.fill(ctx, rk, append([]byte{tagValue}, enc...), t.ttl(t.opts.TTL))
			}
		case errors.Is(lerr, ErrNotFound) && t.opts.NegativeTTL > 0:
			t.fill(ctx, rk, []byte{tagNotFound}, t.ttl(t.opts.NegativeTTL))
		}
		return v, lerr
	})
}

// parseInvalidation splits an invalidation message, "<replica id> <key>".
func parseInvalidation(payload string) (from, key string, ok bool) {
	from, key, ok = strings.Cut(payload, " ")
	return from, key, ok && from != ""
}

// decodeL2 reads a Redis value: a tag byte ('v' value, 'n' not found),
// then the encoded value.
func decodeL2[V any](c Codec[V], raw []byte) (v V, notFound bool, err error) {
	if len(raw) == 0 {
		return v, false, errors.New("tiered cache: empty value in redis, want a tag byte")
	}
	switch raw[0] {
	case tagNotFound:
		if len(raw) != 1 {
			return v, false, fmt.Errorf("tiered cache: not-found marker with %d trailing bytes", len(raw)-1)
		}
		return v, true, nil
	case tagValue:
		v, err = c.Decode(raw[1:])
		if err != nil {
			return v, false, fmt.Errorf("tiered cache: decoding value from redis: %w", err)
		}
		return v, false, nil
	}
	return v, false, fmt.Errorf("tiered cache: value in redis starts with %q, want 'v' or 'n'", raw[0])
}

// fill stores a loaded value unless a write got there first.
func (t *Tiered[V]) fill(ctx context.Context, rk string, raw []byte, ttl time.Duration) {
	err := t.opts.Client.SetArgs(ctx, rk, raw, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.l2Errs.Add(1)
	}
}

// Put stores v in Redis and this replica's L1, and tells every other
// replica to drop key from its L1.
func (t *Tiered[V]) Put(ctx context.Context, key string, v V) error {
	enc, err := t.opts.Codec.Encode(v)
	if err != nil {
		t.l1.Delete(key)
		return fmt.Errorf("tiered cache: encoding %q: %w", key, err)
	}
	if err := t.opts.Client.Set(ctx, t.opts.Prefix+key, append([]byte{tagValue}, enc...), t.ttl(t.opts.TTL)).Err(); err != nil {
		t.l2Errs.Add(1)
		t.l1.Delete(key)
		return errors.Join(fmt.Errorf("tiered cache: setting %q in redis: %w", key, err), t.publish(ctx, key))
	}
	t.l1.Set(key, v)
	return t.publish(ctx, key)
}

// Invalidate drops key from Redis and from every replica's L1.
func (t *Tiered[V]) Invalidate(ctx context.Context, key string) error {
	t.l1.Delete(key)
	var err error
	if e := t.opts.Client.Del(ctx, t.opts.Prefix+key).Err(); e != nil {
		t.l2Errs.Add(1)
		err = fmt.Errorf("tiered cache: deleting %q in redis: %w", key, e)
	}
	return errors.Join(err, t.publish(ctx, key))
}

func (t *Tiered[V]) publish(ctx context.Context, key string) error {
	if err := t.opts.Client.Publish(ctx, t.opts.Channel, t.id+" "+key).Err(); err != nil {
		t.l2Errs.Add(1)
		return fmt.Errorf("tiered cache: broadcasting the invalidation of %q: %w", key, err)
	}
	return nil
}

// Close stops listening for invalidations. It closes neither the L1 nor
// the Redis client.
func (t *Tiered[V]) Close() error {
	var err error
	t.once.Do(func() {
		t.shut.Store(true)
		err = t.sub.Close()
		<-t.done
	})
	return err
}

var _ Layer[[]byte] = (*Tiered[[]byte])(nil)
