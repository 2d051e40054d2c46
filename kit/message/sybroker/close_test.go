package sybroker_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// Close returns while the broker is unreachable and an ack waits to be
// sent: the ack batcher redials with a context that never ends, holding
// the connection's lock, and Close waited for that lock until the broker
// came back (for ever here).
func TestCloseWhileAckRedials(t *testing.T) {
	addr := startBroker(t)
	p := startProxy(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := sybroker.Dial(ctx, p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Declare(ctx, "queue:jobs", message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	publishN(t, ctx, b, "queue:jobs", 1)
	got := make(chan *message.Delivery, 1)
	subDone := make(chan error, 1)
	go func() {
		subDone <- b.Subscribe(ctx, "queue:jobs", message.SubscribeOptions{Prefetch: 1}, func(d *message.Delivery) { got <- d })
	}()
	var d *message.Delivery
	select {
	case d = <-got:
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	p.ln.Close() // redials are refused from now on
	p.cut()
	if err := <-subDone; !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("subscription over a cut connection: %v, want ErrDisconnected", err)
	}
	acked := make(chan error, 1)
	d.AckAsync(func(err error) { acked <- err })
	waitFor(t, ctx, "the ack batcher to redial", func() bool {
		buf := make([]byte, 1<<20)
		return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("client.(*Conn).link("))
	})
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hung while the ack batcher redialled an unreachable broker")
	}
	select {
	case err := <-acked:
		if err == nil {
			t.Fatal("an ack never sent reported success")
		}
	case <-ctx.Done():
		t.Fatal("the pending ack was never answered after Close")
	}
}
