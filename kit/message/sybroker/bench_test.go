package sybroker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/messagetest"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// The pair below measures what the router adds: both consume b.N
// messages published beforehand from one queue of a real broker, acking
// each, with at most the same number of messages unsettled (4 x
// benchPrefetch: the router holds Prefetch ahead of its handlers and up
// to 3 x Prefetch waiting for their acks; Consume's MaxUnacked bounds
// both together); Raw through broker/client's Consume (batched acks,
// handler on one goroutine), Router through kit/message's Router (16
// handlers, the sybroker ack batcher). Run:
//
//	go test -run '^$' -bench . -benchtime 20000x -count 5 ./kit/message/sybroker/

// benchPrefetch and benchConc are the router's prefetch and handler
// goroutines.
const (
	benchPrefetch = 256
	benchConc     = 16
)

// benchQueue publishes b.N messages to a new queue of the broker at
// SWITCHYARD_BENCH_BROKER (host:port of a `switchyard broker` native
// listener, so that the broker runs in a process of its own, e.g. pinned
// to another core), or of one started in this process.
func benchQueue(b *testing.B) (*sybroker.Backend, string) {
	addr := os.Getenv("SWITCHYARD_BENCH_BROKER")
	if addr == "" {
		addr = startBroker(b)
	}
	be, err := sybroker.Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	q := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if err := be.Declare(context.Background(), q, message.DeclareOptions{}); err != nil {
		b.Fatal(err)
	}
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

func BenchmarkRawConsume(b *testing.B) {
	be, q := benchQueue(b)
	b.ReportAllocs()
	cpu0, csw0 := cpuTime()
	bcpu0 := brokerCPU()
	b.ResetTimer()
	stopProfile := messagetest.ProfileTimed(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var bcpuN time.Duration
	var (
		cpu time.Duration
		csw int64
	)
	err := be.Conn().Consume(ctx, q, client.ConsumeOptions{MaxUnacked: 4 * benchPrefetch}, func(broker.Delivery) error {
		if n++; n == b.N {
			// Counted up to the last message handled, as the
			// router's (not the shutdown after it).
			b.StopTimer()
			stopProfile()
			cpuN, cswN := cpuTime()
			cpu, csw = cpuN-cpu0, cswN-csw0
			bcpuN = brokerCPU()
			cancel()
		}
		return nil
	})
	if n < b.N {
		b.Fatalf("consumed %d of %d: %v", n, b.N, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/msg")
	reportBroker(b, bcpuN-bcpu0)
}

// BenchmarkBackendSubscribe is the sybroker adapter without the router:
// Backend.Subscribe with Prefetch benchPrefetch, each delivery acked by
// AckAsync on the subscription's goroutine (as the router's Concurrency
// 1 does), at most benchSettleWindow x benchPrefetch acks waiting for
// their answer (the router's settle window). Against BenchmarkRawConsume it is what the
// adapter's I/O pattern costs (credit returned as messages are settled,
// 4 x Prefetch unsettled, acks batched by the adapter); against
// BenchmarkRouterConc1 what the router itself adds.
func BenchmarkBackendSubscribe(b *testing.B) {
	be, q := benchQueue(b)
	b.ReportAllocs()
	cpu0, csw0 := cpuTime()
	bcpu0 := brokerCPU()
	b.ResetTimer()
	stopProfile := messagetest.ProfileTimed(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		n       int
		cpu     time.Duration
		csw     int64
		bcpu    time.Duration
		mu      sync.Mutex
		cond    = sync.Cond{L: &mu}
		waiting int // acks sent and not answered
	)
	acked := func(err error) {
		if err != nil {
			b.Error(err)
		}
		mu.Lock()
		waiting--
		cond.Broadcast()
		mu.Unlock()
	}
	err := be.Subscribe(ctx, q, message.SubscribeOptions{Prefetch: benchPrefetch}, func(d *message.Delivery) {
		mu.Lock()
		for waiting >= benchSettleWindow*benchPrefetch {
			cond.Wait()
		}
		waiting++
		mu.Unlock()
		d.AckAsync(acked)
		if n++; n == b.N {
			b.StopTimer()
			stopProfile()
			cpuN, cswN := cpuTime()
			cpu, csw = cpuN-cpu0, cswN-csw0
			bcpu = brokerCPU() - bcpu0
			cancel()
		}
	})
	if n < b.N {
		b.Fatalf("consumed %d of %d: %v", n, b.N, err)
	}
	mu.Lock() // the acks answered before the backend is closed
	for waiting > 0 {
		cond.Wait()
	}
	mu.Unlock()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/msg")
	reportBroker(b, bcpu)
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
	bcpu0 := brokerCPU()
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
	cpu, csw := cpuN-cpu0, cswN-csw0 // before the shutdown, as Raw's
	bcpu := brokerCPU() - bcpu0
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/msg")
	reportBroker(b, bcpu)
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

// brokerCPU is the CPU time so far of the broker process whose PID is in
// $SWITCHYARD_BENCH_BROKER_PID (the one at SWITCHYARD_BENCH_BROKER), the
// sum of its threads' run time (/proc/PID/task/*/schedstat, in ns); 0
// without it.
func brokerCPU() time.Duration {
	pid := os.Getenv("SWITCHYARD_BENCH_BROKER_PID")
	if pid == "" {
		return 0
	}
	tasks, _ := filepath.Glob("/proc/" + pid + "/task/*/schedstat")
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		sum += time.Duration(ns)
	}
	return sum
}

// reportBroker reports the broker's CPU per message consumed, where
// brokerCPU knows the broker.
func reportBroker(b *testing.B, cpu time.Duration) {
	if os.Getenv("SWITCHYARD_BENCH_BROKER_PID") != "" {
		b.ReportMetric(float64(cpu)/float64(b.N), "broker-cpu-ns/msg")
	}
}

// benchSettleWindow is BenchmarkBackendSubscribe's settle window in
// Prefetch's worth, as the router's settleWindow.
const benchSettleWindow = 4
