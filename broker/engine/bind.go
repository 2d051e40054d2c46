package engine

import (
	"fmt"
	"slices"

	"github.com/switchyard/switchyard/broker"
)

// maxTopicQueues is broker.MaxTopicQueues; tests lower it.
var maxTopicQueues = broker.MaxTopicQueues

// BindQueue binds queue to topic: every message published to the topic
// from now on is also published, durably, to the queue. It is atomic
// against every other declare, bind and unbind (none of their bindings is
// lost) and idempotent: binding a bound queue changes nothing and reports
// changed false. The binding is in the catalogue, durable, when it
// returns. A missing topic, or a missing queue without
// opts.CreateQueue, is broker.ErrNotFound; a bad name broker.ErrInvalid;
// a topic with broker.MaxTopicQueues bindings takes no more
// (broker.ErrInvalid).
func (b *Broker) BindQueue(topic, queue string, opts broker.BindOptions) (changed bool, err error) {
	if err := checkBindNames(topic, queue); err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, broker.ErrClosed
	}
	t, ok := b.topics[topic]
	if !ok {
		return false, fmt.Errorf("binding queue %q to topic %q: topic %q: %w", queue, topic, topic, broker.ErrNotFound)
	}
	if slices.Contains(t.cfg.Queues, queue) {
		if b.queues[queue] == nil && !opts.CreateQueue {
			// Bound, but the queue was deleted behind the binding's back
			// (a catalogue from before DeleteQueue unbound): say so.
			return false, fmt.Errorf("binding queue %q to topic %q: queue %q: %w", queue, topic, queue, broker.ErrNotFound)
		}
		if b.queues[queue] != nil {
			return false, nil
		}
	} else if len(t.cfg.Queues) >= maxTopicQueues {
		return false, fmt.Errorf("%w: binding queue %q to topic %q: the topic has %d bound queues, at most %d allowed",
			broker.ErrInvalid, queue, topic, len(t.cfg.Queues), maxTopicQueues)
	}
	var created []string
	if b.queues[queue] == nil {
		if !opts.CreateQueue {
			return false, fmt.Errorf("binding queue %q to topic %q: queue %q: %w", queue, topic, queue, broker.ErrNotFound)
		}
		q := b.addQueueLocked(queue, broker.QueueConfig{})
		created = append(created, queue)
		if dl := q.cfg.DeadLetter; dl != broker.NoDeadLetter && b.queues[dl] == nil {
			b.addQueueLocked(dl, broker.QueueConfig{})
			created = append(created, dl)
		}
	}
	old := t.cfg.Queues
	if !slices.Contains(old, queue) {
		// A new slice: publishers range over the old one unlocked.
		next := make([]string, len(old), len(old)+1)
		copy(next, old)
		t.setQueues(append(next, queue))
	}
	if err := b.saveMetaLocked(); err != nil {
		// Not durable: undo, so memory matches the catalogue on disk.
		t.setQueues(old)
		for _, name := range created {
			q := b.queues[name]
			delete(b.queues, name)
			delete(b.byID, q.id)
		}
		return false, fmt.Errorf("binding queue %q to topic %q: %w", queue, topic, err)
	}
	return true, nil
}

// UnbindQueue removes queue from topic's bound queues: the topic's
// messages stop going to it (the queue and its messages stay). Atomic
// and idempotent as BindQueue; the queue need not exist (a binding can
// be removed after its queue). A missing topic is broker.ErrNotFound.
func (b *Broker) UnbindQueue(topic, queue string) (changed bool, err error) {
	if err := checkBindNames(topic, queue); err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, broker.ErrClosed
	}
	t, ok := b.topics[topic]
	if !ok {
		return false, fmt.Errorf("unbinding queue %q from topic %q: topic %q: %w", queue, topic, topic, broker.ErrNotFound)
	}
	old := t.cfg.Queues
	if !slices.Contains(old, queue) {
		return false, nil
	}
	t.setQueues(without(old, queue))
	if err := b.saveMetaLocked(); err != nil {
		t.setQueues(old)
		return false, fmt.Errorf("unbinding queue %q from topic %q: %w", queue, topic, err)
	}
	return true, nil
}

// unbindEverywhereLocked removes queue from every topic's bound queues
// and returns a function that puts them back. Caller holds b.mu.
func (b *Broker) unbindEverywhereLocked(queue string) (undo func()) {
	type was struct {
		t      *topic
		queues []string
	}
	var changed []was
	for _, t := range b.topics {
		if slices.Contains(t.cfg.Queues, queue) {
			changed = append(changed, was{t, t.cfg.Queues})
			t.setQueues(without(t.cfg.Queues, queue))
		}
	}
	return func() {
		for _, w := range changed {
			w.t.setQueues(w.queues)
		}
	}
}

// setQueues replaces the bound queues. Caller holds b.mu (which guards
// writes of t.cfg with t.mu, so that saveMetaLocked can read it).
func (t *topic) setQueues(qs []string) {
	t.mu.Lock()
	t.cfg.Queues = qs
	t.mu.Unlock()
}

// without returns a new slice of qs but queue.
func without(qs []string, queue string) []string {
	out := make([]string, 0, len(qs))
	for _, q := range qs {
		if q != queue {
			out = append(out, q)
		}
	}
	return out
}

func checkBindNames(topic, queue string) error {
	if !broker.ValidName(topic) {
		return fmt.Errorf("%w: topic name %q: want 1-200 of letters, digits, '_', '.', '-', not starting with '.' or '-'", broker.ErrInvalid, topic)
	}
	if !broker.ValidName(queue) {
		return fmt.Errorf("%w: queue name %q: want 1-200 of letters, digits, '_', '.', '-', not starting with '.' or '-'", broker.ErrInvalid, queue)
	}
	return nil
}
