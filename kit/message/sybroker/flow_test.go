package sybroker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// openJobs dials addr and declares queue:jobs with opts; the backend is
// closed when the test ends.
func openJobs(t *testing.T, ctx context.Context, addr string, opts message.DeclareOptions) *sybroker.Backend {
	t.Helper()
	b, err := sybroker.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Declare(ctx, "queue:jobs", opts); err != nil {
		t.Fatal(err)
	}
	return b
}

func publishN(t *testing.T, ctx context.Context, b *sybroker.Backend, dest string, n int) {
	t.Helper()
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = broker.Message{ID: strconv.Itoa(i), Body: []byte(strconv.Itoa(i))}
	}
	if err := b.Publish(ctx, dest, msgs...); err != nil {
		t.Fatal(err)
	}
}

// A queue subscription returns credit on settlement: one that takes
// messages and settles none holds 4 x Prefetch of them and is pushed no
// more, so the rest go to another consumer. (Before, credit came back as
// deliver took messages: the first subscription took all 40.)
func TestQueueUnsettledBound(t *testing.T) {
	addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Visibility 30s (the default): nothing comes back during the test.
	b := openJobs(t, ctx, addr, message.DeclareOptions{})
	const prefetch, total = 4, 40
	publishN(t, ctx, b, "queue:jobs", total)

	var held atomic.Int64
	var kept []*message.Delivery // never settled
	actx, stopA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() {
		aDone <- b.Subscribe(actx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(d *message.Delivery) {
			kept = append(kept, d)
			held.Add(1)
		})
	}()
	waitFor(t, ctx, "the first subscription to hold 4 x Prefetch", func() bool { return held.Load() >= 4*prefetch })

	var acked atomic.Int64
	bctx, stopB := context.WithCancel(ctx)
	bDone := make(chan error, 1)
	go func() {
		bDone <- b.Subscribe(bctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(d *message.Delivery) {
			if err := d.Ack(ctx); err != nil {
				t.Errorf("ack: %v", err)
			}
			acked.Add(1)
		})
	}()
	waitFor(t, ctx, fmt.Sprintf("the second subscription to ack the other %d", total-4*prefetch),
		func() bool { return acked.Load() >= total-4*prefetch })
	stopB()
	<-bDone
	stopA()
	<-aDone
	if n := held.Load(); n != 4*prefetch {
		t.Fatalf("the subscription that settles nothing was handed %d messages, want 4 x Prefetch = %d", n, 4*prefetch)
	}
	if n := acked.Load(); n != total-4*prefetch {
		t.Fatalf("the other subscription acked %d, want %d", n, total-4*prefetch)
	}
	for _, d := range kept { // answered now: no redelivery
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// Credit comes back on a nack, on a stale ack (ErrStale) and, for a
// message its subscription never settles, at its visibility timeout:
// with a window of 8 and 10 messages lost by the caller, the only
// subscription of the queue would otherwise stall for good.
func TestQueueCreditOnNackStaleAndLost(t *testing.T) {
	addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openJobs(t, ctx, addr, message.DeclareOptions{Visibility: time.Second, MaxDeliveries: 10})
	const prefetch, total = 2, 30
	publishN(t, ctx, b, "queue:jobs", total)

	var (
		mu     sync.Mutex
		lost   = map[string]*message.Delivery{} // first deliveries never settled
		done   = map[string]bool{}
		stales int
		nacks  int
	)
	sctx, stop := context.WithCancel(ctx)
	subDone := make(chan error, 1)
	go func() {
		subDone <- b.Subscribe(sctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(d *message.Delivery) {
			i, _ := strconv.Atoi(d.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case i%3 == 0 && d.Deliveries == 1:
				lost[d.ID] = d // dropped by the caller: comes back after 1s
				return
			case i%3 == 0:
				if old := lost[d.ID]; old != nil {
					// Its receipt is stale now: the answer gives the
					// credit back (once: the timeout gave it already).
					if err := old.Ack(ctx); !errors.Is(err, sybroker.ErrStale) {
						t.Errorf("ack of a message due again: %v, want ErrStale", err)
					}
					stales++
					delete(lost, d.ID)
				}
			case i%3 == 1 && d.Deliveries == 1:
				if err := d.Nack(ctx, 0); err != nil {
					t.Errorf("nack: %v", err)
				}
				nacks++
				return
			}
			if err := d.Ack(ctx); errors.Is(err, sybroker.ErrStale) {
				return // held past its visibility timeout on a slow machine: it comes again
			} else if err != nil {
				t.Errorf("ack %s: %v", d.ID, err)
				return
			}
			done[d.ID] = true
		})
	}()
	waitFor(t, ctx, "every message acked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == total
	})
	stop()
	<-subDone
	if stales != 10 || nacks != 10 {
		t.Fatalf("%d stale acks, %d nacks; want 10 each", stales, nacks)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lost) != 0 {
		t.Fatalf("%d lost messages never came back", len(lost))
	}
}

// proxy forwards TCP connections to addr until cut closes them.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, addr string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// After the connection dropped with the whole window unsettled, the
// next subscription has its own credit: it gets the rest of the queue
// (and the old deliveries, due again after their visibility timeout).
func TestQueueNoStallAfterReconnect(t *testing.T) {
	addr := startBroker(t)
	p := startProxy(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openJobs(t, ctx, p.ln.Addr().String(), message.DeclareOptions{Visibility: time.Second})
	const prefetch, total = 2, 30
	publishN(t, ctx, b, "queue:jobs", total)

	var held atomic.Int64
	first := make(chan error, 1)
	go func() {
		first <- b.Subscribe(ctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(*message.Delivery) { held.Add(1) })
	}()
	waitFor(t, ctx, "the window held unsettled", func() bool { return held.Load() >= 4*prefetch })
	p.cut()
	if err := <-first; !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("subscription over a cut connection: %v, want ErrDisconnected", err)
	}
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	sctx, stop := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() {
		for sctx.Err() == nil { // the connection comes back by itself
			err := b.Subscribe(sctx, "queue:jobs", message.SubscribeOptions{Prefetch: prefetch}, func(d *message.Delivery) {
				if err := d.Ack(ctx); err != nil {
					return // stale or cut: it comes again
				}
				mu.Lock()
				acked[d.ID] = true
				mu.Unlock()
			})
			if sctx.Err() == nil && err != nil {
				time.Sleep(10 * time.Millisecond) // poll interval while reconnecting
			}
		}
		second <- nil
	}()
	waitFor(t, ctx, "every message acked after the reconnect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == total
	})
	stop()
	<-second
}
