package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

// A line logged with a span's context carries its trace and span ids;
// one without a span carries neither.
func TestLogHandler(t *testing.T) {
	tr, err := Setup(context.Background(), Config{}, "x", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "rides")
	ctx, sp := tr.Tracer("t").Start(context.Background(), "op")
	log.ErrorContext(ctx, "request failed", "err", "boom")
	sp.End()
	log.Info("no span")
	dec := json.NewDecoder(&buf)
	var with, without map[string]any
	if err := dec.Decode(&with); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&without); err != nil {
		t.Fatal(err)
	}
	if with["trace_id"] != sp.SpanContext().TraceID().String() || with["span_id"] != sp.SpanContext().SpanID().String() || with["service"] != "rides" {
		t.Errorf("line with a span: %v", with)
	}
	if _, ok := without["trace_id"]; ok {
		t.Errorf("line without a span: %v", without)
	}
}
