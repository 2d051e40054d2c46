package jetstream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/jetstream"
	"github.com/switchyard/switchyard/kit/message/messagetest"
)

// The pair below measures what the router adds on JetStream: both
// consume b.N messages published beforehand to one queue (a work-queue
// stream), acking each, with the same pull batch; Raw through nats.go's
// Consume with a callback that acks, Router through kit/message's Router
// (16 handlers) on this adapter. Run:
//
//	go test -run '^$' -bench . -benchtime 20000x -count 5 ./kit/message/jetstream/

const (
	benchPrefetch = 256
	benchConc     = 16
)

func benchQueue(b *testing.B) (*jetstream.Backend, string) {
	u := natsURL(b)
	be, err := jetstream.Dial(context.Background(), u)
	if err != nil {
		b.Fatal(err)
	}
	q := fmt.Sprintf("queue:bench-%d", time.Now().UnixNano())
	if err := be.Declare(context.Background(), q, message.DeclareOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		be.Delete(context.Background(), q)
		be.Delete(context.Background(), q+".dlq")
		be.Close()
	})
	body := make([]byte, 128)
	batch := make([]broker.Message, 100)
	for i := range batch {
		batch[i] = broker.Message{Body: body}
	}
	for n := b.N; n > 0; n -= len(batch) {
		if err := be.Publish(context.Background(), q, batch[:min(n, len(batch))]...); err != nil {
			b.Fatal(err)
		}
	}
	return be, q
}

func BenchmarkRawConsume(b *testing.B) { benchRaw(b, 1) }

// BenchmarkRawConsume16 is the raw client with 16 handler goroutines, as
// the router's default Concurrency: nats.go's callback hands each message
// to one of them over a channel and the worker acks it (what a user of
// the raw client writes for 16 handlers at once). The router's 16 pay the
// same hand-over; this is its like-for-like baseline.
func BenchmarkRawConsume16(b *testing.B) { benchRaw(b, benchConc) }

func benchRaw(b *testing.B, conc int) {
	be, q := benchQueue(b)
	ctx := context.Background()
	stream := "SYQ_" + q[len("queue:"):]
	var n atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	cpu0, csw0 := cpuTime()
	b.ResetTimer()
	stopProfile := messagetest.ProfileTimed(b)
	// The consumer is made in the timed part, as the router's
	// subscription makes its own, with the same settings (ack explicit,
	// MaxAckPending 4 x prefetch, the queue's 30 s visibility as AckWait,
	// no MaxDeliver).
	cons, err := be.JetStream().CreateOrUpdateConsumer(ctx, stream, natsjs.ConsumerConfig{
		Durable: "raw", AckPolicy: natsjs.AckExplicitPolicy, MaxAckPending: 4 * benchPrefetch,
		AckWait: 30 * time.Second, MaxDeliver: -1})
	if err != nil {
		b.Fatal(err)
	}
	handle := func(m natsjs.Msg) {
		m.Ack()
		if n.Add(1) == int64(b.N) {
			close(done)
		}
	}
	callback := handle
	if conc > 1 {
		work, quit := make(chan natsjs.Msg), make(chan struct{})
		defer close(quit) // after cc.Stop: no send on a closed work
		for range conc {
			go func() {
				for {
					select {
					case m := <-work:
						handle(m)
					case <-quit:
						return
					}
				}
			}()
		}
		callback = func(m natsjs.Msg) {
			select {
			case work <- m:
			case <-quit:
			}
		}
	}
	cc, err := cons.Consume(callback, natsjs.PullMaxMessages(benchPrefetch))
	if err != nil {
		b.Fatal(err)
	}
	<-done
	b.StopTimer()
	stopProfile()
	cpuN, cswN := cpuTime()
	cpu, csw := cpuN-cpu0, cswN-csw0
	cc.Stop()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/msg")
}

func BenchmarkRouter(b *testing.B) { benchRouter(b, benchConc) }

// BenchmarkRouterConc1 is the router with one handler at a time, as the
// raw consumer: the handler runs on the subscription's goroutine.
func BenchmarkRouterConc1(b *testing.B) { benchRouter(b, 1) }

func benchRouter(b *testing.B, conc int) {
	be, q := benchQueue(b)
	r, err := message.NewRouter(be, message.RouterConfig{Prefetch: benchPrefetch, Concurrency: conc})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	r.Handle(q, func(context.Context, *message.Delivery) error {
		if n.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}, message.RouteOptions{})
	b.ReportAllocs()
	cpu0, csw0 := cpuTime()
	b.ResetTimer()
	stopProfile := messagetest.ProfileTimed(b)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	select {
	case <-done:
	case err := <-ran:
		b.Fatal(err)
	}
	b.StopTimer()
	stopProfile()
	cpuN, cswN := cpuTime()
	cpu, csw := cpuN-cpu0, cswN-csw0 // before the shutdown, as Raw's before its Stop
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/msg")
}

// cpuTime is the process's user and system CPU time so far: the client's
// cost per message, less noisy than wall time on a shared machine (for
// sybroker it includes the in-process broker); and its threads' context
// switches so far (voluntary and not: a parked thread woken for a
// goroutine is one), a count the load does not blur as much.
func cpuTime() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}
