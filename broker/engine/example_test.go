package engine_test

import (
	"context"
	"fmt"
	"os"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

func Example() {
	dir, _ := os.MkdirTemp("", "broker-example")
	defer os.RemoveAll(dir)
	b, err := engine.Open(engine.Config{Dir: dir})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx := context.Background()
	b.Declare("orders", broker.QueueConfig{MaxDeliveries: 3})
	res, _ := b.Publish(ctx, "orders", broker.Message{ID: "order-1", Body: []byte("book")}, broker.PublishOptions{})
	dup, _ := b.Publish(ctx, "orders", broker.Message{ID: "order-1", Body: []byte("book")}, broker.PublishOptions{})
	ds, _ := b.Receive(ctx, "orders", broker.ReceiveOptions{Max: 10})
	ack, _ := b.Ack(ctx, "orders", []string{ds[0].Receipt})
	fmt.Println(res.Seq, dup.Duplicate, len(ds), string(ds[0].Body), ack.Done)
	// Output: 1 true 1 book 1
}
