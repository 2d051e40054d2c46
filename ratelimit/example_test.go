package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/ratelimit"
)

func ExampleParseRate() {
	r, err := ratelimit.ParseRate("100/s")
	fmt.Println(r.N, r.Per, r.Interval(), err)
	q, _ := ratelimit.ParseQuota("10000/day")
	fmt.Println(q)
	_, err = ratelimit.ParseRate("100 per second")
	fmt.Println(err)
	// Output:
	// 100 1s 10ms <nil>
	// 10000/d
	// parsing rate "100 per second": missing "/": expected N/UNIT like "100/s", "10000/day" or "5/250ms": invalid rate
}

// A route limited to "rate: 10/s, burst: 5" per client IP, with the drop
// strategy.
func ExampleMemory() {
	store, err := ratelimit.NewMemory(ratelimit.MemoryConfig{}) // up to 1M keys
	if err != nil {
		panic(err)
	}
	rate, _ := ratelimit.ParseRate("10/s")
	lim := ratelimit.Limit{Rate: rate, Burst: 5}
	now := time.Unix(1_700_000_000, 0) // normally time.Now()
	ctx := context.Background()
	for i := range 6 {
		d, _ := store.Allow(ctx, "route:api|ip:192.0.2.1", lim, now)
		fmt.Println(i, d.Allowed, d.Remaining)
		if !d.Allowed {
			h := http.Header{}
			d.SetHeaders(h) // then answer 429
			fmt.Println(h)
		}
	}
	// Output:
	// 0 true 4
	// 1 true 3
	// 2 true 2
	// 3 true 1
	// 4 true 0
	// 5 false 0
	// map[Ratelimit-Limit:[5] Ratelimit-Remaining:[0] Ratelimit-Reset:[1] Retry-After:[1]]
}

// A quota and a rate on the same request: check both, act on the merged
// decision.
func ExampleDecision_Merge() {
	store, _ := ratelimit.NewMemory(ratelimit.MemoryConfig{})
	ctx, now := context.Background(), time.Unix(1_700_000_000, 0)
	perSecond := ratelimit.Limit{Rate: ratelimit.Rate{N: 100, Per: time.Second}, Burst: 200}
	perDay := ratelimit.Limit{Kind: ratelimit.KindQuota, Rate: ratelimit.Rate{N: 2, Per: ratelimit.Day}}
	for range 3 {
		a, _ := store.Allow(ctx, "consumer:acme|rate", perSecond, now)
		b, _ := store.Allow(ctx, "consumer:acme|quota", perDay, now)
		d := a.Merge(b)
		fmt.Println(d.Allowed, d.Limit, d.Remaining, d.RetryAfter)
	}
	// Output:
	// true 2 1 0s
	// true 2 0 0s
	// false 2 0 1h46m40s
}

// The queue strategy: over the limit, wait in line for up to a second.
func ExampleQueue() {
	store, _ := ratelimit.NewMemory(ratelimit.MemoryConfig{})
	queue, _ := ratelimit.NewQueue(ratelimit.QueueConfig{MaxLen: 100, MaxWait: time.Second})
	lim := ratelimit.Limit{Rate: ratelimit.Rate{N: 4, Per: time.Second}, Burst: 1}
	ctx := context.Background()
	for i := range 3 {
		d, err := queue.Wait(ctx, func(maxWait time.Duration) (ratelimit.Decision, error) {
			l := lim
			l.MaxWait = maxWait // 0, then the queue's MaxWait if over the limit
			return store.Allow(ctx, "route:search", l, time.Now())
		})
		switch {
		case errors.Is(err, ratelimit.ErrQueueFull), errors.Is(err, ratelimit.ErrWaitTooLong):
			fmt.Println("429") // with d.SetHeaders
		case err != nil:
			fmt.Println("client gone:", err)
		default:
			fmt.Println(i, "forwarded; was queued:", d.Delay > 0) // the 2nd and 3rd waited ~250ms each
		}
	}
	// Output:
	// 0 forwarded; was queued: false
	// 1 forwarded; was queued: true
	// 2 forwarded; was queued: true
}

// A shared limit across gateway replicas.
func ExampleNewRedis() {
	store, err := ratelimit.NewRedis("redis://127.0.0.1:6379/0", ratelimit.RedisOptions{FailOpen: true})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	ctx := context.Background()
	if err := store.Ping(ctx); err != nil {
		fmt.Println("rate limits fail open until redis is back:", err)
	}
	d, err := store.Allow(ctx, "route:api|ip:192.0.2.1",
		ratelimit.Limit{Rate: ratelimit.Rate{N: 100, Per: time.Second}, Burst: 200}, time.Now())
	if err != nil {
		fmt.Println("log:", err) // d still says what to do
	}
	fmt.Println(d.Allowed)
}

// The degrade strategy: forward over the limit, flagged.
func ExampleStrategy() {
	s, _ := ratelimit.ParseStrategy("degrade")
	req, _ := http.NewRequest(http.MethodGet, "http://backend/search", nil)
	d := ratelimit.Decision{Allowed: false}
	if !d.Allowed && s == ratelimit.StrategyDegrade {
		req.Header.Set(ratelimit.HeaderDegraded, "1")
	}
	fmt.Println(s, req.Header)
	// Output:
	// degrade map[X-Degraded:[1]]
}

// A max-in-flight limit per upstream.
func ExampleConcurrency() {
	c, _ := ratelimit.NewConcurrency(2)
	for range 3 {
		if c.TryAcquire() {
			fmt.Println("forward; in flight:", c.InFlight())
			// ... and c.Release() when the response is done
		} else {
			fmt.Println("503")
		}
	}
	// Output:
	// forward; in flight: 1
	// forward; in flight: 2
	// 503
}
