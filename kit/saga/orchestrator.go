package saga

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/store"
)

// Options configure an Orchestrator. The zero value is usable.
type Options struct {
	// Owner names this replica in claims; unique per process. Default
	// host name, process id and a random suffix.
	Owner string
	// Concurrency is how many sagas this replica drives at once.
	// Default 16.
	Concurrency int
	// ClaimTTL is how long a claim on a saga lasts unless renewed; the
	// replica renews its claims every ClaimTTL/3. A dead replica's sagas
	// are taken over after at most ClaimTTL. Default 30 s.
	ClaimTTL time.Duration
	// PollInterval is the longest the replica waits between looks for due
	// sagas when no wake-up arrives (wake-ups come from Start, Deliver
	// and Retry through store.Notify). Default 1 s.
	PollInterval time.Duration
	// Logger receives errors of the database and of unknown definitions.
	// Default slog.Default().
	Logger *slog.Logger
	// TracerProvider records a span per step run ("saga NAME STEP": an
	// action, a reply or a compensation, with its phase, attempt and
	// outcome), a child of the span that called Start (its traceparent is
	// stored with the saga). Default: OpenTelemetry's global provider
	// (no-op unless installed, see package telemetry).
	TracerProvider trace.TracerProvider
}

// Orchestrator drives the sagas of the definitions registered with it.
// Its methods are safe for concurrent use.
type Orchestrator struct {
	db     *store.DB
	opts   Options
	tracer trace.Tracer

	mu   sync.RWMutex
	defs map[string]*Definition

	saves chan *saveReq // to the committer

	claimsMu  sync.Mutex
	claims    map[*claim]struct{}
	renewedAt atomic.Int64 // unix ms when the last successful renewal started
}

// New returns an orchestrator over db, after creating or upgrading the
// saga tables. Register definitions, then Run.
func New(ctx context.Context, db *store.DB, opts Options) (*Orchestrator, error) {
	if opts.Concurrency < 0 || opts.ClaimTTL < 0 || opts.PollInterval < 0 {
		return nil, fmt.Errorf("saga: negative option in %+v", opts)
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		opts.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 16
	}
	if opts.ClaimTTL == 0 {
		opts.ClaimTTL = 30 * time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Orchestrator{db: db, opts: opts, tracer: tp.Tracer("github.com/switchyard/switchyard/kit/saga"), defs: map[string]*Definition{}, claims: map[*claim]struct{}{},
		saves: make(chan *saveReq, maxBatch)}, nil
}

// Owner is the name this replica claims sagas under.
func (o *Orchestrator) Owner() string { return o.opts.Owner }

// Register adds definitions this replica drives. A name registered twice
// is an error, as is an invalid definition.
func (o *Orchestrator) Register(defs ...*Definition) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range defs {
		if err := d.Validate(); err != nil {
			return err
		}
		if _, dup := o.defs[d.Name]; dup {
			return fmt.Errorf("saga: definition %q registered twice", d.Name)
		}
		o.defs[d.Name] = d
	}
	return nil
}

func (o *Orchestrator) def(name string) *Definition {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.defs[name]
}

// Start starts a saga in a transaction of its own (see the package
// function Start to start one atomically with a business write).
func (o *Orchestrator) Start(ctx context.Context, def *Definition, id string, input any) error {
	return o.db.InTx(ctx, func(tx *store.Tx) error { return Start(ctx, tx, def, id, input) })
}

// Deliver hands over a reply in a transaction of its own (see the package
// function Deliver).
func (o *Orchestrator) Deliver(ctx context.Context, id, step string, reply []byte) (bool, error) {
	var ok bool
	err := o.db.InTx(ctx, func(tx *store.Tx) (err error) {
		ok, err = Deliver(ctx, tx, id, step, reply)
		return err
	})
	return ok, err
}

// Get returns a saga with its history (see the package function Get).
func (o *Orchestrator) Get(ctx context.Context, id string) (Info, error) { return Get(ctx, o.db, id) }

