package message_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/telemetry"
)

// A handler runs in a consumer span, a child of the trace context its
// message carries; what it publishes (Propagate) is a child of that span;
// a failed handler's span is an error.
func TestRouterConsumerSpan(t *testing.T) {
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "matching", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	sub := make(chanSub)
	r, err := message.NewRouter(sub, message.RouterConfig{TracerProvider: tr.Provider, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	var pub recorder
	out := message.Propagate(&pub)
	r.Use(message.Correlation())
	r.Handle("q", func(ctx context.Context, d *message.Delivery) error {
		if string(d.Body) == "fail" {
			return errors.New("no driver table")
		}
		return out.Publish(ctx, "out", broker.Message{Body: []byte("match.found")})
	}, message.RouteOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	const producer = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, body := range []string{"ok", "fail"} {
		sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"},
			broker.Message{ID: body, Body: []byte(body), Headers: map[string]string{message.HeaderTraceparent: producer}}, 1, time.Time{}, &fakeAcker{})
	}
	sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"}, broker.Message{Body: []byte("ok")}, 1, time.Time{}, &fakeAcker{})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	kept, ok := tr.Store.Trace("0af7651916cd43dd8448eb211c80319c")
	if !ok || len(kept.Spans) != 2 {
		t.Fatalf("the producer's trace: %+v", kept)
	}
	failed := 0
	for _, s := range kept.Spans {
		if s.Name != "consume q" || s.Kind != "consumer" || s.ParentID != "b7ad6b7169203331" {
			t.Errorf("span %+v: want a consumer span under the producer's", s)
		}
		if s.Status == "Error" {
			failed++
		}
	}
	if failed != 1 || !kept.Error {
		t.Errorf("%d failed spans, trace error %v: want the failed handler's", failed, kept.Error)
	}
	tp := pub.msgs[0].Headers[message.HeaderTraceparent]
	if len(tp) != 55 || tp[3:35] != "0af7651916cd43dd8448eb211c80319c" || tp[36:52] == "b7ad6b7169203331" {
		t.Errorf("published under %q: want the consumer span of the same trace", tp)
	}
}

// With OpenTelemetry's global provider and no SDK installed the router
// records no span (it skips the no-op span's allocations), yet the
// handler's ctx carries the message's trace context, so what it
// publishes stays in the producer's trace; once an SDK is installed as
// the global provider, while the router runs, handlers get spans.
func TestRouterGlobalProvider(t *testing.T) {
	orig := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(orig) })
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "matching", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	sub := make(chanSub)
	r, err := message.NewRouter(sub, message.RouterConfig{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	var pub recorder
	out := message.Propagate(&pub)
	handled := make(chan struct{})
	r.Handle("q", func(ctx context.Context, d *message.Delivery) error {
		defer func() { handled <- struct{}{} }()
		return out.Publish(ctx, "out", broker.Message{Body: d.Body})
	}, message.RouteOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	const producer = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	send := func(body string) {
		sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"},
			broker.Message{Body: []byte(body), Headers: map[string]string{message.HeaderTraceparent: producer}}, 1, time.Time{}, &fakeAcker{})
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatalf("message %q not handled in 10s", body)
		}
	}
	send("before")
	tr.SetGlobal()
	send("after")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := pub.msgs[0].Headers[message.HeaderTraceparent]; got != producer {
		t.Errorf("published without an SDK under %q: want the producer's trace context %q as is", got, producer)
	}
	kept, ok := tr.Store.Trace("0af7651916cd43dd8448eb211c80319c")
	if !ok || len(kept.Spans) != 1 || kept.Spans[0].Name != "consume q" || kept.Spans[0].ParentID != "b7ad6b7169203331" {
		t.Fatalf("the producer's trace after SetGlobal: %+v: want one consumer span under the producer's", kept)
	}
	got := pub.msgs[1].Headers[message.HeaderTraceparent]
	if len(got) != 55 || got[3:35] != "0af7651916cd43dd8448eb211c80319c" || got[36:52] != kept.Spans[0].SpanID {
		t.Errorf("published with the SDK under %q: want the consumer span %s", got, kept.Spans[0].SpanID)
	}
}
