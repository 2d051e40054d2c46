package flow

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Step is one node of a request-scoped orchestration: it runs once every
// step it needs has succeeded, and reads their outputs from results.
type Step struct {
	Name  string
	Needs []string
	Run   func(ctx context.Context, results map[string]any) (any, error)
}

// Orchestrate runs a small graph of steps for one request: each step as
// soon as the steps it needs are done, independent ones concurrently.
// The first failure cancels the rest and is returned with the step's
// name (a panic is a failure, a *PanicError); results holds every step
// that finished. Cycles, unknown and
// repeated names are errors before anything runs. For work whose state
// must survive a crash, use the saga orchestrator (kit/saga).
func Orchestrate(ctx context.Context, steps ...Step) (map[string]any, error) {
	byName := map[string]*Step{}
	for i := range steps {
		s := &steps[i]
		if s.Name == "" || byName[s.Name] != nil {
			return nil, fmt.Errorf("flow: step %d: name %q is empty or repeated", i, s.Name)
		}
		if s.Run == nil {
			return nil, fmt.Errorf("flow: step %s has no Run", s.Name)
		}
		byName[s.Name] = s
	}
	for _, s := range steps {
		for _, n := range s.Needs {
			if byName[n] == nil {
				return nil, fmt.Errorf("flow: step %s needs %q, which is not a step", s.Name, n)
			}
		}
	}
	if cyc := findCycle(steps, byName); cyc != nil {
		return nil, fmt.Errorf("flow: steps form a cycle: %s", strings.Join(cyc, " -> "))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	results := map[string]any{}
	done := map[string]chan struct{}{}
	for _, s := range steps {
		done[s.Name] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, s := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, n := range s.Needs {
				select {
				case <-done[n]:
				case <-ctx.Done():
					return
				}
			}
			mu.Lock()
			in := make(map[string]any, len(s.Needs))
			for _, n := range s.Needs {
				in[n] = results[n]
			}
			mu.Unlock()
			v, err := catch(func() (any, error) { return s.Run(ctx, in) })
			if err != nil {
				cancel(fmt.Errorf("step %s: %w", s.Name, err))
				return
			}
			mu.Lock()
			results[s.Name] = v
			mu.Unlock()
			close(done[s.Name])
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return results, err
	}
	return results, nil
}

func findCycle(steps []Step, byName map[string]*Step) []string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(n string) []string
	visit = func(n string) []string {
		color[n] = grey
		stack = append(stack, n)
		needs := append([]string(nil), byName[n].Needs...)
		sort.Strings(needs)
		for _, m := range needs {
			switch color[m] {
			case grey:
				i := len(stack) - 1
				for stack[i] != m {
					i--
				}
				return append(append([]string(nil), stack[i:]...), m)
			case white:
				if c := visit(m); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return nil
	}
	for _, s := range steps {
		if color[s.Name] == white {
			if c := visit(s.Name); c != nil {
				return c
			}
		}
	}
	return nil
}
