package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestQueue(t *testing.T, cfg QueueConfig) *Queue {
	t.Helper()
	q, err := NewQueue(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// decider returns a Decide for one key and limit on s, at the time now()
// returns, calling onReserve (if set) after each reservation attempt.
func decider(s Store, lim Limit, now func() time.Time, onReserve func()) Decide {
	return func(maxWait time.Duration) (Decision, error) {
		l := lim
		l.MaxWait = maxWait
		d, err := s.Allow(context.Background(), "k", l, now())
		if maxWait > 0 && onReserve != nil {
			onReserve()
		}
		return d, err
	}
}

// TestQueueFIFO: waiters get slots in arrival order, one interval apart,
// and none leaves before its slot. (The order in which the goroutines then
// run is up to the scheduler: a stalled machine can release several at
// once, so the test checks the slots, not the order of wake-ups.)
func TestQueueFIFO(t *testing.T) {
	const slot = 50 * time.Millisecond
	const waiters = 5
	m := newTestMemory(t, 0)
	q := newTestQueue(t, QueueConfig{MaxLen: waiters, MaxWait: time.Second})
	lim := Limit{Rate: Rate{N: 1, Per: slot}, Burst: 1}
	ctx := context.Background()

	start := time.Now()
	if d, err := q.Wait(ctx, decider(m, lim, func() time.Time { return start }, nil)); err != nil || !d.Allowed || d.Delay != 0 {
		t.Fatalf("first request: %+v, %v; want admitted at once", d, err)
	}
	type result struct {
		due     time.Duration // reservation time + Delay, since start
		elapsed time.Duration // when Wait returned, since start
	}
	results := make([]result, waiters+1)
	var wg sync.WaitGroup
	for i := 1; i <= waiters; i++ {
		reserved := make(chan struct{})
		wg.Go(func() {
			// The store decides at a frozen start, so the slots are exact
			// even on a loaded machine; the waiting is real.
			at := start
			d, err := q.Wait(ctx, decider(m, lim, func() time.Time { return at }, func() { close(reserved) }))
			if err != nil || !d.Allowed || d.Delay <= 0 {
				t.Errorf("waiter %d: %+v, %v; want allowed after a delay", i, d, err)
			}
			results[i] = result{due: at.Add(d.Delay).Sub(start), elapsed: time.Since(start)}
		})
		<-reserved // waiter i holds its reservation before i+1 arrives
		if q.Len() != i {
			t.Errorf("after %d waiters arrived, Len %d", i, q.Len())
		}
	}
	wg.Wait()
	for i := 1; i <= waiters; i++ {
		r := results[i]
		// Waiter i holds the i-th slot after the first request.
		if want := time.Duration(i) * slot; r.due != want {
			t.Errorf("waiter %d is due at +%v, want its slot at +%v", i, r.due, want)
		}
		if r.elapsed < r.due {
			t.Errorf("waiter %d left at +%v, before it was due at +%v", i, r.elapsed, r.due)
		}
	}
	if q.Len() != 0 {
		t.Errorf("Len %d after all left", q.Len())
	}
}

func TestQueueFull(t *testing.T) {
	m := newTestMemory(t, 0)
	q := newTestQueue(t, QueueConfig{MaxLen: 2, MaxWait: time.Minute})
	lim := Limit{Rate: Rate{N: 1, Per: 10 * time.Second}, Burst: 1}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := q.Wait(ctx, decider(m, lim, time.Now, nil)); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for range 2 {
		reserved := make(chan struct{})
		go func() {
			_, err := q.Wait(ctx, decider(m, lim, time.Now, func() { close(reserved) }))
			errs <- err
		}()
		<-reserved
	}
	calls := 0
	d, err := q.Wait(ctx, func(maxWait time.Duration) (Decision, error) {
		calls++
		return decider(m, lim, time.Now, nil)(maxWait)
	})
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("third waiter: %v, want ErrQueueFull", err)
	}
	if calls != 1 || d.Allowed || d.RetryAfter <= 0 {
		t.Errorf("third waiter: %d decide calls, decision %+v; want 1 call and the refusal", calls, d)
	}
	// Cancelling the waiters ends their wait at once.
	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter: %v, want context.Canceled", err)
		}
	}
	if q.Len() != 0 {
		t.Errorf("Len %d after cancellation", q.Len())
	}
}

func TestQueueImmediateOutcomes(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return t0 } // no real waiting here
	rate := Limit{Rate: Rate{N: 1, Per: time.Second}, Burst: 1}
	boom := errors.New("boom")
	tests := []struct {
		name    string
		lim     Limit
		prior   int // requests before the one under test
		wantErr error
		want    Decision
	}{
		{"under the limit passes", rate, 0, nil, Decision{Allowed: true, Limit: 1, ResetAfter: time.Second}},
		{"within max wait reserves", rate, 1, nil,
			Decision{Allowed: true, Limit: 1, ResetAfter: 2 * time.Second, Delay: time.Second}},
		{"too long a wait is refused at once", rate, 2, ErrWaitTooLong,
			Decision{Limit: 1, ResetAfter: 2 * time.Second, RetryAfter: 2 * time.Second}},
		{"a quota is never waited for", Limit{Kind: KindQuota, Rate: Rate{N: 1, Per: Day}}, 1, ErrWaitTooLong,
			Decision{Limit: 1, ResetAfter: untilDayEnd, RetryAfter: untilDayEnd}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMemory(t, 0)
			q := newTestQueue(t, QueueConfig{MaxLen: 10, MaxWait: 1500 * time.Millisecond})
			for range tc.prior {
				l := tc.lim
				l.MaxWait = 1500 * time.Millisecond
				m.Allow(ctx, "k", l, t0)
			}
			// Wait would sleep tc.want.Delay: run it with a cancelled context
			// so the test does not sleep; the decision is what we check.
			cctx := ctx
			if tc.want.Delay > 0 {
				c, cancel := context.WithCancel(ctx)
				cancel()
				cctx = c
			}
			d, err := q.Wait(cctx, decider(m, tc.lim, now, nil))
			if tc.want.Delay > 0 {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("error %v, want the cancellation", err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if d != tc.want {
				t.Errorf("decision %+v, want %+v", d, tc.want)
			}
		})
	}
	t.Run("decide error is returned", func(t *testing.T) {
		q := newTestQueue(t, QueueConfig{})
		_, err := q.Wait(ctx, func(time.Duration) (Decision, error) { return Decision{Allowed: true}, boom })
		if !errors.Is(err, boom) {
			t.Errorf("error %v, want boom", err)
		}
	})
}

func TestQueueConfig(t *testing.T) {
	if err := (QueueConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	err := QueueConfig{MaxLen: -1, MaxWait: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "max length -1") || !strings.Contains(err.Error(), "max wait -1s") {
		t.Errorf("bad config: %v; want both problems", err)
	}
}
