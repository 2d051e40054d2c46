package client

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

// SubscribeOptions tune a push subscription.
type SubscribeOptions struct {
	// Credit is how many messages the broker may push ahead of the
	// handler (flow control). Default 256.
	Credit int
	// Visibility overrides the queue's visibility timeout. Default: the
	// queue's.
	Visibility broker.Duration
	// AutoAck acknowledges messages as they are pushed (at-most-once).
	AutoAck bool
}

// Subscribe has the broker push the queue's messages to handle, on the
// calling goroutine, until ctx ends (it then returns ctx.Err()) or the
// connection drops (ErrDisconnected: call Subscribe again to resume;
// unacked messages are redelivered after their visibility timeout). The
// broker sends at most Credit messages ahead; credit is returned as
// messages are handled. The handler acks with c.Ack unless AutoAck.
// Consume is the same with acks done for the handler and credit tied to
// them.
func (c *Conn) Subscribe(ctx context.Context, queue string, opts SubscribeOptions, handle func(broker.Delivery)) error {
	if opts.Credit <= 0 {
		opts.Credit = 256
	}
	handled := 0
	return c.push(ctx, queue, opts, func(ds []broker.Delivery, credit func(n int) bool) error {
		for _, d := range ds {
			handle(d)
		}
		handled += len(ds)
		if handled >= max(opts.Credit/2, 1) {
			if !credit(handled) {
				return ErrDisconnected
			}
			handled = 0
		}
		return nil
	}, nil, nil)
}

// FlowOptions tune SubscribeFlow.
type FlowOptions struct {
	SubscribeOptions
	// Started, if set, hears once the broker started the subscription,
	// before the first batch: the visibility timeout of the messages it
	// pushes (0 from a broker that does not say).
	Started func(visibility time.Duration)
}

// SubscribeFlow is Subscribe for callers that return credit themselves,
// for example as messages are settled rather than as they are handled
// (flow control in the manner of RabbitMQ's prefetch or JetStream's
// MaxAckPending): handle gets each batch the broker pushes, on the calling
// goroutine, and credit, which grants the broker n more messages. credit
// may be called on any goroutine, also after SubscribeFlow returned (it
// then does nothing the broker acts on); it returns false once the
// connection is gone. The broker pushes at most opts.Credit messages
// beyond the credit returned: a caller that never returns credit for a
// message holds its slot for good, also once the message's visibility
// timeout made it due again.
func (c *Conn) SubscribeFlow(ctx context.Context, queue string, opts FlowOptions, handle func(ds []broker.Delivery, credit func(n int) bool)) error {
	if opts.Credit <= 0 {
		opts.Credit = 256
	}
	return c.push(ctx, queue, opts.SubscribeOptions, func(ds []broker.Delivery, credit func(n int) bool) error {
		handle(ds, credit)
		return nil
	}, nil, opts.Started)
}

// push runs a push subscription: it subscribes with opts.Credit and calls
// deliver, on the calling goroutine, with each batch the broker pushes and
// a function that returns credit to the broker (false once the connection
// is gone). It ends when ctx ends (ctx.Err()), the connection drops
// (ErrDisconnected), the broker ends the subscription, deliver returns an
// error, or a value arrives on stop (that value). started, if set, hears
// the visibility timeout the broker's SubOK announced.
func (c *Conn) push(ctx context.Context, queue string, opts SubscribeOptions,
	deliver func(ds []broker.Delivery, credit func(n int) bool) error, stop <-chan error, started func(time.Duration)) error {
	l, err := c.link(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	reply := make(chan result, 1)
	msgs := make(chan result, opts.Credit+1)
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	l.pending[id] = reply
	l.subs[id] = msgs
	l.mu.Unlock()
	keepPending := false // the abandoned-subscribe path still waits for the answer
	defer func() {
		l.mu.Lock()
		delete(l.subs, id)
		if !keepPending {
			delete(l.pending, id)
		}
		l.mu.Unlock()
	}()
	send := func(f []byte) bool {
		select {
		case l.out <- f:
			return true
		case <-l.done:
			return false
		}
	}
	credit := func(n int) bool {
		f, start := wire.Begin(nil, wire.Credit, id)
		return send(wire.End(wire.AppendCredit(f, n), start))
	}
	req := wire.RecvReq{Queue: queue, Max: opts.Credit, Visibility: opts.Visibility.Std(), AutoAck: opts.AutoAck}
	f, start := wire.Begin(nil, wire.Sub, id)
	if !send(wire.End(wire.AppendRecvReq(f, &req), start)) {
		return ErrDisconnected
	}
	select {
	case r := <-reply:
		if r.err != nil {
			return r.err
		}
		if r.t == wire.Err {
			return decodeErr(r.body)
		}
		if started != nil {
			vis, _ := wire.DecodeSubOK(r.body) // unreadable: not said
			started(vis)
		}
	case <-ctx.Done():
		// The broker may still start the subscription: end it once it
		// answers, on a goroutine that lives at most as long as the link,
		// so no subscription nobody reads holds messages in flight.
		keepPending = true
		go func() {
			select {
			case r := <-reply:
				if r.err == nil && r.t != wire.Err {
					f, start := wire.Begin(nil, wire.Unsub, id)
					send(wire.End(f, start))
				}
			case <-l.done:
			}
		}()
		return ctx.Err()
	}
	unsub := func() {
		f, start := wire.Begin(nil, wire.Unsub, id)
		send(wire.End(f, start))
	}
	for {
		select {
		case r := <-msgs:
			if r.err != nil {
				return r.err
			}
			if r.t == wire.Err {
				return decodeErr(r.body)
			}
			ds := r.ds
			if r.t != wire.Msgs {
				return fmt.Errorf("%w: frame type %d on subscription %d", wire.ErrMalformed, r.t, id)
			}
			if err := deliver(ds, credit); err != nil {
				unsub()
				return err
			}
		case err := <-stop:
			unsub()
			return err
		case <-l.done:
			return ErrDisconnected
		case <-ctx.Done():
			unsub()
			return ctx.Err()
		}
	}
}
