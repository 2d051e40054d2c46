package client

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// pubsubClient is what the topic, stream and admin contract suites need.
type pubsubClient interface {
	Publisher
	TopicClient
	StreamClient
	GroupClient
	Admin
}

// eachClient runs fn against every implementation, each with a fresh
// broker: in process, over the native protocol on a loopback listener and
// over the HTTP API.
func eachClient(t *testing.T, fn func(t *testing.T, c pubsubClient, b *engine.Broker)) {
	impls := []struct {
		name string
		make func(t *testing.T, b *engine.Broker) pubsubClient
	}{
		{"embedded", func(_ *testing.T, b *engine.Broker) pubsubClient { return newLocal(b) }},
		{"native", func(t *testing.T, b *engine.Broker) pubsubClient {
			addr, stop := serve(t, b, "127.0.0.1:0")
			t.Cleanup(stop)
			c, err := Dial(context.Background(), addr, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}},
		{"http", func(t *testing.T, b *engine.Broker) pubsubClient {
			srv := httptest.NewServer(httpapi.New(b))
			t.Cleanup(srv.Close)
			c := &HTTP{Base: srv.URL}
			t.Cleanup(func() { c.Close() })
			return c
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			b := openBroker(t, t.TempDir())
			t.Cleanup(func() { b.Close() })
			fn(t, impl.make(t, b), b)
		})
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// next takes the next message with a deadline.
func next(t *testing.T, s TopicSubscription) broker.TopicMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("next message: %v", err)
	}
	return m
}

// nextErr waits for the subscription to end and returns why.
func nextErr(t *testing.T, s TopicSubscription) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		m, err := s.Next(ctx)
		if err != nil {
			return err
		}
		t.Logf("message %d before the end", m.ID)
	}
}

func TestTopicContract(t *testing.T) {
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ctx := context.Background()
		if err := b.Declare("audit", broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
		if err := b.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit"}, MaxMessageSize: 100}); err != nil {
			t.Fatal(err)
		}
		if res, err := c.PublishTopic(ctx, "rides", broker.Message{Body: []byte("old")}); err != nil || len(res) != 1 || res[0].Subscribers != 0 || res[0].Queues != 1 {
			t.Fatalf("publish before subscribing: %+v %v", res, err)
		}
		s1, err := c.SubscribeTopic(ctx, "rides", TopicOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s1.Close()
		s2, err := c.SubscribeTopic(ctx, "rides", TopicOptions{Credit: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if i, _ := b.Topic("rides"); i.Subscribers != 2 {
			t.Fatalf("subscribers after SubscribeTopic returned: %d, want 2", i.Subscribers)
		}
		res, err := c.PublishTopic(ctx, "rides",
			broker.Message{Body: []byte("m1"), ID: "ride-1", Key: "driver-7", Headers: map[string]string{"kind": "requested"}},
			broker.Message{Body: []byte("m2")})
		if err != nil || len(res) != 2 || res[0].Subscribers != 2 || res[0].Queues != 1 || res[1].ID <= res[0].ID {
			t.Fatalf("publish batch: %+v %v", res, err)
		}
		// Fan-out: both subscribers get both new messages, in order, and
		// not the one published before they subscribed.
		for i, s := range []TopicSubscription{s1, s2} {
			m := next(t, s)
			if string(m.Body) != "m1" || m.ID != res[0].ID || m.MsgID != "ride-1" || m.Key != "driver-7" ||
				m.Headers["kind"] != "requested" || m.Time.IsZero() {
				t.Fatalf("subscriber %d: first message %+v, want m1 (only new messages)", i+1, m)
			}
			if m := next(t, s); string(m.Body) != "m2" || m.ID != res[1].ID {
				t.Fatalf("subscriber %d: second message %+v, want m2", i+1, m)
			}
		}
		if i, _ := b.Queue("audit"); i.Depth != 3 {
			t.Fatalf("bound queue depth %d, want 3", i.Depth)
		}
		// Next honours its context and the subscription stays usable.
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		if _, err := s1.Next(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("next on a quiet topic: %v", err)
		}
		cancel()
		// After Close, the subscriber gets nothing more.
		s2.Close()
		if _, err := s2.Next(ctx); !errors.Is(err, ErrSubscriptionClosed) {
			t.Fatalf("next after close: %v", err)
		}
		waitFor(t, "the closed subscription to leave the topic", func() bool {
			i, _ := b.Topic("rides")
			return i.Subscribers == 1
		})
		if res, err := c.PublishTopic(ctx, "rides", broker.Message{Body: []byte("m3")}); err != nil || res[0].Subscribers != 1 {
			t.Fatalf("publish after close: %+v %v", res, err)
		}
		if m := next(t, s1); string(m.Body) != "m3" {
			t.Fatalf("after the other closed: %+v", m)
		}
		// Errors.
		if _, err := c.PublishTopic(ctx, "nope", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("publish to an unknown topic: %v", err)
		}
		if _, err := c.SubscribeTopic(ctx, "nope", TopicOptions{}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("subscribe to an unknown topic: %v", err)
		}
		if _, err := c.PublishTopic(ctx, "rides", broker.Message{Body: make([]byte, 101)}); !errors.Is(err, broker.ErrTooLarge) {
			t.Fatalf("too large: %v", err)
		}
		// Deleting the topic ends its subscriptions with not found.
		if err := b.DeleteTopic("rides"); err != nil {
			t.Fatal(err)
		}
		if err := nextErr(t, s1); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("after the topic was deleted: %v", err)
		}
	})
}

