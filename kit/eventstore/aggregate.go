package eventstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/kit/store"
)

// Snapshot is an aggregate's state saved at a stream version.
type Snapshot struct {
	Stream        string
	Version       int64 // the state includes events 1..Version
	SchemaVersion int   // shape of Data; a loader ignores shapes it does not know
	Data          json.RawMessage
	Time          time.Time
}

// SaveSnapshot stores a snapshot of stream, replacing an older one (a
// snapshot at a lower version than the stored one is ignored).
func (s *Store) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	return s.db.InTx(ctx, func(tx *store.Tx) error { return s.SaveSnapshotTx(ctx, tx, snap) })
}

// SaveSnapshotTx is SaveSnapshot inside tx.
func (s *Store) SaveSnapshotTx(ctx context.Context, tx *store.Tx, snap Snapshot) error {
	if snap.Stream == "" || snap.Version < 1 {
		return fmt.Errorf("eventstore: snapshot of %q at version %d: want a stream and a version >= 1", snap.Stream, snap.Version)
	}
	if !cleanText(snap.Stream) || len(snap.Stream) > MaxName {
		return fmt.Errorf("eventstore: snapshot of %.100q: want a stream name of UTF-8 text without NUL bytes, at most %d bytes", snap.Stream, MaxName)
	}
	if !json.Valid(snap.Data) || !utf8.Valid(snap.Data) {
		return fmt.Errorf("eventstore: snapshot of %q: data is not valid JSON in UTF-8", snap.Stream)
	}
	_, err := tx.Exec(ctx, `INSERT INTO sy_event_snapshots (stream, version, schema_version, data, created_ms) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (stream) DO UPDATE SET version = excluded.version, schema_version = excluded.schema_version,
			data = excluded.data, created_ms = excluded.created_ms
		WHERE sy_event_snapshots.version <= excluded.version`,
		snap.Stream, snap.Version, max(snap.SchemaVersion, 1), string(snap.Data), time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("eventstore: snapshot of %q: %w", snap.Stream, err)
	}
	return nil
}

// LoadSnapshot returns the latest snapshot of stream, and false when
// there is none.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (Snapshot, bool, error) {
	snap := Snapshot{Stream: stream}
	var data string
	var ms int64
	err := s.db.QueryRow(ctx, "SELECT version, schema_version, data, created_ms FROM sy_event_snapshots WHERE stream = ?", stream).
		Scan(&snap.Version, &snap.SchemaVersion, &data, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return Snapshot{}, false, nil
	}
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("eventstore: load snapshot of %q: %w", stream, err)
	}
	snap.Data, snap.Time = json.RawMessage(data), time.UnixMilli(ms).UTC()
	return snap, true, nil
}

// Aggregate loads and saves event-sourced aggregates whose state is S:
// Load replays the events (after the latest snapshot) through Apply,
// Save appends the recorded events with the loaded version as the
// expected one, so two writers of one aggregate cannot both win.
type Aggregate[S any] struct {
	Store *Store
	// Category prefixes stream names: the stream of id is
	// Category + "-" + id. It must not contain "-" itself (Load and Save
	// refuse it): categories "ride" and "ride-request" would give id
	// "request-5" of the one and id "5" of the other the same stream.
	Category string
	// Apply returns the state after e. It must be deterministic: it
	// runs on every load.
	Apply func(state S, e Event) (S, error)
	// New is the state before the first event (the zero S when nil).
	New func() S
	// SnapshotEvery saves a snapshot when a Save crosses a multiple of
	// it (0: only on demand, with Snapshot).
	SnapshotEvery int64
	// SnapshotSchema is the version of S's JSON shape. Snapshots of
	// another shape are ignored (the events are replayed from the
	// start), so changing S only needs this number raised.
	SnapshotSchema int
}

// Root is one loaded aggregate: its state, its version, and the events
// recorded since loading, waiting for Save.
type Root[S any] struct {
	ID      string
	Version int64 // the stream version State includes (before Pending)
	State   S
	// Replayed is how many events Load applied (after the snapshot).
	Replayed int
	// Pending are the events Record added, not yet saved.
	Pending []Event
}

// check refuses a Category whose streams could be another category's.
func (a *Aggregate[S]) check() error {
	if a.Category == "" || strings.Contains(a.Category, "-") {
		return fmt.Errorf("eventstore: aggregate category %q: want a name without '-' (it separates the category from the id in stream names)", a.Category)
	}
	return nil
}

// Stream is the stream name of aggregate id.
func (a *Aggregate[S]) Stream(id string) string { return a.Category + "-" + id }

