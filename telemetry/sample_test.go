package telemetry

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// requestContext is a context as deep as a proxied request's: net/http's
// server values (server, local address), the connection's and the
// request's cancels, and the gateway's own values on top.
func requestContext() context.Context {
	type key int
	ctx := context.WithValue(context.Background(), key(0), "server")
	ctx = context.WithValue(ctx, key(1), "local address")
	// Two cancellable layers (never cancelled: they live as long as the
	// test binary), as the connection's and the request's.
	ctx = cancelled(ctx)
	ctx = cancelled(ctx)
	for i := 2; i < 8; i++ {
		ctx = context.WithValue(ctx, key(i), i)
	}
	return ctx
}

// threadCPU reports the CPU time the benchmark's thread spent per
// operation (cpu-ns/op), which holds on a loaded machine where ns/op
// (wall clock) does not: call it before the loop, the result after.
func threadCPU(b *testing.B) func() {
	runtime.LockOSThread()
	start := threadTime()
	return func() {
		b.ReportMetric(float64(threadTime()-start)/float64(b.N), "cpu-ns/op")
		runtime.UnlockOSThread()
	}
}

func threadTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// cancelled is a cancellable child of ctx whose cancel is kept (never
// called: the contexts live as long as the test binary).
func cancelled(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	keptCancels = append(keptCancels, cancel)
	return ctx
}

var keptCancels []context.CancelFunc

// BenchmarkRequestTracerSample is the gateway's per-request head
// sampling decision with the default sampler (parent-based 1% with the
// reservoir), for a request without a traceparent, the common case.
// go test -run X -bench RequestTracerSample ./telemetry
func BenchmarkRequestTracerSample(b *testing.B) {
	tr, err := Setup(context.Background(), Config{}, "bench", env(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	rt := tr.RequestTracer("bench")
	ctx := requestContext()
	// Above every ratio's bound: not sampled by the ratio, as 99% are.
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// before: what Sample did until tls17c, the request's context handed
	// to the sampler (parent-based, ratio and reservoir each walk it).
	b.Run("before", func(b *testing.B) {
		b.ReportAllocs()
		defer threadCPU(b)()
		for range b.N {
			_ = rt.head.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Kind: trace.SpanKindServer}).Decision == sdktrace.RecordAndSample
		}
	})
	// Sample: the span context looked up once in the request's context.
	b.Run("Sample", func(b *testing.B) {
		b.ReportAllocs()
		defer threadCPU(b)()
		for range b.N {
			rt.Sample(ctx, tid, trace.SpanKindServer)
		}
	})
	// SampleParent: the gateway's call, the parent already extracted
	// (none here): no lookup in the request's context.
	b.Run("SampleParent", func(b *testing.B) {
		b.ReportAllocs()
		defer threadCPU(b)()
		for range b.N {
			rt.SampleParent(trace.SpanContext{}, tid, trace.SpanKindServer)
		}
	})
}

// TestSampleParentAgrees: SampleParent, given the parent span context,
// decides as Sample does given a context holding it, for each kind of
// parent and sampler setting (remote and local, sampled or not, none).
func TestSampleParentAgrees(t *testing.T) {
	zero, one, none := 0.0, 1.0, 0
	parents := map[string]trace.SpanContext{"none": {}}
	for _, remote := range []bool{true, false} {
		for _, sampled := range []bool{true, false} {
			var fl trace.TraceFlags
			if sampled {
				fl = trace.FlagsSampled
			}
			parents[fmt.Sprintf("remote=%v sampled=%v", remote, sampled)] = trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: NewTraceID(), SpanID: NewSpanID(), TraceFlags: fl, Remote: remote})
		}
	}
	for _, cfg := range []Config{
		{Ratio: &zero, MinPerSecond: &none}, {Ratio: &one, MinPerSecond: &none},
		{Sampler: "parentbased_always_off"}, {Sampler: "always_on"}, {Sampler: "traceidratio", Ratio: &zero, MinPerSecond: &none},
	} {
		tr, err := Setup(context.Background(), cfg, "x", env(nil))
		if err != nil {
			t.Fatal(err)
		}
		rt := tr.RequestTracer("t")
		for name, p := range parents {
			ctx := requestContext()
			if p.IsValid() {
				ctx = trace.ContextWithSpanContext(ctx, p)
			}
			tid := p.TraceID()
			if !p.IsValid() {
				tid = NewTraceID()
			}
			want := rt.head.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Kind: trace.SpanKindServer}).Decision == sdktrace.RecordAndSample
			if got := rt.SampleParent(p, tid, trace.SpanKindServer); got != want {
				t.Errorf("%s, parent %s: SampleParent %v, the sampler on the request's context %v", tr.head.Description(), name, got, want)
			}
			if got := rt.Sample(ctx, tid, trace.SpanKindServer); got != want {
				t.Errorf("%s, parent %s: Sample %v, the sampler on the request's context %v", tr.head.Description(), name, got, want)
			}
		}
		tr.Shutdown(context.Background())
	}
}