// List lists sagas (see the package function List).
func (o *Orchestrator) List(ctx context.Context, f Filter) ([]Info, error) { return List(ctx, o.db, f) }

// Retry resumes a parked saga (see the package function Retry).
func (o *Orchestrator) Retry(ctx context.Context, id string) error { return Retry(ctx, o.db, id) }

// Wait returns saga id once it is in a final state (Completed,
// Compensated or Parked), or ctx's error.
func (o *Orchestrator) Wait(ctx context.Context, id string) (Info, error) {
	wake, stop := o.db.Listen(doneChannel)
	defer stop()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		i, err := Get(ctx, o.db, id)
		if err != nil || i.State.Final() {
			return i, err
		}
		select {
		case <-ctx.Done():
			return i, ctx.Err()
		case <-wake:
		case <-t.C:
		}
	}
}

// doneChannel is notified when a saga reaches a final state.
const doneChannel = "sy_saga_done"

// row is a claimed saga as the driving replica holds it.
type row struct {
	id, name      string
	state         State
	step          int
	stepName      string
	attempt       int
	awaiting      bool
	reply         sql.NullString
	input, data   string
	failedStep    string
	lastError     string
	waitUntil     int64
	token         int64
	traceparent   string // of the span that started the saga
	releaseOnSave bool
}

const rowColumns = "id, name, state, step, step_name, attempt, awaiting, reply, input, data, failed_step, last_error, wait_until_ms, claim_token, traceparent"

func scanRow(sc interface{ Scan(...any) error }) (*row, error) {
	r := &row{}
	var state string
	var awaiting int
	err := sc.Scan(&r.id, &r.name, &state, &r.step, &r.stepName, &r.attempt, &awaiting, &r.reply, &r.input, &r.data,
		&r.failedStep, &r.lastError, &r.waitUntil, &r.token, &r.traceparent)
	r.state, r.awaiting = State(state), awaiting != 0
	return r, err
}

// ErrClaimLost means this replica's claim on the saga lapsed (its
// renewals did not get through in time) or another replica took the saga
// over: the step's outcome is dropped and the saga's current holder runs
// the step again under the same idempotency key. A step's context is
// cancelled when the claim is about to lapse, and StepContext.Fence
// refuses a write in the saga's database after it has.
var ErrClaimLost = errors.New("saga: claim on the saga lost")

// claim is a saga this replica drives, watched so that a step still
// running when the claim is about to lapse is cancelled.
type claim struct {
	id     string
	at     int64 // unix ms when the claiming statement started
	mu     sync.Mutex
	cancel context.CancelFunc // of the step running, if any
	lost   bool
}

func (c *claim) isLost() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// Run drives due sagas until ctx ends, then waits for the steps in
// flight to return (they see ctx cancelled) and returns nil. Errors of
// the database are logged and retried.
func (o *Orchestrator) Run(ctx context.Context) error {
	wake, stop := o.db.Listen(wakeChannel)
	defer stop()
	var wg sync.WaitGroup
	stopCommit, commitDone := make(chan struct{}), make(chan struct{})
	// SQLite has one writer; PostgreSQL commits in parallel (and its
	// server groups their fsyncs), so it gets several committers.
	committers := 1
	if o.db.Dialect == store.Postgres {
		committers = 4
	}
	var cwg sync.WaitGroup
	for range committers {
		cwg.Add(1)
		go func() { defer cwg.Done(); o.committer(stopCommit) }()
	}
	go func() { cwg.Wait(); close(commitDone) }()
	defer func() {
		wg.Wait() // the workers, which may still save
		close(stopCommit)
		<-commitDone
	}()
	wg.Add(1)
	go func() { defer wg.Done(); o.renewLoop(ctx) }()

	n := o.opts.Concurrency
	running := 0
	freed := make(chan struct{}, n)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Take back finished slots without blocking.
		for drained := false; !drained; {
			select {
			case <-freed:
				running--
			default:
				drained = true
			}
		}
		wait := time.Duration(0)
		if free := n - running; free > 0 {
			rows, at, err := o.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				o.opts.Logger.Error("saga: claiming due sagas", "err", err)
				wait = o.opts.PollInterval
			}
			for _, r := range rows {
				running++
				wg.Add(1)
				go func() {
					defer wg.Done()
					o.drive(ctx, r, at)
					freed <- struct{}{}
				}()
			}
			if err == nil && len(rows) < free {
				wait = o.untilDue(ctx)
			}
		} else {
			wait = time.Hour // a freed slot wakes us
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
			case <-freed:
				running--
			case <-timer.C:
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		} else if ctx.Err() != nil {
			return nil
		}
	}
}

