package sybroker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// A durable topic group on switchyard's broker is the queue TOPIC.GROUP
// bound to the topic beside the bindings others made; its subscriptions
// ending leaves it (and what it holds); its dead letters go to
// TOPIC.GROUP.dlq; deleting its queue removes the group and unbinds it.
func TestTopicGroupQueue(t *testing.T) {
	eng, addr := startEngine(t)
	if err := eng.Declare("audit", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := eng.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := sybroker.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	got := make(chan *message.Delivery, 16)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(sctx, "topic:rides", message.SubscribeOptions{Group: "billing"}, func(d *message.Delivery) { got <- d })
	}()
	// The bind is done once the queue exists and is bound.
	for {
		if info, _ := eng.Topic("rides"); slices.Contains(info.Config.Queues, "rides.billing") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("group subscription ended: %v", err)
		case <-ctx.Done():
			t.Fatal("the group's queue was never bound")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if info, _ := eng.Topic("rides"); !slices.Equal(info.Config.Queues, []string{"audit", "rides.billing"}) {
		t.Fatalf("bound %v, want audit kept beside the group's queue", info.Config.Queues)
	}
	// Dead letters after max_deliveries (default 5) go to rides.billing.dlq.
	if err := b.Publish(ctx, "topic:rides", broker.Message{Body: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		select {
		case d := <-got:
			if string(d.Body) != "poison" || d.Deliveries != i || d.Source.String() != "topic:rides" {
				t.Fatalf("delivery %d: %q %d %s", i, d.Body, d.Deliveries, d.Source)
			}
			if err := d.Nack(ctx, 0); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("delivery %d never came", i)
		}
	}
	for {
		if info, err := eng.Queue("rides.billing.dlq"); err == nil && info.Depth == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the poison message never reached rides.billing.dlq")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Ending the subscription keeps the group: what is published now
	// waits in its queue.
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("subscription ended with %v", err)
	}
	for i := range 3 {
		if err := b.Publish(ctx, "topic:rides", broker.Message{Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := eng.Queue("rides.billing"); err != nil || info.Depth != 3 {
		t.Fatalf("group queue after its member left: %+v %v", info, err)
	}
	// Deleting the queue removes the group: unbound, publishes go on.
	if err := b.Delete(ctx, "queue:rides.billing"); err != nil {
		t.Fatal(err)
	}
	if info, _ := eng.Topic("rides"); !slices.Equal(info.Config.Queues, []string{"audit"}) {
		t.Fatalf("bound after deleting the group: %v", info.Config.Queues)
	}
	if err := b.Publish(ctx, "topic:rides", broker.Message{Body: []byte("after")}); err != nil {
		t.Fatalf("publish after the group was deleted: %v", err)
	}
}
