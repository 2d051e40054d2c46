package client

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/wal"
)

// benchConn serves a broker with queue "q" on loopback and returns a
// connection to it, all closed when the benchmark ends. The log uses the
// interval fsync policy: these measure the protocol path, not the disk.
func benchConn(b *testing.B) *Conn {
	br, err := engine.Open(engine.Config{Dir: b.TempDir(), Fsync: wal.SyncPolicy{Mode: wal.SyncInterval, Interval: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Close() })
	br.Declare("q", broker.QueueConfig{DedupWindow: -1})
	addr, stop := serve(b, br, "127.0.0.1:0")
	b.Cleanup(stop)
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// fillQueue publishes at least n messages of 256 B to "q", 100 per batch.
func fillQueue(b *testing.B, c *Conn, n int) {
	batch := make([]broker.Message, 100)
	for i := range batch {
		batch[i] = broker.Message{Body: make([]byte, 256)}
	}
	for i := 0; i < n; i += len(batch) {
		if _, err := c.Publish(context.Background(), "q", batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNativePublish publishes confirmed 256 B messages over the native
// protocol from many pipelining goroutines on one connection. The log uses
// the interval fsync policy, so this measures the protocol path, not the
// disk (bench/broker.sh measures both).
func BenchmarkNativePublish(b *testing.B) {
	c := benchConn(b)
	body := make([]byte, 256)
	b.ReportAllocs()
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Publish(context.Background(), "q", broker.Message{Body: body}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkNativeConsume receives and acks (one durable ack per batch of 64)
// over the native protocol from 4 pullers.
func BenchmarkNativeConsume(b *testing.B) {
	c := benchConn(b)
	ctx := context.Background()
	fillQueue(b, c, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got.Load() < int64(b.N) {
				ds, err := c.Receive(ctx, "q", broker.ReceiveOptions{Max: 64, Wait: 10 * time.Millisecond})
				if err != nil {
					b.Error(err)
					return
				}
				rs := make([]string, len(ds))
				for i, d := range ds {
					rs[i] = d.Receipt
				}
				if len(rs) > 0 {
					c.Ack(ctx, "q", rs...)
				}
				got.Add(int64(len(ds)))
			}
		}()
	}
	wg.Wait()
}

// BenchmarkNativeConsumePush consumes with Conn.Consume (push, at most 256
// unacked, acks batched and pipelined) over the native protocol.
func BenchmarkNativeConsumePush(b *testing.B) {
	c := benchConn(b)
	ctx := context.Background()
	fillQueue(b, c, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := 0
	err := c.Consume(cctx, "q", ConsumeOptions{MaxUnacked: 256}, func(broker.Delivery) error {
		if got++; got == b.N {
			cancel()
		}
		return nil
	})
	if err != context.Canceled {
		b.Fatal(err)
	}
}
