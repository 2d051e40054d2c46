package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
	"github.com/switchyard/switchyard/retry"
)

var fast = saga.Policy{Backoff: retry.Backoff{Kind: retry.Fixed, Base: time.Millisecond, Jitter: retry.NoJitter}}

// journal records what steps did, in order, per saga.
type journal struct {
	mu  sync.Mutex
	log map[string][]string
}

func (j *journal) add(id, what string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		j.log = map[string][]string{}
	}
	j.log[id] = append(j.log[id], what)
}

func (j *journal) get(id string) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.log[id])
}

// run starts o.Run until the test ends.
func run(t *testing.T, o *saga.Orchestrator) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func wait(t *testing.T, o *saga.Orchestrator, id string) saga.Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	i, err := o.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for %s: %v (state %s, last error %q)", id, err, i.State, i.LastError)
	}
	return i
}

func newOrch(t *testing.T, db *store.DB, defs ...*saga.Definition) *saga.Orchestrator {
	t.Helper()
	o, err := saga.New(context.Background(), db, saga.Options{PollInterval: 50 * time.Millisecond, ClaimTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Register(defs...); err != nil {
		t.Fatal(err)
	}
	return o
}

// fourSteps builds a saga whose steps journal their runs; fail says which
// step's action fails (and how) and which compensation fails.
func fourSteps(name string, j *journal, failAction func(step string, sc *saga.StepContext) error, failComp func(step string, sc *saga.StepContext) error) *saga.Definition {
	def := &saga.Definition{Name: name, Retry: fast}
	for _, s := range []string{"reserve", "charge", "notify", "ship"} {
		def.Steps = append(def.Steps, saga.Step{
			Name: s,
			Action: func(ctx context.Context, sc *saga.StepContext) error {
				if failAction != nil {
					if err := failAction(s, sc); err != nil {
						j.add(sc.SagaID, "fail "+s)
						return err
					}
				}
				var d []string
				if err := sc.Data(&d); err != nil {
					return err
				}
				j.add(sc.SagaID, "do "+s)
				return sc.SetData(append(d, s))
			},
			Compensation: func(ctx context.Context, sc *saga.StepContext) error {
				if failComp != nil {
					if err := failComp(s, sc); err != nil {
						j.add(sc.SagaID, "comp-fail "+s)
						return err
					}
				}
				j.add(sc.SagaID, "undo "+s+" key="+sc.IdempotencyKey)
				return nil
			},
		})
	}
	def.Steps[2].Compensation = nil // notifying has nothing to undo
	return def
}

func TestSaga(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()

		t.Run("completes", func(t *testing.T) {
			j := &journal{}
			def := fourSteps("ok", j, nil, nil)
			o := newOrch(t, db, def)
			run(t, o)
			if err := o.Start(ctx, def, "ok-1", []string{"start"}); err != nil {
				t.Fatal(err)
			}
			i := wait(t, o, "ok-1")
			if i.State != saga.Completed {
				t.Fatalf("state %s, want completed (%+v)", i.State, i)
			}
			if got := string(i.Data); got != `["start","reserve","charge","notify","ship"]` {
				t.Errorf("data %s", got)
			}
			if got, want := j.get("ok-1"), []string{"do reserve", "do charge", "do notify", "do ship"}; !slices.Equal(got, want) {
				t.Errorf("journal %q, want %q", got, want)
			}
			if len(i.History) != 5 || i.History[0].Phase != "start" || i.History[4].Step != "ship" || i.History[4].Outcome != "ok" {
				t.Errorf("history %+v", i.History)
			}
		})

		t.Run("compensates in reverse", func(t *testing.T) {
			j := &journal{}
			def := fourSteps("fail3", j, func(step string, sc *saga.StepContext) error {
				if step == "ship" {
					return errors.New("warehouse closed")
				}
				return nil
			}, nil)
			o := newOrch(t, db, def)
			run(t, o)
			if err := o.Start(ctx, def, "f-1", []string{}); err != nil {
				t.Fatal(err)
			}
			i := wait(t, o, "f-1")
			if i.State != saga.Compensated || i.FailedStep != "ship" || !strings.Contains(i.LastError, "warehouse closed") {
				t.Fatalf("got %s failed=%q err=%q", i.State, i.FailedStep, i.LastError)
			}
			want := []string{"do reserve", "do charge", "do notify", "fail ship", "fail ship", "fail ship",
				"undo charge key=f-1/charge/compensate", "undo reserve key=f-1/reserve/compensate"}
			if got := j.get("f-1"); !slices.Equal(got, want) {
				t.Errorf("journal\n%q\nwant\n%q", got, want)
			}
			var outcomes []string
			for _, e := range i.History {
				outcomes = append(outcomes, fmt.Sprintf("%s:%s:%d:%s", e.Phase, e.Step, e.Attempt, e.Outcome))
			}
			wantH := []string{":0:start:ok", "action:reserve:1:ok", "action:charge:1:ok", "action:notify:1:ok", "action:ship:1:error",
				"action:ship:2:error", "action:ship:3:failed", "compensation:charge:1:ok", "compensation:reserve:1:ok"}
			wantH[0] = "start::0:ok"
			if !slices.Equal(outcomes, wantH) {
				t.Errorf("history\n%q\nwant\n%q", outcomes, wantH)
			}
		})

		t.Run("permanent error skips retries", func(t *testing.T) {
			j := &journal{}
			def := fourSteps("perm", j, func(step string, sc *saga.StepContext) error {
				if step == "charge" {
					return saga.Permanent(errors.New("card declined"))
				}
				return nil
			}, nil)
			o := newOrch(t, db, def)
			run(t, o)
			o.Start(ctx, def, "p-1", []string{})
			i := wait(t, o, "p-1")
			want := []string{"do reserve", "fail charge", "undo reserve key=p-1/reserve/compensate"}
			if got := j.get("p-1"); i.State != saga.Compensated || !slices.Equal(got, want) {
				t.Errorf("%s %q, want compensated %q", i.State, got, want)
			}
		})

		t.Run("flaky step retried", func(t *testing.T) {
			j := &journal{}
			def := fourSteps("flaky", j, func(step string, sc *saga.StepContext) error {
				if step == "charge" && sc.Attempt < 3 {
					return fmt.Errorf("timeout %d", sc.Attempt)
				}
				return nil
			}, nil)
			o := newOrch(t, db, def)
			run(t, o)
			o.Start(ctx, def, "fl-1", []string{})
			i := wait(t, o, "fl-1")
			if i.State != saga.Completed || len(j.get("fl-1")) != 6 {
				t.Errorf("%s %q", i.State, j.get("fl-1"))
			}
		})

		t.Run("parks and retries", func(t *testing.T) {
			j := &journal{}
			var fixed atomic.Bool
			def := fourSteps("park", j, func(step string, sc *saga.StepContext) error {
				if step == "ship" {
					return saga.Permanent(errors.New("no stock"))
				}
				return nil
			}, func(step string, sc *saga.StepContext) error {
				if step == "reserve" && !fixed.Load() {
					return errors.New("inventory service down")
				}
				return nil
			})
			o := newOrch(t, db, def)
			run(t, o)
			o.Start(ctx, def, "pk-1", []string{})
			i := wait(t, o, "pk-1")
			if i.State != saga.Parked || i.Step != "reserve" || !strings.Contains(i.LastError, "inventory service down") {
				t.Fatalf("got %s at %q: %q", i.State, i.Step, i.LastError)
			}
			l, err := o.List(ctx, saga.Filter{States: []saga.State{saga.Parked}, Definition: "park"})
			if err != nil || len(l) != 1 || l[0].ID != "pk-1" {
				t.Fatalf("List parked: %v %+v", err, l)
			}
			if err := o.Retry(ctx, "ok-nonexistent"); !errors.Is(err, saga.ErrNotFound) {
				t.Errorf("Retry of a missing saga: %v", err)
			}
			fixed.Store(true)
			if err := o.Retry(ctx, "pk-1"); err != nil {
				t.Fatal(err)
			}
			if err := o.Retry(ctx, "pk-1"); !errors.Is(err, saga.ErrNotParked) {
				// It may already have finished: then it is compensated, still not parked.
				t.Errorf("second Retry: %v", err)
			}
			i = wait(t, o, "pk-1")
			want := []string{"do reserve", "do charge", "do notify", "fail ship",
				"undo charge key=pk-1/charge/compensate",
				"comp-fail reserve", "comp-fail reserve", "comp-fail reserve", "comp-fail reserve", "comp-fail reserve",
				"undo reserve key=pk-1/reserve/compensate"}
			if got := j.get("pk-1"); i.State != saga.Compensated || !slices.Equal(got, want) {
				t.Errorf("%s\n%q\nwant\n%q", i.State, got, want)
			}
			last := i.History[len(i.History)-2]
			if last.Phase != "retry" || last.Outcome != "resumed" {
				t.Errorf("history before the last step: %+v", last)
			}
		})

		t.Run("start in caller transaction", func(t *testing.T) {
			j := &journal{}
			def := fourSteps("tx", j, nil, nil)
			o := newOrch(t, db, def)
			boom := errors.New("business write failed")
			err := db.InTx(ctx, func(tx *store.Tx) error {
				if err := saga.Start(ctx, tx, def, "tx-1", []string{}); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatal(err)
			}
			if _, err := o.Get(ctx, "tx-1"); !errors.Is(err, saga.ErrNotFound) {
				t.Fatalf("rolled back Start left a saga: %v", err)
			}
			for range 2 {
				if err := db.InTx(ctx, func(tx *store.Tx) error { return saga.Start(ctx, tx, def, "tx-1", []string{"first"}) }); err != nil {
					t.Fatal(err)
				}
			}
			other := fourSteps("other", j, nil, nil)
			if err := o.Start(ctx, other, "tx-1", nil); !errors.Is(err, saga.ErrDefinition) {
				t.Errorf("same id, other definition: %v", err)
			}
			run(t, o)
			i := wait(t, o, "tx-1")
			if i.State != saga.Completed || len(j.get("tx-1")) != 4 {
				t.Errorf("%s %q: started twice must run once", i.State, j.get("tx-1"))
			}
		})

		t.Run("async step", func(t *testing.T) {
			var o *saga.Orchestrator
			commands := make(chan string, 16)
			def := &saga.Definition{Name: "async", Retry: fast, Steps: []saga.Step{
				{Name: "book", Action: func(ctx context.Context, sc *saga.StepContext) error { return nil },
					Compensation: func(ctx context.Context, sc *saga.StepContext) error { return sc.SetData("unbooked") }},
				{Name: "pay", Timeout: 300 * time.Millisecond, Retry: saga.Policy{MaxAttempts: 2},
					Action: func(ctx context.Context, sc *saga.StepContext) error {
						commands <- sc.IdempotencyKey
						return nil
					},
					OnReply: func(ctx context.Context, sc *saga.StepContext, reply []byte) error {
						if string(reply) == `"declined"` {
							return saga.Permanent(errors.New("declined"))
						}
						return sc.SetData(json.RawMessage(reply))
					}},
			}}
			o = newOrch(t, db, def)
			// The payment service: approves pay for a-ok, declines for
			// a-no, ignores a-lost (so its step times out), and answers
			// a-early twice, once before the command was even recorded.
			go func() {
				for key := range commands {
					id := strings.TrimSuffix(key, "/pay")
					var reply string
					switch id {
					case "a-ok", "a-early":
						reply = `"paid"`
					case "a-no":
						reply = `"declined"`
					default:
						continue
					}
					go func() {
						if _, err := o.Deliver(ctx, id, "pay", []byte(reply)); err != nil {
							t.Error(err)
						}
					}()
				}
			}()
			t.Cleanup(func() { close(commands) })
			run(t, o)
			for _, id := range []string{"a-ok", "a-no", "a-lost", "a-early"} {
				if err := o.Start(ctx, def, id, "new"); err != nil {
					t.Fatal(err)
				}
			}
			if i := wait(t, o, "a-ok"); i.State != saga.Completed || string(i.Data) != `"paid"` {
				t.Errorf("a-ok: %s %s", i.State, i.Data)
			}
			if i := wait(t, o, "a-no"); i.State != saga.Compensated || string(i.Data) != `"unbooked"` || i.LastError != "declined" {
				t.Errorf("a-no: %s %s %q", i.State, i.Data, i.LastError)
			}
			i := wait(t, o, "a-lost")
			if i.State != saga.Compensated || !strings.Contains(i.LastError, "no reply") {
				t.Errorf("a-lost: %s %q", i.State, i.LastError)
			}
			timeouts := 0
			for _, e := range i.History {
				if e.Outcome == "timeout" || (e.Outcome == "failed" && e.Phase == "reply") {
					timeouts++
				}
			}
			if timeouts != 2 {
				t.Errorf("a-lost: %d timed out attempts, want 2: %+v", timeouts, i.History)
			}
			wait(t, o, "a-early")
			if ok, err := o.Deliver(ctx, "a-ok", "pay", []byte(`"late duplicate"`)); ok || err != nil {
				t.Errorf("late reply to a completed saga: %v %v", ok, err)
			}
			if _, err := o.Deliver(ctx, "a-ok", "pay", []byte{0xff, 0}); err == nil {
				t.Error("binary reply accepted")
			}
		})

		t.Run("early reply", func(t *testing.T) {
			// The reply is delivered while the action is still running,
			// before the orchestrator recorded that it waits.
			var o *saga.Orchestrator
			def := &saga.Definition{Name: "early", Steps: []saga.Step{{Name: "ask",
				Action: func(ctx context.Context, sc *saga.StepContext) error {
					ok, err := o.Deliver(ctx, sc.SagaID, "ask", []byte(`"fast"`))
					if !ok || err != nil {
						return fmt.Errorf("deliver: %v %v", ok, err)
					}
					return nil
				},
				OnReply: func(ctx context.Context, sc *saga.StepContext, reply []byte) error {
					return sc.SetData(json.RawMessage(reply))
				},
				Timeout: time.Minute}}}
			o = newOrch(t, db, def)
			run(t, o)
			o.Start(ctx, def, "e-1", nil)
			if i := wait(t, o, "e-1"); i.State != saga.Completed || string(i.Data) != `"fast"` {
				t.Errorf("%s %s", i.State, i.Data)
			}
		})

		t.Run("changed definition parks", func(t *testing.T) {
			noop := func(ctx context.Context, sc *saga.StepContext) error { return nil }
			v1 := &saga.Definition{Name: "changing", Steps: []saga.Step{{Name: "a", Action: noop}, {Name: "b", Action: noop}}}
			v2 := &saga.Definition{Name: "changing", Steps: []saga.Step{{Name: "b2", Action: noop}, {Name: "c", Action: noop}}}
			if err := saga.Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return saga.Start(ctx, tx, v1, "ch-1", nil) }); err != nil {
				t.Fatal(err)
			}
			o := newOrch(t, db, v2)
			run(t, o)
			i := wait(t, o, "ch-1")
			if i.State != saga.Parked || !strings.Contains(i.LastError, `no step "a" at position 1`) {
				t.Errorf("%s %q", i.State, i.LastError)
			}
		})

		t.Run("fenced write after takeover", func(t *testing.T) {
			// While the first execution of a step runs, another replica
			// takes the saga over (simulated: the claim token moves on).
			// The stalled execution's fenced write is refused, its
			// outcome is not recorded, and the saga goes on.
			entered, proceed := make(chan struct{}), make(chan struct{})
			var runs atomic.Int64
			var fenceErrs []error
			var mu sync.Mutex
			def := &saga.Definition{Name: "fence", Steps: []saga.Step{{Name: "write",
				Action: func(ctx context.Context, sc *saga.StepContext) error {
					if runs.Add(1) == 1 {
						close(entered)
						<-proceed
					}
					err := db.InTx(context.Background(), func(tx *store.Tx) error { return sc.Fence(ctx, tx) })
					mu.Lock()
					fenceErrs = append(fenceErrs, err)
					mu.Unlock()
					return err
				}}}}
			o, err := saga.New(ctx, db, saga.Options{PollInterval: 50 * time.Millisecond, ClaimTTL: 400 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			o.Register(def)
			run(t, o)
			o.Start(ctx, def, "fe-1", nil)
			<-entered
			if _, err := db.Exec(ctx, "UPDATE sy_sagas SET claim_token = claim_token + 1 WHERE id = ?", "fe-1"); err != nil {
				t.Fatal(err)
			}
			close(proceed)
			i := wait(t, o, "fe-1")
			mu.Lock()
			defer mu.Unlock()
			if i.State != saga.Completed || len(fenceErrs) != 2 || !errors.Is(fenceErrs[0], saga.ErrClaimLost) || fenceErrs[1] != nil {
				t.Fatalf("state %s, fence results %v; want the first refused with ErrClaimLost, the second to pass", i.State, fenceErrs)
			}
			for _, e := range i.History {
				if e.Outcome == "error" {
					t.Errorf("the stalled execution's failure was recorded: %+v", e)
				}
			}
		})

		t.Run("replicas never run a saga at once", func(t *testing.T) {
			var mu sync.Mutex
			busy := map[string]bool{}
			var runs, overlaps atomic.Int64
			step := func(ctx context.Context, sc *saga.StepContext) error {
				mu.Lock()
				if busy[sc.SagaID] {
					overlaps.Add(1)
				}
				busy[sc.SagaID] = true
				mu.Unlock()
				runs.Add(1)
				time.Sleep(time.Millisecond)
				mu.Lock()
				busy[sc.SagaID] = false
				mu.Unlock()
				return nil
			}
			def := &saga.Definition{Name: "rep", Steps: []saga.Step{{Name: "a", Action: step}, {Name: "b", Action: step}, {Name: "c", Action: step}}}
			var os []*saga.Orchestrator
			for range 3 {
				o := newOrch(t, db, def)
				run(t, o)
				os = append(os, o)
			}
			const n = 40
			for k := range n {
				if err := os[k%3].Start(ctx, def, fmt.Sprintf("r-%02d", k), nil); err != nil {
					t.Fatal(err)
				}
			}
			for k := range n {
				if i := wait(t, os[0], fmt.Sprintf("r-%02d", k)); i.State != saga.Completed {
					t.Fatalf("%s: %s", i.ID, i.State)
				}
			}
			if overlaps.Load() != 0 || runs.Load() != 3*n {
				t.Errorf("%d overlapping runs, %d runs for %d steps", overlaps.Load(), runs.Load(), 3*n)
			}
		})
	})
}

func TestDefinitionValidate(t *testing.T) {
	noop := func(ctx context.Context, sc *saga.StepContext) error { return nil }
	bad := &saga.Definition{Steps: []saga.Step{{Name: "a/b", Action: noop}, {Name: "x"}, {Name: "x", Action: noop}, {Action: noop, Timeout: -1}}}
	err := bad.Validate()
	for _, want := range []string{"empty name", "'/' is not allowed", "no Action", "name used twice", "negative Timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to say %q", err, want)
		}
	}
	if err := (&saga.Definition{Name: "x"}).Validate(); err == nil || !strings.Contains(err.Error(), "no steps") {
		t.Errorf("no steps: %v", err)
	}
}