func (a *Aggregate[S]) initial() S {
	if a.New != nil {
		return a.New()
	}
	var zero S
	return zero
}

// Load rebuilds aggregate id from its latest snapshot (when one of the
// current SnapshotSchema exists) and the events after it. An aggregate
// without events loads as the initial state at version 0.
func (a *Aggregate[S]) Load(ctx context.Context, id string) (*Root[S], error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	r := &Root[S]{ID: id, State: a.initial()}
	stream := a.Stream(id)
	snap, ok, err := a.Store.LoadSnapshot(ctx, stream)
	if err != nil {
		return nil, err
	}
	if ok && snap.SchemaVersion == max(a.SnapshotSchema, 1) {
		st := a.initial()
		if err := json.Unmarshal(snap.Data, &st); err != nil {
			return nil, fmt.Errorf("eventstore: snapshot of %q at version %d: %w", stream, snap.Version, err)
		}
		r.State, r.Version = st, snap.Version
	}
	const page = 1000
	for {
		evs, err := a.Store.ReadStream(ctx, stream, r.Version+1, page)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if r.State, err = a.Apply(r.State, e); err != nil {
				return nil, fmt.Errorf("eventstore: apply %s (version %d of %q): %w", e.Type, e.Version, stream, err)
			}
			r.Version = e.Version
			r.Replayed++
		}
		if len(evs) < page {
			return r, nil
		}
	}
}

// Record applies a new event of type typ with data to the state and
// queues it for Save. An event Apply refuses is not queued.
func (a *Aggregate[S]) Record(r *Root[S], typ string, data any) error {
	e, err := NewEvent(typ, data)
	if err != nil {
		return err
	}
	return a.RecordEvent(r, e)
}

// RecordEvent is Record with a prepared event (to set ids, metadata).
func (a *Aggregate[S]) RecordEvent(r *Root[S], e Event) error {
	e.Stream = a.Stream(r.ID)
	e.Version = r.Version + int64(len(r.Pending)) + 1
	st, err := a.Apply(r.State, e)
	if err != nil {
		return err
	}
	r.State = st
	r.Pending = append(r.Pending, e)
	return nil
}

// Save appends r's pending events, expecting the stream at the version
// r was loaded at; a *ConflictError means another writer got there
// first (load again and retry the command).
func (a *Aggregate[S]) Save(ctx context.Context, r *Root[S]) error {
	return a.Store.db.InTx(ctx, func(tx *store.Tx) error { return a.SaveTx(ctx, tx, r) })
}

// SaveTx is Save inside the caller's transaction (with an outbox
// message, say). r is updated only when SaveTx succeeds; if the
// transaction then rolls back, load r again.
func (a *Aggregate[S]) SaveTx(ctx context.Context, tx *store.Tx, r *Root[S]) error {
	if err := a.check(); err != nil {
		return err
	}
	if len(r.Pending) == 0 {
		return nil
	}
	evs := append([]Event(nil), r.Pending...)
	newV, err := a.Store.AppendTx(ctx, tx, a.Stream(r.ID), Expected(r.Version), evs...)
	if err != nil {
		return err
	}
	if a.SnapshotEvery > 0 && newV/a.SnapshotEvery > r.Version/a.SnapshotEvery {
		if err := a.snapshotTx(ctx, tx, r.ID, newV, r.State); err != nil {
			return err
		}
	}
	r.Version, r.Pending = newV, nil
	return nil
}

// Snapshot saves r's state now (its pending events must be saved
// first), so the next Load starts from here.
func (a *Aggregate[S]) Snapshot(ctx context.Context, r *Root[S]) error {
	if len(r.Pending) > 0 {
		return fmt.Errorf("eventstore: snapshot of %q: %d events not saved yet", a.Stream(r.ID), len(r.Pending))
	}
	if r.Version == 0 {
		return fmt.Errorf("eventstore: snapshot of %q: no events yet", a.Stream(r.ID))
	}
	return a.Store.db.InTx(ctx, func(tx *store.Tx) error { return a.snapshotTx(ctx, tx, r.ID, r.Version, r.State) })
}

func (a *Aggregate[S]) snapshotTx(ctx context.Context, tx *store.Tx, id string, v int64, st S) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("eventstore: snapshot of %q: marshal state: %w", a.Stream(id), err)
	}
	return a.Store.SaveSnapshotTx(ctx, tx, Snapshot{Stream: a.Stream(id), Version: v, SchemaVersion: max(a.SnapshotSchema, 1), Data: b})
}
