package native

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

// startServer runs a native server with opts on a loopback port.
func startServer(t *testing.T, opts Options) (string, *Server, *engine.Broker) {
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
	s := New(b, opts)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		b.Close()
	})
	return ln.Addr().String(), s, b
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// header is a frame header claiming a body of n bytes.
func header(t wire.Type, id uint32, n int) []byte {
	h := binary.BigEndian.AppendUint32(nil, uint32(5+n))
	h = append(h, byte(t))
	return binary.BigEndian.AppendUint32(h, id)
}

// waitFor polls cond until it holds, failing after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func memStats() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}

// TestClaimedFrameLengthsCostNothing: 200 connections each send a header
// claiming 64 MiB and nothing more. The broker must not allocate what the
// headers claim (it used to: 12.5 GiB of heap).
func TestClaimedFrameLengthsCostNothing(t *testing.T) {
	addr, s, _ := startServer(t, Options{})
	before := memStats()
	const conns = 200
	for i := range conns {
		nc := dial(t, addr)
		if _, err := nc.Write(header(wire.Pub, uint32(i), 64<<20)); err != nil {
			t.Fatal(err)
		}
	}
	// Every reader has seen its header: it is either reading the body or
	// waiting for the memory budget.
	waitFor(t, "200 frame headers", func() bool { return s.headers.Load() == conns })
	after := memStats()
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	sys := int64(after.Sys) - int64(before.Sys)
	t.Logf("heap %+d bytes, sys %+d bytes; budget in use %d, waiting %d", heap, sys, s.budget.inUse(), s.budget.waiters())
	if heap > 64<<20 || sys > 256<<20 {
		t.Fatalf("200 headers claiming 64 MiB grew the heap by %d bytes and Sys by %d bytes", heap, sys)
	}
	if got := s.budget.inUse(); got > DefaultMaxBuffered {
		t.Fatalf("budget in use %d above %d", got, DefaultMaxBuffered)
	}
}

// TestSlowSendersBoundedByBudget: connections sending large frames slowly
// hold at most the global budget; the others wait (back-pressure) and are
// served once the first ones finish.
func TestSlowSendersBoundedByBudget(t *testing.T) {
	const budget, frame, conns = 4 << 20, 1 << 20, 12
	addr, s, _ := startServer(t, Options{MaxBuffered: budget})
	before := memStats()
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		ncs[i] = dial(t, addr)
		// An unknown frame type: answered bad_request once read in full.
		if _, err := ncs[i].Write(append(header(0x42, uint32(i), frame), make([]byte, frame/4)...)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the budget to fill", func() bool {
		return s.budget.inUse() == budget && s.budget.waiters() == conns-budget/frame
	})
	after := memStats()
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap %+d bytes with %d of %d connections admitted", heap, budget/frame, conns)
	if heap > 2*budget {
		t.Fatalf("heap grew %d bytes, budget %d", heap, budget)
	}
	// The rest of every body: all frames are served, in turn.
	for _, nc := range ncs {
		go nc.Write(make([]byte, frame-frame/4))
	}
	for i, nc := range ncs {
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		fr, err := wire.NewReader(nc, 0).ReadFrame()
		if err != nil || fr.Type != wire.Err || fr.ID != uint32(i) {
			t.Fatalf("connection %d: %+v %v", i, fr, err)
		}
	}
	waitFor(t, "the budget to empty", func() bool { return s.budget.inUse() == 0 })
}

// readErr reads an Err frame and then the end of the connection.
func readErrThenEOF(t *testing.T, nc net.Conn, id uint32, code string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := wire.NewReader(nc, 0)
	fr, err := r.ReadFrame()
	if err != nil || fr.Type != wire.Err || fr.ID != id {
		t.Fatalf("frame %+v %v, want Err with id %d", fr, err, id)
	}
	e, err := wire.DecodeErr(fr.Body)
	if err != nil || e.Code != code {
		t.Fatalf("error %+v %v, want code %s", e, err, code)
	}
	t.Logf("error: %s", e.Message)
	if fr, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the error: %+v %v, want EOF", fr, err)
	}
}

// TestOversizedFrameGetsErrorAndClose: a frame above the limit, or above
// the whole memory budget, is answered with too_large and the connection
// closed.
func TestOversizedFrameGetsErrorAndClose(t *testing.T) {
	addr, _, _ := startServer(t, Options{MaxFrame: 1 << 20, MaxBuffered: 512 << 10})
	nc := dial(t, addr)
	nc.Write(header(wire.Pub, 7, 2<<20))
	readErrThenEOF(t, nc, 7, broker.CodeTooLarge)
	nc = dial(t, addr)
	nc.Write(header(wire.Pub, 8, 768<<10))
	readErrThenEOF(t, nc, 8, broker.CodeTooLarge)
}

// TestSilentConnectionClosed: the server pings a connection idle for the
// ping interval and closes it if nothing arrives within the ping timeout;
// a connection that answers stays open.
func TestSilentConnectionClosed(t *testing.T) {
	addr, s, _ := startServer(t, Options{PingInterval: 50 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
	silent := dial(t, addr)
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := wire.NewReader(silent, 0)
	if fr, err := r.ReadFrame(); err != nil || fr.Type != wire.Ping {
		t.Fatalf("first frame %+v %v, want Ping", fr, err)
	}
	if fr, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after an unanswered ping: %+v %v, want EOF", fr, err)
	}
	alive := dial(t, addr)
	alive.SetReadDeadline(time.Now().Add(10 * time.Second))
	r = wire.NewReader(alive, 0)
	for i := range 3 {
		fr, err := r.ReadFrame()
		if err != nil || fr.Type != wire.Ping {
			t.Fatalf("ping %d: %+v %v", i, fr, err)
		}
		alive.Write(wire.AppendFrame(nil, wire.Pong, fr.ID, nil))
	}
	// Pongs get no answer; a ping from the client still does.
	alive.Write(wire.AppendFrame(nil, wire.Ping, 5, nil))
	for {
		fr, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if fr.Type == wire.Pong && fr.ID == 5 {
			break
		}
		if fr.Type != wire.Ping {
			t.Fatalf("unexpected %+v", fr)
		}
		alive.Write(wire.AppendFrame(nil, wire.Pong, fr.ID, nil))
	}
	if n := s.open.Load(); n != 1 {
		t.Fatalf("%d connections open, want 1", n)
	}
}

// TestStalledReaderClosedByWriteTimeout: a client that stops reading is
// disconnected once a write has waited the write timeout.
func TestStalledReaderClosedByWriteTimeout(t *testing.T) {
	addr, s, b := startServer(t, Options{WriteTimeout: 100 * time.Millisecond})
	if err := b.Declare("q", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1000<<10)
	for range 32 {
		if _, err := b.Publish(context.Background(), "q", broker.Message{Body: body}, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nc := dial(t, addr)
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetReadBuffer(64 << 10)
	}
	nc.Write(wire.AppendFrame(nil, wire.Recv, 1, wire.AppendRecvReq(nil, &wire.RecvReq{Queue: "q", Max: 32})))
	waitFor(t, "the server to give up on the stalled connection", func() bool { return s.open.Load() == 0 })
}
