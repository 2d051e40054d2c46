package saga_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
	"github.com/switchyard/switchyard/retry"
)

// The crash test: orchestrator replicas run in child processes (this test
// binary, re-executed with crashChildEnv set) over many four-step sagas;
// the test SIGKILLs one of them at a random moment, restarts it, starts
// more sagas, and does it again. Steps record every execution and their
// effect (once per idempotency key) in tables of the same database. At
// the end every saga must be completed, compensated, or parked where
// designed (then retried to compensated), no effect applied twice, the
// steps of a saga executed in order and never after a later step, and
// compensations run in reverse exactly for the completed steps.

const crashChildEnv = "SAGA_CRASH_CHILD"

var crashKills = flag.Int("saga.kills", envInt("SAGA_CRASH_KILLS", defaultKills()), "SIGKILLs per dialect in TestCrash")

// defaultKills keeps the crash test near 25 s on a 2-core machine; set
// SAGA_CRASH_KILLS (or -saga.kills) for a longer run.
func defaultKills() int {
	if raceEnabled {
		return 5
	}
	return 16
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

var crashTables = map[store.Dialect][]store.Migration{
	store.SQLite: {{Version: 1, Name: "crash test effects", SQL: `
CREATE TABLE crash_exec (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, saga TEXT NOT NULL, step INTEGER NOT NULL, comp INTEGER NOT NULL);
CREATE TABLE crash_effect (key TEXT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE TABLE crash_control (name TEXT PRIMARY KEY);`}},
	store.Postgres: {{Version: 1, Name: "crash test effects", SQL: `
CREATE TABLE crash_exec (seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, saga TEXT NOT NULL, step INTEGER NOT NULL, comp INTEGER NOT NULL);
CREATE TABLE crash_effect (key TEXT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE TABLE crash_control (name TEXT PRIMARY KEY);`}},
}

// crashDef is the saga the crash test runs. The kind of a saga is the
// prefix of its id: ok, flaky (steps 2 and 4 fail their first two
// executions), fail (step 3 fails for good), park (step 3 fails and the
// compensation of step 1 fails until the row "fixed" is in crash_control).
func crashDef(db *store.DB) *saga.Definition {
	def := &saga.Definition{Name: "crash", Retry: saga.Policy{MaxAttempts: 4, CompensationAttempts: 3,
		Backoff: retry.Backoff{Kind: retry.Fixed, Base: 5 * time.Millisecond, Jitter: retry.NoJitter}}}
	for k := 1; k <= 4; k++ {
		def.Steps = append(def.Steps, saga.Step{
			Name:         "s" + strconv.Itoa(k),
			Timeout:      10 * time.Second,
			Action:       func(ctx context.Context, sc *saga.StepContext) error { return crashStep(ctx, db, sc, k, false) },
			Compensation: func(ctx context.Context, sc *saga.StepContext) error { return crashStep(ctx, db, sc, k, true) },
		})
	}
	return def
}

var errDesigned = errors.New("designed failure")

func crashStep(ctx context.Context, db *store.DB, sc *saga.StepContext, step int, comp bool) error {
	kind, _, _ := strings.Cut(sc.SagaID, "-")
	c := 0
	if comp {
		c = 1
	}
	// A little work, so that kills land inside steps too.
	time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
	return db.InTx(ctx, func(tx *store.Tx) error {
		// The effect is a write in the saga's database: fence it, so an
		// execution whose replica lost the saga cannot land late.
		if err := sc.Fence(ctx, tx); err != nil {
			return err
		}
		var seq int64
		if err := tx.QueryRow(ctx, "INSERT INTO crash_exec (key, saga, step, comp) VALUES (?, ?, ?, ?) RETURNING seq",
			sc.IdempotencyKey, sc.SagaID, step, c).Scan(&seq); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM crash_exec WHERE key = ?", sc.IdempotencyKey).Scan(&n); err != nil {
			return err
		}
		switch {
		case !comp && step == 3 && (kind == "fail" || kind == "park"):
			return crashFail(ctx, tx, saga.Permanent(errDesigned))
		case !comp && kind == "flaky" && (step == 2 || step == 4) && n <= 2:
			return crashFail(ctx, tx, fmt.Errorf("flaky execution %d", n))
		case comp && kind == "park" && step == 1:
			var fixed int
			if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM crash_control WHERE name = 'fixed'").Scan(&fixed); err != nil {
				return err
			}
			if fixed == 0 {
				return crashFail(ctx, tx, errors.New("refund service down"))
			}
		}
		_, err := tx.Exec(ctx, "INSERT INTO crash_effect (key, seq) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", sc.IdempotencyKey, seq)
		return err
	})
}

