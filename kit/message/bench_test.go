package message_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// BenchmarkRouterOverhead is the router's own cost per message, without
// a backend: a subscriber hands over b.N deliveries in bursts of 64 (as
// a backend's pushed or pulled batch), each acked at once by AckAsync
// (as JetStream's), to a no-op handler. Run with -benchtime 200000x;
// cpu-ns/msg is the process's CPU time per message (less noisy than
// wall time on a shared machine).
func BenchmarkRouterOverhead(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			sub := &burstSub{n: b.N}
			r, err := message.NewRouter(sub, message.RouterConfig{Concurrency: conc})
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			r.Handle("q", func(context.Context, *message.Delivery) error {
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}, message.RouteOptions{})
			b.ReportAllocs()
			cpu0, csw0 := cpuTime()
			b.ResetTimer()
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- r.Run(ctx) }()
			select {
			case <-done:
			case err := <-ran:
				b.Fatal(err)
			}
			b.StopTimer()
			cpuN, cswN := cpuTime()
			cpu, csw := cpuN-cpu0, cswN-csw0
			cancel()
			if err := <-ran; err != nil {
				b.Fatal(err)
			}
			if a := sub.acked.Load(); a != int64(b.N) {
				b.Fatalf("%d acked, want %d", a, b.N)
			}
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
			b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/msg")
		})
	}
}

// burstSub delivers n messages in bursts of 64, then waits for ctx.
type burstSub struct {
	n     int
	acked atomic.Int64
}

func (s *burstSub) Subscribe(ctx context.Context, source string, _ message.SubscribeOptions, deliver func(*message.Delivery)) error {
	src, err := message.ParseDest(source)
	if err != nil {
		return err
	}
	body := make([]byte, 128)
	for i := 0; i < s.n; {
		for end := min(i+64, s.n); i < end; i++ {
			deliver(message.NewDelivery(src, broker.Message{Body: body}, 1, time.Time{}, (*syncAcker)(s)))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// syncAcker acks at once, as JetStream's adapter (the ack is sent
// without waiting for an answer).
type syncAcker burstSub

func (a *syncAcker) Ack(context.Context, *message.Delivery) error { a.acked.Add(1); return nil }
func (a *syncAcker) AckAsync(_ *message.Delivery, done func(error)) {
	a.acked.Add(1)
	done(nil)
}
func (a *syncAcker) Nack(context.Context, *message.Delivery, time.Duration) error { return nil }

// cpuTime is the process's user and system CPU time so far, and its
// threads' context switches (voluntary and not).
func cpuTime() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}
