package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/jetstream"
)

// TestAckAsyncThenClose: acks given with AckAsync off the subscription's
// goroutine (as the Router's workers do) wait in the adapter's queue for
// up to a millisecond; closing the backend right after them sends them
// first, so none of the messages stays in the queue (work-queue retention
// removes a message once acked). Fails if Close drops queued acks: the
// messages stay, and the deadline (below their 30 s AckWait) ends the wait.
func TestAckAsyncThenClose(t *testing.T) {
	ctx := context.Background()
	u := natsURL(t)
	b, err := jetstream.Dial(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("ackclose%d", time.Now().UnixNano())
	q := "queue:" + name
	if err := b.Declare(ctx, q, message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	admin, err := jetstream.Dial(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		admin.Delete(ctx, q)
		admin.Delete(ctx, q+".dlq")
		admin.Close()
	}()
	const n = 50
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = broker.Message{Body: []byte{byte(i)}}
	}
	if err := b.Publish(ctx, q, msgs...); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan *message.Delivery, n)
	subDone := make(chan error, 1)
	go func() {
		subDone <- b.Subscribe(sctx, q, message.SubscribeOptions{Prefetch: n}, func(d *message.Delivery) { got <- d })
	}()
	deadline := time.After(20 * time.Second)
	ds := make([]*message.Delivery, 0, n)
	for len(ds) < n {
		select {
		case d := <-got:
			ds = append(ds, d)
		case err := <-subDone:
			t.Fatalf("subscription ended: %v", err)
		case <-deadline:
			t.Fatalf("%d of %d messages delivered", len(ds), n)
		}
	}
	results := make(chan error, n)
	for _, d := range ds {
		d.AckAsync(func(err error) { results <- err })
	}
	b.Close()
	for range n {
		select {
		case err := <-results:
			if err != nil {
				t.Errorf("ack: %v", err)
			}
		case <-deadline:
			t.Fatal("not every AckAsync's done was called")
		}
	}
	cancel()
	select {
	case <-subDone:
	case <-deadline:
		t.Fatal("Subscribe did not return after Close and the end of its ctx")
	}
	for {
		st, err := admin.JetStream().Stream(ctx, "SYQ_"+name)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().State.Msgs == 0 {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%d of %d acked messages still in the queue after Close", st.CachedInfo().State.Msgs, n)
		case <-time.After(20 * time.Millisecond): // polling the server's count
		}
	}
}
