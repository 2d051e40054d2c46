package brokersource_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/projection/brokersource"
	"github.com/switchyard/switchyard/kit/store"
)

// Another service (payments) publishes to a broker stream; this service
// keeps a read model of it in its own database.
func Example() {
	dir, _ := os.MkdirTemp("", "brokersource-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	// A broker, in process here; a service dials its real address.
	b, _ := engine.Open(engine.Config{Dir: filepath.Join(dir, "broker")})
	defer b.Close()
	b.DeclareStream("payments", broker.StreamConfig{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go native.New(b, native.Options{}).Serve(sctx, ln)

	c, err := client.Dial(ctx, ln.Addr().String(), client.Options{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.Append(ctx, "payments",
		broker.Message{Body: []byte(`{"amount":12}`), Headers: map[string]string{"type": "Charged", "key": "ann"}},
		broker.Message{Body: []byte(`{"amount":30}`), Headers: map[string]string{"type": "Charged", "key": "ann"}})

	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "query.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	src, _ := brokersource.New(c, "payments", brokersource.Options{})
	pr, err := projection.New(ctx, db, perRider, src)
	if err != nil {
		panic(err)
	}
	if err := pr.CatchUp(ctx); err != nil {
		panic(err)
	}
	var total, n int
	db.QueryRow(ctx, "SELECT total, n FROM paid WHERE rider = ?", "ann").Scan(&total, &n)
	cp, _ := pr.Checkpoint(ctx, src.Name())
	fmt.Println(src.Name(), "checkpoint", cp, "ann paid", total, "in", n)
	// Output: broker:payments checkpoint 2 ann paid 42 in 2
}
