package sybroker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// subscribeStream reads a stream through a consumer group, a page (up to
// Prefetch messages) at a time: every message of the page is delivered,
// and once all are settled the group's offset is committed past the page.
// A page with a nacked message is not committed: after the longest nack
// delay it is fetched again, so its other messages come again too (at
// least once), with Deliveries counted per offset by this subscription.
// Messages of a page still unsettled when ctx ends come again to the next
// subscriber of the group.
func (b *Backend) subscribeStream(ctx context.Context, d message.Dest, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	if !broker.ValidName(opts.Group) {
		return fmt.Errorf("%w: subscribing to %s: group %q: want a name like a queue's", broker.ErrInvalid, d, opts.Group)
	}
	deliveries := map[uint64]int{}
	for {
		page, err := b.conn.Fetch(ctx, d.Name, opts.Group, broker.ReadOptions{Max: min(opts.Prefetch, 10000), Wait: 5 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading %s as group %q: %w", d, opts.Group, err)
		}
		if len(page.Messages) == 0 {
			continue
		}
		ps := &pageState{left: len(page.Messages), done: make(chan struct{})}
		for _, m := range page.Messages {
			deliveries[m.Offset]++
			msg := broker.Message{Body: m.Body, Headers: m.Headers}
			deliver(message.NewDelivery(d, msg, deliveries[m.Offset], m.Time, ps))
		}
		select {
		case <-ps.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if ps.nacked {
			t := time.NewTimer(ps.delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue
		}
		if err := b.conn.Commit(ctx, d.Name, opts.Group, page.Next); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("committing %s group %q at %d: %w", d, opts.Group, page.Next, err)
		}
		for off := range deliveries {
			if off < page.Next {
				delete(deliveries, off)
			}
		}
	}
}

// pageState settles the messages of one fetched page.
type pageState struct {
	mu     sync.Mutex
	left   int
	nacked bool
	delay  time.Duration // the longest nack delay
	done   chan struct{} // closed when every message is settled
}

func (p *pageState) settle(nack bool, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if nack {
		p.nacked = true
		p.delay = max(p.delay, delay)
	}
	if p.left--; p.left == 0 {
		close(p.done)
	}
}

func (p *pageState) Ack(context.Context, *message.Delivery) error { p.settle(false, 0); return nil }

func (p *pageState) Nack(_ context.Context, _ *message.Delivery, delay time.Duration) error {
	p.settle(true, delay)
	return nil
}
