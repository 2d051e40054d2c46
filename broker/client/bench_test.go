package client

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/wal"
)

// BenchmarkNativePublish publishes confirmed 256 B messages over the native
// protocol from many pipelining goroutines on one connection. The log uses
// the interval fsync policy, so this measures the protocol path, not the
// disk (bench/broker.sh measures both).
func BenchmarkNativePublish(b *testing.B) {
	br, err := broker.Open(broker.Config{Dir: b.TempDir(), Fsync: wal.SyncPolicy{Mode: wal.SyncInterval, Interval: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	br.Declare("q", broker.QueueConfig{DedupWindow: -1})
	addr, stop := serve(b, br, "127.0.0.1:0")
	defer stop()
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
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
	br, err := broker.Open(broker.Config{Dir: b.TempDir(), Fsync: wal.SyncPolicy{Mode: wal.SyncInterval, Interval: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	br.Declare("q", broker.QueueConfig{DedupWindow: -1})
	addr, stop := serve(b, br, "127.0.0.1:0")
	defer stop()
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := make([]byte, 256)
	batch := make([]broker.Message, 100)
	for i := range batch {
		batch[i] = broker.Message{Body: body}
	}
	for i := 0; i < b.N; i += len(batch) {
		c.Publish(ctx, "q", batch...)
	}
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
	br, err := broker.Open(broker.Config{Dir: b.TempDir(), Fsync: wal.SyncPolicy{Mode: wal.SyncInterval, Interval: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	br.Declare("q", broker.QueueConfig{DedupWindow: -1})
	addr, stop := serve(b, br, "127.0.0.1:0")
	defer stop()
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := make([]byte, 256)
	batch := make([]broker.Message, 100)
	for i := range batch {
		batch[i] = broker.Message{Body: body}
	}
	for i := 0; i < b.N; i += len(batch) {
		if _, err := c.Publish(ctx, "q", batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := 0
	err = c.Consume(cctx, "q", ConsumeOptions{MaxUnacked: 256}, func(broker.Delivery) error {
		if got++; got == b.N {
			cancel()
		}
		return nil
	})
	if err != context.Canceled {
		b.Fatal(err)
	}
}
