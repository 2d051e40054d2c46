package jetstream

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/kit/message"
)

// BenchmarkHandle is the adapter's own cost per pulled message, without
// a server: a queue subscription's handle turns a JetStream message
// (header-less, 128 bytes) into a delivery, and the delivery is acked,
// as the router does with a handler that returns nil. cpu-ns/op is the
// process's CPU time per message (steadier than wall time on a shared
// machine).
func BenchmarkHandle(b *testing.B) {
	q := &queueSub{src: message.Dest{Kind: message.Queue, Name: "bench"}, stream: "SYQ_bench", queue: "bench",
		settings: settingsFor("bench", message.DeclareOptions{})}
	m := &fakeMsg{reply: "$JS.ACK.SYQ_bench.sy.1.42.7.1733380000123456789.0", data: make([]byte, 128)}
	ctx := context.Background()
	var got *message.Delivery
	deliver := func(d *message.Delivery) {
		if err := d.Ack(ctx); err != nil {
			b.Fatal(err)
		}
		got = d
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		q.handle(ctx, m, deliver)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	if got == nil || got.Deliveries != 1 || len(got.Body) != 128 || m.acks != b.N {
		b.Fatalf("last delivery %+v, %d acks for %d messages", got, m.acks, b.N)
	}
}

// fakeMsg is a JetStream message for BenchmarkHandle.
type fakeMsg struct {
	reply string
	data  []byte
	acks  int
}

var errFake = errors.New("not in the benchmark")

func (m *fakeMsg) Metadata() (*natsjs.MsgMetadata, error) { return nil, errFake }
func (m *fakeMsg) Data() []byte                           { return m.data }
func (m *fakeMsg) Headers() nats.Header                   { return nil }
func (m *fakeMsg) Subject() string                        { return "syq.bench" }
func (m *fakeMsg) Reply() string                          { return m.reply }
func (m *fakeMsg) Ack() error                             { m.acks++; return nil }
func (m *fakeMsg) DoubleAck(context.Context) error        { return errFake }
func (m *fakeMsg) Nak() error                             { return errFake }
func (m *fakeMsg) NakWithDelay(time.Duration) error       { return errFake }
func (m *fakeMsg) InProgress() error                      { return errFake }
func (m *fakeMsg) Term() error                            { return errFake }
func (m *fakeMsg) TermWithReason(string) error            { return errFake }

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
