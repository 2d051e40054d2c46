package sybroker_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/message"
	_ "github.com/switchyard/switchyard/kit/message/sybroker" // registers switchyard://
)

// A service publishes and consumes through the router on switchyard's
// broker; only the URL names the backend. (The example starts a broker in
// process; a service connects to `switchyard broker`'s native listener.)
func Example() {
	dir, _ := os.MkdirTemp("", "sybroker-example")
	defer os.RemoveAll(dir)
	eng, _ := engine.Open(engine.Config{Dir: dir})
	defer eng.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	sctx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	go native.New(eng, native.Options{}).Serve(sctx, ln)

	ctx := context.Background()
	mq, err := message.Open(ctx, "switchyard://"+ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer mq.Close()
	mq.(message.Declarer).Declare(ctx, "queue:rides", message.DeclareOptions{MaxDeliveries: 3})
	mq.Publish(ctx, "queue:rides", broker.Message{Body: []byte("ride r-1"), ID: "r-1"})

	r, _ := message.NewRouter(mq, message.RouterConfig{})
	done := make(chan struct{})
	r.Handle("queue:rides", func(ctx context.Context, d *message.Delivery) error {
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
