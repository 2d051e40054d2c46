package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// TestTopicCreditFlow pushes many messages through a subscription whose
// credit is far smaller, so that Next must keep granting credit.
func TestTopicCreditFlow(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	if err := b.DeclareTopic("t", broker.TopicConfig{Buffer: 2000}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.SubscribeTopic(ctx, "t", TopicOptions{Credit: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const batches, each = 10, 100
	for i := range batches {
		msgs := make([]broker.Message, each)
		for j := range msgs {
			msgs[j].Body = []byte(fmt.Sprint(i*each + j))
		}
		if _, err := c.PublishTopic(ctx, "t", msgs...); err != nil {
			t.Fatal(err)
		}
	}
	for i := range batches * each {
		if m := next(t, s); string(m.Body) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, m.Body)
		}
	}
}

// TestTopicLag checks that a subscriber that stops taking messages is
// dropped with broker.ErrLagged once its credit and the topic's buffer are
// used up, after the messages it was sent.
func TestTopicLag(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	if err := b.DeclareTopic("t", broker.TopicConfig{Buffer: 2}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, sub := range map[string]TopicClient{"native": c, "embedded": newLocal(b)} {
		t.Run(name, func(t *testing.T) {
			s, err := sub.SubscribeTopic(ctx, "t", TopicOptions{Credit: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Credit 1 + one held by the server + buffer 2 < 10.
			for i := range 10 {
				if _, err := c.PublishTopic(ctx, "t", broker.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			for {
				m, err := s.Next(ctx)
				if err != nil {
					if !errors.Is(err, broker.ErrLagged) {
						t.Fatalf("end: %v, want lagged", err)
					}
					break
				}
				if string(m.Body) != fmt.Sprint(got) {
					t.Fatalf("message %d: %q", got, m.Body)
				}
				got++
			}
			if got == 0 || got > 4 {
				t.Fatalf("%d messages before the lag, want 1..4", got)
			}
			if i, _ := b.Topic("t"); i.Subscribers != 0 {
				t.Fatalf("%d subscribers left", i.Subscribers)
			}
		})
	}
}

// TestTopicSubscriptionReconnect checks that a topic subscription ends
// with ErrDisconnected when the connection drops, like Subscribe, and that
// subscribing again after the broker is back works on the redialled
// connection, as do stream requests.
func TestTopicSubscriptionReconnect(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	if err := b.DeclareTopic("t", broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareStream("s", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(t, b, "127.0.0.1:0")
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.SubscribeTopic(ctx, "t", TopicOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.PublishTopic(ctx, "t", broker.Message{Body: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, s); string(m.Body) != "1" {
		t.Fatalf("before the restart: %q", m.Body)
	}
	if _, err := c.Append(ctx, "s", broker.Message{Body: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	stop()
	b.Close()
	if err := nextErr(t, s); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("after the connection dropped: %v, want ErrDisconnected", err)
	}
	if _, err := s.Next(ctx); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("the end is sticky: %v", err)
	}
	b = openBroker(t, dir)
	defer b.Close()
	_, stop = serve(t, b, addr)
	defer stop()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s2, err := c.SubscribeTopic(tctx, "t", TopicOptions{})
	if err != nil {
		t.Fatalf("subscribe after the restart: %v", err)
	}
	defer s2.Close()
	if _, err := c.PublishTopic(ctx, "t", broker.Message{Body: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, s2); string(m.Body) != "2" {
		t.Fatalf("after the restart: %q", m.Body)
	}
	if offs, err := c.Append(ctx, "s", broker.Message{Body: []byte("b")}); err != nil || offs[0] != 2 {
		t.Fatalf("append after the restart: %v %v", offs, err)
	}
	if p, err := c.ReadStream(ctx, "s", FromStart(), broker.ReadOptions{}); err != nil || len(p.Messages) != 2 {
		t.Fatalf("read after the restart: %+v %v", p, err)
	}
}

// TestSubscribeTopicCancelled checks that giving up on a subscription
// while it is being set up leaves no subscriber behind.
func TestSubscribeTopicCancelled(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	if err := b.DeclareTopic("t", broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.SubscribeTopic(ctx, "t", TopicOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled subscribe: %v", err)
	}
	// A subscribe that the broker may have seen is undone.
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(0))
		c.SubscribeTopic(ctx, "t", TopicOptions{})
		cancel()
	}
	waitFor(t, "no subscribers", func() bool {
		i, _ := b.Topic("t")
		return i.Subscribers == 0
	})
}

// TestSubscribeCancelled checks that giving up on a queue subscription
// while the broker sets it up leaves no subscription behind to swallow
// messages nobody reads (until their visibility timeout).
func TestSubscribeCancelled(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	if err := b.Declare("q", broker.QueueConfig{VisibilityTimeout: broker.Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 60 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%4)*300*time.Microsecond)
		c.Subscribe(ctx, "q", SubscribeOptions{Credit: 5}, func(broker.Delivery) { t.Error("a cancelled subscription delivered") })
		cancel()
	}
	// Every message published from now on must reach a plain receiver:
	// a subscription left behind would take them and never ack.
	ctx := context.Background()
	ok := 0
	deadline := time.Now().Add(10 * time.Second)
	for ok < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("messages keep disappearing into abandoned subscriptions (%d in a row delivered)", ok)
		}
		if _, err := c.Publish(ctx, "q", broker.Message{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
		ds, err := c.Receive(ctx, "q", broker.ReceiveOptions{Max: 1, Wait: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 {
			ok++
			c.Ack(ctx, "q", ds[0].Receipt)
		} else {
			ok = 0
		}
	}
}