// untilDue is how long until the next saga falls due (or a claim
// expires), at most PollInterval.
func (o *Orchestrator) untilDue(ctx context.Context) time.Duration {
	var next sql.NullInt64
	err := o.db.QueryRow(ctx, `SELECT MIN(CASE WHEN claim_until_ms > wait_until_ms THEN claim_until_ms ELSE wait_until_ms END)
		FROM sy_sagas WHERE state IN ('running', 'compensating')`).Scan(&next)
	if err != nil || !next.Valid {
		return o.opts.PollInterval
	}
	d := time.Until(time.UnixMilli(next.Int64)) + time.Millisecond
	return min(max(d, time.Millisecond), o.opts.PollInterval)
}

// claim takes up to n due, unclaimed sagas for this replica.
func (o *Orchestrator) claim(ctx context.Context, n int) ([]*row, int64, error) {
	now := time.Now().UnixMilli()
	lock := ""
	if o.db.Dialect == store.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	rs, err := o.db.Query(ctx, `UPDATE sy_sagas SET owner = ?, claim_until_ms = ?, claim_token = claim_token + 1
		WHERE claim_until_ms <= ? AND id IN (SELECT id FROM sy_sagas WHERE state IN ('running', 'compensating')
			AND wait_until_ms <= ? AND claim_until_ms <= ? ORDER BY wait_until_ms LIMIT ?`+lock+`)
		RETURNING `+rowColumns,
		o.opts.Owner, now+o.opts.ClaimTTL.Milliseconds(), now, now, now, n)
	if err != nil {
		return nil, now, err
	}
	defer rs.Close()
	var out []*row
	for rs.Next() {
		r, err := scanRow(rs)
		if err != nil {
			return out, now, err
		}
		out = append(out, r)
	}
	return out, now, rs.Err()
}

// renewLoop extends this replica's claims every ClaimTTL/4 and, between
// renewals, cancels the steps whose claim is about to lapse because
// renewals did not get through (a stalled database, a paused process).
func (o *Orchestrator) renewLoop(ctx context.Context) {
	ttl := o.opts.ClaimTTL
	t := time.NewTicker(max(ttl/8, time.Millisecond))
	defer t.Stop()
	var renewing atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(last) >= ttl/4 && renewing.CompareAndSwap(false, true) {
			last = time.Now()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer renewing.Store(false)
				now := time.Now().UnixMilli()
				// Only the sagas a worker drives: a claim left behind
				// (a worker that gave up) must lapse.
				args := []any{now + ttl.Milliseconds(), o.opts.Owner, now}
				o.claimsMu.Lock()
				for c := range o.claims {
					args = append(args, c.id)
				}
				o.claimsMu.Unlock()
				if len(args) == 3 {
					o.renewedAt.Store(now)
					return
				}
				// Rows a transition is writing right now are skipped
				// (the transition renews them itself): waiting for them
				// could deadlock with the committer's batch.
				skip := ""
				if o.db.Dialect == store.Postgres {
					skip = " FOR UPDATE SKIP LOCKED"
				}
				if _, err := o.db.Exec(ctx, "UPDATE sy_sagas SET claim_until_ms = ? WHERE id IN (SELECT id FROM sy_sagas WHERE owner = ? AND claim_until_ms > ? AND id IN (?"+
					strings.Repeat(", ?", len(args)-4)+")"+skip+")", args...); err != nil {
					if ctx.Err() == nil {
						o.opts.Logger.Error("saga: renewing claims", "err", err)
					}
					return
				}
				o.renewedAt.Store(now)
			}()
		}
		o.watch()
	}
}