// crashFail commits the execution record and returns err: InTx would roll
// back on an error, so the failure is carried out of it in a wrapper.
func crashFail(ctx context.Context, tx *store.Tx, err error) error {
	if cerr := tx.Commit(); cerr != nil {
		return cerr
	}
	return err
}

// TestCrashChild is the replica process of TestCrash; it does nothing in
// a normal run.
func TestCrashChild(t *testing.T) {
	dsn := os.Getenv(crashChildEnv)
	if dsn == "" {
		t.Skip("the crash test's child process")
	}
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o, err := saga.New(ctx, db, saga.Options{Concurrency: 8, ClaimTTL: time.Second, PollInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err == nil {
		err = o.Register(crashDef(db))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("ready")
	o.Run(ctx)
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	t.Run("sqlite", func(t *testing.T) { crashTest(t, storetest.SQLitePath(t)) })
	t.Run("postgres", func(t *testing.T) { crashTest(t, storetest.PostgresDSN(t)) })
}

// replica is a running child process.
type replica struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
}

func startReplica(t *testing.T, dsn string) *replica {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd, stderr: &strings.Builder{}}
	cmd.Stderr = &lockedWriter{w: r.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		br := bufio.NewReader(out)
		line, err := br.ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, br)
	}()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("replica did not start: %v; stderr: %s", err, r.stderr)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("replica not ready in 30 s; stderr: %s", r.stderr)
	}
	return r
}

