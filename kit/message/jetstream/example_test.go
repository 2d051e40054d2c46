package jetstream_test

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	_ "github.com/switchyard/switchyard/kit/message/jetstream" // registers nats://
)

// The same service code as on switchyard's broker, on NATS JetStream: only
// the URL differs. Needs a NATS server with JetStream on 127.0.0.1:4222.
func Example() {
	ctx := context.Background()
	mq, err := message.Open(ctx, "nats://127.0.0.1:4222")
	if err != nil {
		panic(err)
	}
	defer mq.Close()
	q := fmt.Sprintf("queue:example-rides-%d", time.Now().UnixNano())
	admin := mq.(message.Declarer)
	admin.Declare(ctx, q, message.DeclareOptions{MaxDeliveries: 3})
	defer admin.Delete(ctx, q)
	defer admin.Delete(ctx, q+".dlq") // Declare made it
	mq.Publish(ctx, q, broker.Message{Body: []byte("ride r-1"), ID: "r-1"})

	r, _ := message.NewRouter(mq, message.RouterConfig{})
	done := make(chan struct{})
	r.Handle(q, func(ctx context.Context, d *message.Delivery) error {
		fmt.Printf("%s, delivery %d\n", d.Body, d.Deliveries)
		close(done)
		return nil
	}, message.RouteOptions{})
	rctx, stop := context.WithTimeout(ctx, 10*time.Second)
	go func() { <-done; stop() }()
	fmt.Println("router:", r.Run(rctx))
	// Output:
	// ride r-1, delivery 1
	// router: <nil>
}
