package saga

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/store"
)

// Tables (component "kit.saga"):
//
//	sy_sagas         one row per saga: state, position (step index and
//	                 name, attempt), data, the pending reply of an
//	                 asynchronous step, when it is due next, and the claim
//	                 (owner, expiry, fencing token) of the replica driving it.
//	sy_saga_history  one row per transition (seq = the saga's version):
//	                 which step, which attempt, what happened, the error.
var migrations = []store.Migration{{
	Version: 1, Name: "sagas and their history",
	SQL: `CREATE TABLE sy_sagas (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	state TEXT NOT NULL,
	step INTEGER NOT NULL,
	step_name TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	awaiting INTEGER NOT NULL,
	reply TEXT,
	input TEXT NOT NULL,
	data TEXT NOT NULL,
	failed_step TEXT NOT NULL,
	last_error TEXT NOT NULL,
	wait_until_ms BIGINT NOT NULL,
	owner TEXT NOT NULL,
	claim_until_ms BIGINT NOT NULL,
	claim_token BIGINT NOT NULL,
	version BIGINT NOT NULL,
	created_ms BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL
);
CREATE INDEX sy_sagas_due ON sy_sagas (wait_until_ms) WHERE state IN ('running', 'compensating');
CREATE INDEX sy_sagas_state ON sy_sagas (state, id);
CREATE TABLE sy_saga_history (
	saga_id TEXT NOT NULL,
	seq BIGINT NOT NULL,
	phase TEXT NOT NULL,
	step TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	outcome TEXT NOT NULL,
	error TEXT NOT NULL,
	at_ms BIGINT NOT NULL,
	PRIMARY KEY (saga_id, seq)
);`,
}, {
	// The W3C traceparent of the span that started the saga, so that its
	// steps join that trace.
	Version: 2, Name: "trace context of the saga's start",
	SQL: `ALTER TABLE sy_sagas ADD COLUMN traceparent TEXT NOT NULL DEFAULT ''`,
}}

// wakeChannel is the Notify channel of new and newly due work.
const wakeChannel = "sy_saga"

// Migrate creates or upgrades the saga tables. New calls it; a service
// that calls Start before it creates an orchestrator calls it first.
func Migrate(ctx context.Context, db *store.DB) error {
	return db.Migrate(ctx, "kit.saga", migrations)
}

