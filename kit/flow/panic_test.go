package flow_test

import (
	"context"
	"errors"
	"testing"

	"github.com/switchyard/switchyard/kit/flow"
)

// A stage, call or step that panics (a nil map in the parser of one
// backend's hostile answer) ran on flow's own goroutines, where the
// caller cannot recover it: the panic killed the whole process. It is
// now the stage's, call's or step's error, a *flow.PanicError
// (errors.Is ErrPanic) with the stack, as MapReduce already did.

func TestPipeStagePanicIsAnError(t *testing.T) {
	ctx := context.Background()
	p := flow.Pipe(ctx, flow.Source(ctx, []int{1, 2, 3}), flow.PipeOptions{Workers: 2}, func(ctx context.Context, in int) (int, error) {
		if in == 2 {
			var m map[string]int
			m["boom"] = in // nil map write
		}
		return in, nil
	})
	_, err := flow.Collect(p)
	var pe *flow.PanicError
	if !errors.Is(err, flow.ErrPanic) || !errors.As(err, &pe) || len(pe.Stack) == 0 {
		t.Fatalf("Pipe with a panicking stage: %v, want a *PanicError with its stack", err)
	}
}

func TestGatherCallPanicIsAnError(t *testing.T) {
	res, err := flow.Gather(context.Background(), flow.GatherOptions{Quorum: 1},
		func(ctx context.Context) (string, error) { panic("hostile answer") },
		func(ctx context.Context) (string, error) { return "", errors.New("down") },
	)
	var panicked bool
	for _, r := range res {
		panicked = panicked || r.Index == 0 && errors.Is(r.Err, flow.ErrPanic)
	}
	if !errors.Is(err, flow.ErrNoQuorum) || !errors.Is(err, flow.ErrPanic) || !panicked {
		t.Fatalf("Gather with a panicking call: %v %v, want the panic as call 0's error", res, err)
	}
	res, err = flow.Gather(context.Background(), flow.GatherOptions{Quorum: 1},
		func(ctx context.Context) (string, error) { panic("hostile answer") },
		func(ctx context.Context) (string, error) { return "ok", nil },
	)
	if err != nil {
		t.Fatalf("quorum 1 with one good call: %v", err)
	}
}

func TestOrchestrateStepPanicIsAnError(t *testing.T) {
	_, err := flow.Orchestrate(context.Background(),
		flow.Step{Name: "a", Run: func(ctx context.Context, in map[string]any) (any, error) { return 1, nil }},
		flow.Step{Name: "b", Needs: []string{"a"}, Run: func(ctx context.Context, in map[string]any) (any, error) { panic("boom") }},
	)
	if !errors.Is(err, flow.ErrPanic) {
		t.Fatalf("Orchestrate with a panicking step: %v, want ErrPanic", err)
	}
}
