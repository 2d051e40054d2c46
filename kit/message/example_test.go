package message_test

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// A router with the usual middleware. In a service the backend comes from
// message.Open(ctx, url); here a channel stands in for it.
func ExampleRouter() {
	sub := make(chanSub)
	r, err := message.NewRouter(sub, message.RouterConfig{ShutdownTimeout: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	r.Use(
		message.Correlation(),
		message.Retry(message.RetryConfig{Attempts: 3}),
		message.Timeout(5*time.Second),
	)
	done := make(chan struct{})
	r.Handle("queue:rides", func(ctx context.Context, d *message.Delivery) error {
		t, _ := message.TraceFrom(ctx)
		fmt.Printf("ride %s (correlation %s)\n", d.Body, t.CorrelationID)
		close(done)
		return nil // acked
	}, message.RouteOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- r.Run(ctx) }()
	a := &fakeAcker{}
	sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "rides"},
		broker.Message{Body: []byte("r-42"), Headers: map[string]string{"correlation-id": "req-7"}}, 1, time.Time{}, a)
	<-done
	cancel() // graceful: in-flight handlers finish and settle first
	fmt.Println("stopped:", <-stopped, "acks:", a.acks)
	// Output:
	// ride r-42 (correlation req-7)
	// stopped: <nil> acks: 1
}

func ExampleParseDest() {
	for _, s := range []string{"orders", "topic:rides.events", "stream:audit"} {
		d, _ := message.ParseDest(s)
		fmt.Println(d.Kind, d.Name)
	}
	_, err := message.ParseDest("mailbox:x")
	fmt.Println(err)
	// Output:
	// queue orders
	// topic rides.events
	// stream audit
	// invalid request: destination "mailbox:x": unknown kind "mailbox", want queue, topic or stream
}
