package flow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"runtime/debug"
	"sync"
	"time"
)

// MapReduce runs Map over every input, shuffles the emitted pairs by key
// into Partitions, and runs Reduce once per key, on Workers goroutines.
// A task (one input's map, or one partition's reduce) whose worker fails
// — returns an error, panics, or runs past TaskTimeout — is run again, up
// to MaxAttempts; the output of a failed or abandoned attempt is thrown
// away, so a re-run never doubles a pair. Map and Reduce must be
// deterministic enough to be re-run (the usual map-reduce contract).
type MapReduce[I any, K comparable, V, R any] struct {
	Map    func(ctx context.Context, in I, emit func(K, V)) error
	Reduce func(ctx context.Context, key K, values []V) (R, error)
	// Workers run tasks concurrently. Default 4.
	Workers int
	// Partitions is the number of reduce tasks. Default Workers.
	Partitions int
	// MaxAttempts per task. Default 3.
	MaxAttempts int
	// TaskTimeout abandons an attempt that runs longer (a stuck worker)
	// and runs the task again. 0: no timeout.
	TaskTimeout time.Duration
	// OnRetry, when set, hears every failed attempt.
	OnRetry func(task string, attempt int, err error)
}

// TaskError is a task that failed on every attempt.
type TaskError struct {
	Task     string
	Attempts int
	Err      error
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("flow: task %s failed %d times: %v", e.Task, e.Attempts, e.Err)
}
func (e *TaskError) Unwrap() error { return e.Err }

// Run runs the job over inputs and returns one result per key. It has a
// value receiver, so a literal runs as is: flow.MapReduce[...]{...}.Run(ctx, in).
func (mr MapReduce[I, K, V, R]) Run(ctx context.Context, inputs []I) (map[K]R, error) {
	workers := mr.Workers
	if workers <= 0 {
		workers = 4
	}
	parts := mr.Partitions
	if parts <= 0 {
		parts = workers
	}
	attempts := mr.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	seed := maphash.MakeSeed()
	type pair struct {
		k K
		v V
	}
	// Map phase: each successful attempt's pairs are committed whole.
	shuffle := make([]map[K][]V, parts)
	for i := range shuffle {
		shuffle[i] = map[K][]V{}
	}
	var smu sync.Mutex
	err := runTasks(ctx, len(inputs), workers, attempts, mr.TaskTimeout, mr.OnRetry, func(i int) string { return fmt.Sprintf("map[%d]", i) },
		func(ctx context.Context, i int) (func(), error) {
			var buf []pair
			err := mr.Map(ctx, inputs[i], func(k K, v V) { buf = append(buf, pair{k, v}) })
			if err != nil {
				return nil, err
			}
			return func() {
				smu.Lock()
				for _, p := range buf {
					s := shuffle[maphash.Comparable(seed, p.k)%uint64(parts)]
					s[p.k] = append(s[p.k], p.v)
				}
				smu.Unlock()
			}, nil
		})
	if err != nil {
		return nil, err
	}
	out := map[K]R{}
	var omu sync.Mutex
	err = runTasks(ctx, parts, workers, attempts, mr.TaskTimeout, mr.OnRetry, func(p int) string { return fmt.Sprintf("reduce[%d]", p) },
		func(ctx context.Context, p int) (func(), error) {
			res := make(map[K]R, len(shuffle[p]))
			for k, vs := range shuffle[p] {
				r, err := mr.Reduce(ctx, k, vs)
				if err != nil {
					return nil, err
				}
				res[k] = r
			}
			return func() {
				omu.Lock()
				for k, r := range res {
					out[k] = r
				}
				omu.Unlock()
			}, nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// runTasks runs n tasks on workers goroutines; a task's commit function
// runs only for the attempt that succeeded first, under the task's own
// lock, so an abandoned attempt finishing late commits nothing.
func runTasks(ctx context.Context, n, workers, attempts int, timeout time.Duration, onRetry func(string, int, error),
	name func(int) string, task func(ctx context.Context, i int) (commit func(), err error)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for i := range n {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var last error
				ok := false
				for a := 1; a <= attempts && ctx.Err() == nil; a++ {
					commit, err := attempt(ctx, timeout, func(ctx context.Context) (func(), error) { return task(ctx, i) })
					if err == nil {
						commit()
						ok = true
						break
					}
					last = err
					if onRetry != nil {
						onRetry(name(i), a, err)
					}
				}
				if !ok {
					if ctx.Err() == nil {
						cancel(&TaskError{Task: name(i), Attempts: attempts, Err: last})
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

var errTaskTimeout = errors.New("task timed out; worker abandoned")

// attempt runs one try of a task, turning a panic into an error and
// abandoning it after timeout (its late result is dropped).
func attempt(ctx context.Context, timeout time.Duration, f func(ctx context.Context) (func(), error)) (func(), error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		commit func()
		err    error
	}
	ch := make(chan res, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- res{nil, fmt.Errorf("worker: %w", &PanicError{Value: p, Stack: debug.Stack()})}
			}
		}()
		c, err := f(actx)
		ch <- res{c, err}
	}()
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case r := <-ch:
		return r.commit, r.err
	case <-tc:
		return nil, errTaskTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// FileLines is a Map input helper: it calls fn for each line of the file
// at path (lines up to 1 MiB).
func FileLines(path string, fn func(line string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
