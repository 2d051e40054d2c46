package message_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// onePubSub delivers msgs once from any source and records publishes.
type onePubSub struct {
	msgs []broker.Message
	mu   sync.Mutex
	pubs []string
	acks int
}

func (p *onePubSub) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pubs = append(p.pubs, dest)
	return nil
}

func (p *onePubSub) Subscribe(ctx context.Context, source string, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	src, _ := message.ParseDest(source)
	for _, m := range p.msgs {
		deliver(message.NewDelivery(src, m, 1, time.Now(), p))
	}
	<-ctx.Done()
	return ctx.Err()
}

func (p *onePubSub) Ack(ctx context.Context, d *message.Delivery) error {
	p.mu.Lock()
	p.acks++
	p.mu.Unlock()
	return nil
}

func (p *onePubSub) Nack(ctx context.Context, d *message.Delivery, delay time.Duration) error {
	return nil
}

// TestRedriveOnlyToQueues: Redrive takes the destination of each dead
// letter from its x-original-queue header. Every dead-lettering path
// writes a queue's name there, but anyone who can publish to the
// dead-letter queue writes what they like: "topic:payments" or
// "stream:ledger" made the redrive publish into a topic or append to a
// stream the message never came from. A header-derived destination must
// be a queue; such a message stays in the dead-letter queue (put back at
// its end) and the error counts it.
func TestRedriveOnlyToQueues(t *testing.T) {
	for _, orig := range []string{"topic:payments", "stream:ledger", "", "a b", "bogus:x"} {
		ps := &onePubSub{msgs: []broker.Message{{Body: []byte("x"), Headers: map[string]string{broker.HeaderOriginalQueue: orig}}}}
		n, err := message.Redrive(context.Background(), ps, "queue:rides.dlq", message.RedriveOptions{Idle: 50 * time.Millisecond})
		var nr *message.NotRedrivenError
		if !errors.As(err, &nr) || !errors.Is(err, broker.ErrInvalid) || nr.Kept != 1 || nr.Origins[orig] != 1 || n != 0 ||
			len(ps.pubs) != 1 || ps.pubs[0] != "queue:rides.dlq" {
			t.Errorf("x-original-queue %q: redrove %d to %v (err %v), want it kept in queue:rides.dlq", orig, n, ps.pubs, err)
		}
	}
	// A plain queue name, bare or with its kind, is redriven.
	for _, orig := range []string{"rides", "queue:rides"} {
		ps := &onePubSub{msgs: []broker.Message{{Body: []byte("x"), Headers: map[string]string{broker.HeaderOriginalQueue: orig}}}}
		if n, err := message.Redrive(context.Background(), ps, "queue:rides.dlq", message.RedriveOptions{Idle: 50 * time.Millisecond}); err != nil || n != 1 || len(ps.pubs) != 1 {
			t.Errorf("x-original-queue %q: redrove %d to %v, %v", orig, n, ps.pubs, err)
		}
	}
}

// FuzzCheckTopicGroup: an accepted group is a NATS consumer name (no '.',
// whitespace, '*', '>' or other bytes) and TOPIC.GROUP.dlq a queue name.
func FuzzCheckTopicGroup(f *testing.F) {
	for _, g := range []string{"g1", "a b", "a.b", "*", ">", "-x", "_x", "", strings.Repeat("g", 65), "ü"} {
		f.Add("orders", g)
	}
	f.Fuzz(func(t *testing.T, topic, group string) {
		d, err := message.ParseDest("topic:" + topic)
		if err != nil {
			return
		}
		if err := message.CheckTopicGroup(d, group); err != nil {
			if !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("%q %q: %v, want broker.ErrInvalid", topic, group, err)
			}
			return
		}
		if strings.ContainsAny(group, ". \t\r\n*>/\x00") || len(group) == 0 || len(group) > message.MaxTopicGroupLen {
			t.Fatalf("accepted group %q", group)
		}
		if q := message.TopicGroupQueue(d.Name, group) + ".dlq"; !broker.ValidName(q) {
			t.Fatalf("accepted %q %q, but %q is no queue name", topic, group, q)
		}
	})
}

// FuzzDeadLetterQueue: the dead-letter queue of a live topic subscription
// (or a stream) is never the dead-letter queue of a queue the user did not
// deliberately name TOPIC.-topic, nor any durable topic group's queue or
// dead-letter queue. Before, it was TOPIC.dlq: queue TOPIC's.
func FuzzDeadLetterQueue(f *testing.F) {
	f.Add("rides", "rides", "rides", "g")
	f.Add("rides", "rides.-topic", "rides", "-topic")
	f.Add("a.b", "a.b", "a", "b")
	f.Fuzz(func(t *testing.T, topic, queue, topic2, group string) {
		src, err := message.ParseDest("topic:" + topic)
		if err != nil {
			return
		}
		dlq := message.DeadLetterQueue(src, "")
		if len(topic) <= 189 && !broker.ValidName(dlq) {
			t.Fatalf("topic %q: %q is no queue name", topic, dlq)
		}
		if q, err := message.ParseDest("queue:" + queue); err == nil {
			if qd := message.DeadLetterQueue(q, ""); qd == dlq && queue != topic+".-topic" {
				t.Fatalf("topic %q and queue %q share the dead-letter queue %q", topic, queue, dlq)
			}
		}
		if t2, err := message.ParseDest("topic:" + topic2); err == nil && message.CheckTopicGroup(t2, group) == nil {
			if g := message.TopicGroupQueue(t2.Name, group); g == dlq || g+".dlq" == dlq || message.DeadLetterQueue(t2, group) == dlq {
				t.Fatalf("topic %q's dead letters go to %q, the queue or dead-letter queue of group %q of topic %q", topic, dlq, group, topic2)
			}
		}
		if st := message.DeadLetterQueue(message.Dest{Kind: message.Stream, Name: src.Name}, ""); st == dlq {
			t.Fatalf("topic and stream %q share %q", topic, dlq)
		}
	})
}
