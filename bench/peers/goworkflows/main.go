// Command goworkflows measures 4-step sagas completed per second, every
// transition persisted, for switchyard's kit/saga and for
// github.com/cschleiden/go-workflows on the same database, with the same
// concurrency and the same number of sagas. One run measures one side;
// bench/saga-vs-goworkflows.sh alternates them and prints the medians.
//
// Each saga has four steps that do nothing (like kit/saga's
// BenchmarkSaga) and a compensation per step that is defined but not
// taken. The clock starts before the first saga is submitted (one saga
// per transaction, from -submitters goroutines, on both sides) and stops when the
// last one is seen completed (polled every 5 ms on both sides).
//
// It lives in a module of its own so that switchyard's module does not
// depend on go-workflows.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cschleiden/go-workflows/backend"
	"github.com/cschleiden/go-workflows/backend/monoprocess"
	"github.com/cschleiden/go-workflows/backend/sqlite"
	"github.com/cschleiden/go-workflows/client"
	"github.com/cschleiden/go-workflows/worker"
	"github.com/cschleiden/go-workflows/workflow"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
)

func main() {
	impl := flag.String("impl", "switchyard", "switchyard or goworkflows")
	dbKind := flag.String("db", "sqlite", "sqlite or postgres")
	n := flag.Int("n", 2000, "sagas to run")
	conc := flag.Int("concurrency", 32, "sagas driven at once (kit/saga Concurrency; go-workflows MaxParallelWorkflowTasks and MaxParallelActivityTasks)")
	pg := flag.String("postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server URL; a schema of its own is created and dropped")
	flag.IntVar(&submitters, "submitters", submitters, "goroutines submitting sagas, one saga per transaction (both sides)")
	flag.IntVar(&gwCache, "gwcache", 0, "go-workflows WorkflowExecutorCacheSize; 0: the number of sagas (all cached)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured part to this file")
	flag.Parse()
	ctx := context.Background()

	dir, err := os.MkdirTemp("", "sagabench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var run func() (time.Duration, error)
	switch *impl + "/" + *dbKind {
	case "switchyard/sqlite":
		run = func() (time.Duration, error) {
			return runSwitchyard(ctx, filepath.Join(dir, "bench.db"), *n, *conc, *cpuprofile)
		}
	case "switchyard/postgres":
		run = func() (time.Duration, error) {
			dsn, drop, err := pgSchema(ctx, *pg)
			if err != nil {
				return 0, err
			}
			defer drop()
			return runSwitchyard(ctx, dsn, *n, *conc, *cpuprofile)
		}
	case "goworkflows/sqlite":
		run = func() (time.Duration, error) {
			return runGoWorkflows(ctx, filepath.Join(dir, "bench.db"), *n, *conc, *cpuprofile)
		}
	case "goworkflows/postgres":
		log.Fatal("go-workflows v1.2.0 (the version the module proxy serves) has no PostgreSQL backend (backend/: sqlite, mysql, redis)")
	default:
		log.Fatalf("-impl %q -db %q: want -impl switchyard|goworkflows and -db sqlite|postgres", *impl, *dbKind)
	}
	d, err := run()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s n=%d concurrency=%d seconds=%.3f submit_seconds=%.3f sagas_per_s=%.1f\n", *impl, *dbKind, *n, *conc, d.Seconds(), submitted.Seconds(), float64(*n)/d.Seconds())
}

// submitters is how many goroutines submit sagas, one saga per
// transaction each (like concurrent requests that each start one).
var submitters = 8

// submit calls start for 0..n-1 from submitters goroutines and returns
// the first error.
func submit(n int, start func(i int) error) error {
	var next atomic.Int64
	errs := make(chan error, submitters)
	for range submitters {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					errs <- nil
					return
				}
				if err := start(i); err != nil {
					next.Store(int64(n))
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for range submitters {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// gwCache is go-workflows' WorkflowExecutorCacheSize (0: n).
var gwCache int

// submitted is how long the submission of the n sagas took (inside the
// measured time), reported to help read the numbers.
var submitted time.Duration

func profile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// pgSchema creates a schema of its own on the server and returns a URL
// whose connections use it, and a function that drops it.
func pgSchema(ctx context.Context, base string) (string, func(), error) {
	admin, err := store.Open(ctx, base)
	if err != nil {
		return "", nil, err
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "sagabench_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return "", nil, err
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema, func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			log.Printf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	}, nil
}

// runSwitchyard runs n sagas through kit/saga. dsn is a SQLite path or
// a postgres:// URL (kit/store sets WAL and synchronous=FULL on SQLite).
func runSwitchyard(ctx context.Context, dsn string, n, conc int, prof string) (time.Duration, error) {
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	noop := func(ctx context.Context, sc *saga.StepContext) error { return nil }
	def := &saga.Definition{Name: "bench"}
	for k := range 4 {
		def.Steps = append(def.Steps, saga.Step{Name: fmt.Sprint("s", k), Action: noop, Compensation: noop})
	}
	o, err := saga.New(ctx, db, saga.Options{Concurrency: conc, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return 0, err
	}
	o.Register(def)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	stopProf := profile(prof)
	defer stopProf()
	start := time.Now()
	err = submit(n, func(i int) error {
		return db.InTx(ctx, func(tx *store.Tx) error {
			return saga.Start(ctx, tx, def, fmt.Sprint("saga-", i), nil)
		})
	})
	if err != nil {
		return 0, err
	}
	submitted = time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var c int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_sagas WHERE state = 'completed'").Scan(&c); err != nil {
			return 0, err
		}
		if c >= n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("switchyard: %d of %d sagas completed after 10 minutes", c, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	var other int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_sagas WHERE state <> 'completed'").Scan(&other); err != nil {
		return 0, err
	}
	if other != 0 {
		return 0, fmt.Errorf("switchyard: %d sagas not completed", other)
	}
	return d, nil
}

// step is a go-workflows activity that does what kit/saga's benchmark
// steps do: nothing.
func step(ctx context.Context, k int) (int, error) { return k, nil }

// undo is the compensation of step; defined, not taken.
func undo(ctx context.Context, k int) (int, error) { return k, nil }

// Saga is the 4-step saga as a go-workflows workflow: the steps run in
// order, and when one fails the completed ones are compensated in
// reverse order.
func Saga(ctx workflow.Context) error {
	for k := range 4 {
		if _, err := workflow.ExecuteActivity[int](ctx, workflow.DefaultActivityOptions, step, k).Get(ctx); err != nil {
			for j := k - 1; j >= 0; j-- {
				if _, cerr := workflow.ExecuteActivity[int](ctx, workflow.DefaultActivityOptions, undo, j).Get(ctx); cerr != nil {
					return errors.Join(err, cerr)
				}
			}
			return err
		}
	}
	return nil
}

// runGoWorkflows runs n sagas through go-workflows' SQLite backend,
// wrapped in its monoprocess backend (which wakes the worker on new
// tasks instead of waiting for the next poll), as go-workflows' own
// bench does.
func runGoWorkflows(ctx context.Context, path string, n, conc int, prof string) (time.Duration, error) {
	// go-workflows opens "file:"+path with modernc.org/sqlite and sets
	// journal_mode=WAL and busy_timeout itself; the _pragma parameter
	// makes synchronous=FULL explicit on its connection, like kit/store.
	sb := sqlite.NewSqliteBackend(path+"?_pragma=synchronous(FULL)",
		sqlite.WithBackendOptions(backend.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))))
	b := monoprocess.NewMonoprocessBackend(sb)
	defer b.Close()

	wo := worker.DefaultOptions
	wo.MaxParallelWorkflowTasks = conc
	wo.MaxParallelActivityTasks = conc
	wo.SingleWorkerMode = true
	// -gwcache 0 keeps every in-flight workflow's executor cached (the
	// default, 128, is below the number of sagas in flight, so evicted
	// workflows replay their histories).
	wo.WorkflowExecutorCacheSize = n
	if gwCache > 0 {
		wo.WorkflowExecutorCacheSize = gwCache
	}
	w := worker.New(b, &wo)
	if err := w.RegisterWorkflow(Saga); err != nil {
		return 0, err
	}
	if err := w.RegisterActivity(step); err != nil {
		return 0, err
	}
	if err := w.RegisterActivity(undo); err != nil {
		return 0, err
	}
	runCtx, stop := context.WithCancel(ctx)
	if err := w.Start(runCtx); err != nil {
		stop()
		return 0, err
	}
	defer func() { stop(); w.WaitForCompletion() }()
	c := client.New(b)
	reader, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, err
	}
	defer reader.Close()
	reader.SetMaxOpenConns(1)

	stopProf := profile(prof)
	defer stopProf()
	start := time.Now()
	err = submit(n, func(i int) error {
		_, err := c.CreateWorkflowInstance(ctx, client.WorkflowInstanceOptions{InstanceID: fmt.Sprint("saga-", i)}, Saga)
		return err
	})
	if err != nil {
		return 0, err
	}
	submitted = time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		// Count on a connection of our own: go-workflows keeps one
		// connection (SetMaxOpenConns(1)), and polling through it
		// (GetStats) would take turns away from its worker.
		var c int
		if err := reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM instances WHERE completed_at IS NOT NULL").Scan(&c); err != nil {
			return 0, err
		}
		if c >= n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("go-workflows: %d of %d sagas completed after 10 minutes", c, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	s, err := b.GetStats(ctx)
	if err != nil {
		return 0, err
	}
	if s.ActiveWorkflowInstances != 0 {
		return 0, fmt.Errorf("go-workflows: %d sagas still active", s.ActiveWorkflowInstances)
	}
	return d, nil
}
