package cache_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/switchyard/switchyard/kit/cache"
)

// Two replicas share a Redis tier; a write on one drops the key from the
// other's in-process L1. Needs the Redis at 127.0.0.1:6379.
func ExampleNewTiered() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	prefix := "example:users:" + rand.Text()[:8] + ":"
	defer func() { // leave nothing behind in the shared Redis
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	}()
	db := &users{rows: map[string]string{"1": "ada"}}
	replica := func() *cache.Tiered[string] {
		l1, _ := cache.New(cache.Options[string]{TTL: time.Minute})
		tc, err := cache.NewTiered(ctx, l1, cache.TieredOptions[string]{
			Client: rdb, Prefix: prefix, Codec: cache.StringCodec(), TTL: 10 * time.Minute,
		})
		if err != nil {
			panic(err)
		}
		return tc
	}
	a, b := replica(), replica()
	defer a.Close()
	defer b.Close()

	wa := cache.WriteThrough[string]{Cache: a, Store: db}
	wb := cache.WriteThrough[string]{Cache: b, Store: db}
	va, _ := wa.Get(ctx, "1") // loads from the database, fills Redis and a's L1
	vb, _ := wb.Get(ctx, "1") // from Redis: no database read
	fmt.Println(va, vb, "database reads:", db.reads)

	wa.Set(ctx, "1", "grace") // database, Redis, a's L1; b is told to drop its copy
	deadline := time.Now().Add(5 * time.Second)
	for vb != "grace" && time.Now().Before(deadline) {
		vb, _ = wb.Get(ctx, "1")
		time.Sleep(time.Millisecond)
	}
	fmt.Println(vb, "database reads:", db.reads)
	// Output:
	// ada ada database reads: 1
	// grace database reads: 1
}
