package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

var (
	_ TopicClient  = (*Conn)(nil)
	_ StreamClient = (*Conn)(nil)
	_ GroupClient  = (*Conn)(nil)
)

// PublishTopic implements TopicClient: the batch travels in one frame and
// costs one group commit for the bound queues.
func (c *Conn) PublishTopic(ctx context.Context, topic string, msgs ...broker.Message) ([]broker.TopicResult, error) {
	return c.publishTopic(ctx, &wire.PubReq{Queue: topic, Msgs: broker.WithTraceContext(ctx, msgs)})
}

// PublishTopicNoWait publishes to a topic without waiting for the bound
// queues' records to be durable (at-most-once for the queues; live
// subscribers get the messages either way).
func (c *Conn) PublishTopicNoWait(ctx context.Context, topic string, msgs ...broker.Message) ([]broker.TopicResult, error) {
	return c.publishTopic(ctx, &wire.PubReq{Queue: topic, NoWait: true, Msgs: broker.WithTraceContext(ctx, msgs)})
}

func (c *Conn) publishTopic(ctx context.Context, req *wire.PubReq) ([]broker.TopicResult, error) {
	r, err := c.roundTripSize(ctx, wire.TopicPub, wire.PubReqSize(req), func(b []byte) []byte { return wire.AppendPubReq(b, req) })
	if err != nil {
		return nil, err
	}
	if err := expect(r, wire.TopicPubOK); err != nil {
		return nil, err
	}
	return wire.DecodeTopicPubOK(r.body)
}

// SubscribeTopic implements TopicClient with a push subscription: the
// broker sends at most opts.Credit messages ahead of Next, and Next
// returns credit as messages are taken. The subscription belongs to the
// current connection: when it drops, Next returns ErrDisconnected and the
// caller subscribes again (the next request redials), as with Subscribe.
func (c *Conn) SubscribeTopic(ctx context.Context, topic string, opts TopicOptions) (TopicSubscription, error) {
	credit := opts.Credit
	if credit <= 0 {
		credit = 256
	}
	l, err := c.link(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	reply := make(chan result, 1)
	msgs := make(chan result, credit+1) // at most credit frames, then an Err
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return nil, l.err
	}
	l.pending[id] = reply
	l.subs[id] = msgs
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.pending, id)
		delete(l.subs, id)
		l.mu.Unlock()
	}
	f, start := wire.Begin(nil, wire.TopicSub, id)
	f = wire.End(wire.AppendTopicSubReq(f, &wire.TopicSubReq{Topic: topic, Credit: credit}), start)
	select {
	case l.out <- f:
	case <-l.done:
		forget()
		return nil, ErrDisconnected
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
	select {
	case r := <-reply:
		switch {
		case r.err != nil:
			forget()
			return nil, r.err
		case r.t == wire.Err:
			forget()
			return nil, decodeErr(r.body)
		case r.t != wire.SubOK:
			forget()
			return nil, fmt.Errorf("%w: reply type %#x, want %#x", wire.ErrMalformed, r.t, wire.SubOK)
		case ctx.Err() != nil:
			// The answer and the cancellation raced and the answer won the
			// select: the caller still gave up, so end the subscription
			// rather than hand back one it will never close.
			l.mu.Lock()
			delete(l.subs, id)
			l.mu.Unlock()
			f, start := wire.Begin(nil, wire.Unsub, id)
			select {
			case l.out <- wire.End(f, start):
			case <-l.done:
			}
			return nil, ctx.Err()
		}
	case <-ctx.Done():
		// The broker may still start the subscription: end it once it
		// answers, on a goroutine that lives at most as long as the link.
		l.mu.Lock()
		delete(l.subs, id)
		l.mu.Unlock()
		go func() {
			select {
			case r := <-reply:
				if r.err == nil && r.t == wire.SubOK {
					f, start := wire.Begin(nil, wire.Unsub, id)
					select {
					case l.out <- wire.End(f, start):
					case <-l.done:
					}
				}
			case <-l.done:
			}
		}()
		return nil, ctx.Err()
	}
	return &connTopicSub{topic: topic, l: l, id: id, msgs: msgs, credit: credit, closed: make(chan struct{})}, nil
}

// connTopicSub is a topic subscription on one link.
type connTopicSub struct {
	topic  string
	l      *link
	id     uint32
	msgs   chan result // pushed frames, from the link's reader
	credit int

	// Owned by Next.
	buf   []broker.TopicMessage // decoded messages of the last frame
	pos   int                   // next message of buf to return
	taken int                   // messages returned since credit was last granted
	err   error                 // why the subscription ended

	closeOnce sync.Once
	closed    chan struct{}
}

// Next implements TopicSubscription.
func (s *connTopicSub) Next(ctx context.Context) (broker.TopicMessage, error) {
	if s.err == nil {
		select {
		case <-s.closed:
			s.end(ErrSubscriptionClosed)
		default:
		}
	}
	for {
		if s.err != nil {
			return broker.TopicMessage{}, s.err
		}
		if s.pos < len(s.buf) {
			m := s.buf[s.pos]
			s.buf[s.pos] = broker.TopicMessage{} // do not keep the body alive
			s.pos++
			s.taken++
			if s.taken >= max(s.credit/2, 1) {
				s.grant()
			}
			return m, nil
		}
		select {
		case r := <-s.msgs:
			s.take(r)
		case <-s.closed:
			s.end(ErrSubscriptionClosed)
		case <-s.l.done:
			// Frames that arrived before the loss come first.
			select {
			case r := <-s.msgs:
				s.take(r)
			default:
				s.l.mu.Lock()
				err := s.l.err
				s.l.mu.Unlock()
				s.end(err)
			}
		case <-ctx.Done():
			return broker.TopicMessage{}, ctx.Err()
		}
	}
}

