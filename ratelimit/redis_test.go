package ratelimit

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const testRedisAddr = "127.0.0.1:6379"

// requireRedis skips the test when no Redis answers at testRedisAddr, and
// returns a client for inspecting keys.
func requireRedis(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testRedisAddr, DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Skipf("redis not reachable at %s: %v", testRedisAddr, err)
	}
	return c
}

// testPrefix returns a key prefix unique to this test run, and deletes its
// keys when the test ends.
func testPrefix(t *testing.T, c *redis.Client) string {
	t.Helper()
	p := "switchyard:test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":" + rand.Text()[:10] + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, p+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return p
}

func newTestRedis(t *testing.T, url string, opts RedisOptions) *Redis {
	t.Helper()
	r, err := NewRedis(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisContract(t *testing.T) {
	c := requireRedis(t)
	testStore(t, func(t *testing.T) Store {
		return newTestRedis(t, "redis://"+testRedisAddr, RedisOptions{Prefix: testPrefix(t, c), Clock: CallerClock})
	})
}

// TestRedisSharedAcrossReplicas: two stores, as two gateway replicas with
// their own connections, enforce one limit together on Redis's clock.
func TestRedisSharedAcrossReplicas(t *testing.T) {
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	a := newTestRedis(t, "redis://"+testRedisAddr, RedisOptions{Prefix: prefix})
	b := newTestRedis(t, "redis://"+testRedisAddr+"/0", RedisOptions{Prefix: prefix})
	ctx := context.Background()
	lim := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 5}
	quota := Limit{Kind: KindQuota, Rate: Rate{N: 4, Per: Day}}
	allowed, quotaAllowed := 0, 0
	for i := range 10 {
		s := []*Redis{a, b}[i%2]
		// ServerClock: the callers' clocks (here absurd) do not matter.
		d, err := s.Allow(ctx, "client", lim, time.Unix(int64(i)*1e6, 0))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
		if d, _ = s.Allow(ctx, "client", quota, time.Time{}); d.Allowed {
			quotaAllowed++
		}
	}
	if allowed != 5 || quotaAllowed != 4 {
		t.Errorf("two replicas allowed %d (rate) and %d (quota) of 10, want the burst 5 and the quota 4",
			allowed, quotaAllowed)
	}
}

// TestRedisKeysExpire: every key carries a TTL no longer than the time it
// holds state, so Redis memory stays bounded.
func TestRedisKeysExpire(t *testing.T) {
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	r := newTestRedis(t, "redis://"+testRedisAddr, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	for _, tc := range []struct {
		key string
		lim Limit
		max time.Duration
	}{
		{"r:k", Limit{Rate: Rate{N: 10, Per: time.Second}, Burst: 5}, 100*time.Millisecond + 2*time.Millisecond},
		{"q:k", Limit{Kind: KindQuota, Rate: Rate{N: 10, Per: time.Minute}}, time.Minute + 2*time.Millisecond},
	} {
		if _, err := r.Allow(ctx, "k", tc.lim, time.Time{}); err != nil {
			t.Fatal(err)
		}
		ttl, err := c.PTTL(ctx, prefix+tc.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > tc.max {
			t.Errorf("%s: TTL %v, want in (0, %v]", tc.key, ttl, tc.max)
		}
	}
}

// TestRedisScriptReload: after SCRIPT FLUSH the store falls back to EVAL.
func TestRedisScriptReload(t *testing.T) {
	c := requireRedis(t)
	r := newTestRedis(t, "redis://"+testRedisAddr, RedisOptions{Prefix: testPrefix(t, c)})
	ctx := context.Background()
	lim := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 2}
	if d, err := r.Allow(ctx, "k", lim, time.Time{}); err != nil || !d.Allowed {
		t.Fatalf("first: %+v, %v", d, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := r.Allow(ctx, "k", lim, time.Time{}); err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after SCRIPT FLUSH: %+v, %v", d, err)
	}
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentAddr returns the address of a server that accepts connections and
// never answers, like a hung Redis.
func silentAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestRedisUnavailable(t *testing.T) {
	lim := Limit{Rate: Rate{N: 10, Per: time.Second}, Burst: 5}
	closed := Decision{Limit: 5, ResetAfter: time.Second, RetryAfter: time.Second}
	open := Decision{Allowed: true, Limit: 5}
	for _, tc := range []struct {
		name string
		addr string
		opts RedisOptions
		want Decision
	}{
		{"refused/fail closed", deadAddr(t), RedisOptions{}, closed},
		{"refused/fail open", deadAddr(t), RedisOptions{FailOpen: true}, open},
		{"hung/fail closed", silentAddr(t), RedisOptions{Timeout: 50 * time.Millisecond}, closed},
		{"hung/fail open", silentAddr(t), RedisOptions{Timeout: 50 * time.Millisecond, FailOpen: true}, open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRedis(t, "redis://"+tc.addr, tc.opts)
			d, err := r.Allow(context.Background(), "k", lim, t0)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("error %v, want ErrUnavailable", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) {
				t.Errorf("error %v does not carry the network error", err)
			}
			if d != tc.want {
				t.Errorf("decision %+v, want %+v", d, tc.want)
			}
			if err := r.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Ping: %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestNewRedisErrors(t *testing.T) {
	_, err := NewRedis("http://user:s3cret@host:1", RedisOptions{})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "parsing redis url") {
		t.Errorf("bad URL: %v; want an error naming the step, without the password", err)
	}
	if _, err := NewRedis("redis://127.0.0.1:1", RedisOptions{Clock: 9, Timeout: -1}); err == nil ||
		!strings.Contains(err.Error(), "clock") || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("bad options: %v; want both problems", err)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	c := redis.NewClient(&redis.Options{Addr: testRedisAddr})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		b.Skipf("redis not reachable at %s: %v", testRedisAddr, err)
	}
	r, err := NewRedis("redis://"+testRedisAddr, RedisOptions{Prefix: "switchyard:bench:" + rand.Text()[:10] + ":"})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	lim := Limit{Rate: Rate{N: 1_000_000, Per: time.Second}, Burst: 1000}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Allow(ctx, "k", lim, time.Time{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestRedisQueueAcrossReplicas: waiters queued on two replicas sharing a
// Redis store get successive slots, in arrival order, on Redis's clock.
func TestRedisQueueAcrossReplicas(t *testing.T) {
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	const slot = 50 * time.Millisecond
	lim := Limit{Rate: Rate{N: 1, Per: slot}, Burst: 1}
	ctx := context.Background()
	var replicas [2]*Redis
	var queues [2]*Queue
	for i := range replicas {
		replicas[i] = newTestRedis(t, "redis://"+testRedisAddr, RedisOptions{Prefix: prefix})
		queues[i] = newTestQueue(t, QueueConfig{MaxLen: 10, MaxWait: time.Second})
	}
	decide := func(r *Redis) Decide {
		return func(maxWait time.Duration) (Decision, error) {
			l := lim
			l.MaxWait = maxWait
			return r.Allow(ctx, "k", l, time.Time{})
		}
	}
	start := time.Now()
	if d, err := queues[0].Wait(ctx, decide(replicas[0])); err != nil || d.Delay != 0 {
		t.Fatalf("first request: %+v, %v", d, err)
	}
	// Reserve sequentially (Delay tells each its slot) but do not sleep:
	// cancelled contexts return right after the reservation.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	// Waiter i's slot S(i) lies in [before+Delay, after+Delay], measured
	// around its Wait; S(i) = S(0) + i·slot with S(0) >= start. Check what
	// these bounds allow to be checked soundly.
	var prevLow time.Duration
	for i := 1; i <= 4; i++ {
		before := time.Since(start)
		d, err := queues[i%2].Wait(cancelled, decide(replicas[i%2]))
		after := time.Since(start)
		if !errors.Is(err, context.Canceled) || !d.Allowed || d.Delay <= 0 {
			t.Fatalf("waiter %d: %+v, %v; want a reservation", i, d, err)
		}
		low, high := before+d.Delay, after+d.Delay
		if high < time.Duration(i)*slot-time.Millisecond {
			t.Errorf("waiter %d due by +%v, before its slot at +%v", i, high, time.Duration(i)*slot)
		}
		if i > 1 && high-prevLow < slot-time.Millisecond {
			t.Errorf("waiter %d due by +%v, less than a slot after waiter %d (from +%v)", i, high, i-1, prevLow)
		}
		prevLow = low
	}
}
