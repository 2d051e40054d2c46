package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// ConsumeOptions tune Consume.
type ConsumeOptions struct {
	// MaxUnacked bounds the messages pushed to this consumer and not yet
	// settled (acked or nacked, and the broker's answer back): what
	// RabbitMQ calls prefetch and JetStream MaxAckPending. Default 256.
	MaxUnacked int
	// AckBatch is how many settled messages one ack request carries at
	// most; a smaller one goes at the end of each batch the broker pushed.
	// Default MaxUnacked/4 (at least 1).
	AckBatch int
	// Visibility overrides the queue's visibility timeout.
	Visibility broker.Duration
	// NackDelay is how long a message whose handler failed stays
	// invisible before it is redelivered. Default 0 (at once).
	NackDelay time.Duration
}

// Consume has the broker push the queue's messages and calls handle for
// each, on the calling goroutine. When handle returns nil the message is
// acked; when it returns an error the message is nacked (redelivered after
// NackDelay, or dead-lettered at the queue's max_deliveries).
//
// Acks are batched and pipelined: handle goes on with the next messages
// while earlier acks wait for their fsync, and the broker gets credit for a
// message only once its ack (or nack) has been answered, so at most
// MaxUnacked messages are unsettled at any time. A receipt the broker
// refuses as stale (the visibility timeout ran out first) is not an error:
// that message has been or will be redelivered, at least once.
//
// Consume returns when ctx ends (ctx.Err()), after the acks already sent
// are answered (messages pushed but not yet handled come back after their
// visibility timeout); when the connection drops (ErrDisconnected: call Consume
// again, unacked messages come back after their visibility timeout); or
// when the broker ends the subscription or fails an ack (that error).
func (c *Conn) Consume(ctx context.Context, queue string, opts ConsumeOptions, handle func(broker.Delivery) error) error {
	if opts.MaxUnacked <= 0 {
		opts.MaxUnacked = 256
	}
	if opts.AckBatch <= 0 {
		opts.AckBatch = max(opts.MaxUnacked/4, 1)
	}
	if opts.NackDelay < 0 {
		return fmt.Errorf("%w: negative nack delay", broker.ErrInvalid)
	}
	var (
		wg    sync.WaitGroup
		stop  = make(chan error, 1)
		sctx  = context.WithoutCancel(ctx) // acks sent are seen through
		acks  []string
		nacks []string
	)
	fail := func(err error) {
		select {
		case stop <- err:
		default:
		}
	}
	settle := func(credit func(int) bool, receipts []string, nack bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if nack {
				_, err = c.Nack(sctx, queue, opts.NackDelay, receipts...)
			} else {
				_, err = c.Ack(sctx, queue, receipts...)
			}
			if err != nil {
				fail(fmt.Errorf("settling %d messages of queue %q: %w", len(receipts), queue, err))
				return
			}
			if !credit(len(receipts)) {
				fail(ErrDisconnected)
			}
		}()
	}
	err := c.push(ctx, queue, SubscribeOptions{Credit: opts.MaxUnacked, Visibility: opts.Visibility},
		func(ds []broker.Delivery, credit func(int) bool) error {
			// flush sends the pending receipts of one kind once there are
			// at least min of them.
			flush := func(rs *[]string, nack bool, min int) {
				if len(*rs) >= min {
					settle(credit, *rs, nack)
					*rs = nil
				}
			}
			for _, d := range ds {
				if handle(d) != nil {
					nacks = append(nacks, d.Receipt)
				} else {
					acks = append(acks, d.Receipt)
				}
				flush(&acks, false, opts.AckBatch)
				flush(&nacks, true, opts.AckBatch)
			}
			flush(&acks, false, 1) // the rest of this batch
			flush(&nacks, true, 1)
			return nil
		}, stop, nil)
	wg.Wait()
	return err
}
