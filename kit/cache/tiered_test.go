package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const testRedisAddr = "127.0.0.1:6379"

// redisT returns a client and a key prefix unique to this test; the
// prefix's keys are deleted when the test ends. Skips without Redis.
func redisT(t *testing.T) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testRedisAddr, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Skipf("redis not reachable at %s: %v", testRedisAddr, err)
	}
	var b [6]byte
	rand.Read(b[:])
	prefix := "switchyard:test:kitcache:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	return c, prefix
}

func newTiered(t *testing.T, c *redis.Client, prefix string) *Tiered[string] {
	t.Helper()
	l1 := newT(t, Options[string]{TTL: time.Hour, NegativeTTL: time.Hour})
	tc, err := NewTiered(context.Background(), l1, TieredOptions[string]{
		Client: c, Prefix: prefix, Codec: StringCodec(), TTL: time.Minute, NegativeTTL: time.Minute, JitterPercent: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc
}

func TestTieredSharesL2AndInvalidatesEveryL1(t *testing.T) {
	c, prefix := redisT(t)
	ctx := context.Background()
	a, b := newTiered(t, c, prefix), newTiered(t, c, prefix)
	db := &mapStore{m: map[string][]byte{"user:1": []byte("ada")}}
	var loads atomic.Int32
	load := func(ctx context.Context, key string) (string, error) {
		loads.Add(1)
		v, err := db.Load(ctx, key)
		return string(v), err
	}
	get := func(tc *Tiered[string], key string) string {
		t.Helper()
		v, err := tc.GetOrLoad(ctx, key, load)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return v
	}
	if get(a, "user:1") != "ada" || get(b, "user:1") != "ada" || loads.Load() != 1 {
		t.Fatalf("replica b should read replica a's load from redis: %d loads", loads.Load())
	}
	if s := b.Stats(); s.L2Hits != 1 {
		t.Fatalf("b stats %+v", s)
	}
	// A write on a reaches b's L1 through the invalidation.
	db.Save(ctx, "user:1", []byte("grace"))
	if err := a.Put(ctx, "user:1", "grace"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := b.L1().Get("user:1"); return errors.Is(err, ErrMiss) })
	if get(b, "user:1") != "grace" || get(a, "user:1") != "grace" || loads.Load() != 1 {
		t.Fatalf("after the write: loads %d", loads.Load())
	}
	// Invalidate drops redis and every L1: the next read loads.
	db.Save(ctx, "user:1", []byte("linus"))
	if err := b.Invalidate(ctx, "user:1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := a.L1().Get("user:1"); return errors.Is(err, ErrMiss) })
	if get(a, "user:1") != "linus" || loads.Load() != 2 {
		t.Fatalf("after invalidate: loads %d", loads.Load())
	}
	if n, _ := c.Exists(ctx, prefix+"user:1").Result(); n != 1 {
		t.Fatal("the load did not refill redis")
	}
	// Absence is shared too.
	for _, tc := range []*Tiered[string]{a, b} {
		if _, err := tc.GetOrLoad(ctx, "user:404", load); !errors.Is(err, ErrNotFound) {
			t.Fatalf("absent key: %v", err)
		}
	}
	if loads.Load() != 3 {
		t.Fatalf("negative result not shared through redis: %d loads", loads.Load())
	}
	if s := a.Stats(); s.Invalidations != 1 {
		t.Fatalf("a received %d invalidations, want 1 (its own are skipped)", s.Invalidations)
	}
}

func TestTieredWriteThroughAcrossReplicas(t *testing.T) {
	c, prefix := redisT(t)
	ctx := context.Background()
	a, b := newTiered(t, c, prefix), newTiered(t, c, prefix)
	db := &mapStore{}
	sstore := stringStore{db}
	wa, wb := WriteThrough[string]{Cache: a, Store: sstore}, WriteThrough[string]{Cache: b, Store: sstore}
	if err := wa.Set(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := wb.Get(ctx, "k"); v != "1" || err != nil {
		t.Fatalf("b reads a's write: %q %v", v, err)
	}
	if err := wb.Set(ctx, "k", "2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v, _ := wa.Get(ctx, "k"); return v == "2" })
}

func TestTieredFillNeverOverwritesAWrite(t *testing.T) {
	c, prefix := redisT(t)
	ctx := context.Background()
	a := newTiered(t, c, prefix)
	release, started := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, _ := a.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-release
			return "old", nil
		})
		done <- v
	}()
	<-started
	b := newTiered(t, c, prefix)
	if err := b.Put(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	if v, _ := c.Get(ctx, prefix+"k").Result(); v != "vnew" {
		t.Fatalf("redis holds %q after a racing fill, want the write", v)
	}
	waitFor(t, func() bool { _, err := a.L1().Get("k"); return errors.Is(err, ErrMiss) })
}

func TestTieredOptions(t *testing.T) {
	_, err := NewTiered(context.Background(), newT(t, Options[string]{}), TieredOptions[string]{JitterPercent: -1})
	for _, want := range []string{"client: required", "prefix: required", "codec", "jitter percent: -1"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v: want %q", err, want)
		}
	}
}

// stringStore adapts mapStore to string values.
type stringStore struct{ s *mapStore }

func (s stringStore) Load(ctx context.Context, k string) (string, error) {
	v, err := s.s.Load(ctx, k)
	return string(v), err
}
func (s stringStore) Save(ctx context.Context, k, v string) error {
	return s.s.Save(ctx, k, []byte(v))
}
func (s stringStore) Remove(ctx context.Context, k string) error { return s.s.Remove(ctx, k) }

func TestTieredResyncsAfterLostSubscription(t *testing.T) {
	c, prefix := redisT(t)
	ctx := context.Background()
	a := newTiered(t, c, prefix)
	name := "kitcache-" + prefix[len(prefix)-13:len(prefix)-1]
	bc := redis.NewClient(&redis.Options{Addr: testRedisAddr, ClientName: name})
	defer bc.Close()
	l1 := newT(t, Options[string]{TTL: time.Hour})
	b, err := NewTiered(ctx, l1, TieredOptions[string]{Client: bc, Prefix: prefix, Codec: StringCodec()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	load := func(context.Context, string) (string, error) { return "v1", nil }
	if v, _ := b.GetOrLoad(ctx, "k", load); v != "v1" {
		t.Fatalf("first read %q", v)
	}
	// Cut b's connections (its subscription among them) on the server side.
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				if err := c.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err == nil {
					killed++
				}
			}
		}
	}
	if killed == 0 {
		t.Fatalf("found no connection named %s to cut", name)
	}
	if err := a.Put(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	// Whether b got the message or missed it, it must not keep serving v1.
	waitFor(t, func() bool { v, _ := b.GetOrLoad(ctx, "k", load); return v == "v2" })
	waitFor(t, func() bool { return b.Stats().Resyncs >= 1 })
}

func FuzzDecodeL2(f *testing.F) {
	f.Add([]byte("vhello"), "id key")
	f.Add([]byte("n"), "id")
	f.Add([]byte("nx"), " key")
	f.Add([]byte{}, "")
	f.Add([]byte("\x00"), "a b c")
	f.Fuzz(func(t *testing.T, raw []byte, msg string) {
		v, nf, err := decodeL2(BytesCodec(), raw)
		if err == nil && !nf {
			if raw[0] != tagValue || string(v) != string(raw[1:]) {
				t.Fatalf("decoded %q from %q", v, raw)
			}
		}
		if nf && (err != nil || string(raw) != "n") {
			t.Fatalf("not-found from %q (err %v)", raw, err)
		}
		if err == nil && len(raw) == 0 {
			t.Fatal("empty value decoded")
		}
		from, key, ok := parseInvalidation(msg)
		if ok && (from == "" || from+" "+key != msg) {
			t.Fatalf("parse %q: %q %q", msg, from, key)
		}
	})
}
