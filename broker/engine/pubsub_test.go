package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

func TestTopicFanOut(t *testing.T) {
	e := newEnv(t)
	e.declare("audit", broker.QueueConfig{})
	if err := e.b.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit"}, Buffer: 2}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.DeclareTopic("bad", broker.TopicConfig{Queues: []string{"missing"}}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("binding a missing queue: %v", err)
	}
	ctx := context.Background()
	e.b.PublishTopic(ctx, "rides", broker.Message{Body: []byte("before")}, broker.PublishOptions{})
	s1, _ := e.b.Subscribe("rides")
	s2, _ := e.b.Subscribe("rides")
	res, err := e.b.PublishTopic(ctx, "rides", broker.Message{Body: []byte("m1"), Headers: map[string]string{"a": "b"}}, broker.PublishOptions{})
	if err != nil || res.Subscribers != 2 || res.Queues != 1 {
		t.Fatalf("publish %+v %v", res, err)
	}
	for _, s := range []*Subscription{s1, s2} {
		m := <-s.C
		if string(m.Body) != "m1" || m.Headers["a"] != "b" {
			t.Fatalf("subscriber got %+v (new subscribers must see only new messages)", m)
		}
	}
	// s2 stops reading: after its buffer (2) fills it is dropped, s1 is not.
	for i := range 3 {
		e.b.PublishTopic(ctx, "rides", broker.Message{Body: []byte(fmt.Sprint(i))}, broker.PublishOptions{})
		<-s1.C
	}
	<-s2.C
	<-s2.C
	if _, ok := <-s2.C; ok || !errors.Is(s2.Err(), broker.ErrLagged) {
		t.Fatalf("slow subscriber: err %v", s2.Err())
	}
	if i, _ := e.b.Topic("rides"); i.Subscribers != 1 {
		t.Fatalf("subscribers %d", i.Subscribers)
	}
	if i, _ := e.b.Queue("audit"); i.Depth != 5 {
		t.Fatalf("bound queue depth %d, want 5", i.Depth)
	}
	e.restart()
	if _, err := e.b.Topic("rides"); err != nil {
		t.Fatalf("topic lost on restart: %v", err)
	}
	s3, _ := e.b.Subscribe("rides")
	e.b.DeleteTopic("rides")
	if _, ok := <-s3.C; ok || !errors.Is(s3.Err(), broker.ErrNotFound) {
		t.Fatalf("after delete: %v", s3.Err())
	}
}

func TestStreamReplayGroupsRetention(t *testing.T) {
	lowerMinSegment(t)
	e := newEnv(t)
	if err := e.b.DeclareStream("loc", broker.StreamConfig{SegmentBytes: 512, MaxBytes: 4096}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := e.clk.Now()
	for i := 1; i <= 10; i++ {
		off, err := e.b.Append(ctx, "loc", broker.Message{Body: []byte(fmt.Sprint(i)), Headers: map[string]string{"n": fmt.Sprint(i)}})
		if err != nil || off != uint64(i) {
			t.Fatalf("append %d: %d %v", i, off, err)
		}
		e.clk.Advance(time.Second)
	}
	ms, err := e.b.Read(ctx, "loc", 4, broker.ReadOptions{Max: 3})
	if err != nil || len(ms) != 3 || string(ms[0].Body) != "4" || ms[2].Offset != 6 || ms[0].Headers["n"] != "4" {
		t.Fatalf("read %+v %v", ms, err)
	}
	at, _ := e.b.OffsetAt("loc", t0.Add(5*time.Second).Format(time.RFC3339Nano))
	if at != 6 {
		t.Fatalf("offset at t0+5s = %d, want 6", at)
	}
	if s, _ := e.b.OffsetAt("loc", "start"); s != 1 {
		t.Fatalf("start %d", s)
	}
	if _, err := e.b.OffsetAt("loc", "yesterday"); !errors.Is(err, broker.ErrInvalid) {
		t.Fatal(err)
	}
	// Consumer group: fetch from committed offset, commit, restart.
	ms, _ = e.b.Fetch(ctx, "loc", "g1", broker.ReadOptions{Max: 4})
	if len(ms) != 4 || ms[0].Offset != 1 {
		t.Fatalf("first fetch %+v", ms)
	}
	if err := e.b.Commit("loc", "g1", 5); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Commit("loc", "g1", 99); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("commit past end: %v", err)
	}
	e.restart()
	ms, _ = e.b.Fetch(ctx, "loc", "g1", broker.ReadOptions{Max: 100})
	if len(ms) != 6 || ms[0].Offset != 5 {
		t.Fatalf("fetch after restart %+v", ms)
	}
	// Long poll wakes on append.
	go func() {
		time.Sleep(30 * time.Millisecond)
		e.b.Append(ctx, "loc", broker.Message{Body: []byte("11")})
	}()
	ms, err = e.b.Read(ctx, "loc", 11, broker.ReadOptions{Wait: 3 * time.Second})
	if err != nil || len(ms) != 1 || string(ms[0].Body) != "11" {
		t.Fatalf("long poll %+v %v", ms, err)
	}
	// Size retention deletes whole old segments.
	for i := 12; i <= 300; i++ {
		e.b.Append(ctx, "loc", broker.Message{Body: []byte(fmt.Sprintf("%d ........................", i))})
	}
	s, _ := e.b.stream("loc")
	s.log.ApplyRetention()
	info, _ := e.b.Stream("loc")
	if info.FirstOffset <= 1 || info.Bytes > 4096+512 || info.LastOffset != 300 {
		t.Fatalf("retention: %+v", info)
	}
	ms, _ = e.b.Read(ctx, "loc", 0, broker.ReadOptions{Max: 1})
	if ms[0].Offset != info.FirstOffset {
		t.Fatalf("read from 0 got offset %d, first is %d", ms[0].Offset, info.FirstOffset)
	}
	// A re-declare with tighter retention applies it at once.
	if err := e.b.DeclareStream("loc", broker.StreamConfig{SegmentBytes: 512, MaxBytes: 1024}); err != nil {
		t.Fatal(err)
	}
	tight, _ := e.b.Stream("loc")
	if tight.FirstOffset <= info.FirstOffset || tight.Bytes > 1024+512 || tight.LastOffset != 300 {
		t.Fatalf("after re-declaring max_bytes 1024: %+v (before %+v)", tight, info)
	}
	if err := e.b.DeleteStream("loc"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if _, err := e.b.Stream("loc"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("deleted stream: %v", err)
	}
}
