package jetstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/message"
)

// TestAckQueue: acks given through AckAsync on many goroutines at once
// (as the Router's handlers do) are each published exactly once and each
// done hears the outcome; a second round after the queue went idle (its
// timer fired) is sent too, as are acks whose publish fails (done hears
// the error); one given while the subscription's goroutine delivers the
// message goes out at once. A lost ack would leave a done unheard: the deadline fails
// the test instead of hanging.
func TestAckQueue(t *testing.T) {
	q := &queueSub{src: message.Dest{Kind: message.Queue, Name: "t"}, stream: "SYQ_t", queue: "t",
		settings: settingsFor("t", message.DeclareOptions{})}
	ctx := context.Background()
	for round := range 2 {
		const n, workers = 300, 8
		msgs := make([]*countMsg, n)
		ds := make([]*message.Delivery, 0, n)
		for i := range msgs {
			msgs[i] = &countMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.SYQ_t.sy.1.42.7.1733380000123456789.0", data: []byte("x")}, fail: i%50 == 0}
			q.handle(ctx, msgs[i], func(d *message.Delivery) { ds = append(ds, d) })
		}
		if len(ds) != n {
			t.Fatalf("round %d: %d deliveries of %d messages", round, len(ds), n)
		}
		results := make(chan error, n)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					ds[i].AckAsync(func(err error) { results <- err })
				}
			}()
		}
		wg.Wait()
		deadline := time.After(30 * time.Second)
		failed := 0
		for range n {
			select {
			case err := <-results:
				if err != nil {
					failed++
				}
			case <-deadline:
				t.Fatalf("round %d: not every AckAsync's done was called", round)
			}
		}
		if failed != n/50 {
			t.Errorf("round %d: %d acks failed, want %d (the failing publishes)", round, failed, n/50)
		}
		for i, m := range msgs {
			if a := m.acks.Load(); a != 1 {
				t.Fatalf("round %d: message %d published %d acks, want 1", round, i, a)
			}
		}
		// The settled deliveries refuse a second settle, sent or not.
		if err := ds[0].Ack(ctx); err != message.ErrSettled {
			t.Fatalf("second ack: %v, want ErrSettled", err)
		}
	}
	// An ack given on the subscription's goroutine while it delivers
	// (the Router's handler with Concurrency 1) is published before
	// AckAsync returns; one given after deliver returned is queued.
	m := &countMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.SYQ_t.sy.1.43.8.1733380000123456789.0", data: []byte("x")}}
	heard := false
	var kept *message.Delivery
	q.handle(ctx, m, func(d *message.Delivery) {
		d.AckAsync(func(err error) { heard = err == nil })
		kept = d
	})
	if !heard || m.acks.Load() != 1 {
		t.Fatalf("ack during deliver: done heard %v, %d acks published, want true, 1", heard, m.acks.Load())
	}
	if err := kept.Ack(ctx); err != message.ErrSettled {
		t.Fatalf("second ack: %v, want ErrSettled", err)
	}
}

// countMsg counts its acks from any goroutine; fail makes them fail.
type countMsg struct {
	fakeMsg
	acks atomic.Int32
	fail bool
}

func (m *countMsg) Ack() error {
	m.acks.Add(1)
	if m.fail {
		return errFake
	}
	return nil
}