func TestStreamContract(t *testing.T) {
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ctx := context.Background()
		if err := b.DeclareStream("loc", broker.StreamConfig{MaxMessageSize: 100}); err != nil {
			t.Fatal(err)
		}
		offs, err := c.Append(ctx, "loc", broker.Message{Body: []byte("a"), Headers: map[string]string{"n": "1"}},
			broker.Message{Body: []byte("b")}, broker.Message{Body: []byte("c")})
		if err != nil || fmt.Sprint(offs) != "[1 2 3]" {
			t.Fatalf("append batch: %v %v", offs, err)
		}
		if offs, err := c.Append(ctx, "loc", broker.Message{Body: []byte("d")}); err != nil || fmt.Sprint(offs) != "[4]" {
			t.Fatalf("append: %v %v", offs, err)
		}
		bodies := func(p StreamPage) string {
			s := ""
			for _, m := range p.Messages {
				s += string(m.Body)
			}
			return s
		}
		read := func(from Position, opts broker.ReadOptions) StreamPage {
			t.Helper()
			p, err := c.ReadStream(ctx, "loc", from, opts)
			if err != nil {
				t.Fatalf("read from %s: %v", from, err)
			}
			return p
		}
		all := read(FromStart(), broker.ReadOptions{})
		if bodies(all) != "abcd" || all.Next != 5 || all.Messages[0].Offset != 1 || all.Messages[0].Headers["n"] != "1" || all.Messages[0].Time.IsZero() {
			t.Fatalf("read from start: %+v", all)
		}
		if p := read(FromOffset(2), broker.ReadOptions{Max: 2}); bodies(p) != "bc" || p.Next != 4 || p.Messages[0].Offset != 2 {
			t.Fatalf("read from offset 2, max 2: %+v", p)
		}
		if p := read(FromStart(), broker.ReadOptions{Max: 1}); bodies(p) != "a" || p.Next != 2 {
			t.Fatalf("read from start, max 1: %+v", p)
		}
		if p := read(Position{}, broker.ReadOptions{Max: 1}); bodies(p) != "a" {
			t.Fatalf("the zero position is the start: %+v", p)
		}
		// From a time: the first message at or after it.
		last := all.Messages[3].Time
		want := 4
		for want > 1 && !all.Messages[want-2].Time.Before(last) {
			want-- // messages written in the same nanosecond
		}
		if p := read(FromTime(last), broker.ReadOptions{}); len(p.Messages) == 0 || p.Messages[0].Offset != uint64(want) || p.Next != 5 {
			t.Fatalf("read from %s: %+v, want from offset %d", last, p, want)
		}
		if p := read(FromTime(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), broker.ReadOptions{}); bodies(p) != "abcd" {
			t.Fatalf("read from a time before the stream: %+v", p)
		}
		if p := read(FromTime(time.Now().Add(time.Hour)), broker.ReadOptions{}); len(p.Messages) != 0 || p.Next != 5 {
			t.Fatalf("read from a future time: %+v", p)
		}
		if p := read(FromEnd(), broker.ReadOptions{Wait: 10 * time.Millisecond}); len(p.Messages) != 0 || p.Next != 5 {
			t.Fatalf("read from the end: %+v", p)
		}
		// A waiting read returns as soon as a message is appended.
		tail := make(chan StreamPage, 1)
		go func() {
			p, err := c.ReadStream(ctx, "loc", FromOffset(5), broker.ReadOptions{Wait: 10 * time.Second})
			if err != nil {
				t.Errorf("tail: %v", err)
			}
			tail <- p
		}()
		time.Sleep(10 * time.Millisecond) // let the read start waiting (it works either way)
		if _, err := c.Append(ctx, "loc", broker.Message{Body: []byte("e")}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-tail:
			if bodies(p) != "e" || p.Next != 6 {
				t.Fatalf("tail: %+v", p)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiting read did not see the append")
		}

		// Consumer groups: fetch does not move the offset, commit does.
		fetch := func(opts broker.ReadOptions) StreamPage {
			t.Helper()
			p, err := c.Fetch(ctx, "loc", "billing", opts)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			return p
		}
		if p := fetch(broker.ReadOptions{Max: 2}); bodies(p) != "ab" || p.Next != 3 {
			t.Fatalf("first fetch: %+v", p)
		}
		if p := fetch(broker.ReadOptions{Max: 2}); bodies(p) != "ab" {
			t.Fatalf("fetch again without commit: %+v", p)
		}
		if err := c.Commit(ctx, "loc", "billing", 3); err != nil {
			t.Fatal(err)
		}
		if i, _ := b.Stream("loc"); i.Groups["billing"] != 3 {
			t.Fatalf("committed offsets %v", i.Groups)
		}
		if p := fetch(broker.ReadOptions{Max: 2}); bodies(p) != "cd" || p.Next != 5 || p.Messages[0].Offset != 3 {
			t.Fatalf("fetch after commit: %+v", p)
		}
		if err := c.Commit(ctx, "loc", "billing", 6); err != nil {
			t.Fatal(err)
		}
		if p := fetch(broker.ReadOptions{Wait: 10 * time.Millisecond}); len(p.Messages) != 0 || p.Next != 6 {
			t.Fatalf("fetch at the end: %+v", p)
		}
		if p, err := c.Fetch(ctx, "loc", "audit", broker.ReadOptions{}); err != nil || bodies(p) != "abcde" {
			t.Fatalf("another group starts at the start: %+v %v", p, err)
		}

		// Errors.
		for name, err := range map[string]error{
			"append to an unknown stream": func() error { _, err := c.Append(ctx, "nope", broker.Message{Body: []byte("x")}); return err }(),
			"read an unknown stream":      func() error { _, err := c.ReadStream(ctx, "nope", FromStart(), broker.ReadOptions{}); return err }(),
			"read an unknown stream at an offset": func() error {
				_, err := c.ReadStream(ctx, "nope", FromOffset(1), broker.ReadOptions{})
				return err
			}(),
			"read an unknown stream at a time": func() error {
				_, err := c.ReadStream(ctx, "nope", FromTime(time.Now()), broker.ReadOptions{})
				return err
			}(),
			"fetch an unknown stream":  func() error { _, err := c.Fetch(ctx, "nope", "g", broker.ReadOptions{}); return err }(),
			"commit an unknown stream": c.Commit(ctx, "nope", "g", 1),
		} {
			if !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("%s: %v, want not found", name, err)
			}
		}
		for name, err := range map[string]error{
			"commit past the end": c.Commit(ctx, "loc", "billing", 100),
			"bad group name":      func() error { _, err := c.Fetch(ctx, "loc", "no spaces", broker.ReadOptions{}); return err }(),
			"max above 10000": func() error {
				_, err := c.ReadStream(ctx, "loc", FromStart(), broker.ReadOptions{Max: 10001})
				return err
			}(),
			"negative wait": func() error {
				_, err := c.ReadStream(ctx, "loc", FromStart(), broker.ReadOptions{Wait: -time.Second})
				return err
			}(),
		} {
			if !errors.Is(err, broker.ErrInvalid) {
				t.Errorf("%s: %v, want invalid", name, err)
			}
		}
		if _, err := c.Append(ctx, "loc", broker.Message{Body: make([]byte, 101)}); !errors.Is(err, broker.ErrTooLarge) {
			t.Errorf("append too large: %v", err)
		}
	})
}
