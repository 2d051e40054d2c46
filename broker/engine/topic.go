package engine

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/trace"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
)

type topic struct {
	name string
	cfg  broker.TopicConfig

	mu   sync.Mutex
	next uint64
	subs map[*Subscription]struct{}

	tooLarge atomic.Uint64 // publishes refused above max_message_size
}

// Subscription is a live subscriber of a topic. C is closed when the
// subscription ends; Err then says why.
type Subscription struct {
	C <-chan broker.TopicMessage

	c   chan broker.TopicMessage
	t   *topic
	err error // guarded by t.mu; set when c is closed
}

// endLocked closes the subscription with err. Caller holds t.mu.
func (s *Subscription) endLocked(err error) {
	if _, ok := s.t.subs[s]; !ok {
		return
	}
	delete(s.t.subs, s)
	s.err = err
	close(s.c)
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.t.mu.Lock()
	s.endLocked(nil)
	s.t.mu.Unlock()
}

// Err says why C was closed: nil after Close, ErrLagged, or ErrNotFound
// when the topic was deleted, ErrClosed when the broker closed.
func (s *Subscription) Err() error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.err
}

// DeclareTopic creates a topic or replaces its settings, bound queues
// included (BindQueue and UnbindQueue change one binding).
func (b *Broker) DeclareTopic(name string, cfg broker.TopicConfig) error {
	_, err := b.declareTopic(name, cfg, false)
	return err
}

// DeclareTopicIfAbsent creates a topic with cfg if it does not exist and
// leaves an existing one as it is, bindings and settings: what a service
// declaring the topics it uses at start-up wants. created says which.
func (b *Broker) DeclareTopicIfAbsent(name string, cfg broker.TopicConfig) (created bool, err error) {
	return b.declareTopic(name, cfg, true)
}

func (b *Broker) declareTopic(name string, cfg broker.TopicConfig, ifAbsent bool) (bool, error) {
	if !broker.ValidName(name) {
		return false, fmt.Errorf("%w: topic name %q", broker.ErrInvalid, name)
	}
	if err := cfg.Validate(); err != nil {
		return false, fmt.Errorf("%w: topic %q: %w", broker.ErrInvalid, name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, broker.ErrClosed
	}
	t, exists := b.topics[name]
	if exists && ifAbsent {
		return false, nil
	}
	for _, q := range cfg.Queues {
		if b.queues[q] == nil {
			return false, fmt.Errorf("%w: topic %q binds queue %q, which does not exist", broker.ErrInvalid, name, q)
		}
	}
	// The bound queues are a fresh slice: fanOut hands t.cfg.Queues to
	// publishers that range over it unlocked, so it is never changed in
	// place (BindQueue and UnbindQueue replace it too).
	cfg.Queues = slices.Clone(cfg.Queues)
	if exists {
		t.mu.Lock()
		t.cfg = cfg.WithDefaults()
		t.mu.Unlock()
	} else {
		b.topics[name] = &topic{name: name, cfg: cfg.WithDefaults(), subs: make(map[*Subscription]struct{})}
	}
	return !exists, b.saveMetaLocked()
}

// DeleteTopic deletes a topic, ending its subscriptions with ErrNotFound.
func (b *Broker) DeleteTopic(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.topics[name]
	if !ok {
		return fmt.Errorf("topic %q: %w", name, broker.ErrNotFound)
	}
	delete(b.topics, name)
	t.endAll(fmt.Errorf("topic %q deleted: %w", name, broker.ErrNotFound))
	return b.saveMetaLocked()
}

func (t *topic) endAll(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		s.endLocked(err)
	}
}

func (b *Broker) topic(name string) (*topic, error) { return lookup(b, b.topics, "topic", name) }

