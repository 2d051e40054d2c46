package native

import (
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

// maxWait bounds the wait of a stream read or group fetch, as the HTTP API
// does.
const maxWait = 60 * time.Second

// maxPush bounds the messages of one pushed frame.
const maxPush = 256

// handlePubSub serves the topic and stream requests; it reports false for
// a type it does not know.
func (c *conn) handlePubSub(t wire.Type, id uint32, body []byte) bool {
	switch t {
	case wire.TopicPub:
		c.topicPublish(id, body)
	case wire.TopicSub:
		c.topicSubscribe(id, body)
	case wire.StreamAppend:
		c.streamAppend(id, body)
	case wire.StreamRead:
		c.streamRead(id, body)
	case wire.GroupFetch:
		c.groupFetch(id, body)
	case wire.GroupCommit:
		c.groupCommit(id, body)
	default:
		return false
	}
	return true
}

// topicPublish publishes a batch to a topic: one group commit for the
// bound queues' records (see broker.PublishTopicBatch).
func (c *conn) topicPublish(id uint32, body []byte) {
	req, err := wire.DecodePubReq(body)
	if err != nil {
		c.fail(id, err)
		return
	}
	if err := c.who.Check(access.Publish, access.Topic, req.Queue); err != nil {
		c.fail(id, err)
		return
	}
	res, err := c.s.b.PublishTopicBatch(c.ctx, req.Queue, req.Msgs, broker.PublishOptions{NoWait: req.NoWait})
	if err != nil {
		c.fail(id, err)
		return
	}
	f, start := wire.Begin(make([]byte, 0, 16+12*len(res)), wire.TopicPubOK, id)
	c.send(wire.End(wire.AppendTopicPubOK(f, res), start))
}

// topicSubscribe runs a live topic subscription owned by the connection:
// messages published from now on are pushed in TopicMsgs frames, at most
// the granted credit ahead. The broker buffers up to the topic's buffer
// for a subscriber without credit; one that falls further behind is ended
// with an Err frame (code lagged), as the HTTP API ends an event stream.
func (c *conn) topicSubscribe(id uint32, body []byte) {
	req, err := wire.DecodeTopicSubReq(body)
	if err != nil {
		c.fail(id, err)
		return
	}
	if err := c.who.Check(access.Consume, access.Topic, req.Topic); err != nil {
		c.fail(id, err)
		return
	}
	// The id is claimed before the broker subscription exists, so that a
	// refused duplicate id never briefly adds a subscriber to the topic.
	ctx, sb, ok := c.addSub(id, req.Credit, access.Consume, access.Topic, req.Topic)
	if !ok {
		return
	}
	var ts *engine.Subscription
	// Unsub answers once done is closed: the broker must have forgotten
	// the subscriber by then.
	defer func() {
		if ts != nil {
			ts.Close()
		}
		sb.cancel()
		close(sb.done)
	}()
	ts, err = c.s.b.Subscribe(req.Topic)
	if err != nil {
		c.mu.Lock()
		if c.subs[id] == sb {
			delete(c.subs, id)
		}
		c.mu.Unlock()
		c.fail(id, err)
		return
	}
	c.reply(wire.SubOK, id, nil)
	batch := make([]broker.TopicMessage, 0, maxPush)
	for {
		// Wait for a message first, so that the end of the subscription
		// is noticed even while the client has no credit.
		var m broker.TopicMessage
		select {
		case m, ok = <-ts.C:
		case <-ctx.Done():
			return
		}
		if !ok {
			c.endTopicSub(id, req.Topic, ts.Err())
			return
		}
		for sb.credit.Load() <= 0 {
			select {
			case <-sb.more:
			case <-ctx.Done():
				return
			}
		}
		n := int(min(sb.credit.Load(), maxPush))
		batch = append(batch[:0], m)
		size := 32 + len(m.Body)
		ended := false
	drain:
		for len(batch) < n {
			select {
			case m, ok := <-ts.C:
				if !ok {
					ended = true
					break drain
				}
				batch = append(batch, m)
				size += 32 + len(m.Body)
			default:
				break drain
			}
		}
		sb.credit.Add(-int64(len(batch)))
		f, start := wire.Begin(make([]byte, 0, size), wire.TopicMsgs, id)
		c.send(wire.End(wire.AppendTopicMsgs(f, batch), start))
		clear(batch) // drop the bodies
		if ended {
			c.endTopicSub(id, req.Topic, ts.Err())
			return
		}
	}
}

// endTopicSub reports why the broker ended a topic subscription (nil: it
// was closed by Unsub) and forgets it.
func (c *conn) endTopicSub(id uint32, topic string, err error) {
	if err == nil {
		return
	}
	c.fail(id, fmt.Errorf("topic %q subscription: %w", topic, err))
	c.mu.Lock()
	delete(c.subs, id)
	c.mu.Unlock()
}

func (c *conn) streamAppend(id uint32, body []byte) {
	req, err := wire.DecodeAppendReq(body)
	if err != nil {
		c.fail(id, err)
		return
	}
	if err := c.who.Check(access.Publish, access.Stream, req.Stream); err != nil {
		c.fail(id, err)
		return
	}
	offs, err := c.s.b.AppendBatch(c.ctx, req.Stream, req.Msgs)
	if err != nil {
		c.fail(id, err)
		return
	}
	f, start := wire.Begin(make([]byte, 0, 16+10*len(offs)), wire.AppendOK, id)
	c.send(wire.End(wire.AppendAppendOK(f, offs), start))
}

func checkWait(d time.Duration) error {
	if d > maxWait {
		return fmt.Errorf("%w: wait %s: at most %s", broker.ErrInvalid, d, maxWait)
	}
	return nil
}

func (c *conn) streamRead(id uint32, body []byte) {
	req, err := wire.DecodeReadReq(body)
	if err == nil {
		err = checkWait(req.Wait)
	}
	if err == nil {
		err = c.who.Check(access.Consume, access.Stream, req.Stream)
	}
	if err != nil {
		c.fail(id, err)
		return
	}
	b := c.s.b
	var from uint64
	switch req.From {
	case wire.FromOffset:
		from = req.Offset // Read reports an unknown stream
	case wire.FromStart:
		from, err = b.OffsetAt(req.Stream, "start")
	case wire.FromEnd:
		from, err = b.OffsetAt(req.Stream, "end")
	case wire.FromTime:
		from, err = b.OffsetAtTime(req.Stream, req.Time)
	}
	if err != nil {
		c.fail(id, err)
		return
	}
	ms, err := b.Read(c.ctx, req.Stream, from, broker.ReadOptions{Max: req.Max, Wait: req.Wait})
	if err != nil {
		c.fail(id, err)
		return
	}
	c.replyPage(id, ms, from)
}

// groupFetch reads from the group's committed offset; the page's next
// offset is computed as the HTTP API does (the committed offset, or the
// first retained one if that is later, when nothing was read).
func (c *conn) groupFetch(id uint32, body []byte) {
	req, err := wire.DecodeFetchReq(body)
	if err == nil {
		err = checkWait(req.Wait)
	}
	if err == nil {
		err = c.who.Check(access.Consume, access.Stream, req.Stream)
	}
	if err != nil {
		c.fail(id, err)
		return
	}
	b := c.s.b
	info, err := b.Stream(req.Stream)
	if err != nil {
		c.fail(id, err)
		return
	}
	ms, err := b.Fetch(c.ctx, req.Stream, req.Group, broker.ReadOptions{Max: req.Max, Wait: req.Wait})
	if err != nil {
		c.fail(id, err)
		return
	}
	c.replyPage(id, ms, max(info.Groups[req.Group], info.FirstOffset))
}

// replyPage answers a read that started at from: Next is the offset after
// the last message, or from when there is none.
func (c *conn) replyPage(id uint32, ms []broker.StreamMessage, from uint64) {
	p := wire.StreamPage{Messages: ms, Next: from}
	size := 16
	for i := range ms {
		size += 24 + len(ms[i].Body)
	}
	if len(ms) > 0 {
		p.Next = ms[len(ms)-1].Offset + 1
	}
	f, start := wire.Begin(make([]byte, 0, size), wire.StreamMsgs, id)
	c.send(wire.End(wire.AppendStreamMsgs(f, &p), start))
}

func (c *conn) groupCommit(id uint32, body []byte) {
	req, err := wire.DecodeCommitReq(body)
	if err != nil {
		c.fail(id, err)
		return
	}
	if err := c.who.Check(access.Consume, access.Stream, req.Stream); err != nil {
		c.fail(id, err)
		return
	}
	if err := c.s.b.Commit(req.Stream, req.Group, req.Offset); err != nil {
		c.fail(id, err)
		return
	}
	c.reply(wire.CommitOK, id, wire.AppendCommitOK(nil, req.Offset))
}
