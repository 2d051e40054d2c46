package engine

import (
	"context"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/wal"
)

// BenchmarkPublishReceive is one message's way through a queue (a
// confirmed publish, a delivery, its ack): the allocations of the hot
// path with and without trace context in the message's headers.
func BenchmarkPublishReceive(b *testing.B) {
	never, _ := wal.ParseSyncPolicy("never")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "broker", func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	tracing := func(c *Config) { c.Tracer = tr.Tracer("broker") }
	for _, c := range []struct {
		name    string
		headers map[string]string
		cfg     func(*Config)
	}{
		{"no-headers", nil, nil},
		{"traceparent/tracing-off", map[string]string{"traceparent": tp}, nil},
		{"no-headers/tracing-on", nil, tracing},
		{"other-headers/tracing-on", map[string]string{"color": "red"}, tracing},
		{"traceparent/tracing-on", map[string]string{"traceparent": tp}, tracing},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := Config{Dir: b.TempDir(), Fsync: never}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			br, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			br.Declare("q", broker.QueueConfig{DedupWindow: -1})
			body := make([]byte, 128)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := br.Publish(ctx, "q", broker.Message{Body: body, Headers: c.headers}, broker.PublishOptions{}); err != nil {
					b.Fatal(err)
				}
				ds, err := br.Receive(ctx, "q", broker.ReceiveOptions{AutoAck: true})
				if err != nil || len(ds) != 1 {
					b.Fatal(len(ds), err)
				}
			}
		})
	}
}
