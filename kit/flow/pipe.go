// Package flow holds the notes' integration patterns as library
// functions for work inside one service: pipes and filters (stages
// joined by bounded channels, each with its own number of workers, back
// pressure end to end), scatter-gather (fan out, gather with a deadline
// and a quorum, keep partial results), a request-scoped orchestrator (a
// small graph of steps run as soon as their inputs are ready) and
// map-reduce (map, shuffle by key, reduce, on several workers; a task
// whose worker fails is run again).
//
// Across services the same shapes are built from queues: a stage is a
// kit/message router handler that consumes one queue and publishes to
// the next; the saga orchestrator (kit/saga) is the orchestrator for
// work whose state must survive a crash.
package flow

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Stage turns one item into one result.
type Stage[I, O any] func(ctx context.Context, in I) (O, error)

// PipeOptions tune one stage of a pipeline.
type PipeOptions struct {
	// Workers run the stage concurrently. Default 1.
	Workers int
	// Buffer is the capacity of the output channel; a full buffer stops
	// the workers, which stops the stage before — back pressure. Default 0.
	Buffer int
	// Ordered keeps outputs in input order (a worker that finishes early
	// waits for the ones before it). Default false: as they finish.
	Ordered bool
}

// Pipe runs stage over in with opts.Workers workers and returns the
// outputs. The first error (a panic in stage is one, a *PanicError)
// stops the stage: workers stop taking items,
// out is closed, and Err returns the error. Cancel ctx to stop early
// (Err then returns ctx's error). The caller must drain out or cancel.
func Pipe[I, O any](ctx context.Context, in <-chan I, opts PipeOptions, stage Stage[I, O]) *Pipeline[O] {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	p := &Pipeline[O]{out: make(chan O, opts.Buffer), cancel: cancel, ctx: ctx}
	type job struct {
		seq  uint64
		item I
	}
	jobs := make(chan job)
	var seqMu sync.Mutex
	var next uint64
	turn := sync.NewCond(&seqMu)
	var wg sync.WaitGroup
	go func() {
		defer close(jobs)
		var seq uint64
		for {
			select {
			case it, ok := <-in:
				if !ok {
					return
				}
				select {
				case jobs <- job{seq, it}:
					seq++
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				o, err := catch(func() (O, error) { return stage(ctx, j.item) })
				if err != nil {
					cancel(err)
					turn.Broadcast()
					return
				}
				if opts.Ordered {
					seqMu.Lock()
					for next != j.seq && ctx.Err() == nil {
						turn.Wait()
					}
					seqMu.Unlock()
				}
				select {
				case p.out <- o:
				case <-ctx.Done():
				}
				if opts.Ordered {
					seqMu.Lock()
					next++
					seqMu.Unlock()
					turn.Broadcast()
				}
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	// Wake ordered waiters when the context ends for any reason.
	go func() {
		<-ctx.Done()
		seqMu.Lock()
		turn.Broadcast()
		seqMu.Unlock()
	}()
	go func() {
		wg.Wait()
		p.mu.Lock()
		if c := context.Cause(ctx); c != nil && !errors.Is(c, errDone) {
			p.err = c
		}
		p.mu.Unlock()
		close(p.out)
		cancel(errDone)
	}()
	return p
}

var errDone = errors.New("flow: stage finished")

// Pipeline is a running stage's output.
type Pipeline[O any] struct {
	out    chan O
	ctx    context.Context
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	err    error
}

// Out is the stage's output, closed when the stage ends.
func (p *Pipeline[O]) Out() <-chan O { return p.out }

// Err is why the stage stopped early, once Out is closed: the first
// stage error or the context's; nil when every input was processed.
func (p *Pipeline[O]) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop ends the stage early.
func (p *Pipeline[O]) Stop() { p.cancel(context.Canceled) }

// Source turns a slice into a channel, closed after the last item or
// when ctx ends.
func Source[T any](ctx context.Context, items []T) <-chan T {
	ch := make(chan T)
	go func() {
		defer close(ch)
		for _, it := range items {
			select {
			case ch <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// Collect drains a pipeline into a slice and returns its error.
func Collect[O any](p *Pipeline[O]) ([]O, error) {
	var out []O
	for o := range p.Out() {
		out = append(out, o)
	}
	return out, p.Err()
}

// StageError names the stage and item an error came from, for
// pipelines that wrap their stages with Named.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("stage %s: %v", e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }

// Named wraps a stage so its errors say which stage they came from.
func Named[I, O any](name string, s Stage[I, O]) Stage[I, O] {
	return func(ctx context.Context, in I) (O, error) {
		o, err := s(ctx, in)
		if err != nil {
			return o, &StageError{Stage: name, Err: err}
		}
		return o, nil
	}
}
