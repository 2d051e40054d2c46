// Package saga runs persisted sagas: a business transaction spread over
// several services as an ordered list of steps, each with an action and a
// compensation that undoes it, driven by an orchestrator that records
// every transition in the service's database (SQLite or PostgreSQL, via
// kit/store).
//
// A saga resumes after a crash exactly where it was: the orchestrator
// commits the outcome of every step before it starts the next one, so a
// process killed in the middle of a step runs that step again on restart,
// never a completed one. A step therefore receives a stable idempotency
// key (saga id and step name, the same on every attempt and every
// replica) that it passes to the service it calls (an Idempotency-Key
// header, a Msg-Id), which makes the re-run harmless.
//
// A step that fails after its retries (Policy: the retry package's backoff
// and a number of attempts) turns the saga around: the compensations of
// the completed steps run in reverse order. A compensation that keeps
// failing parks the saga for an operator, who sees it in List and Get
// (state, last error, step history) and resumes it with Retry once the
// cause is fixed. Nothing is dropped silently.
//
// Steps call services synchronously (an HTTP call inside Action) or
// asynchronously: Action sends a command message and the step completes
// when its reply is handed to Deliver (typically by the consumer of reply
// events) and accepted by OnReply, or fails when no reply comes within
// the step's Timeout.
//
// Several orchestrator replicas may run on one database: a saga is
// claimed row by row with an expiry that the running replica renews, and
// every transition is fenced by the claim's token, so one replica at a
// time drives a saga and a dead replica's sagas are taken over once their
// claim expires.
//
// Start writes a new saga inside the caller's transaction, so a business
// write and the saga that follows it commit together (or not at all).
//
// Transitions that several workers finish at the same time are committed
// in one transaction (group commit): each is durable before its saga
// moves on, and one fsync serves many.
package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/retry"
)

// State is where a saga is in its life.
type State string

// The states. Running and Compensating sagas are driven by an
// orchestrator; Completed and Compensated are final; Parked waits for an
// operator's Retry.
const (
	Running      State = "running"      // steps run forward
	Compensating State = "compensating" // a step failed; completed steps are undone in reverse
	Completed    State = "completed"    // every step succeeded
	Compensated  State = "compensated"  // a step failed and every completed step was undone
	Parked       State = "parked"       // a compensation kept failing; see LastError, then Retry
)

// Final reports whether the saga will not move again on its own
// (Completed, Compensated or Parked).
func (s State) Final() bool { return s == Completed || s == Compensated || s == Parked }

// StepFunc is a step's action or compensation. An error fails this
// attempt; wrap it with Permanent to skip the remaining attempts.
type StepFunc func(ctx context.Context, sc *StepContext) error

// ReplyFunc judges the reply to an asynchronous step's command: nil
// completes the step, an error fails the attempt (Permanent: fails the
// step at once, e.g. "payment declined").
type ReplyFunc func(ctx context.Context, sc *StepContext, reply []byte) error

// Policy says how often and how patiently a step is tried.
type Policy struct {
	// MaxAttempts is how many times the action runs before the step
	// counts as failed. Default 3.
	MaxAttempts int
	// CompensationAttempts is how many times the compensation runs before
	// the saga is parked. Default 5.
	CompensationAttempts int
	// Backoff is the wait between attempts (retry.Backoff.Delay with the
	// number of failed attempts). Default exponential from 100 ms, capped
	// at 30 s, full jitter.
	Backoff retry.Backoff
}

// DefaultPolicy is what a step gets when neither it nor its definition
// sets a field.
var DefaultPolicy = Policy{
	MaxAttempts:          3,
	CompensationAttempts: 5,
	Backoff:              retry.Backoff{Kind: retry.Exponential, Base: 100 * time.Millisecond, Cap: 30 * time.Second},
}

func (p Policy) or(d Policy) Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.CompensationAttempts <= 0 {
		p.CompensationAttempts = d.CompensationAttempts
	}
	if p.Backoff == (retry.Backoff{}) {
		p.Backoff = d.Backoff
	}
	return p
}

// Step is one local transaction of the saga and its undo.
type Step struct {
	// Name identifies the step in the database, in idempotency keys and
	// in Deliver; unique within the definition. Renaming a step of a
	// definition with sagas in flight strands them.
	Name string
	// Action does the step's work. It may run more than once (a crash
	// between its effect and the orchestrator's commit, a retry), always
	// with the same IdempotencyKey.
	Action StepFunc
	// Compensation undoes a completed Action; nil when there is nothing to
	// undo. It runs only for steps that completed, with its own stable
	// key (IdempotencyKey ends in "/compensate").
	Compensation StepFunc
	// OnReply makes the step asynchronous: Action sends a command, and
	// the step completes when Deliver hands over the reply and OnReply
	// accepts it. No reply within Timeout fails the attempt.
	OnReply ReplyFunc
	// Timeout bounds one attempt of Action (its context's deadline) and,
	// for an asynchronous step, the wait for the reply. Default 30 s.
	Timeout time.Duration
	// Retry overrides the definition's policy field by field.
	Retry Policy
}

// Definition is a named saga: its steps in order.
type Definition struct {
	// Name is stored with every saga; an orchestrator drives only the
	// sagas whose definition it has registered.
	Name  string
	Steps []Step
	// Retry is the policy of steps that do not set their own; unset
	// fields fall back to DefaultPolicy.
	Retry Policy
}