// validUntil is when c lapses unless renewed again.
func (o *Orchestrator) validUntil(c *claim) int64 {
	return max(c.at, o.renewedAt.Load()) + o.opts.ClaimTTL.Milliseconds()
}

// claimMargin is how long before its claim lapses a step is cancelled.
func (o *Orchestrator) claimMargin() int64 { return max(o.opts.ClaimTTL.Milliseconds()/4, 1) }

// watch cancels the steps whose claim lapses within claimMargin.
func (o *Orchestrator) watch() {
	now := time.Now().UnixMilli()
	o.claimsMu.Lock()
	defer o.claimsMu.Unlock()
	for c := range o.claims {
		if now >= o.validUntil(c)-o.claimMargin() {
			c.mu.Lock()
			c.lost = true
			if c.cancel != nil {
				c.cancel()
			}
			c.mu.Unlock()
		}
	}
}

// release gives up the claim on r without another change (shutdown, an
// unknown definition), so that a replica can take it after delay.
func (o *Orchestrator) release(r *row, delay time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := o.db.Exec(ctx, "UPDATE sy_sagas SET owner = '', claim_until_ms = ? WHERE id = ? AND claim_token = ?",
		time.Now().Add(delay).UnixMilli(), r.id, r.token); err != nil {
		o.opts.Logger.Error("saga: releasing claim", "saga", r.id, "err", err)
	}
}

// holdLimit is the longest a worker keeps a claimed saga waiting for its
// next attempt instead of handing it back to the pool.
func (o *Orchestrator) holdLimit() time.Duration { return min(o.opts.ClaimTTL/3, time.Second) }

// drive runs the claimed saga r step by step while it is due and the
// claim holds.
func (o *Orchestrator) drive(ctx context.Context, r *row, claimedAt int64) {
	c := &claim{id: r.id, at: claimedAt}
	o.claimsMu.Lock()
	o.claims[c] = struct{}{}
	o.claimsMu.Unlock()
	defer func() {
		o.claimsMu.Lock()
		delete(o.claims, c)
		o.claimsMu.Unlock()
	}()
	for {
		if ctx.Err() != nil {
			o.release(r, 0)
			return
		}
		if c.isLost() || time.Now().UnixMilli() >= o.validUntil(c)-o.claimMargin() {
			o.release(r, 0) // fenced: a no-op if another replica has it
			return
		}
		def := o.def(r.name)
		if def == nil {
			o.opts.Logger.Warn("saga: definition not registered here; leaving the saga to a replica that has it", "saga", r.id, "definition", r.name)
			o.release(r, o.opts.ClaimTTL)
			return
		}
		if err := o.advance(ctx, c, def, r); err != nil {
			if ctx.Err() != nil {
				o.release(r, 0)
				return
			}
			if errors.Is(err, ErrClaimLost) {
				o.release(r, 0) // fenced: a no-op if another replica has it
				return
			}
			// The database refused the transition: the step runs again,
			// after a pause so that a lasting fault does not spin.
			o.opts.Logger.Error("saga: recording a transition (the step runs again)", "saga", r.id, "err", err)
			o.release(r, o.opts.PollInterval)
			return
		}
		if r.releaseOnSave {
			return
		}
		if d := time.Until(time.UnixMilli(r.waitUntil)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				o.release(r, 0)
				return
			case <-t.C:
			}
		}
	}
}

// prevCompensable is the index of the last step at or before i that has
// a compensation, or -1.
func prevCompensable(def *Definition, i int) int {
	for ; i >= 0; i-- {
		if def.Steps[i].Compensation != nil {
			return i
		}
	}
	return -1
}

