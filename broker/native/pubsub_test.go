package native

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

// frames is a raw protocol client for tests.
type frames struct {
	t  *testing.T
	nc net.Conn
	r  *wire.Reader
}

func (f *frames) send(frame []byte) {
	f.t.Helper()
	f.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := f.nc.Write(frame); err != nil {
		f.t.Fatal(err)
	}
}

func (f *frames) read() wire.Frame {
	f.t.Helper()
	f.nc.SetDeadline(time.Now().Add(5 * time.Second))
	fr, err := f.r.ReadFrame()
	if err != nil {
		f.t.Fatal(err)
	}
	return fr
}

func (f *frames) errCode(fr wire.Frame) string {
	f.t.Helper()
	if fr.Type != wire.Err {
		f.t.Fatalf("frame type %#x, want Err", fr.Type)
	}
	e, err := wire.DecodeErr(fr.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return e.Code
}

// TestTopicSubscribeCreditAndLag checks that the server never pushes more
// than the granted credit and ends a subscriber that falls more than the
// topic's buffer behind with an Err frame coded lagged.
func TestTopicSubscribeCreditAndLag(t *testing.T) {
	nc, b := start(t)
	if err := b.DeclareTopic("t", broker.TopicConfig{Buffer: 4}); err != nil {
		t.Fatal(err)
	}
	f := &frames{t: t, nc: nc, r: wire.NewReader(nc, 0)}
	f.send(wire.AppendFrame(nil, wire.TopicSub, 1, wire.AppendTopicSubReq(nil, &wire.TopicSubReq{Topic: "t", Credit: 2})))
	if fr := f.read(); fr.Type != wire.SubOK || fr.ID != 1 {
		t.Fatalf("subscribe: %+v", fr)
	}
	ctx := context.Background()
	publish := func(n int) {
		for range n {
			if _, err := b.PublishTopic(ctx, "t", broker.Message{Body: []byte("x")}, broker.PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ids []uint64
	take := func(fr wire.Frame) {
		t.Helper()
		if fr.Type != wire.TopicMsgs || fr.ID != 1 {
			t.Fatalf("pushed frame %#x id %d, want TopicMsgs id 1", fr.Type, fr.ID)
		}
		ms, err := wire.DecodeTopicMsgs(nil, fr.Body)
		if err != nil || len(ms) == 0 {
			t.Fatalf("pushed messages %+v %v", ms, err)
		}
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
	}
	publish(2)
	for len(ids) < 2 {
		take(f.read())
	}
	// The credit is used up: a third message is not pushed, so the answer
	// to a ping comes first.
	publish(1)
	f.send(wire.AppendFrame(nil, wire.Ping, 2, nil))
	if fr := f.read(); fr.Type != wire.Pong || fr.ID != 2 {
		t.Fatalf("with no credit left, got %#x id %d before the pong", fr.Type, fr.ID)
	}
	// One held by the server and the buffer of 4: the rest overflow.
	publish(10)
	f.send(wire.AppendFrame(nil, wire.Credit, 1, wire.AppendUvarint(nil, 100)))
	for {
		fr := f.read()
		if fr.Type == wire.Err {
			if code := f.errCode(fr); code != "lagged" || fr.ID != 1 {
				t.Fatalf("end of subscription: code %s id %d, want lagged id 1", code, fr.ID)
			}
			break
		}
		take(fr)
	}
	if n := len(ids); n < 6 || n > 7 {
		t.Fatalf("got %d messages (%v), want 2 + 4..5 before the lag", n, ids)
	}
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("messages out of order: %v", ids)
		}
	}
	if i, _ := b.Topic("t"); i.Subscribers != 0 {
		t.Fatalf("subscribers after the lag: %d", i.Subscribers)
	}
	// Unsub of an ended subscription is answered too.
	f.send(wire.AppendFrame(nil, wire.Unsub, 1, nil))
	if fr := f.read(); fr.Type != wire.SubOK || fr.ID != 1 {
		t.Fatalf("unsub: %+v", fr)
	}
}

func TestTopicUnsub(t *testing.T) {
	nc, b := start(t)
	if err := b.DeclareTopic("t", broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	f := &frames{t: t, nc: nc, r: wire.NewReader(nc, 0)}
	f.send(wire.AppendFrame(nil, wire.TopicSub, 1, wire.AppendTopicSubReq(nil, &wire.TopicSubReq{Topic: "t", Credit: 10})))
	if fr := f.read(); fr.Type != wire.SubOK {
		t.Fatalf("subscribe: %+v", fr)
	}
	// A second subscription with the same id is refused.
	f.send(wire.AppendFrame(nil, wire.TopicSub, 1, wire.AppendTopicSubReq(nil, &wire.TopicSubReq{Topic: "t", Credit: 10})))
	if code := f.errCode(f.read()); code != "bad_request" {
		t.Fatalf("id in use: %s", code)
	}
	f.send(wire.AppendFrame(nil, wire.Unsub, 1, nil))
	if fr := f.read(); fr.Type != wire.SubOK || fr.ID != 1 {
		t.Fatalf("unsub: %+v", fr)
	}
	if i, _ := b.Topic("t"); i.Subscribers != 0 {
		t.Fatalf("subscribers after unsub: %d", i.Subscribers)
	}
}

func TestPubSubBadRequests(t *testing.T) {
	nc, b := start(t)
	b.DeclareTopic("t", broker.TopicConfig{MaxMessageSize: 4})
	b.DeclareStream("s", broker.StreamConfig{MaxMessageSize: 4})
	f := &frames{t: t, nc: nc, r: wire.NewReader(nc, 0)}
	badFrom := append(wire.AppendString(nil, "s"), 9, 0, 0, 0)
	for i, c := range []struct {
		name string
		t    wire.Type
		body []byte
		code string
	}{
		{"garbage topic publish", wire.TopicPub, []byte{0xff}, "bad_request"},
		{"publish to an unknown topic", wire.TopicPub, wire.AppendPubReq(nil, &wire.PubReq{Queue: "nope", Msgs: []broker.Message{{}}}), "not_found"},
		{"topic message too large", wire.TopicPub, wire.AppendPubReq(nil, &wire.PubReq{Queue: "t", Msgs: []broker.Message{{Body: []byte("12345")}}}), "too_large"},
		{"garbage topic subscribe", wire.TopicSub, []byte{1}, "bad_request"},
		{"subscribe to an unknown topic", wire.TopicSub, wire.AppendTopicSubReq(nil, &wire.TopicSubReq{Topic: "nope", Credit: 1}), "not_found"},
		{"garbage append", wire.StreamAppend, []byte{1, 's', 5}, "bad_request"},
		{"append to an unknown stream", wire.StreamAppend, wire.AppendAppendReq(nil, &wire.AppendReq{Stream: "nope"}), "not_found"},
		{"append too large", wire.StreamAppend, wire.AppendAppendReq(nil, &wire.AppendReq{Stream: "s", Msgs: []broker.Message{{Body: []byte("12345")}}}), "too_large"},
		{"unknown read position", wire.StreamRead, badFrom, "bad_request"},
		{"read wait above 60s", wire.StreamRead, wire.AppendReadReq(nil, &wire.ReadReq{Stream: "s", Wait: 61 * time.Second}), "bad_request"},
		{"read max above 10000", wire.StreamRead, wire.AppendReadReq(nil, &wire.ReadReq{Stream: "s", Max: 10001}), "bad_request"},
		{"read an unknown stream", wire.StreamRead, wire.AppendReadReq(nil, &wire.ReadReq{Stream: "nope", From: wire.FromOffset, Offset: 1}), "not_found"},
		{"fetch with a bad group", wire.GroupFetch, wire.AppendFetchReq(nil, &wire.FetchReq{Stream: "s", Group: "a b"}), "bad_request"},
		{"fetch an unknown stream", wire.GroupFetch, wire.AppendFetchReq(nil, &wire.FetchReq{Stream: "nope", Group: "g"}), "not_found"},
		{"commit past the end", wire.GroupCommit, wire.AppendCommitReq(nil, &wire.CommitReq{Stream: "s", Group: "g", Offset: 5}), "bad_request"},
		{"garbage commit", wire.GroupCommit, []byte{1, 's'}, "bad_request"},
	} {
		f.send(wire.AppendFrame(nil, c.t, uint32(i+1), c.body))
		fr := f.read()
		if fr.ID != uint32(i+1) {
			t.Fatalf("%s: reply id %d, want %d", c.name, fr.ID, i+1)
		}
		if code := f.errCode(fr); code != c.code {
			t.Errorf("%s: code %s, want %s", c.name, code, c.code)
		}
	}
	// The connection still works: append, read and commit.
	f.send(wire.AppendFrame(nil, wire.StreamAppend, 100, wire.AppendAppendReq(nil, &wire.AppendReq{Stream: "s", Msgs: []broker.Message{{Body: []byte("a")}, {Body: []byte("b")}}})))
	fr := f.read()
	offs, err := wire.DecodeAppendOK(fr.Body)
	if fr.Type != wire.AppendOK || err != nil || fmt.Sprint(offs) != "[1 2]" {
		t.Fatalf("append: %#x %v %v", fr.Type, offs, err)
	}
	f.send(wire.AppendFrame(nil, wire.StreamRead, 101, wire.AppendReadReq(nil, &wire.ReadReq{Stream: "s", From: wire.FromOffset, Offset: 2})))
	var p wire.StreamPage
	if fr := f.read(); fr.Type != wire.StreamMsgs || wire.DecodeStreamMsgs(&p, fr.Body) != nil || len(p.Messages) != 1 || p.Next != 3 {
		t.Fatalf("read: %#x %+v", fr.Type, p)
	}
	f.send(wire.AppendFrame(nil, wire.GroupCommit, 102, wire.AppendCommitReq(nil, &wire.CommitReq{Stream: "s", Group: "g", Offset: 3})))
	if fr := f.read(); fr.Type != wire.CommitOK {
		t.Fatalf("commit: %#x", fr.Type)
	}
}
