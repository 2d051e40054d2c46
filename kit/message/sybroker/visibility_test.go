package sybroker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// A queue's visibility timeout raised while a subscription runs: the
// subscription returns the credit of an unsettled message when the
// timeout its SubOK announced ran out, so the broker must keep leasing
// its messages for that long. It leased them for the new timeout
// instead: a subscription settling nothing held 8 more messages at each
// old timeout, beyond its window of 4 x Prefetch.
func TestQueueVisibilityRaisedKeepsBound(t *testing.T) { testBoundAtVisibility(t, time.Minute) }

// The credit of an unsettled message came back as soon as its visibility
// timeout, counted on the client, ran out; the broker takes the message
// back at its next tick after that (20ms by default): credit returned in
// between let it push a window of other messages while the expired ones
// still counted, 2 x the window leased to a subscription settling
// nothing (seen at the 9th delivery here).
func TestQueueBoundAtVisibilityTimeout(t *testing.T) { testBoundAtVisibility(t, 300*time.Millisecond) }

func testBoundAtVisibility(t *testing.T, raised time.Duration) {
	eng, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, eng)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := sybroker.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	opts := message.DeclareOptions{Visibility: 300 * time.Millisecond, MaxDeliveries: 1000}
	if err := b.Declare(ctx, "queue:jobs", opts); err != nil {
		t.Fatal(err)
	}
	const prefetch, total = 2, 60
	publishN(t, ctx, b, "queue:jobs", total)
	held := make(chan struct{}, 1000)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Subscribe(sctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(*message.Delivery) { held <- struct{}{} })
	n := 0
	for ; n < 4*prefetch; n++ {
		<-held
	}
	opts.Visibility = raised
	if err := b.Declare(ctx, "queue:jobs", opts); err != nil {
		t.Fatal(err)
	}
	// Five more windows handed out (the first ones come back every
	// 300ms): at no point more than a window leased.
	for ; n < 6*4*prefetch; n++ {
		select {
		case <-held:
		case <-ctx.Done():
			t.Fatalf("%d messages handed out, want %d", n, 6*4*prefetch)
		}
		q, err := eng.Queue("jobs")
		if err != nil {
			t.Fatal(err)
		}
		if q.InFlight > 4*prefetch {
			t.Fatalf("after %d deliveries %d messages are leased to a subscription with a window of %d", n+1, q.InFlight, 4*prefetch)
		}
	}
}

// Two subscriptions of one queue on one connection share the queue's
// ack batcher: the credit of the acking one's batches goes to it, never
// to the one that settles nothing (which holds exactly its window).
func TestQueueCreditPerSubscriptionOnOneConn(t *testing.T) {
	addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openJobs(t, ctx, addr, message.DeclareOptions{})
	const prefetch, total = 2, 300
	publishN(t, ctx, b, "queue:jobs", total)
	var held, acked atomic.Int64
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Subscribe(sctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(*message.Delivery) { held.Add(1) })
	waitFor(t, ctx, "the first window", func() bool { return held.Load() >= 4*prefetch })
	go b.Subscribe(sctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(d *message.Delivery) {
		d.AckAsync(func(err error) {
			if err == nil {
				acked.Add(1)
			}
		})
	})
	waitFor(t, ctx, "the rest acked", func() bool { return held.Load()+acked.Load() >= total })
	if n := held.Load(); n != 4*prefetch {
		t.Fatalf("the subscription settling nothing was handed %d, want its window %d (acked %d)", n, 4*prefetch, acked.Load())
	}
}
