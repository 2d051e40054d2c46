package message

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// PubSub publishes and subscribes: a Backend without Close.
type PubSub interface {
	Publisher
	Subscriber
}

// RedriveOptions tune Redrive. The zero value moves every message back
// to the queue it came from.
type RedriveOptions struct {
	// To sends every message there instead of its x-original-queue.
	To string
	// Max stops after this many messages. Default 0: no limit.
	Max int
	// Idle stops once no message arrived for this long. Default 1s.
	Idle time.Duration
}

// Redrive moves the messages of a dead-letter queue back to the queue
// each came from (its x-original-queue header, as both the broker and
// DeadLetter write it), without the dead-letter headers, so they are
// handled again from a first delivery. It works the same on every
// backend (switchyard also has `switchyard broker redrive`). Each message
// is acked in the dead-letter queue only after its publish was confirmed;
// it is republished with the id "ID#redrive-N" (N from when it was
// dead-lettered), so a crash in between does not enqueue it twice and the
// original id's dedup window does not swallow it. Redrive returns how many
// messages it moved; it stops at opts.Max, after opts.Idle without a
// message, when ctx ends, or at the first failure (that message is nacked
// and stays). A header that names a topic or a stream (which no
// dead-lettering writes) is such a failure.
func Redrive(ctx context.Context, b PubSub, dlq string, opts RedriveOptions) (int, error) {
	if _, err := ParseDest(dlq); err != nil {
		return 0, err
	}
	if opts.To != "" {
		if _, err := ParseDest(opts.To); err != nil {
			return 0, err
		}
	}
	if opts.Idle <= 0 {
		opts.Idle = time.Second
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan *Delivery)
	subErr := make(chan error, 1)
	go func() {
		subErr <- b.Subscribe(sctx, dlq, SubscribeOptions{Prefetch: 64}, func(d *Delivery) {
			select {
			case ch <- d:
			case <-sctx.Done():
				d.Nack(context.WithoutCancel(sctx), 0)
			}
		})
	}()
	stop := func(n int, err error) (int, error) {
		cancel()
		<-subErr
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
			return stop(n, nil)
		case err := <-subErr:
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			return n, fmt.Errorf("redriving %s: %w", dlq, err)
		case <-ctx.Done():
			return stop(n, ctx.Err())
		}
		to := opts.To
		if to == "" {
			to = d.Headers[broker.HeaderOriginalQueue]
		}
		dest, err := ParseDest(to)
		if err == nil && opts.To == "" && dest.Kind != Queue {
			// Dead-lettering writes a queue's name; anything else was
			// put there by whoever published into the dead-letter queue.
			err = fmt.Errorf("%w: %q is a %s, not a queue", broker.ErrInvalid, to, dest.Kind)
		}
		if err != nil {
			d.Nack(context.WithoutCancel(ctx), 0)
			return stop(n, fmt.Errorf("redriving %s: a message without a usable %s header (%q): %w", dlq, broker.HeaderOriginalQueue, to, err))
		}
		m := d.Message()
		delete(m.Headers, broker.HeaderDeadLetterReason)
		delete(m.Headers, broker.HeaderOriginalQueue)
		delete(m.Headers, broker.HeaderDeliveries)
		if m.ID != "" {
			m.ID += "#redrive-" + strconv.FormatInt(d.PublishedAt.UnixNano(), 10)
		}
		if err := b.Publish(ctx, to, m); err != nil {
			d.Nack(context.WithoutCancel(ctx), 0)
			return stop(n, fmt.Errorf("redriving %s to %s: %w", dlq, to, err))
		}
		if err := d.Ack(ctx); err != nil {
			return stop(n, fmt.Errorf("redriving %s: acking a moved message: %w", dlq, err))
		}
		n++
		idle.Reset(opts.Idle)
	}
	return stop(n, nil)
}
