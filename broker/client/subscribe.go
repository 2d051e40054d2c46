package client

import (
	"context"

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
func (c *Conn) Subscribe(ctx context.Context, queue string, opts SubscribeOptions, handle func(broker.Delivery)) error {
	if opts.Credit <= 0 {
		opts.Credit = 256
	}
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
	defer func() {
		l.mu.Lock()
		delete(l.subs, id)
		delete(l.pending, id)
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
	case <-ctx.Done():
		return ctx.Err()
	}
	handled := 0
	for {
		select {
		case r := <-msgs:
			if r.err != nil {
				return r.err
			}
			if r.t == wire.Err {
				return decodeErr(r.body)
			}
			ds, err := wire.DecodeMsgs(r.body)
			if err != nil {
				return err
			}
			for _, d := range ds {
				handle(d)
			}
			handled += len(ds)
			if handled >= max(opts.Credit/2, 1) {
				f, start := wire.Begin(nil, wire.Credit, id)
				if !send(wire.End(wire.AppendUvarint(f, uint64(handled)), start)) {
					return ErrDisconnected
				}
				handled = 0
			}
		case <-l.done:
			return ErrDisconnected
		case <-ctx.Done():
			f, start := wire.Begin(nil, wire.Unsub, id)
			send(wire.End(f, start))
			return ctx.Err()
		}
	}
}
