package jetstream_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/jetstream"
	"github.com/switchyard/switchyard/kit/message/messagetest"
)

// natsURL is the NATS server with JetStream the tests use; the suite
// names its streams uniquely and deletes them.
func natsURL(t testing.TB) string {
	u := os.Getenv("SWITCHYARD_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := jetstream.Dial(ctx, u)
	if err != nil {
		t.Fatalf("NATS JetStream at %s (set SWITCHYARD_NATS_URL): %v", u, err)
	}
	if _, err := b.JetStream().AccountInfo(ctx); err != nil {
		t.Fatalf("NATS at %s has no JetStream: %v", u, err)
	}
	b.Close()
	return u
}

func TestSuite(t *testing.T) {
	u := natsURL(t)
	messagetest.RunSuite(t, func(t *testing.T) messagetest.Backend {
		b, err := message.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.(*jetstream.Backend)
	})
}

// Streams with groups are JetStream-only for now (switchyard's backend
// publishes to streams but does not subscribe yet).
func TestStreamGroup(t *testing.T) {
	u := natsURL(t)
	ctx := context.Background()
	b, err := jetstream.Dial(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := "stream:test-group-" + time.Now().Format("150405.000000000")
	if err := b.Declare(ctx, st, message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	defer b.Delete(ctx, st)
	if err := b.Publish(ctx, st, broker.Message{Body: []byte("s1")}, broker.Message{Body: []byte("s2")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, st, message.SubscribeOptions{}, func(*message.Delivery) {}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("stream without a group: %v", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	got := make(chan *message.Delivery, 10)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(sctx, st, message.SubscribeOptions{Group: "g1"}, func(d *message.Delivery) { got <- d })
	}()
	next := func() *message.Delivery {
		select {
		case d := <-got:
			return d
		case <-time.After(15 * time.Second):
			t.Fatal("no message")
		}
		return nil
	}
	d1, d2 := next(), next()
	if string(d1.Body) != "s1" || string(d2.Body) != "s2" {
		t.Fatalf("got %q %q", d1.Body, d2.Body)
	}
	d1.Ack(ctx)
	d2.Nack(ctx, 0)
	if d := next(); string(d.Body) != "s2" || d.Deliveries != 2 {
		t.Fatalf("redelivery %q %d", d.Body, d.Deliveries)
	} else {
		d.Ack(ctx)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// A second group reads the stream from the start, independently.
	sctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go b.Subscribe(sctx, st, message.SubscribeOptions{Group: "g2"}, func(d *message.Delivery) { got <- d })
	if d := next(); string(d.Body) != "s1" || d.Deliveries != 1 {
		t.Fatalf("second group got %q %d", d.Body, d.Deliveries)
	}
}
