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
// be a queue.
func TestRedriveOnlyToQueues(t *testing.T) {
	for _, orig := range []string{"topic:payments", "stream:ledger"} {
		ps := &onePubSub{msgs: []broker.Message{{Body: []byte("x"), Headers: map[string]string{broker.HeaderOriginalQueue: orig}}}}
		n, err := message.Redrive(context.Background(), ps, "queue:rides.dlq", message.RedriveOptions{Idle: 50 * time.Millisecond})
		if err == nil || n != 0 || len(ps.pubs) != 0 {
			t.Errorf("x-original-queue %q: redrove %d to %v (err %v), want refused", orig, n, ps.pubs, err)
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
