package outbox_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
	"github.com/switchyard/switchyard/telemetry"
)

// The context of the business request that called Add is stored with
// the message: the relay's publish, later and on its own goroutine, is a
// span of the same trace (a child of the request's span), and the
// published message carries the publish span's context on. A message
// added without a span is published without trace context.
func TestRelayJoinsAddsTrace(t *testing.T) {
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{}, "rides", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.SQLite(t)
	prepare(t, db)
	rec := newRecorder()
	runRelay(t, db, rec, outbox.RelayOptions{PollInterval: 20 * time.Millisecond, TracerProvider: tr.Provider})

	ctx, req := tr.Tracer("rides").Start(context.Background(), "POST /v1/rides", trace.WithSpanKind(trace.SpanKindServer))
	headers := map[string]string{"kind": "ride.requested"}
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		return outbox.Add(ctx, tx, "topic:rides", broker.Message{ID: "m1", Body: []byte("{}"), Headers: headers})
	}); err != nil {
		t.Fatal(err)
	}
	req.End()
	if len(headers) != 1 {
		t.Fatalf("Add modified the caller's headers: %v", headers)
	}
	if err := db.InTx(context.Background(), func(tx *store.Tx) error {
		return outbox.Add(context.Background(), tx, "topic:rides", broker.Message{ID: "m2"})
	}); err != nil {
		t.Fatal(err)
	}
	var got []broker.Message
	waitFor(t, 10*time.Second, "both messages published", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		got = append([]broker.Message(nil), rec.msgs["topic:rides"]...)
		return len(got) == 2
	})
	if _, ok := got[1].Headers[broker.HeaderTraceparent]; ok {
		t.Errorf("a message added without a span got trace context: %v", got[1].Headers)
	}
	tp := got[0].Headers[broker.HeaderTraceparent]
	id := req.SpanContext().TraceID().String()
	if len(tp) != 55 || tp[3:35] != id || got[0].Headers["kind"] != "ride.requested" {
		t.Fatalf("published headers %v: want the request's trace %s", got[0].Headers, id)
	}
	var spans []telemetry.Span
	waitFor(t, 10*time.Second, "the request's and the relay's spans in one trace", func() bool {
		kept, _ := tr.Store.Trace(id)
		spans = kept.Spans
		return len(spans) == 2
	})
	pub := spans[1]
	if pub.Name != "publish topic:rides" || pub.Kind != "producer" || pub.ParentID != req.SpanContext().SpanID().String() {
		t.Errorf("relay span %+v: want a producer span under the request's", pub)
	}
	if tp[36:52] != pub.SpanID {
		t.Errorf("the message carries %s, not the publish span %s", tp, pub.SpanID)
	}
}
