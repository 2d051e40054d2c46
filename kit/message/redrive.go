package message

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// PubSub publishes and subscribes: a Backend without Close.
type PubSub interface {
	Publisher
	Subscriber
}

// HeaderRedriveKept marks a dead letter that Redrive could not move and
// put back at the end of its dead-letter queue: the time (Unix
// nanoseconds) it did so. Redrive removes it from the messages it moves.
const HeaderRedriveKept = "x-redrive-kept"

// RedriveOptions tune Redrive. The zero value moves every message back
// to the queue it came from.
type RedriveOptions struct {
	// To sends every message there ("queue:NAME", a bare NAME, or a topic
	// or stream) instead of its x-original-queue: the way to redrive the
	// dead letters of a topic subscription, which have no queue to go
	// back to. It must exist: Redrive does not declare it.
	To string
	// Max stops after moving this many messages. Default 0: no limit.
	Max int
	// Idle stops once no message arrived for this long. Default 1s.
	Idle time.Duration
}

// NotRedrivenError is Redrive's error when it kept messages in the
// dead-letter queue because they name no queue to go back to (their
// x-original-queue is a topic, a stream, missing or unknown to the
// backend). Those messages are still there, once each; redrive them
// with RedriveOptions.To. errors.Is(err, broker.ErrInvalid) holds.
type NotRedrivenError struct {
	DLQ string
	// Kept is how many messages stayed in the dead-letter queue.
	Kept int
	// Origins counts the kept messages by x-original-queue ("" when
	// missing); at most 16 distinct values are kept, the rest count
	// under "...".
	Origins map[string]int
}

func (e *NotRedrivenError) Error() string {
	keys := make([]string, 0, len(e.Origins))
	for k := range e.Origins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: %d", k, e.Origins[k])
	}
	return fmt.Sprintf("redriving %s: kept %d message(s) in it whose %s is not a queue to go back to (%s): redrive them with RedriveOptions.To",
		e.DLQ, e.Kept, broker.HeaderOriginalQueue, b.String())
}

// Is makes the error a broker.ErrInvalid.
func (e *NotRedrivenError) Is(target error) bool { return target == broker.ErrInvalid }

func (e *NotRedrivenError) add(origin string) {
	if e.Origins == nil {
		e.Origins = map[string]int{}
	}
	if _, ok := e.Origins[origin]; !ok && len(e.Origins) >= 16 {
		origin = "..."
	}
	e.Origins[origin]++
	e.Kept++
}