// Topic returns a topic's settings and counts.
func (b *Broker) Topic(name string) (broker.TopicInfo, error) {
	t, err := b.topic(name)
	if err != nil {
		return broker.TopicInfo{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return broker.TopicInfo{Name: name, Config: t.cfg, Subscribers: len(t.subs), Published: t.next}, nil
}

// Subscribe starts a live subscription: it receives messages published
// from now on.
func (b *Broker) Subscribe(name string) (*Subscription, error) {
	t, err := b.topic(name)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := make(chan broker.TopicMessage, t.cfg.Buffer)
	s := &Subscription{C: c, c: c, t: t}
	t.subs[s] = struct{}{}
	return s, nil
}

// PublishTopic hands the message to every live subscriber (a subscriber
// whose buffer is full is dropped with ErrLagged) and publishes it to every
// bound queue, returning once those publishes are durable (unless
// opts.NoWait). A failure to publish to a bound queue is returned, naming
// the queue.
func (b *Broker) PublishTopic(ctx context.Context, name string, msg broker.Message, opts broker.PublishOptions) (broker.TopicResult, error) {
	t, err := b.topic(name)
	if err != nil {
		return broker.TopicResult{}, err
	}
	sp := b.startPublish("topic:"+name, &msg)
	res, queues, err := t.fanOut(&msg, b.cfg.Now)
	if err != nil {
		endPublish(sp, 0, false, err)
		return broker.TopicResult{}, err
	}
	var errs []error
	for _, q := range queues {
		if _, err := b.publish(ctx, q, msg, opts); err != nil {
			errs = append(errs, fmt.Errorf("publishing to bound queue %q: %w", q, err))
			continue
		}
		res.Queues++
	}
	err = errors.Join(errs...)
	endPublish(sp, res.ID, false, err)
	return res, err
}

// PublishTopicBatch publishes msgs in order as PublishTopic does, but waits
// once, after the last message, for the bound queues' records to be durable
// (unless opts.NoWait): a batch costs one group commit. Every body is
// checked against the topic's max_message_size before any message is
// handed out. On an error at message i, messages before i were handed to
// the subscribers and may be stored in the bound queues; retrying them with
// the same Message.ID is safe for the queues (each dedups), not for live
// subscribers (they see them again).
func (b *Broker) PublishTopicBatch(ctx context.Context, name string, msgs []broker.Message, opts broker.PublishOptions) ([]broker.TopicResult, error) {
	t, err := b.topic(name)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	limit := t.cfg.MaxMessageSize
	t.mu.Unlock()
	for i := range msgs {
		if n := msgs[i].Size(); n > limit {
			t.tooLarge.Add(1)
			return nil, fmt.Errorf("message %d of %d: %w: %d bytes (id, key, headers and body), topic %q accepts at most %d",
				i, len(msgs), broker.ErrTooLarge, n, name, limit)
		}
	}
	out := make([]broker.TopicResult, len(msgs))
	// last is the newest record per bound queue, for the one confirm.
	var last []broker.PublishResult
	var lastQueue []string
	// The publish spans of traced messages end with the batch's confirm.
	var spans []trace.Span
	var spanIDs []uint64
	endSpans := func(err error) {
		for i, sp := range spans {
			endPublish(sp, spanIDs[i], false, err)
		}
	}
	for i := range msgs {
		if sp := b.startPublish("topic:"+name, &msgs[i]); sp != nil {
			spans = append(spans, sp)
			spanIDs = append(spanIDs, 0)
		}
		res, queues, err := t.fanOut(&msgs[i], b.cfg.Now)
		if err != nil {
			err = fmt.Errorf("message %d of %d: %w", i, len(msgs), err)
			endSpans(err)
			return nil, err
		}
		if len(spans) > 0 && spanIDs[len(spans)-1] == 0 {
			spanIDs[len(spans)-1] = res.ID
		}
		for _, q := range queues {
			r, err := b.publish(ctx, q, msgs[i], broker.PublishOptions{NoWait: true})
			if err != nil {
				err = fmt.Errorf("message %d of %d (earlier ones were published): publishing to bound queue %q: %w", i, len(msgs), q, err)
				endSpans(err)
				return nil, err
			}
			res.Queues++
			j := 0
			for j < len(lastQueue) && lastQueue[j] != q {
				j++
			}
			if j == len(lastQueue) {
				lastQueue = append(lastQueue, q)
				last = append(last, r)
			} else if r.Seq > last[j].Seq {
				last[j] = r
			}
		}
		out[i] = res
	}
	if opts.NoWait {
		endSpans(nil)
		return out, nil
	}
	for j, q := range lastQueue {
		if err := b.Confirm(ctx, q, last[j:j+1]); err != nil {
			err = fmt.Errorf("confirming bound queue %q: %w", q, err)
			endSpans(err)
			return nil, err
		}
	}
	endSpans(nil)
	return out, nil
}

// fanOut checks msg's size, hands it to every live subscriber and returns
// the result so far and the bound queues to publish it to. now stamps the
// message under the topic's lock, so times follow ids.
func (t *topic) fanOut(msg *broker.Message, now func() time.Time) (broker.TopicResult, []string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := msg.Size(); n > t.cfg.MaxMessageSize {
		t.tooLarge.Add(1)
		return broker.TopicResult{}, nil, fmt.Errorf("%w: %d bytes (id, key, headers and body), topic %q accepts at most %d", broker.ErrTooLarge, n, t.name, t.cfg.MaxMessageSize)
	}
	t.next++
	tm := broker.TopicMessage{ID: t.next, Body: append([]byte(nil), msg.Body...), Headers: maps.Clone(msg.Headers),
		Key: msg.Key, MsgID: msg.ID, Time: now()}
	res := broker.TopicResult{ID: tm.ID}
	for s := range t.subs {
		select {
		case s.c <- tm:
			res.Subscribers++
		default:
			s.endLocked(broker.ErrLagged)
		}
	}
	return res, t.cfg.Queues, nil
}
