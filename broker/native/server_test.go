package native

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

func start(t *testing.T) (net.Conn, *engine.Broker) {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(b, Options{}).Serve(ctx, ln) }()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		b.Close()
	})
	return nc, b
}

func TestBadRequestsGetErrors(t *testing.T) {
	nc, b := start(t)
	b.Declare("q", broker.QueueConfig{})
	r := wire.NewReader(nc, 0)
	send := func(f []byte) wire.Frame {
		t.Helper()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(f); err != nil {
			t.Fatal(err)
		}
		fr, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		return fr
	}
	for _, c := range []struct {
		name  string
		frame []byte
		code  string
	}{
		{"garbage publish", wire.AppendFrame(nil, wire.Pub, 1, []byte{0xff, 0xff}), "bad_request"},
		{"unknown type", wire.AppendFrame(nil, 0x42, 2, nil), "bad_request"},
		{"unknown queue", wire.AppendFrame(nil, wire.Recv, 3, wire.AppendRecvReq(nil, &wire.RecvReq{Queue: "nope"})), "not_found"},
		{"garbage ack", wire.AppendFrame(nil, wire.Ack, 4, []byte{1}), "bad_request"},
		{"declare unknown field", declareFrame(5, wire.KindQueue, "q2", `{"max_deliverys":3}`), "bad_request"},
		{"declare trailing JSON", declareFrame(6, wire.KindTopic, "t", `{} {}`), "bad_request"},
		{"declare bad JSON", declareFrame(7, wire.KindStream, "s", `{"max_bytes":"x"}`), "bad_request"},
		{"declare invalid settings", declareFrame(8, wire.KindQueue, "q2", `{"overflow":"sometimes"}`), "bad_request"},
		{"declare invalid name", declareFrame(11, wire.KindQueue, "-q", ``), "bad_request"},
		{"declare unknown kind", wire.AppendFrame(nil, wire.Declare, 12, []byte{9, 1, 'q', 0}), "bad_request"},
		{"delete unknown queue", wire.AppendFrame(nil, wire.Delete, 13, wire.AppendDeleteReq(nil, &wire.DeleteReq{Kind: wire.KindQueue, Name: "nope"})), "not_found"},
	} {
		fr := send(c.frame)
		if fr.Type != wire.Err {
			t.Fatalf("%s: reply type %#x, want Err", c.name, fr.Type)
		}
		e, err := wire.DecodeErr(fr.Body)
		if err != nil || e.Code != c.code {
			t.Fatalf("%s: %+v %v, want code %s", c.name, e, err, c.code)
		}
	}
	// The connection still works after the errors.
	if fr := send(wire.AppendFrame(nil, wire.Ping, 9, nil)); fr.Type != wire.Pong || fr.ID != 9 {
		t.Fatalf("ping: %+v", fr)
	}
	fr := send(wire.AppendFrame(nil, wire.Pub, 10, wire.AppendPubReq(nil, &wire.PubReq{Queue: "q", Msgs: []broker.Message{{Body: []byte("x")}}})))
	res, err := wire.DecodePubOK(fr.Body)
	if fr.Type != wire.PubOK || err != nil || len(res) != 1 || res[0].Seq == 0 {
		t.Fatalf("publish: %+v %v", fr, err)
	}
}

func declareFrame(id uint32, k wire.Kind, name, settings string) []byte {
	return wire.AppendFrame(nil, wire.Declare, id, wire.AppendDeclareReq(nil, &wire.DeclareReq{Kind: k, Name: name, Settings: []byte(settings)}))
}

func TestDeclareAndDelete(t *testing.T) {
	nc, b := start(t)
	r := wire.NewReader(nc, 0)
	for i, c := range []struct {
		frame []byte
		want  wire.Type
	}{
		{declareFrame(1, wire.KindQueue, "q", `{"max_deliveries":3,"overflow":"block"}`), wire.DeclareOK},
		{declareFrame(2, wire.KindTopic, "t", `{"queues":["q"]}`), wire.DeclareOK},
		{declareFrame(3, wire.KindStream, "s", ``), wire.DeclareOK},
		{wire.AppendFrame(nil, wire.Delete, 4, wire.AppendDeleteReq(nil, &wire.DeleteReq{Kind: wire.KindStream, Name: "s"})), wire.DeleteOK},
	} {
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(c.frame); err != nil {
			t.Fatal(err)
		}
		fr, err := r.ReadFrame()
		if err != nil || fr.Type != c.want || fr.ID != uint32(i+1) || len(fr.Body) != 0 {
			t.Fatalf("request %d: %+v %v, want %#x", i+1, fr, err, c.want)
		}
	}
	if cfg, err := b.QueueConfig("q"); err != nil || cfg.MaxDeliveries != 3 || cfg.Overflow != broker.OverflowBlock {
		t.Fatalf("queue settings: %+v %v", cfg, err)
	}
	if info, err := b.Topic("t"); err != nil || len(info.Config.Queues) != 1 {
		t.Fatalf("topic: %+v %v", info, err)
	}
	if _, err := b.Stream("s"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("deleted stream: %v", err)
	}
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	nc, _ := start(t)
	// A length field above the limit is answered too_large and ends the
	// connection.
	nc.Write([]byte{0x7f, 0xff, 0xff, 0xff, byte(wire.Pub), 0, 0, 0, 1})
	readErrThenEOF(t, nc, 1, broker.CodeTooLarge)
}