// isText reports whether s is stored as it is in a text column on both
// dialects (PostgreSQL refuses NUL bytes and invalid UTF-8).
func isText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// DefaultTimeout is a step's Timeout when it sets none.
const DefaultTimeout = 30 * time.Second

// Validate reports every problem of the definition at once.
func (d *Definition) Validate() error {
	var errs []error
	if d.Name == "" {
		errs = append(errs, errors.New("saga definition: empty name"))
	}
	if !isText(d.Name) {
		errs = append(errs, fmt.Errorf("saga definition %q: want a name of UTF-8 text without NUL bytes", d.Name))
	}
	if len(d.Steps) == 0 {
		errs = append(errs, fmt.Errorf("saga %q: no steps", d.Name))
	}
	seen := map[string]bool{}
	for i, s := range d.Steps {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("saga %q step %d: empty name", d.Name, i+1))
		case strings.Contains(s.Name, "/"):
			errs = append(errs, fmt.Errorf("saga %q step %q: '/' is not allowed in a step name (it separates the parts of idempotency keys)", d.Name, s.Name))
		case !isText(s.Name):
			errs = append(errs, fmt.Errorf("saga %q step %q: want a name of UTF-8 text without NUL bytes", d.Name, s.Name))
		case s.Name == "compensate":
			// "<id>/compensate" would be the compensation key of saga
			// id's parent path: ActionKey("r/charge", "compensate") ==
			// CompensationKey("r", "charge").
			errs = append(errs, fmt.Errorf("saga %q step %q: the name is reserved (it ends compensation idempotency keys)", d.Name, s.Name))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("saga %q step %q: name used twice", d.Name, s.Name))
		}
		seen[s.Name] = true
		if s.Action == nil {
			errs = append(errs, fmt.Errorf("saga %q step %q: no Action", d.Name, s.Name))
		}
		if s.Timeout < 0 {
			errs = append(errs, fmt.Errorf("saga %q step %q: negative Timeout %v", d.Name, s.Name, s.Timeout))
		}
	}
	return errors.Join(errs...)
}

func (d *Definition) policy(i int) Policy {
	return d.Steps[i].Retry.or(d.Retry.or(DefaultPolicy))
}

func (d *Definition) timeout(i int) time.Duration {
	if t := d.Steps[i].Timeout; t > 0 {
		return t
	}
	return DefaultTimeout
}

// StepContext is what an action, compensation or reply handler knows
// about the saga and may change.
type StepContext struct {
	// SagaID is the saga's id (given to Start).
	SagaID string
	// Saga is the definition's name.
	Saga string
	// Step is the step's name.
	Step string
	// Attempt counts this step's tries, from 1. After a crash the
	// interrupted attempt runs again under the same number.
	Attempt int
	// Compensating is true in a compensation.
	Compensating bool
	// IdempotencyKey is stable across attempts, crashes and replicas:
	// "<saga id>/<step>" for the action (and its command and reply),
	// "<saga id>/<step>/compensate" for the compensation. Pass it to the
	// service called so that a repeated call is applied once.
	IdempotencyKey string

	input json.RawMessage
	data  json.RawMessage
	token int64
}

// Fence checks, inside tx (a transaction on the saga's own database),
// that this execution still holds the saga's claim, and keeps another
// replica from taking it until tx ends. A step whose effect is a write
// in the same database calls it first: the write then commits only if
// no other replica has taken the saga over, so a stalled replica's late
// execution cannot land after the saga moved on. It is ErrClaimLost when
// the claim is gone.
func (sc *StepContext) Fence(ctx context.Context, tx *store.Tx) error {
	var token int64
	err := tx.QueryRow(ctx, "SELECT claim_token FROM sy_sagas WHERE id = ?"+forUpdate(tx.Dialect()), sc.SagaID).Scan(&token)
	if err != nil {
		return fmt.Errorf("saga %s: fence: %w", sc.SagaID, err)
	}
	if token != sc.token {
		return ErrClaimLost
	}
	return nil
}

// Input decodes the saga's input (as given to Start) into v.
func (sc *StepContext) Input(v any) error {
	if err := json.Unmarshal(sc.input, v); err != nil {
		return fmt.Errorf("saga %s: decoding input: %w", sc.SagaID, err)
	}
	return nil
}

// Data decodes the saga's data into v: the input as amended by the
// completed steps' SetData calls.
func (sc *StepContext) Data(v any) error {
	if err := json.Unmarshal(sc.data, v); err != nil {
		return fmt.Errorf("saga %s: decoding data: %w", sc.SagaID, err)
	}
	return nil
}

// SetData replaces the saga's data with v (encoded as JSON). The change
// is committed with the step's success and dropped if the attempt fails,
// so later steps and compensations see exactly what completed steps
// stored.
func (sc *StepContext) SetData(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("saga %s step %s: encoding data: %w", sc.SagaID, sc.Step, err)
	}
	sc.data = b
	return nil
}

// permanent marks an error that retries cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that the step fails without further attempts
// (a declined payment, a rejected request). A permanent error from a
// compensation parks the saga at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Errors returned by the orchestrator's API.
var (
	ErrNotFound   = errors.New("saga: no such saga")
	ErrNotParked  = errors.New("saga: not parked")
	ErrDefinition = errors.New("saga: id already used by another definition")
)

// ActionKey is the idempotency key of step's action in saga id.
func ActionKey(id, step string) string { return id + "/" + step }

// CompensationKey is the idempotency key of step's compensation in saga id.
func CompensationKey(id, step string) string { return id + "/" + step + "/compensate" }
