package client

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/telemetry"
)

// A producer publishes inside its span over the native protocol to a
// real broker that traces; a consumer starts its span from the delivered
// message's headers: one trace, the consumer's span a child of the
// producer's, and the broker's publish and deliver spans beside it (the
// deliver span as long as the message waited).
func TestTraceContextCrossesTheBroker(t *testing.T) {
	noEnv := func(string) string { return "" }
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "app", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	brokerTr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "broker", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond), Tracer: brokerTr.Tracer("broker")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Declare("orders", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, producer := tr.Tracer("app").Start(context.Background(), "checkout", trace.WithSpanKind(trace.SpanKindProducer))
	headers := map[string]string{"color": "red"}
	if _, err := c.Publish(ctx, "orders", broker.Message{Body: []byte("o1"), Headers: headers}); err != nil {
		t.Fatal(err)
	}
	producer.End()
	if len(headers) != 1 {
		t.Fatalf("the caller's headers were modified: %v", headers)
	}
	// A message that carries its own trace context keeps it.
	own := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if _, err := c.Publish(ctx, "orders", broker.Message{Body: []byte("o2"), Headers: map[string]string{broker.HeaderTraceparent: own}}); err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []broker.Delivery
	c.Subscribe(sctx, "orders", SubscribeOptions{AutoAck: true}, func(d broker.Delivery) {
		_, consumer := tr.Tracer("app").Start(broker.TraceContext(context.Background(), d.Headers), "consume orders", trace.WithSpanKind(trace.SpanKindConsumer))
		consumer.End()
		got = append(got, d)
		if len(got) == 2 {
			cancel()
		}
	})
	if len(got) != 2 || got[0].Headers["color"] != "red" || got[1].Headers[broker.HeaderTraceparent] != own {
		t.Fatalf("deliveries: %+v", got)
	}

	id := producer.SpanContext().TraceID().String()
	app, ok := tr.Store.Trace(id)
	if !ok {
		t.Fatalf("no trace %s in the app's store", id)
	}
	parent := map[string]string{}
	for _, s := range app.Spans {
		parent[s.Name] = s.ParentID
	}
	if parent["consume orders"] != producer.SpanContext().SpanID().String() {
		t.Errorf("the consumer's span is not a child of the producer's: %+v", app.Spans)
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var spans []telemetry.Span
	waitFor("the broker's two spans", func() bool {
		bt, _ := brokerTr.Store.Trace(id)
		spans = bt.Spans
		return len(spans) == 2
	})
	for _, s := range spans {
		if s.ParentID != producer.SpanContext().SpanID().String() || (s.Name != "publish orders" && s.Name != "deliver orders") {
			t.Errorf("broker span %+v: want publish/deliver orders under the producer's span", s)
		}
		if s.Name == "deliver orders" {
			if w, err := strconv.ParseFloat(s.Attributes["switchyard.wait_ms"], 64); err != nil || w < 0 {
				t.Errorf("deliver span without its wait: %v", s.Attributes)
			}
		}
	}
	if _, ok := brokerTr.Store.Trace("0af7651916cd43dd8448eb211c80319c"); !ok {
		t.Error("the message's own trace context was replaced")
	}
}