func bindFrame(id uint32, op byte, topic, queue string, create bool) []byte {
	return wire.AppendFrame(nil, wire.Bind, id, wire.AppendBindReq(nil, &wire.BindReq{Op: op, Topic: topic, Queue: queue, CreateQueue: create}))
}

// Bind and unbind over the native protocol: one binding each, the
// others kept, idempotent, errors as Err frames on a connection that
// goes on; Declare's if-absent flag leaves an existing topic alone.
func TestBindFrames(t *testing.T) {
	nc, b := start(t)
	r := wire.NewReader(nc, 0)
	roundTrip := func(frame []byte) wire.Frame {
		t.Helper()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		fr, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		return fr
	}
	for _, f := range [][]byte{
		declareFrame(1, wire.KindQueue, "audit", ``),
		declareFrame(2, wire.KindQueue, "billing", ``),
		declareFrame(3, wire.KindTopic, "rides", `{"queues":["audit"],"buffer":7}`),
	} {
		if fr := roundTrip(f); fr.Type != wire.DeclareOK {
			t.Fatalf("declare: %+v", fr)
		}
	}
	for i, c := range []struct {
		frame   []byte
		changed bool
	}{
		{bindFrame(10, wire.OpBind, "rides", "billing", false), true},
		{bindFrame(11, wire.OpBind, "rides", "billing", false), false},
		{bindFrame(12, wire.OpUnbind, "rides", "audit", false), true},
		{bindFrame(13, wire.OpUnbind, "rides", "audit", false), false},
		{bindFrame(14, wire.OpBind, "rides", "rides.g1", true), true},
	} {
		fr := roundTrip(c.frame)
		changed, err := wire.DecodeBindOK(fr.Body)
		if fr.Type != wire.BindOK || err != nil || changed != c.changed {
			t.Fatalf("bind request %d: %+v %v %v, want changed %v", i, fr, changed, err, c.changed)
		}
	}
	// An if-absent declare of the topic keeps its bindings and settings.
	ifAbsent := wire.AppendFrame(nil, wire.Declare, 20, wire.AppendDeclareReq(nil, &wire.DeclareReq{Kind: wire.KindTopic, Name: "rides", IfAbsent: true}))
	if fr := roundTrip(ifAbsent); fr.Type != wire.DeclareOK {
		t.Fatalf("if-absent declare: %+v", fr)
	}
	info, err := b.Topic("rides")
	if err != nil || fmt.Sprint(info.Config.Queues) != "[billing rides.g1]" || info.Config.Buffer != 7 {
		t.Fatalf("topic: %+v %v", info.Config, err)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		code  string
	}{
		{"missing topic", bindFrame(30, wire.OpBind, "nope", "audit", false), "not_found"},
		{"missing queue", bindFrame(31, wire.OpBind, "rides", "nope", false), "not_found"},
		{"bad queue name", bindFrame(32, wire.OpBind, "rides", "a\x00b", true), "bad_request"},
		{"bad topic name", bindFrame(33, wire.OpUnbind, "a b", "audit", false), "bad_request"},
		{"malformed", wire.AppendFrame(nil, wire.Bind, 34, []byte{9}), "bad_request"},
	} {
		fr := roundTrip(c.frame)
		e, err := wire.DecodeErr(fr.Body)
		if fr.Type != wire.Err || err != nil || e.Code != c.code {
			t.Fatalf("%s: %+v %+v %v, want code %s", c.name, fr, e, err, c.code)
		}
	}
	if fr := roundTrip(wire.AppendFrame(nil, wire.Ping, 40, nil)); fr.Type != wire.Pong {
		t.Fatalf("ping after errors: %+v", fr)
	}
}