// Start records a new saga of def with the given id and input (encoded as
// JSON; it is also the saga's initial data) in tx, the caller's own
// transaction: the saga exists exactly when the caller's write commits.
// Starting an id that exists already is a no-op (nil), so a retried
// request starts its saga once; an id taken by another definition is
// ErrDefinition. The orchestrators are woken when tx commits.
func Start(ctx context.Context, tx *store.Tx, def *Definition, id string, input any) error {
	if err := def.Validate(); err != nil {
		return err
	}
	if id == "" {
		return errors.New("saga: Start: empty id")
	}
	if !isText(id) {
		return fmt.Errorf("saga: Start: id %q: want UTF-8 text without NUL bytes", id)
	}
	in, err := json.Marshal(input)
	if err != nil {
		return fmt.Errorf("saga %s: encoding input: %w", id, err)
	}
	now := time.Now().UnixMilli()
	tc := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, tc)
	res, err := tx.Exec(ctx, `INSERT INTO sy_sagas (id, name, state, step, step_name, attempt, awaiting, reply, input, data,
		failed_step, last_error, wait_until_ms, owner, claim_until_ms, claim_token, version, created_ms, updated_ms, traceparent)
		VALUES (?, ?, ?, 0, ?, 0, 0, NULL, ?, ?, '', '', 0, '', 0, 0, 1, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		id, def.Name, string(Running), def.Steps[0].Name, string(in), string(in), now, now, tc[broker.HeaderTraceparent])
	if err != nil {
		return fmt.Errorf("saga %s: start: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var name string
		if err := tx.QueryRow(ctx, "SELECT name FROM sy_sagas WHERE id = ?", id).Scan(&name); err != nil {
			return fmt.Errorf("saga %s: start: %w", id, err)
		}
		if name != def.Name {
			return fmt.Errorf("%w: %s is a %q saga, not %q", ErrDefinition, id, name, def.Name)
		}
		return nil
	}
	if _, err := tx.Exec(ctx, "INSERT INTO sy_saga_history (saga_id, seq, phase, step, attempt, outcome, error, at_ms) VALUES (?, 1, 'start', '', 0, 'ok', '', ?)", id, now); err != nil {
		return fmt.Errorf("saga %s: start: %w", id, err)
	}
	return tx.Notify(ctx, wakeChannel)
}

// Deliver hands the reply to the command of step (an asynchronous step)
// of saga id to the orchestrator, inside tx: an idempotent consumer can
// record the reply event and deliver it in one transaction. It reports
// whether the saga took the reply: false (and nil) when the saga is not
// at that step any more (a duplicate or late reply), so the caller can
// acknowledge the event either way. The reply is stored as text: JSON or
// other UTF-8 without NUL bytes. A reply that arrives before the
// command's send was recorded is kept and used.
func Deliver(ctx context.Context, tx *store.Tx, id, step string, reply []byte) (bool, error) {
	if !utf8.Valid(reply) || bytes.IndexByte(reply, 0) >= 0 {
		return false, fmt.Errorf("saga %s: reply to %s: want text (JSON or other UTF-8 without NUL bytes), got %d bytes that are not", id, step, len(reply))
	}
	res, err := tx.Exec(ctx, "UPDATE sy_sagas SET reply = ?, wait_until_ms = 0 WHERE id = ? AND state = ? AND step_name = ?",
		string(reply), id, string(Running), step)
	if err != nil {
		return false, fmt.Errorf("saga %s: deliver reply to %s: %w", id, step, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, tx.Notify(ctx, wakeChannel)
}

// Info is a saga as the operator sees it.
type Info struct {
	ID         string
	Definition string
	State      State
	// Step is the step running (or being compensated, or that parked the
	// saga); Attempt its failed attempts so far.
	Step    string
	Attempt int
	// Awaiting is true while an asynchronous step waits for its reply,
	// until NextRun.
	Awaiting bool
	// FailedStep is the step whose failure turned the saga to
	// compensation; LastError the latest error of any step.
	FailedStep string
	LastError  string
	Input      json.RawMessage
	Data       json.RawMessage
	// NextRun is when the saga is due (after a retry's backoff, or an
	// asynchronous step's deadline).
	NextRun time.Time
	// Owner is the replica holding the claim until ClaimedUntil (zero
	// when none holds it).
	Owner        string
	ClaimedUntil time.Time
	Created      time.Time
	Updated      time.Time
	// History is every transition, oldest first (Get fills it; List
	// does not).
	History []Event
}

// Event is one transition of a saga.
type Event struct {
	Seq int64
	// Phase is start, action, reply, compensation or retry (an
	// operator's).
	Phase   string
	Step    string
	Attempt int
	// Outcome is ok, error, timeout, waiting (command sent), failed (the
	// step gave up), parked or resumed.
	Outcome string
	Error   string
	At      time.Time
}

const infoColumns = "id, name, state, step_name, attempt, awaiting, failed_step, last_error, input, data, wait_until_ms, owner, claim_until_ms, created_ms, updated_ms"

func scanInfo(sc interface{ Scan(...any) error }) (Info, error) {
	var i Info
	var state, input, data string
	var awaiting int
	var wait, claim, created, updated int64
	if err := sc.Scan(&i.ID, &i.Definition, &state, &i.Step, &i.Attempt, &awaiting, &i.FailedStep, &i.LastError,
		&input, &data, &wait, &i.Owner, &claim, &created, &updated); err != nil {
		return i, err
	}
	i.State, i.Awaiting = State(state), awaiting != 0
	i.Input, i.Data = json.RawMessage(input), json.RawMessage(data)
	i.NextRun, i.Created, i.Updated = time.UnixMilli(wait), time.UnixMilli(created), time.UnixMilli(updated)
	if claim > time.Now().UnixMilli() {
		i.ClaimedUntil = time.UnixMilli(claim)
	} else {
		i.Owner = ""
	}
	return i, nil
}

// Get returns saga id with its history, or ErrNotFound.
func Get(ctx context.Context, db *store.DB, id string) (Info, error) {
	i, err := scanInfo(db.QueryRow(ctx, "SELECT "+infoColumns+" FROM sy_sagas WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return i, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return i, fmt.Errorf("saga %s: %w", id, err)
	}
	rows, err := db.Query(ctx, "SELECT seq, phase, step, attempt, outcome, error, at_ms FROM sy_saga_history WHERE saga_id = ? ORDER BY seq", id)
	if err != nil {
		return i, fmt.Errorf("saga %s: history: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.Seq, &e.Phase, &e.Step, &e.Attempt, &e.Outcome, &e.Error, &at); err != nil {
			return i, err
		}
		e.At = time.UnixMilli(at)
		i.History = append(i.History, e)
	}
	return i, rows.Err()
}

// Filter selects sagas for List.
type Filter struct {
	// States keeps sagas in these states; empty keeps all.
	States []State
	// Definition keeps sagas of this definition; empty keeps all.
	Definition string
	// After pages: only ids greater than After, in id order.
	After string
	// Limit caps the result; default 100.
	Limit int
}

// List returns the sagas f selects, in id order, without history.
func List(ctx context.Context, db *store.DB, f Filter) ([]Info, error) {
	q := "SELECT " + infoColumns + " FROM sy_sagas WHERE id > ?"
	args := []any{f.After}
	if len(f.States) > 0 {
		q += " AND state IN (?" + strings.Repeat(", ?", len(f.States)-1) + ")"
		for _, s := range f.States {
			args = append(args, string(s))
		}
	}
	if f.Definition != "" {
		q += " AND name = ?"
		args = append(args, f.Definition)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, f.Limit)
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		i, err := scanInfo(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// Retry resumes a parked saga: its compensation starts over from the step
// that parked it, with a fresh count of attempts. ErrNotParked when the
// saga is in another state.
func Retry(ctx context.Context, db *store.DB, id string) error {
	return db.InTx(ctx, func(tx *store.Tx) error {
		var state, step string
		var version int64
		err := tx.QueryRow(ctx, "SELECT state, step_name, version FROM sy_sagas WHERE id = ?"+forUpdate(db.Dialect), id).Scan(&state, &step, &version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if State(state) != Parked {
			return fmt.Errorf("%w: %q is %s", ErrNotParked, id, state)
		}
		now := time.Now().UnixMilli()
		if _, err := tx.Exec(ctx, "UPDATE sy_sagas SET state = ?, attempt = 0, wait_until_ms = 0, version = ?, updated_ms = ? WHERE id = ?",
			string(Compensating), version+1, now, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO sy_saga_history (saga_id, seq, phase, step, attempt, outcome, error, at_ms) VALUES (?, ?, 'retry', ?, 0, 'resumed', '', ?)",
			id, version+1, step, now); err != nil {
			return err
		}
		return tx.Notify(ctx, wakeChannel)
	})
}

func forUpdate(d store.Dialect) string {
	if d == store.Postgres {
		return " FOR UPDATE"
	}
	return ""
}
