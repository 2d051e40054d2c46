package broker

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMessageStatus(t *testing.T) {
	e := newEnv(t)
	e.declare("q", QueueConfig{VisibilityTimeout: Duration(time.Second), MaxDeliveries: 1})
	state := func(seq uint64) MessageStatus {
		t.Helper()
		st, err := e.b.MessageStatus("q", seq)
		if err != nil {
			t.Fatalf("status of %d: %v", seq, err)
		}
		return st
	}
	a := e.pub("q", Message{Body: []byte("a"), ID: "p-a"})
	later := e.pub("q", Message{Body: []byte("later"), Delay: time.Hour})
	if st := state(a.Seq); st.State != StateReady || st.MsgID != "p-a" || st.Deliveries != 0 || st.PublishedAt.IsZero() {
		t.Fatalf("after publish: %+v", st)
	}
	if st := state(later.Seq); st.State != StateDelayed || st.AvailableAt.IsZero() {
		t.Fatalf("delayed: %+v", st)
	}
	ds := e.recv("q", 1)
	if st := state(a.Seq); st.State != StateInFlight || st.Deliveries != 1 || st.VisibleAt.IsZero() {
		t.Fatalf("after receive: %+v", st)
	}
	e.ack("q", ds)
	if st := state(a.Seq); st.State != StateAcked || st.Deliveries != 1 || st.SettledAt.IsZero() {
		t.Fatalf("after ack: %+v", st)
	}
	e.restart() // acks are remembered from the replayed log
	if st := state(a.Seq); st.State != StateAcked {
		t.Fatalf("after restart: %+v", st)
	}

	b := e.pub("q", Message{Body: []byte("poison")})
	ds = e.recv("q", 1)
	if _, err := e.b.Nack(context.Background(), "q", []string{ds[0].Receipt}, 0); err != nil {
		t.Fatal(err)
	}
	if st := state(b.Seq); st.State != StateDeadLettered || st.Reason != "max_deliveries" || st.MovedTo != "q.dlq" {
		t.Fatalf("after max deliveries: %+v", st)
	}
	e.restart()
	if st := state(b.Seq); st.State != StateDeadLettered || st.Reason != "max_deliveries" || st.MovedTo != "q.dlq" {
		t.Fatalf("dead-lettered after restart: %+v", st)
	}

	if st := state(999); st.State != StateUnknown {
		t.Fatalf("never published: %+v", st)
	}
	if _, err := e.b.MessageStatus("nope", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
}

func TestSettledMemoryIsBounded(t *testing.T) {
	var r settledRing
	for seq := uint64(1); seq <= SettledMemory+10; seq++ {
		r.add(seq, acked)
	}
	if len(r.bySeq) != SettledMemory || len(r.order) != SettledMemory {
		t.Fatalf("remembers %d (ring %d), want %d", len(r.bySeq), len(r.order), SettledMemory)
	}
	for _, seq := range []uint64{1, 10} {
		if _, ok := r.bySeq[seq]; ok {
			t.Fatalf("oldest entry %d not forgotten", seq)
		}
	}
	for _, seq := range []uint64{11, SettledMemory + 10} {
		if _, ok := r.bySeq[seq]; !ok {
			t.Fatalf("recent entry %d forgotten", seq)
		}
	}
	r.add(SettledMemory+10, outcome{state: StateDropped}) // an update takes no new slot
	if len(r.bySeq) != SettledMemory || r.bySeq[11].state != StateAcked {
		t.Fatal("updating an entry evicted another")
	}
}
