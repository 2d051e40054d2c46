package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/broker"
)

func TestPublishTopicBatch(t *testing.T) {
	e := newEnv(t)
	e.declare("audit", broker.QueueConfig{})
	e.declare("billing", broker.QueueConfig{})
	if err := e.b.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit", "billing"}, MaxMessageSize: 10}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, _ := e.b.Subscribe("rides")
	defer s.Close()
	msgs := []broker.Message{{Body: []byte("1"), ID: "r-1"}, {Body: []byte("2")}, {Body: []byte("3"), Key: "k"}}
	res, err := e.b.PublishTopicBatch(ctx, "rides", msgs, broker.PublishOptions{})
	if err != nil || len(res) != 3 {
		t.Fatalf("batch: %+v %v", res, err)
	}
	for i, r := range res {
		if r.ID != uint64(i+1) || r.Subscribers != 1 || r.Queues != 2 {
			t.Fatalf("result %d: %+v", i, r)
		}
		if m := <-s.C; string(m.Body) != fmt.Sprint(i+1) || m.ID != r.ID {
			t.Fatalf("subscriber got %+v for message %d", m, i)
		}
	}
	// Confirmed: every message is visible in both bound queues at once.
	for _, q := range []string{"audit", "billing"} {
		if ds := e.recv(q, 10); len(ds) != 3 || ds[0].MsgID != "r-1" || string(ds[2].Body) != "3" {
			t.Fatalf("queue %s: %+v", q, ds)
		}
	}
	// A too-large message anywhere in the batch stops all of it.
	before, _ := e.b.Topic("rides")
	_, err = e.b.PublishTopicBatch(ctx, "rides", []broker.Message{{Body: []byte("ok")}, {Body: make([]byte, 11)}}, broker.PublishOptions{})
	if !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if after, _ := e.b.Topic("rides"); after.Published != before.Published || len(s.C) != 0 {
		t.Fatalf("a rejected batch was partly published: %d -> %d", before.Published, after.Published)
	}
	// Retrying with the same ids is deduplicated by the bound queues.
	if res, err := e.b.PublishTopicBatch(ctx, "rides", msgs[:1], broker.PublishOptions{NoWait: true}); err != nil || res[0].Queues != 2 {
		t.Fatalf("no-wait retry: %+v %v", res, err)
	}
	<-s.C
	if i, _ := e.b.Queue("audit"); i.Depth+i.InFlight != 3 {
		t.Fatalf("retry was enqueued again: %+v", i)
	}
	if _, err := e.b.PublishTopicBatch(ctx, "nope", msgs, broker.PublishOptions{}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown topic: %v", err)
	}
	if res, err := e.b.PublishTopicBatch(ctx, "rides", nil, broker.PublishOptions{}); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %+v %v", res, err)
	}
}

func TestAppendBatch(t *testing.T) {
	e := newEnv(t)
	if err := e.b.DeclareStream("loc", broker.StreamConfig{MaxMessageSize: 10}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	offs, err := e.b.AppendBatch(ctx, "loc", []broker.Message{{Body: []byte("a"), Headers: map[string]string{"n": "1"}}, {Body: []byte("b")}})
	if err != nil || fmt.Sprint(offs) != "[1 2]" {
		t.Fatalf("batch: %v %v", offs, err)
	}
	if _, err := e.b.AppendBatch(ctx, "loc", []broker.Message{{Body: []byte("c")}, {Body: make([]byte, 11)}}); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	ms, err := e.b.Read(ctx, "loc", 0, broker.ReadOptions{})
	if err != nil || len(ms) != 2 || ms[0].Headers["n"] != "1" || string(ms[1].Body) != "b" {
		t.Fatalf("read (a rejected batch must store nothing): %+v %v", ms, err)
	}
	e.restart()
	if ms, err := e.b.Read(ctx, "loc", 0, broker.ReadOptions{}); err != nil || len(ms) != 2 {
		t.Fatalf("after restart: %+v %v", ms, err)
	}
	if _, err := e.b.AppendBatch(ctx, "nope", []broker.Message{{}}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown stream: %v", err)
	}
	if at, err := e.b.OffsetAtTime("loc", e.clk.Now().Add(-1)); err != nil || at != 1 {
		t.Fatalf("offset at a time before the stream: %d %v", at, err)
	}
}
