package saga_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store/storetest"
	"github.com/switchyard/switchyard/telemetry"
)

// The steps of a saga run later, on the orchestrator's goroutines, in
// spans under the span that started it: one trace from the request to
// the compensation, each step with its phase and outcome.
func TestStepSpansJoinStartsTrace(t *testing.T) {
	ctx := context.Background()
	tr, err := telemetry.Setup(ctx, telemetry.Config{}, "payments", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.SQLite(t)
	def := &saga.Definition{Name: "pay", Steps: []saga.Step{
		{Name: "charge", Action: func(context.Context, *saga.StepContext) error { return nil },
			Compensation: func(context.Context, *saga.StepContext) error { return nil }},
		{Name: "payout", Action: func(context.Context, *saga.StepContext) error { return saga.Permanent(errors.New("account closed")) }},
	}}
	o, err := saga.New(ctx, db, saga.Options{TracerProvider: tr.Provider})
	if err != nil {
		t.Fatal(err)
	}
	o.Register(def)
	reqCtx, req := tr.Tracer("t").Start(ctx, "ride.finished", trace.WithSpanKind(trace.SpanKindConsumer))
	if err := o.Start(reqCtx, def, "ride-1", map[string]int{"cents": 1250}); err != nil {
		t.Fatal(err)
	}
	req.End()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(runCtx); close(done) }()
	info, err := o.Wait(ctx, "ride-1")
	stop()
	<-done
	if err != nil || info.State != saga.Compensated {
		t.Fatalf("saga: %+v %v", info, err)
	}
	kept, _ := tr.Store.Trace(req.SpanContext().TraceID().String())
	var got []string
	for _, s := range kept.Spans {
		if s.Name == "ride.finished" {
			continue
		}
		if s.ParentID != req.SpanContext().SpanID().String() {
			t.Errorf("step span %+v is not under the span that started the saga", s)
		}
		got = append(got, s.Name+" "+s.Attributes["switchyard.saga.phase"]+" "+s.Attributes["switchyard.saga.outcome"]+" "+s.Status)
	}
	want := []string{"saga pay charge action ok ", "saga pay payout action failed Error", "saga pay charge compensation ok "}
	if len(got) != len(want) {
		t.Fatalf("step spans %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step span %d: %q, want %q", i, got[i], want[i])
		}
	}
}