// Redrive moves the messages of a dead-letter queue back to the queue
// each came from (its x-original-queue header, as both the broker and
// DeadLetter write it), or all of them to opts.To, without the
// dead-letter headers, so they are handled again from a first delivery.
// It works the same on every backend (the switchyard broker also has
// `switchyard broker redrive QUEUE` for a queue's own dead-letter queue).
// Each message is acked in the dead-letter queue only after its publish
// was confirmed; it is republished with the id "ID#redrive-N" (N from when
// it was dead-lettered), so a crash in between does not enqueue it twice
// and the original id's dedup window does not swallow it.
//
// Without opts.To, a message that names no queue to go back to (a topic
// subscription's dead letter names its topic, "topic:NAME"; a header
// missing, naming a stream, or a queue the backend does not know) is kept:
// put back at the end of the dead-letter queue as a new message (header
// x-redrive-kept, id "ID#kept-N", delivered no earlier than opts.Idle
// later, its delivery count fresh, so that repeated redrives never wear it
// out to being dropped), and Redrive goes on with the messages behind it.
// Redrive then returns a *NotRedrivenError that counts them. It makes one
// pass: it also stops when it meets a message it kept.
//
// Redrive returns how many messages it moved; it stops at opts.Max,
// after opts.Idle without a message, when ctx ends, or at the first
// failure to publish or ack (that message is nacked and stays). It takes
// the messages one at a time; the one the backend handed it as it stopped
// (at opts.Max, when it met a kept one) is nacked and counts a delivery.
func Redrive(ctx context.Context, b PubSub, dlq string, opts RedriveOptions) (int, error) {
	if _, err := ParseDest(dlq); err != nil {
		return 0, err
	}
	if opts.To != "" {
		if _, err := ParseDest(opts.To); err != nil {
			return 0, err
		}
	}
	if opts.Max < 0 {
		return 0, fmt.Errorf("%w: redrive: max %d must not be negative", broker.ErrInvalid, opts.Max)
	}
	if opts.Idle <= 0 {
		opts.Idle = time.Second
	}
	// Every message the backend hands out counts as a delivery (a
	// dead-letter queue drops a message delivered MaxDeliveries times),
	// and one handed back when Redrive stops stays with the ended
	// subscription until its visibility timeout: take one at a time.
	start := time.Now().UnixNano()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan *Delivery)
	subErr := make(chan error, 1)
	var (
		leftMu sync.Mutex
		left   []*Delivery // handed out as Redrive stopped
	)
	go func() {
		subErr <- b.Subscribe(sctx, dlq, SubscribeOptions{Prefetch: 1}, func(d *Delivery) {
			select {
			case ch <- d:
			case <-sctx.Done():
				leftMu.Lock()
				left = append(left, d)
				leftMu.Unlock()
			}
		})
	}()
	stopped := false
	stopSub := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-subErr
		// Nacked once the subscription ended, or the backend could hand
		// them to it again.
		leftMu.Lock()
		for _, d := range left {
			d.Nack(context.WithoutCancel(ctx), 0)
		}
		left = nil
		leftMu.Unlock()
	}
	kept := &NotRedrivenError{DLQ: dlq}
	result := func(n int, err error) (int, error) {
		stopSub()
		if err == nil && kept.Kept > 0 {
			err = kept
		} else if err != nil && kept.Kept > 0 {
			err = errors.Join(err, kept)
		}
		return n, err
	}
	idle := time.NewTimer(opts.Idle)
	defer idle.Stop()
	n := 0
	for opts.Max == 0 || n < opts.Max {
		var d *Delivery
		select {
		case d = <-ch:
		case <-idle.C:
			return result(n, nil)
		case err := <-subErr:
			subErr <- err // for stopSub
			stopSub()
			if ctx.Err() != nil {
				return result(n, ctx.Err())
			}
			return result(n, fmt.Errorf("redriving %s: %w", dlq, err))
		case <-ctx.Done():
			return result(n, ctx.Err())
		}
		if at, err := strconv.ParseInt(d.Headers[HeaderRedriveKept], 10, 64); err == nil && at >= start && at <= time.Now().UnixNano() {
			// Kept by this pass (or a concurrent one): every message
			// that was before it has been seen. (A time from before
			// this pass, or a forged one from the future, is just kept
			// again.) Kept again rather than nacked: its deliveries
			// stay fresh.
			if err := keep(ctx, b, dlq, d, opts.Idle); err != nil {
				return result(n, err)
			}
			return result(n, nil)
		}
		origin := d.Headers[broker.HeaderOriginalQueue]
		to := opts.To
		if to == "" {
			to = origin
			if dest, err := ParseDest(to); err != nil || dest.Kind != Queue {
				// Dead-lettering a queue writes its name; a topic
				// subscription's dead letter names its topic, and
				// anything else was put there by hand.
				if err := keep(ctx, b, dlq, d, opts.Idle); err != nil {
					return result(n, err)
				}
				kept.add(origin)
				idle.Reset(opts.Idle)
				continue
			}
		}
		m := d.Message()
		delete(m.Headers, broker.HeaderDeadLetterReason)
		delete(m.Headers, broker.HeaderOriginalQueue)
		delete(m.Headers, broker.HeaderDeliveries)
		delete(m.Headers, HeaderRedriveKept)
		if m.ID = baseID(m.ID); m.ID != "" {
			m.ID += "#redrive-" + strconv.FormatInt(d.PublishedAt.UnixNano(), 10)
		}
		if err := b.Publish(ctx, to, m); err != nil {
			if opts.To == "" && errors.Is(err, broker.ErrNotFound) {
				// Its queue is gone: keep it, go on with the others.
				if err := keep(ctx, b, dlq, d, opts.Idle); err != nil {
					return result(n, err)
				}
				kept.add(origin)
				idle.Reset(opts.Idle)
				continue
			}
			d.Nack(context.WithoutCancel(ctx), 0)
			return result(n, fmt.Errorf("redriving %s to %s: %w", dlq, to, err))
		}
		if opts.Max > 0 && n+1 == opts.Max {
			// The last one: end the subscription before the ack, whose
			// answer gives the backend credit for the next message
			// (switchyard: credit on settlement), which would otherwise
			// be pushed as Redrive stops and wait out its visibility
			// timeout, a delivery counted.
			stopSub()
		}
		if err := d.Ack(ctx); err != nil {
			return result(n, fmt.Errorf("redriving %s: acking a moved message: %w", dlq, err))
		}
		n++
		idle.Reset(opts.Idle)
	}
	return result(n, nil)
}

// baseID strips what keep added to a message id.
func baseID(id string) string {
	if i := strings.LastIndex(id, "#kept-"); i >= 0 {
		return id[:i]
	}
	return id
}

// keep puts d back at the end of dead-letter queue dlq as a new message,
// delivered no earlier than after delay (not again in this pass, unless
// it is a long one), and acks d. Its id is the same for the same d, so a
// crash between the publish and the ack does not keep it twice (the
// dedup window).
func keep(ctx context.Context, b PubSub, dlq string, d *Delivery, delay time.Duration) error {
	m := d.Message()
	m.Delay = delay
	now := time.Now().UnixNano()
	m.Headers[HeaderRedriveKept] = strconv.FormatInt(now, 10)
	stamp := now
	if !d.PublishedAt.IsZero() {
		stamp = d.PublishedAt.UnixNano()
	}
	m.ID = baseID(m.ID) + "#kept-" + strconv.FormatInt(stamp, 10)
	if err := b.Publish(ctx, dlq, m); err != nil {
		d.Nack(context.WithoutCancel(ctx), 0)
		return fmt.Errorf("redriving %s: putting back a message it cannot move: %w", dlq, err)
	}
	if err := d.Ack(ctx); err != nil {
		return fmt.Errorf("redriving %s: acking a message put back: %w", dlq, err)
	}
	return nil
}