// take decodes a pushed frame into buf, or ends the subscription.
func (s *connTopicSub) take(r result) {
	switch {
	case r.err != nil:
		s.end(r.err)
	case r.t == wire.Err:
		s.end(decodeErr(r.body))
	case r.t != wire.TopicMsgs:
		s.end(fmt.Errorf("%w: pushed frame type %#x, want %#x", wire.ErrMalformed, r.t, wire.TopicMsgs))
	default:
		var err error
		s.buf, err = wire.DecodeTopicMsgs(s.buf[:0], r.body)
		s.pos = 0
		if err != nil {
			s.buf = s.buf[:0]
			s.end(fmt.Errorf("decoding pushed messages of topic %q: %w", s.topic, err))
		}
	}
}

// end records why the subscription ended and stops routing frames to it.
func (s *connTopicSub) end(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	s.l.mu.Lock()
	delete(s.l.subs, s.id)
	s.l.mu.Unlock()
}

// grant returns the credit of the messages taken since the last grant. A
// failed send means the link is gone, which Next reports next.
func (s *connTopicSub) grant() {
	f, start := wire.Begin(make([]byte, 0, 16), wire.Credit, s.id)
	select {
	case s.l.out <- wire.End(wire.AppendCredit(f, s.taken), start):
		s.taken = 0
	case <-s.l.done:
	case <-s.closed:
	}
}

// Close implements TopicSubscription: it tells the broker to end the
// subscription without waiting for its answer.
func (s *connTopicSub) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.l.mu.Lock()
		delete(s.l.subs, s.id)
		s.l.mu.Unlock()
		f, start := wire.Begin(make([]byte, 0, 9), wire.Unsub, s.id)
		select {
		case s.l.out <- wire.End(f, start):
		case <-s.l.done:
		}
	})
	return nil
}

// Append implements StreamClient: the batch travels in one frame and costs
// one group commit.
func (c *Conn) Append(ctx context.Context, stream string, msgs ...broker.Message) ([]uint64, error) {
	req := wire.AppendReq{Stream: stream, Msgs: broker.WithTraceContext(ctx, msgs)}
	r, err := c.roundTrip(ctx, wire.StreamAppend, func(b []byte) []byte { return wire.AppendAppendReq(b, &req) })
	if err != nil {
		return nil, err
	}
	if err := expect(r, wire.AppendOK); err != nil {
		return nil, err
	}
	return wire.DecodeAppendOK(r.body)
}

// ReadStream implements StreamClient.
func (c *Conn) ReadStream(ctx context.Context, stream string, from Position, opts broker.ReadOptions) (StreamPage, error) {
	if err := CheckRead(opts); err != nil {
		return StreamPage{}, err
	}
	req := wire.ReadReq{Stream: stream, From: from.from, Offset: from.offset, Time: from.time, Max: opts.Max, Wait: opts.Wait}
	return c.readPage(ctx, wire.StreamRead, func(b []byte) []byte { return wire.AppendReadReq(b, &req) })
}

// Fetch implements GroupClient.
func (c *Conn) Fetch(ctx context.Context, stream, group string, opts broker.ReadOptions) (StreamPage, error) {
	if err := CheckRead(opts); err != nil {
		return StreamPage{}, err
	}
	req := wire.FetchReq{Stream: stream, Group: group, Max: opts.Max, Wait: opts.Wait}
	return c.readPage(ctx, wire.GroupFetch, func(b []byte) []byte { return wire.AppendFetchReq(b, &req) })
}

func (c *Conn) readPage(ctx context.Context, t wire.Type, body func([]byte) []byte) (StreamPage, error) {
	r, err := c.roundTrip(ctx, t, body)
	if err != nil {
		return StreamPage{}, err
	}
	if err := expect(r, wire.StreamMsgs); err != nil {
		return StreamPage{}, err
	}
	var p wire.StreamPage
	if err := wire.DecodeStreamMsgs(&p, r.body); err != nil {
		return StreamPage{}, err
	}
	return StreamPage{Messages: p.Messages, Next: p.Next}, nil
}

// Commit implements GroupClient.
func (c *Conn) Commit(ctx context.Context, stream, group string, offset uint64) error {
	req := wire.CommitReq{Stream: stream, Group: group, Offset: offset}
	r, err := c.roundTrip(ctx, wire.GroupCommit, func(b []byte) []byte { return wire.AppendCommitReq(b, &req) })
	if err != nil {
		return err
	}
	if err := expect(r, wire.CommitOK); err != nil {
		return err
	}
	got, err := wire.DecodeCommitOK(r.body)
	if err != nil {
		return err
	}
	if got != offset {
		return fmt.Errorf("%w: broker committed offset %d, asked for %d", wire.ErrMalformed, got, offset)
	}
	return nil
}
