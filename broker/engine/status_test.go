package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

func TestMessageStatus(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{VisibilityTimeout: broker.Duration(time.Second), MaxDeliveries: 1})
	state := func(seq uint64) broker.MessageStatus {
		t.Helper()
		st, err := e.b.MessageStatus("q", seq)
		if err != nil {
			t.Fatalf("status of %d: %v", seq, err)
		}
		return st
	}
	a := e.pub("q", broker.Message{Body: []byte("a"), ID: "p-a"})
	later := e.pub("q", broker.Message{Body: []byte("later"), Delay: time.Hour})
	if st := state(a.Seq); st.State != broker.StateReady || st.MsgID != "p-a" || st.Deliveries != 0 || st.PublishedAt.IsZero() {
		t.Fatalf("after publish: %+v", st)
	}
	if st := state(later.Seq); st.State != broker.StateDelayed || st.AvailableAt.IsZero() {
		t.Fatalf("delayed: %+v", st)
	}
	ds := e.recv("q", 1)
	if st := state(a.Seq); st.State != broker.StateInFlight || st.Deliveries != 1 || st.VisibleAt.IsZero() {
		t.Fatalf("after receive: %+v", st)
	}
	e.ack("q", ds)
	if st := state(a.Seq); st.State != broker.StateAcked || st.Deliveries != 1 || st.SettledAt.IsZero() {
		t.Fatalf("after ack: %+v", st)
	}
	e.restart() // acks are remembered from the replayed log
	if st := state(a.Seq); st.State != broker.StateAcked {
		t.Fatalf("after restart: %+v", st)
	}

	b := e.pub("q", broker.Message{Body: []byte("poison")})
	ds = e.recv("q", 1)
	if _, err := e.b.Nack(context.Background(), "q", []string{ds[0].Receipt}, 0); err != nil {
		t.Fatal(err)
	}
	if st := state(b.Seq); st.State != broker.StateDeadLettered || st.Reason != "max_deliveries" || st.MovedTo != "q.dlq" {
		t.Fatalf("after max deliveries: %+v", st)
	}
	e.restart()
	if st := state(b.Seq); st.State != broker.StateDeadLettered || st.Reason != "max_deliveries" || st.MovedTo != "q.dlq" {
		t.Fatalf("dead-lettered after restart: %+v", st)
	}

	if st := state(999); st.State != broker.StateUnknown {
		t.Fatalf("never published: %+v", st)
	}
	if _, err := e.b.MessageStatus("nope", 1); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
}

func TestSettledMemoryIsBounded(t *testing.T) {
	var r settledRing
	for seq := uint64(1); seq <= broker.SettledMemory+10; seq++ {
		r.add(seq, acked)
	}
	if len(r.bySeq) != broker.SettledMemory || len(r.order) != broker.SettledMemory {
		t.Fatalf("remembers %d (ring %d), want %d", len(r.bySeq), len(r.order), broker.SettledMemory)
	}
	for _, seq := range []uint64{1, 10} {
		if _, ok := r.bySeq[seq]; ok {
			t.Fatalf("oldest entry %d not forgotten", seq)
		}
	}
	for _, seq := range []uint64{11, broker.SettledMemory + 10} {
		if _, ok := r.bySeq[seq]; !ok {
			t.Fatalf("recent entry %d forgotten", seq)
		}
	}
	r.add(broker.SettledMemory+10, outcome{state: broker.StateDropped}) // an update takes no new slot
	if len(r.bySeq) != broker.SettledMemory || r.bySeq[11].state != broker.StateAcked {
		t.Fatal("updating an entry evicted another")
	}
}
