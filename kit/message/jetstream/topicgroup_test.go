package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	kitjs "github.com/switchyard/switchyard/kit/message/jetstream"
)

// A durable topic group dead-letters as a queue: the 5th failed delivery
// goes to queue:TOPIC.GROUP.dlq with the broker's headers; Delete of the
// topic removes its stream and the group's consumer.
func TestTopicGroupDeadLetter(t *testing.T) {
	ctx := context.Background()
	b, err := kitjs.Dial(ctx, natsURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	name := fmt.Sprintf("tg-dlq-%d", time.Now().UnixNano())
	tp := "topic:" + name
	dlq := "queue:" + message.TopicGroupQueue(name, "g") + ".dlq"
	if err := b.Declare(ctx, tp, message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	defer b.Delete(ctx, tp)
	defer b.Delete(ctx, dlq)
	sctx, cancel := context.WithCancel(ctx)
	got := make(chan *message.Delivery, 100)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(sctx, tp, message.SubscribeOptions{Group: "g"}, func(d *message.Delivery) { got <- d })
	}()
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { cancel(); <-done }) }
	defer stop()
	// The group exists once its consumer does.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := b.JetStream().Consumer(ctx, "SYT_"+name, "g"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("consumer g never made: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Publish(ctx, tp, broker.Message{Body: []byte("poison"), ID: "p-1"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		select {
		case d := <-got:
			if string(d.Body) != "poison" || d.Deliveries != i {
				t.Fatalf("delivery %d: %q deliveries %d", i, d.Body, d.Deliveries)
			}
			if err := d.Nack(ctx, 0); err != nil {
				t.Fatal(err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no delivery %d", i)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
	defer rcancel()
	dch := make(chan *message.Delivery, 1)
	go b.Subscribe(rctx, dlq, message.SubscribeOptions{}, func(d *message.Delivery) {
		select {
		case dch <- d:
		default:
		}
	})
	select {
	case d := <-dch:
		if string(d.Body) != "poison" || d.ID != "p-1" || d.Headers[broker.HeaderOriginalQueue] != name+".g" ||
			d.Headers[broker.HeaderDeadLetterReason] != "max_deliveries" || d.Headers[broker.HeaderDeliveries] != "5" {
			t.Fatalf("dead letter %q id %q headers %v", d.Body, d.ID, d.Headers)
		}
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	case <-rctx.Done():
		t.Fatal("no dead letter")
	}
	rcancel()
	stop()
	if err := b.Delete(ctx, tp); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Stream(ctx, "SYT_"+name); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream after Delete: %v, want not found", err)
	}
	// Deleting again (or a topic never declared) is not an error: a
	// topic needs no declaring here.
	if err := b.Delete(ctx, tp); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}