// call runs f with the step's timeout, cancelled early if the claim is
// about to lapse, turning a panic into an error.
func call(ctx context.Context, c *claim, timeout time.Duration, f func(ctx context.Context) error) (err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.mu.Lock()
	if c.lost {
		c.mu.Unlock()
		return ErrClaimLost
	}
	c.cancel = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
	}()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return f(ctx)
}

// advance runs the next action, reply check or compensation of r and
// commits the outcome, updating r.
func (o *Orchestrator) advance(ctx context.Context, c *claim, def *Definition, r *row) error {
	now := time.Now()
	next := *r
	next.releaseOnSave = false
	ev := Event{Step: r.stepName, Attempt: r.attempt + 1, Outcome: "ok"}
	idx := r.step
	if idx < 0 || idx >= len(def.Steps) || def.Steps[idx].Name != r.stepName {
		next.state, next.lastError = Parked, fmt.Sprintf("definition %q has no step %q at position %d (was it changed while sagas were in flight?)", def.Name, r.stepName, idx+1)
		ev.Phase, ev.Outcome, ev.Error = "action", "parked", next.lastError
		if r.state == Compensating {
			ev.Phase = "compensation"
		}
		return o.save(ctx, r, &next, ev, now)
	}
	st := &def.Steps[idx]
	ctx, sp := o.tracer.Start(broker.TraceContext(ctx, map[string]string{broker.HeaderTraceparent: r.traceparent}), "saga "+def.Name+" "+st.Name,
		trace.WithAttributes(attribute.String("switchyard.saga.id", r.id), attribute.Int("switchyard.saga.attempt", r.attempt+1)))
	defer func() {
		sp.SetAttributes(attribute.String("switchyard.saga.phase", ev.Phase), attribute.String("switchyard.saga.outcome", ev.Outcome))
		if ev.Error != "" {
			sp.SetStatus(otelcodes.Error, ev.Error)
		}
		sp.End()
	}()
	pol := def.policy(idx)
	timeout := def.timeout(idx)
	sc := &StepContext{SagaID: r.id, Saga: r.name, Step: st.Name, Attempt: r.attempt + 1,
		input: []byte(r.input), data: []byte(r.data), token: r.token}

	switch r.state {
	case Running:
		sc.IdempotencyKey = ActionKey(r.id, st.Name)
		var err error
		switch {
		case r.awaiting && r.reply.Valid:
			ev.Phase = "reply"
			reply := []byte(r.reply.String)
			err = call(ctx, c, timeout, func(ctx context.Context) error { return st.OnReply(ctx, sc, reply) })
		case r.awaiting:
			ev.Phase, ev.Outcome = "reply", "timeout"
			err = fmt.Errorf("no reply to step %s within %v", st.Name, timeout)
		default:
			ev.Phase = "action"
			err = call(ctx, c, timeout, func(ctx context.Context) error { return st.Action(ctx, sc) })
			if err == nil && st.OnReply != nil {
				// Command sent: wait for the reply (save keeps a reply
				// that has already arrived and makes the saga due).
				ev.Outcome = "waiting"
				next.awaiting = true
				next.waitUntil = now.Add(timeout).UnixMilli()
				next.data = string(sc.data)
				next.releaseOnSave = true
				return o.save(ctx, r, &next, ev, now)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err() // shutting down: the attempt does not count
		}
		if c.isLost() {
			return ErrClaimLost // the saga's next holder repeats the attempt
		}
		next.awaiting, next.reply = false, sql.NullString{}
		if err == nil {
			next.data = string(sc.data)
			next.attempt, next.waitUntil = 0, 0
			next.step++
			if next.step == len(def.Steps) {
				next.state, next.stepName, next.releaseOnSave = Completed, "", true
			} else {
				next.stepName = def.Steps[next.step].Name
			}
			return o.save(ctx, r, &next, ev, now)
		}
		if ev.Outcome == "ok" {
			ev.Outcome = "error"
		}
		ev.Error = err.Error()
		next.lastError = err.Error()
		next.attempt = r.attempt + 1
		if next.attempt < pol.MaxAttempts && !IsPermanent(err) {
			next.waitUntil = now.Add(pol.Backoff.Delay(next.attempt, nil)).UnixMilli()
			next.releaseOnSave = time.Duration(next.waitUntil-now.UnixMilli())*time.Millisecond > o.holdLimit()
			return o.save(ctx, r, &next, ev, now)
		}
		ev.Outcome = "failed"
		next.failedStep = st.Name
		next.state, next.attempt, next.waitUntil = Compensating, 0, 0
		next.step = prevCompensable(def, idx-1)
		if next.step < 0 {
			next.state, next.stepName, next.releaseOnSave = Compensated, "", true
		} else {
			next.stepName = def.Steps[next.step].Name
		}
		return o.save(ctx, r, &next, ev, now)

	case Compensating:
		ev.Phase = "compensation"
		sc.Compensating = true
		sc.IdempotencyKey = CompensationKey(r.id, st.Name)
		var err error
		if st.Compensation != nil {
			err = call(ctx, c, timeout, func(ctx context.Context) error { return st.Compensation(ctx, sc) })
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.isLost() {
			return ErrClaimLost
		}
		if err == nil {
			next.data = string(sc.data)
			next.attempt, next.waitUntil = 0, 0
			next.step = prevCompensable(def, idx-1)
			if next.step < 0 {
				next.state, next.stepName, next.releaseOnSave = Compensated, "", true
			} else {
				next.stepName = def.Steps[next.step].Name
			}
			return o.save(ctx, r, &next, ev, now)
		}
		ev.Outcome, ev.Error = "error", err.Error()
		next.lastError = fmt.Sprintf("compensating %s: %v", st.Name, err)
		next.attempt = r.attempt + 1
		if next.attempt < pol.CompensationAttempts && !IsPermanent(err) {
			next.waitUntil = now.Add(pol.Backoff.Delay(next.attempt, nil)).UnixMilli()
			next.releaseOnSave = time.Duration(next.waitUntil-now.UnixMilli())*time.Millisecond > o.holdLimit()
			return o.save(ctx, r, &next, ev, now)
		}
		ev.Outcome = "parked"
		next.state, next.releaseOnSave = Parked, true
		return o.save(ctx, r, &next, ev, now)
	}
	// A claimed saga in another state: hand it back untouched.
	next.releaseOnSave = true
	return o.save(ctx, r, &next, Event{}, now)
}

// saveReq is a transition waiting for the committer.
type saveReq struct {
	r, next *row
	ev      Event
	now     time.Time
	saved   row
	err     error // this transition's own outcome (ErrClaimLost)
	done    chan error
}

// maxBatch is the most transitions the committer writes in one
// transaction.
const maxBatch = 64

// save commits the transition from r to next with its history event,
// fenced by r's claim token, and makes next the current row. The
// committer writes the transitions of all workers that arrive together
// in one transaction (group commit): each is durable when save returns,
// and one fsync serves many.
func (o *Orchestrator) save(ctx context.Context, r, next *row, ev Event, now time.Time) error {
	if next.state.Final() {
		next.releaseOnSave = true
	}
	req := &saveReq{r: r, next: next, ev: ev, now: now, done: make(chan error, 1)}
	o.saves <- req
	if err := <-req.done; err != nil {
		return err
	}
	*r = req.saved
	return nil
}

// committer writes the transitions sent to save until stop closes.
func (o *Orchestrator) committer(stop <-chan struct{}) {
	for {
		var batch []*saveReq
		select {
		case <-stop:
			return
		case req := <-o.saves:
			batch = append(batch, req)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case req := <-o.saves:
				batch = append(batch, req)
			default:
				break more
			}
		}
		// One lock order for every batch.
		slices.SortFunc(batch, func(a, b *saveReq) int { return strings.Compare(a.r.id, b.r.id) })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := o.db.InTx(ctx, func(tx *store.Tx) error {
			for _, req := range batch {
				req.err = o.saveIn(ctx, tx, req)
				if req.err != nil && !errors.Is(req.err, ErrClaimLost) {
					return req.err
				}
			}
			return nil
		})
		cancel()
		for _, req := range batch {
			if err != nil {
				req.done <- err
			} else {
				req.done <- req.err
			}
		}
	}
}

// saveIn writes one transition in tx; ErrClaimLost writes nothing.
func (o *Orchestrator) saveIn(ctx context.Context, tx *store.Tx, req *saveReq) error {
	r, now, ev := req.r, req.now, req.ev
	n := *req.next
	n.lastError, ev.Error = storedText(n.lastError), storedText(ev.Error)
	// Entering the wait for a reply keeps a reply that came before the
	// send was recorded, and then stays due and claimed.
	keepReply := n.awaiting && !r.awaiting
	keep := 0
	if keepReply {
		keep = 1
	}
	owner, claimUntil := "", int64(0)
	if !n.releaseOnSave {
		owner, claimUntil = o.opts.Owner, now.UnixMilli()+o.opts.ClaimTTL.Milliseconds()
	}
	keepOwner, keepUntil := o.opts.Owner, now.UnixMilli()+o.opts.ClaimTTL.Milliseconds()
	awaiting := 0
	if n.awaiting {
		awaiting = 1
	}
	var version int64
	var reply sql.NullString
	err := tx.QueryRow(ctx, `UPDATE sy_sagas SET state = ?, step = ?, step_name = ?, attempt = ?, awaiting = ?, data = ?,
		failed_step = ?, last_error = ?, version = version + 1, updated_ms = ?,
		reply = CASE WHEN CAST(? AS INTEGER) = 1 THEN reply ELSE CAST(? AS TEXT) END,
		wait_until_ms = CASE WHEN CAST(? AS INTEGER) = 1 AND reply IS NOT NULL THEN 0 ELSE CAST(? AS BIGINT) END,
		owner = CASE WHEN CAST(? AS INTEGER) = 1 AND reply IS NOT NULL THEN CAST(? AS TEXT) ELSE CAST(? AS TEXT) END,
		claim_until_ms = CASE WHEN CAST(? AS INTEGER) = 1 AND reply IS NOT NULL THEN CAST(? AS BIGINT) ELSE CAST(? AS BIGINT) END
		WHERE id = ? AND claim_token = ? RETURNING version, reply`,
		string(n.state), n.step, n.stepName, n.attempt, awaiting, n.data, n.failedStep, n.lastError, now.UnixMilli(),
		keep, n.reply,
		keep, n.waitUntil,
		keep, keepOwner, owner,
		keep, keepUntil, claimUntil,
		r.id, r.token).Scan(&version, &reply)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrClaimLost
	}
	if err != nil {
		return err
	}
	if keepReply {
		n.reply = reply
		if reply.Valid {
			n.waitUntil, n.releaseOnSave = 0, false
		}
	}
	if ev.Phase != "" {
		if _, err := tx.Exec(ctx, "INSERT INTO sy_saga_history (saga_id, seq, phase, step, attempt, outcome, error, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			r.id, version, ev.Phase, ev.Step, ev.Attempt, ev.Outcome, ev.Error, now.UnixMilli()); err != nil {
			return err
		}
	}
	if n.state.Final() {
		if err := tx.Notify(ctx, doneChannel); err != nil {
			return err
		}
	}
	req.saved = n
	return nil
}

// maxErrorText is the most bytes of an error stored with a transition.
const maxErrorText = 16 << 10

// storedText is error text as the text columns take it: NUL bytes and
// invalid UTF-8 (an error quoting a binary reply) replaced by U+FFFD,
// which PostgreSQL would refuse, failing the transition and every other
// one committed with it, so that the step ran again and again without
// the attempt counting; and cut to maxErrorText bytes, since it is
// stored again with every attempt.
func storedText(s string) string {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	}
	if len(s) > maxErrorText {
		cut := maxErrorText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = fmt.Sprintf("%s... (%d bytes in all)", s[:cut], len(s))
	}
	return s
}
