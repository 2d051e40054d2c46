package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
)

// startBroker runs a broker with a topic and a stream behind a native
// listener, as `switchyard broker --listen` does, and returns its address.
func startBroker(ctx context.Context) (string, func()) {
	dir, err := os.MkdirTemp("", "broker-example")
	if err != nil {
		log.Fatal(err)
	}
	b, err := engine.Open(engine.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.DeclareTopic("rides", broker.TopicConfig{}); err != nil {
		log.Fatal(err)
	}
	if err := b.DeclareStream("locations", broker.StreamConfig{}); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		native.New(b, native.Options{}).Serve(ctx, ln)
	}()
	return ln.Addr().String(), func() {
		cancel()
		<-done
		b.Close()
		os.RemoveAll(dir)
	}
}

// A topic subscriber sees the messages published after it subscribed.
func ExampleConn_SubscribeTopic() {
	ctx := context.Background()
	addr, stop := startBroker(ctx)
	defer stop()

	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sub, err := c.SubscribeTopic(ctx, "rides", client.TopicOptions{Credit: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	res, err := c.PublishTopic(ctx, "rides",
		broker.Message{Body: []byte("ride 1"), Headers: map[string]string{"kind": "requested"}},
		broker.Message{Body: []byte("ride 2")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published to", res[0].Subscribers, "subscriber")
	for range 2 {
		m, err := sub.Next(ctx) // ErrDisconnected after a connection loss: subscribe again
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.ID, string(m.Body), m.Headers["kind"])
	}
	// Output:
	// published to 1 subscriber
	// 1 ride 1 requested
	// 2 ride 2
}

// A stream is read by offset, position or time; a consumer group commits
// the offset it has processed up to.
func ExampleConn_ReadStream() {
	ctx := context.Background()
	addr, stop := startBroker(ctx)
	defer stop()

	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	offs, err := c.Append(ctx, "locations", // one frame, one group commit
		broker.Message{Body: []byte(`{"driver":7}`)},
		broker.Message{Body: []byte(`{"driver":8}`)},
		broker.Message{Body: []byte(`{"driver":9}`)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("offsets", offs)

	page, err := c.ReadStream(ctx, "locations", client.FromOffset(2), broker.ReadOptions{Max: 100})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("from 2:", len(page.Messages), "messages, next", page.Next)
	page, _ = c.ReadStream(ctx, "locations", client.FromStart(), broker.ReadOptions{Max: 1})
	fmt.Println("from start:", string(page.Messages[0].Body))
	page, _ = c.ReadStream(ctx, "locations", client.FromTime(time.Now().Add(-time.Hour)), broker.ReadOptions{})
	fmt.Println("from an hour ago:", len(page.Messages), "messages")
	page, _ = c.ReadStream(ctx, "locations", client.FromEnd(), broker.ReadOptions{Wait: 10 * time.Millisecond})
	fmt.Println("tail:", len(page.Messages), "messages, next", page.Next)

	page, err = c.Fetch(ctx, "locations", "billing", broker.ReadOptions{Max: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("billing fetched", len(page.Messages), "next", page.Next)
	if err := c.Commit(ctx, "locations", "billing", page.Next); err != nil { // after processing the page
		log.Fatal(err)
	}
	page, _ = c.Fetch(ctx, "locations", "billing", broker.ReadOptions{Max: 2})
	fmt.Println("billing continues at", page.Messages[0].Offset, string(page.Messages[0].Body))
	// Output:
	// offsets [1 2 3]
	// from 2: 2 messages, next 4
	// from start: {"driver":7}
	// from an hour ago: 3 messages
	// tail: 0 messages, next 4
	// billing fetched 2 next 3
	// billing continues at 3 {"driver":9}
}

// Queues, topics and streams can be declared over the native protocol.
func ExampleConn_DeclareQueue() {
	ctx := context.Background()
	addr, stop := startBroker(ctx)
	defer stop()

	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var a client.Admin = c
	if err := a.DeclareQueue(ctx, "payments", broker.QueueConfig{MaxDeliveries: 10, MaxLength: 1000}); err != nil {
		log.Fatal(err)
	}
	if err := a.DeclareTopic(ctx, "payment-events", broker.TopicConfig{Queues: []string{"payments"}}); err != nil {
		log.Fatal(err)
	}
	res, err := c.PublishTopic(ctx, "payment-events", broker.Message{Body: []byte("paid")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bound queues reached:", res[0].Queues)
	err = a.DeclareQueue(ctx, "payments", broker.QueueConfig{Overflow: "sometimes"})
	fmt.Println("invalid settings:", errors.Is(err, broker.ErrInvalid))
	if err := a.DeleteTopic(ctx, "payment-events"); err != nil {
		log.Fatal(err)
	}
	_, err = c.PublishTopic(ctx, "payment-events", broker.Message{Body: []byte("paid")})
	fmt.Println("deleted:", errors.Is(err, broker.ErrNotFound))
	// Output:
	// bound queues reached: 1
	// invalid settings: true
	// deleted: true
}

// A worker consumes a queue: nil acks a message, an error nacks it (here
// it comes back once and then succeeds), and acks are pipelined with at
// most MaxUnacked messages unsettled.
func ExampleConn_Consume() {
	ctx := context.Background()
	addr, stop := startBroker(ctx)
	defer stop()

	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.DeclareQueue(ctx, "payments", broker.QueueConfig{}); err != nil {
		log.Fatal(err)
	}
	for _, p := range []string{"pay-1", "pay-2", "pay-3"} {
		if _, err := c.Publish(ctx, "payments", broker.Message{ID: p, Body: []byte(p)}); err != nil {
			log.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := 0
	err = c.Consume(ctx, "payments", client.ConsumeOptions{MaxUnacked: 64}, func(d broker.Delivery) error {
		if string(d.Body) == "pay-2" && d.Deliveries == 1 {
			fmt.Println("pay-2 failed, nacked")
			return errors.New("card processor unavailable")
		}
		fmt.Println("charged", string(d.Body), "delivery", d.Deliveries)
		if done++; done == 3 {
			cancel()
		}
		return nil
	})
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// charged pay-1 delivery 1
	// pay-2 failed, nacked
	// charged pay-3 delivery 1
	// charged pay-2 delivery 2
	// true
}
