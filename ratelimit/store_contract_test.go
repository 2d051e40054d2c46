package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// t0 is the injected clock's start: 80,000 s into a UTC day, so the day
// window ends 6,400 s later.
var t0 = time.Unix(1_700_000_000, 0)

const untilDayEnd = 6400 * time.Second

// testStore is the contract every Store passes. newStore returns a fresh,
// empty store that decides with the caller's now.
func testStore(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	ms := time.Millisecond

	type step struct {
		at   time.Duration // since t0
		want Decision
	}
	run := func(t *testing.T, s Store, key string, lim Limit, steps []step) {
		t.Helper()
		for i, st := range steps {
			got, err := s.Allow(ctx, key, lim, t0.Add(st.at))
			if err != nil {
				t.Fatalf("step %d at +%v: %v", i, st.at, err)
			}
			if got != st.want {
				t.Errorf("step %d at +%v:\n got %+v\nwant %+v", i, st.at, got, st.want)
			}
		}
	}
	gcra105 := Limit{Rate: Rate{N: 10, Per: time.Second}, Burst: 5}

	t.Run("gcra burst then one per interval", func(t *testing.T) {
		ok := func(rem int, reset time.Duration) Decision {
			return Decision{Allowed: true, Limit: 5, Remaining: rem, ResetAfter: reset}
		}
		no := func(reset, retry time.Duration) Decision {
			return Decision{Limit: 5, ResetAfter: reset, RetryAfter: retry}
		}
		run(t, newStore(t), "k", gcra105, []step{
			{0, ok(4, 100*ms)}, {0, ok(3, 200*ms)}, {0, ok(2, 300*ms)}, {0, ok(1, 400*ms)}, {0, ok(0, 500*ms)},
			{0, no(500*ms, 100*ms)},
			{50 * ms, no(450*ms, 50*ms)},
			{100 * ms, ok(0, 500*ms)},
			{100 * ms, no(500*ms, 100*ms)},
			{199 * ms, no(401*ms, 1*ms)},
			{200 * ms, ok(0, 500*ms)},
			{350 * ms, ok(0, 450*ms)}, // 150ms idle refilled one and a half tokens
			{350 * ms, no(450*ms, 50*ms)},
			{400 * ms, ok(0, 500*ms)},
			{600 * ms, ok(1, 400*ms)},
			{2 * time.Second, ok(4, 100*ms)}, // full again
		})
	})

	t.Run("gcra sustained rate", func(t *testing.T) {
		s := newStore(t)
		allowed := 0
		for at := time.Duration(0); at <= 10*time.Second; at += 10 * ms {
			d, err := s.Allow(ctx, "k", gcra105, t0.Add(at))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				allowed++
			}
		}
		if want := 5 + 100; allowed != want { // the burst, then one per 100ms
			t.Errorf("allowed %d in 10s at 100/s offered, want %d", allowed, want)
		}
	})

	t.Run("gcra default burst is the count", func(t *testing.T) {
		s := newStore(t)
		lim := Limit{Rate: Rate{N: 3, Per: time.Minute}}
		run(t, s, "k", lim, []step{
			{0, Decision{Allowed: true, Limit: 3, Remaining: 2, ResetAfter: 20 * time.Second}},
			{0, Decision{Allowed: true, Limit: 3, Remaining: 1, ResetAfter: 40 * time.Second}},
			{0, Decision{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: 60 * time.Second}},
			{0, Decision{Limit: 3, ResetAfter: 60 * time.Second, RetryAfter: 20 * time.Second}},
		})
	})

	t.Run("quota fixed window", func(t *testing.T) {
		lim := Limit{Kind: KindQuota, Rate: Rate{N: 3, Per: Day}}
		ok := func(rem int, reset time.Duration) Decision {
			return Decision{Allowed: true, Limit: 3, Remaining: rem, ResetAfter: reset}
		}
		run(t, newStore(t), "k", lim, []step{
			{0, ok(2, untilDayEnd)},
			{time.Second, ok(1, untilDayEnd-time.Second)},
			{time.Hour, ok(0, untilDayEnd-time.Hour)},
			{time.Hour, Decision{Limit: 3, ResetAfter: untilDayEnd - time.Hour, RetryAfter: untilDayEnd - time.Hour}},
			{untilDayEnd - ms, Decision{Limit: 3, ResetAfter: ms, RetryAfter: ms}},
			{untilDayEnd, ok(2, Day)}, // a new day
			{untilDayEnd + time.Minute, ok(1, Day-time.Minute)},
		})
	})

	t.Run("reservation", func(t *testing.T) {
		lim := Limit{Rate: Rate{N: 10, Per: time.Second}, Burst: 1, MaxWait: 250 * ms}
		res := func(delay, reset time.Duration) Decision {
			return Decision{Allowed: true, Limit: 1, Delay: delay, ResetAfter: reset}
		}
		run(t, newStore(t), "k", lim, []step{
			{0, res(0, 100*ms)},
			{0, res(100*ms, 200*ms)},
			{0, res(200*ms, 300*ms)},
			{0, Decision{Limit: 1, ResetAfter: 300 * ms, RetryAfter: 300 * ms}}, // 300ms > MaxWait
			{0, Decision{Limit: 1, ResetAfter: 300 * ms, RetryAfter: 300 * ms}}, // refusals reserve nothing
			{100 * ms, res(200*ms, 300*ms)},
		})
	})

	t.Run("keys are independent", func(t *testing.T) {
		s := newStore(t)
		lim := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 1}
		for _, key := range []string{"a", "b", "route:x|ip:10.0.0.1", ""} {
			if d, _ := s.Allow(ctx, key, lim, t0); !d.Allowed {
				t.Errorf("first request for %q refused", key)
			}
			if d, _ := s.Allow(ctx, key, lim, t0); d.Allowed {
				t.Errorf("second request for %q allowed", key)
			}
		}
	})

	t.Run("concurrent requests never exceed the burst", func(t *testing.T) {
		s := newStore(t)
		lim := Limit{Rate: Rate{N: 1, Per: time.Hour}, Burst: 50}
		var mu sync.Mutex
		allowed := 0
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 25 {
					d, err := s.Allow(ctx, "k", lim, t0)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						mu.Lock()
						allowed++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if allowed != 50 {
			t.Errorf("allowed %d of 200 concurrent requests, want exactly the burst 50", allowed)
		}
	})

	t.Run("quota survives a clock step back", func(t *testing.T) { testStoreClockStepBack(t, newStore(t)) })

	t.Run("invalid limit", func(t *testing.T) {
		s := newStore(t)
		for _, lim := range []Limit{
			{},
			{Rate: Rate{N: 0, Per: time.Second}},
			{Rate: Rate{N: 1, Per: 0}},
			{Rate: Rate{N: 1, Per: time.Second}, Burst: -1},
			{Kind: Kind(7), Rate: Rate{N: 1, Per: time.Second}},
		} {
			if _, err := s.Allow(ctx, "k", lim, t0); !errors.Is(err, ErrInvalidLimit) {
				t.Errorf("Allow(%+v) error %v, want ErrInvalidLimit", lim, err)
			}
		}
	})
}

func testStoreClockStepBack(t *testing.T, s Store) {
	ctx := context.Background()
	lim := Limit{Kind: KindQuota, Rate: Rate{N: 2, Per: time.Minute}}
	// t0 is 20s into a minute: two requests at the start of the next
	// window, then the clock steps back into the previous one.
	next := t0.Add(40 * time.Second)
	for range 2 {
		if d, err := s.Allow(ctx, "k", lim, next); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	d, err := s.Allow(ctx, "k", lim, next.Add(-2*time.Second))
	if err != nil || d.Allowed || d.RetryAfter != 62*time.Second {
		t.Errorf("after the clock stepped back 2s: %+v, %v; want refused until the stored window ends", d, err)
	}
}
