package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Errors returned by Queue.Wait.
var (
	// ErrQueueFull means QueueConfig.MaxLen requests were already waiting.
	ErrQueueFull = errors.New("rate limit queue is full")
	// ErrWaitTooLong means the request could not be admitted within
	// QueueConfig.MaxWait (or its limit was a quota).
	ErrWaitTooLong = errors.New("rate limit wait would exceed the queue's max wait")
)

// QueueConfig configures a Queue. The zero value means every default.
type QueueConfig struct {
	// MaxLen is how many requests may wait at once; one more is refused at
	// once with ErrQueueFull. At least 1. Default DefaultQueueMaxLen (100).
	MaxLen int
	// MaxWait is the longest a request may wait for its turn; a request
	// that would wait longer is refused at once with ErrWaitTooLong.
	// Positive. Default DefaultQueueMaxWait (1s).
	MaxWait time.Duration
}

// Defaults of QueueConfig.
const (
	DefaultQueueMaxLen  = 100
	DefaultQueueMaxWait = time.Second
)

// WithDefaults returns c with zero fields set to their defaults.
func (c QueueConfig) WithDefaults() QueueConfig {
	if c.MaxLen == 0 {
		c.MaxLen = DefaultQueueMaxLen
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultQueueMaxWait
	}
	return c
}

// Validate reports every problem of c (after defaults) at once.
func (c QueueConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.MaxLen < 1 {
		errs = append(errs, fmt.Errorf("queue max length %d: expected at least 1", c.MaxLen))
	}
	if c.MaxWait <= 0 {
		errs = append(errs, fmt.Errorf("queue max wait %v: expected a positive duration", c.MaxWait))
	}
	return errors.Join(errs...)
}

// Queue implements the queue strategy: a request over its limit waits, in
// arrival order, for its turn, up to a maximum wait and a maximum number
// of waiters. Safe for concurrent use; use one Queue per route.
//
// The queue keeps no list. Order comes from the limiter: a waiting request
// reserves the next free GCRA slot (Limit.MaxWait), which moves the key's
// TAT on, so each later request reserves a later slot, and a newcomer
// cannot slip in before the waiters because the bucket stays empty until
// their slots have passed. This holds across gateway replicas sharing a
// Redis store too. Each waiter then sleeps until its own slot, so waiters
// leave in FIFO order (up to timer resolution when slots are less than a
// millisecond apart), each consuming the token it reserved.
type Queue struct {
	maxLen  int64
	maxWait time.Duration
	waiting atomic.Int64
}

// NewQueue returns a Queue.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Queue{maxLen: int64(cfg.MaxLen), maxWait: cfg.MaxWait}, nil
}

// Decide asks the route's store(s) for a decision on the current request,
// with every KindRate Limit's MaxWait set to maxWait (0 on the first call).
// With several limits, call Store.Allow for each and Merge the decisions;
// a slot reserved under one limit is not given back when another refuses,
// so put the limit most likely to refuse first and stop at a refusal.
type Decide func(maxWait time.Duration) (Decision, error)

// Wait admits a request under the queue strategy. It calls decide(0); if
// that allows the request, Wait returns at once without queueing.
// Otherwise, if MaxLen requests are already waiting it returns
// ErrQueueFull at once; else it calls decide(MaxWait) to reserve a slot,
// returns ErrWaitTooLong at once if there is none within MaxWait, and
// otherwise sleeps for the reservation's Delay and returns nil. The
// Decision returned is the last one decide gave (for the RateLimit
// headers of a 429). An error from decide is returned as is, with its
// Decision.
//
// If ctx ends during the sleep, Wait returns ctx.Err() at once; the
// reserved slot is not given back (the limiter stays conservative).
func (q *Queue) Wait(ctx context.Context, decide Decide) (Decision, error) {
	d, err := decide(0)
	if err != nil || d.Allowed {
		return d, err
	}
	if q.waiting.Add(1) > q.maxLen {
		q.waiting.Add(-1)
		return d, ErrQueueFull
	}
	defer q.waiting.Add(-1)
	d, err = decide(q.maxWait)
	if err != nil {
		return d, err
	}
	if !d.Allowed || d.Delay > q.maxWait {
		d.Allowed = false
		return d, ErrWaitTooLong
	}
	if d.Delay <= 0 {
		return d, nil
	}
	t := time.NewTimer(d.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-ctx.Done():
		return d, fmt.Errorf("waiting %v in rate limit queue: %w", d.Delay, ctx.Err())
	}
}

// Len returns the number of requests waiting now.
func (q *Queue) Len() int { return int(q.waiting.Load()) }
