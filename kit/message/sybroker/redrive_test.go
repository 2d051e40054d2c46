package sybroker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// Redrive takes dead letters "one at a time" (Prefetch 1) so that a run
// stopping at Max hands back at most one message, which counts a
// delivery. With credit on settlement a Prefetch of 1 let the broker push
// 4: every run stopping at Max counted a delivery of the next 3 (and one
// more could wait out the visibility timeout), and a dead-letter queue
// with MaxDeliveries 3 dropped messages before their turn.
func TestRedriveMaxOneCountsOneDelivery(t *testing.T) {
	addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := openJobs(t, ctx, addr, message.DeclareOptions{})
	if err := b.Declare(ctx, "queue:jobs.dlq", message.DeclareOptions{Visibility: time.Second, MaxDeliveries: 3, DeadLetter: "none"}); err != nil {
		t.Fatal(err)
	}
	const total = 8
	for i := range total {
		if err := b.Publish(ctx, "queue:jobs.dlq", broker.Message{Body: fmt.Appendf(nil, "m%d", i), ID: fmt.Sprintf("id-%d", i),
			Headers: map[string]string{broker.HeaderOriginalQueue: "jobs"}}); err != nil {
			t.Fatal(err)
		}
	}
	moved := 0
	for run := 1; moved < total; run++ {
		if run > 3*total {
			t.Fatalf("%d runs moved %d of %d dead letters (the rest were dropped at MaxDeliveries)", run-1, moved, total)
		}
		m, err := message.Redrive(ctx, b, "queue:jobs.dlq", message.RedriveOptions{Max: 1, Idle: 1500 * time.Millisecond})
		if err != nil || m > 1 {
			t.Fatalf("Redrive run %d: moved %d, %v; want at most 1", run, m, err)
		}
		moved += m
	}
}
