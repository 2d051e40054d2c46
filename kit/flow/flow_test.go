package flow_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/flow"
)

func TestPipeOrderedAndBackPressure(t *testing.T) {
	ctx := context.Background()
	in := make([]int, 200)
	for i := range in {
		in[i] = i
	}
	var running, peak atomic.Int32
	sq := flow.Pipe(ctx, flow.Source(ctx, in), flow.PipeOptions{Workers: 8, Ordered: true}, func(ctx context.Context, i int) (int, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer running.Add(-1)
		if i%7 == 0 {
			time.Sleep(time.Millisecond) // finish out of order
		}
		return i * i, nil
	})
	str := flow.Pipe(ctx, sq.Out(), flow.PipeOptions{Workers: 2, Ordered: true}, func(ctx context.Context, i int) (string, error) {
		return fmt.Sprint(i), nil
	})
	out, err := flow.Collect(str)
	if err != nil || sq.Err() != nil {
		t.Fatal(err, sq.Err())
	}
	for i, s := range out {
		if s != fmt.Sprint(i*i) {
			t.Fatalf("out[%d] = %s: order lost", i, s)
		}
	}
	if len(out) != 200 {
		t.Fatalf("%d outputs", len(out))
	}
	if peak.Load() > 8 {
		t.Fatalf("%d concurrent workers, want at most 8", peak.Load())
	}

	// Back pressure: an unread output stops the workers.
	var started atomic.Int32
	p := flow.Pipe(ctx, flow.Source(ctx, in), flow.PipeOptions{Workers: 3, Buffer: 2}, func(ctx context.Context, i int) (int, error) {
		started.Add(1)
		return i, nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for started.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // give a runaway stage the chance to show
	if n := started.Load(); n > 2+3 {
		t.Fatalf("%d items started with nobody reading: buffer 2 + 3 workers should hold it at 5", n)
	}
	p.Stop()
	for range p.Out() {
	}
}

func TestPipeStopsOnError(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	// Counted: items a worker started once the pipeline had already
	// stopped. Counting every item after the tenth instead depended on
	// the scheduler: the worker holding the error can be descheduled
	// before it stops the pipeline while the others run through
	// hundreds of items (850 of 1000 under load 50).
	var calls, after atomic.Int32
	p := flow.Pipe(ctx, flow.Source(ctx, make([]int, 1000)), flow.PipeOptions{Workers: 4}, flow.Named("parse", func(ctx context.Context, _ int) (int, error) {
		if ctx.Err() != nil {
			after.Add(1)
		}
		if calls.Add(1) == 10 {
			return 0, boom
		}
		return 1, nil
	}))
	_, err := flow.Collect(p)
	var se *flow.StageError
	if !errors.Is(err, boom) || !errors.As(err, &se) || se.Stage != "parse" {
		t.Fatalf("err = %v", err)
	}
	// Each of the 3 other workers may have taken one item from the
	// feeder before it saw the stop.
	if n := after.Load(); n > 3 {
		t.Fatalf("%d items started after the pipeline stopped on the error", n)
	}
}

func TestGather(t *testing.T) {
	ctx := context.Background()
	call := func(d time.Duration, v int, err error) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			select {
			case <-time.After(d):
				return v, err
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	// Quorum 2 of 3: the slow one is not waited for.
	start := time.Now()
	res, err := flow.Gather(ctx, flow.GatherOptions{Quorum: 2}, call(0, 1, nil), call(time.Hour, 2, nil), call(0, 3, nil))
	if err != nil || len(res) != 2 || time.Since(start) > time.Minute {
		t.Fatalf("quorum: %v %v", res, err)
	}
	// Deadline with partial results and no quorum.
	res, err = flow.Gather(ctx, flow.GatherOptions{Deadline: 50 * time.Millisecond}, call(0, 1, nil), call(time.Hour, 2, nil))
	if !errors.Is(err, flow.ErrNoQuorum) || len(res) != 1 || res[0].Value != 1 {
		t.Fatalf("deadline: %v %v", res, err)
	}
	// Failures that make the quorum impossible end it at once.
	bad := errors.New("down")
	res, err = flow.Gather(ctx, flow.GatherOptions{Quorum: 2}, call(0, 0, bad), call(0, 0, bad), call(time.Hour, 3, nil))
	if !errors.Is(err, flow.ErrNoQuorum) || !errors.Is(err, bad) || len(res) != 2 {
		t.Fatalf("impossible quorum: %v %v", res, err)
	}
}

func TestOrchestrate(t *testing.T) {
	ctx := context.Background()
	var order []string
	var mu = make(chan struct{}, 1)
	log := func(s string) { mu <- struct{}{}; order = append(order, s); <-mu }
	res, err := flow.Orchestrate(ctx,
		flow.Step{Name: "quote", Needs: []string{"route", "surge"}, Run: func(ctx context.Context, in map[string]any) (any, error) {
			log("quote")
			return in["route"].(int) * in["surge"].(int), nil
		}},
		flow.Step{Name: "route", Run: func(context.Context, map[string]any) (any, error) { log("route"); return 7, nil }},
		flow.Step{Name: "surge", Run: func(context.Context, map[string]any) (any, error) { log("surge"); return 3, nil }},
	)
	if err != nil || res["quote"] != 21 || order[2] != "quote" {
		t.Fatalf("%v %v %v", res, err, order)
	}
	_, err = flow.Orchestrate(ctx,
		flow.Step{Name: "a", Needs: []string{"b"}, Run: func(context.Context, map[string]any) (any, error) { return nil, nil }},
		flow.Step{Name: "b", Needs: []string{"a"}, Run: func(context.Context, map[string]any) (any, error) { return nil, nil }},
	)
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
	boom := errors.New("boom")
	res, err = flow.Orchestrate(ctx,
		flow.Step{Name: "a", Run: func(context.Context, map[string]any) (any, error) { return nil, boom }},
		flow.Step{Name: "b", Needs: []string{"a"}, Run: func(context.Context, map[string]any) (any, error) { t.Error("b ran after a failed"); return nil, nil }},
	)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "step a") || len(res) != 0 {
		t.Fatalf("failure: %v %v", res, err)
	}
}

// TestMapReduceRecoversFailedWorkers counts words over files while
// workers fail: errors, panics and hangs on first attempts. The counts
// are exact: no failed attempt's output is kept.
func TestMapReduceRecoversFailedWorkers(t *testing.T) {
	dir := t.TempDir()
	want := map[string]int{}
	var files []string
	for f := range 12 {
		var b strings.Builder
		for l := range 50 {
			w := fmt.Sprintf("w%d", (f*l)%17)
			b.WriteString(w + " common\n")
			want[w]++
			want["common"]++
		}
		p := filepath.Join(dir, fmt.Sprintf("part-%02d.txt", f))
		os.WriteFile(p, []byte(b.String()), 0o644)
		files = append(files, p)
	}
	var tries [12]atomic.Int32
	var retries atomic.Int32
	mr := flow.MapReduce[string, string, int, int]{
		Workers:     4,
		Partitions:  3,
		TaskTimeout: 500 * time.Millisecond,
		OnRetry:     func(string, int, error) { retries.Add(1) },
		Map: func(ctx context.Context, path string, emit func(string, int)) error {
			i := slices.Index(files, path)
			n := tries[i].Add(1)
			err := flow.FileLines(path, func(line string) {
				for _, w := range strings.Fields(line) {
					emit(w, 1)
				}
			})
			if err != nil {
				return err
			}
			if n == 1 { // first attempt of every task fails after emitting
				switch i % 3 {
				case 0:
					return errors.New("worker lost")
				case 1:
					panic("worker crashed")
				case 2:
					<-ctx.Done() // hangs until abandoned
					return ctx.Err()
				}
			}
			return nil
		},
		Reduce: func(ctx context.Context, k string, vs []int) (int, error) {
			s := 0
			for _, v := range vs {
				s += v
			}
			return s, nil
		},
	}
	got, err := mr.Run(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if retries.Load() != 12 {
		t.Fatalf("%d retries, want 12 (one per task)", retries.Load())
	}
	// A task that fails every time fails the job, naming it.
	mr.Map = func(ctx context.Context, path string, emit func(string, int)) error {
		return errors.New("corrupt input")
	}
	_, err = mr.Run(context.Background(), files[:1])
	var te *flow.TaskError
	if !errors.As(err, &te) || te.Task != "map[0]" || te.Attempts != 3 {
		t.Fatalf("permanent failure: %v", err)
	}
}