func (r *replica) kill() {
	r.cmd.Process.Kill() // SIGKILL
	r.cmd.Wait()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func crashTest(t *testing.T, dsn string) {
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "crash-test", crashTables[db.Dialect]); err != nil {
		t.Fatal(err)
	}
	if err := saga.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	def := crashDef(db)
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d, %d kills", seed, *crashKills)

	kinds := []string{"ok", "flaky", "fail", "park", "ok", "flaky", "fail"}
	var ids []string
	startBatch := func(n int) {
		for range n {
			id := fmt.Sprintf("%s-%04d", kinds[len(ids)%len(kinds)], len(ids))
			if err := db.InTx(ctx, func(tx *store.Tx) error { return saga.Start(ctx, tx, def, id, nil) }); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}

	// Two replicas; each round kills one at a random moment and starts a
	// new one in its place, with a few more sagas.
	startBatch(8)
	reps := []*replica{startReplica(t, dsn), startReplica(t, dsn)}
	defer func() {
		for _, r := range reps {
			if r != nil {
				r.kill()
			}
		}
	}()
	start := time.Now()
	for k := 0; k < *crashKills; k++ {
		time.Sleep(time.Duration(rnd.IntN(120)) * time.Millisecond) // random moment, not a wait for a condition
		v := rnd.IntN(len(reps))
		reps[v].kill()
		if s := reps[v].stderr.String(); strings.Contains(s, "level=ERROR") {
			t.Logf("replica stderr before kill %d: %s", k, s)
		}
		startBatch(6)
		reps[v] = startReplica(t, dsn)
	}
	elapsed := time.Since(start)
	for i := range reps {
		reps[i].kill()
		reps[i] = nil
	}

	// Finish in this process: everything not parked must end, the parked
	// ones get fixed and retried.
	o, err := saga.New(ctx, db, saga.Options{PollInterval: 50 * time.Millisecond, ClaimTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o.Register(def)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	waitAll := func() map[string]saga.Info {
		out := map[string]saga.Info{}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for _, id := range ids {
			i, err := o.Wait(wctx, id)
			if err != nil {
				i.History = nil
				t.Fatalf("saga %s did not finish: %v (%+v, now %v)", id, err, i, time.Now())
			}
			out[id] = i
		}
		return out
	}
	drainStart := time.Now()
	infos := waitAll()
	t.Logf("drained in %v", time.Since(drainStart))
	parked := 0
	for _, id := range ids {
		i := infos[id]
		kind, _, _ := strings.Cut(id, "-")
		want := map[string]saga.State{"ok": saga.Completed, "flaky": saga.Completed, "fail": saga.Compensated, "park": saga.Parked}[kind]
		if i.State != want {
			t.Errorf("%s: %s, want %s (step %s, error %q)", id, i.State, want, i.Step, i.LastError)
		}
		if kind == "park" {
			parked++
			if i.Step != "s1" || !strings.Contains(i.LastError, "refund service down") {
				t.Errorf("%s parked at %q with %q, want s1 and the refund error", id, i.Step, i.LastError)
			}
		}
	}
	if _, err := db.Exec(ctx, "INSERT INTO crash_control (name) VALUES ('fixed')"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if strings.HasPrefix(id, "park-") {
			if err := o.Retry(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	drainStart = time.Now()
	infos = waitAll()
	t.Logf("retried parked sagas in %v", time.Since(drainStart))
	for _, id := range ids {
		if strings.HasPrefix(id, "park-") && infos[id].State != saga.Compensated {
			t.Errorf("%s after Retry: %s (%q)", id, infos[id].State, infos[id].LastError)
		}
	}

	// The effects.
	type exe struct {
		seq        int64
		key        string
		step, comp int
	}
	execs := map[string][]exe{}
	rows, err := db.Query(ctx, "SELECT seq, key, saga, step, comp FROM crash_exec ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for rows.Next() {
		var e exe
		var id string
		if err := rows.Scan(&e.seq, &e.key, &id, &e.step, &e.comp); err != nil {
			t.Fatal(err)
		}
		execs[id] = append(execs[id], e)
		total++
	}
	rows.Close()
	effects := map[string]int64{}
	rows, err = db.Query(ctx, "SELECT key, seq FROM crash_effect")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var s int64
		rows.Scan(&k, &s)
		effects[k] = s
	}
	rows.Close()
	reruns := 0 // executions of a key whose effect was already applied
	for _, id := range ids {
		kind, _, _ := strings.Cut(id, "-")
		var order []string // the saga's executions as "do N" / "undo N", repeats folded
		for _, e := range execs[id] {
			if s, ok := effects[e.key]; ok && s < e.seq {
				reruns++
			}
			w := fmt.Sprintf("do %d", e.step)
			if e.comp == 1 {
				w = fmt.Sprintf("undo %d", e.step)
			}
			if len(order) == 0 || order[len(order)-1] != w {
				order = append(order, w)
			}
		}
		var want []string
		var applied []string
		switch kind {
		case "ok", "flaky":
			want = []string{"do 1", "do 2", "do 3", "do 4"}
			applied = []string{"s1", "s2", "s3", "s4"}
		case "fail", "park":
			want = []string{"do 1", "do 2", "do 3", "undo 2", "undo 1"}
			applied = []string{"s1", "s2", "s2/compensate", "s1/compensate"}
		}
		if !slices.Equal(order, want) {
			t.Errorf("%s executed %q, want %q (in order, never back to an earlier step)", id, order, want)
		}
		var got []string
		for _, suffix := range []string{"s1", "s2", "s3", "s4", "s1/compensate", "s2/compensate", "s3/compensate", "s4/compensate"} {
			if _, ok := effects[id+"/"+suffix]; ok {
				got = append(got, suffix)
			}
		}
		slices.Sort(got)
		slices.Sort(applied)
		if !slices.Equal(got, applied) {
			t.Errorf("%s applied %q, want %q", id, got, applied)
		}
		if kind == "fail" || kind == "park" {
			if effects[id+"/s2/compensate"] > effects[id+"/s1/compensate"] {
				t.Errorf("%s: compensation of s1 applied before that of s2", id)
			}
		}
	}
	t.Logf("%s: %d kills in %v, %d sagas (%d parked and retried), %d step executions, %d effects applied (each once), %d re-executions of an applied step absorbed by its idempotency key",
		db.Dialect, *crashKills, elapsed.Round(time.Millisecond), len(ids), parked, total, len(effects), reruns)
}
