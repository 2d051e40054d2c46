package hitchtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/kit/message"
)

// An event published to a producer's topic reaches every consumer queue
// bound to it, with its kind, id and key.
func TestTopologyFansOut(t *testing.T) {
	b := hitchtest.StartBroker(t)
	bus := b.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev, err := hitch.Event(hitch.KindRideFinished, "ev-1", "ride-1",
		hitch.RideFinished{RideRef: hitch.RideRef{RideID: "ride-1", RiderID: "r", DriverID: "d"}, FareCents: 700, FeeCents: 140})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, "topic:"+hitch.TopicRides, ev); err != nil {
		t.Fatal(err)
	}
	for _, q := range hitch.Bindings[hitch.TopicRides] {
		got := make(chan *message.Delivery, 1)
		sctx, scancel := context.WithCancel(ctx)
		go bus.Subscribe(sctx, "queue:"+q, message.SubscribeOptions{}, func(d *message.Delivery) {
			select {
			case got <- d:
			default:
			}
		})
		select {
		case d := <-got:
			var p hitch.RideFinished
			if d.ID != "ev-1" || d.Key != "ride-1" || d.Headers["kind"] != hitch.KindRideFinished {
				t.Errorf("%s: got id %q key %q headers %v", q, d.ID, d.Key, d.Headers)
			}
			if err := hitch.Decode(hitch.KindRideFinished, d.Body, &p); err != nil || p.FareCents != 700 {
				t.Errorf("%s: payload %+v, %v", q, p, err)
			}
			d.Ack(ctx)
		case <-ctx.Done():
			t.Fatalf("%s: nothing delivered", q)
		}
		scancel()
	}
}

func TestFare(t *testing.T) {
	fare, fee := hitch.DefaultFares.Fare(10)
	if fare != 1750 || fee != 350 {
		t.Fatalf("10 mi: fare %d fee %d, want 1750 and 350", fare, fee)
	}
}
