// Package eventstore keeps a service's state as the events that made it,
// over the kit's storage (SQLite or PostgreSQL): event sourcing.
//
// Each aggregate (a ride, an account) has a stream of events, numbered
// 1, 2, 3, ... (its version). Append adds events to a stream with
// optimistic concurrency: the caller says which version it expects the
// stream to be at (Any, NoStream or an exact version) and a writer that
// lost the race gets a *ConflictError carrying the actual version.
// AppendTx does the same inside the caller's transaction, so a command
// handler can write its events and an outbox message atomically.
//
// Every event also gets a global position, over all streams, that
// grows in the order readers see the events: ReadAll reads from a
// checkpoint (the position of the last event handled) and Subscribe
// catches up from one and then follows new events live. No reader ever
// skips an event that commits late: a reader never sees a position
// while a smaller one may still appear.
//
// How depends on the database. On SQLite positions are 1, 2, 3, ...
// without gaps, in commit order, taken from a counter row that the
// appending transaction holds until it commits (SQLite commits one
// writer at a time anyway). On PostgreSQL a counter row held to commit
// would make concurrent appends commit one after another, each waiting
// for the previous one's WAL flush; instead an event's position is its
// transaction's id (pg_current_xact_id) times 65,536 plus its number
// within the transaction (1, 2, ...), so appenders take no shared lock
// and share group commits. Positions then grow with gaps, and a reader
// reads only the events of transactions older than the oldest one still
// running on the server (pg_snapshot_xmin of its snapshot): every such
// transaction has ended, so nothing can commit below what it read. The
// price: any long transaction on the server (in any database of it, a
// forgotten psql session, a prepared transaction) holds every reader
// back at its start until it ends, and a PostgreSQL transaction appends
// at most 65,535 events. Events appended before this scheme (migration
// 2) keep their positions 1, 2, 3, ..., all below the new ones, so old
// checkpoints stay valid. Per stream the order is the version order on
// both: an append whose transaction id is older than the stream's last
// appender's (it wrote elsewhere before it reached the stream) fails
// with a serialization failure that InTx retries with a new id.
//
// Snapshots keep loading cheap: the Aggregate helper saves the state
// every N events (or on demand) and Load reads only the events after
// the latest snapshot. Upcasters registered with Upcast turn old event
// shapes (type + schema version) into the current one on every read, so
// stored events are never rewritten.
package eventstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard/switchyard/kit/store"
)

// Event is one stored fact about an aggregate.
type Event struct {
	ID            string            // unique; generated when empty on append
	Stream        string            // the aggregate's stream, e.g. "ride-42"
	Version       int64             // 1, 2, 3, ... within the stream (set on append)
	Position      int64             // over all streams, growing in reading order; SQLite 1, 2, 3, ..., PostgreSQL with gaps (set on append)
	Type          string            // e.g. "RideRequested"
	SchemaVersion int               // shape of Data; 0 is taken as 1
	Data          json.RawMessage   // the payload, JSON
	Metadata      map[string]string // free-form, e.g. user, trace id
	CausationID   string            // the id of the message or event that caused this one
	CorrelationID string            // the id shared by everything one request caused
	Time          time.Time         // when it was appended (set on append)
}

// NewEvent makes an event of type typ whose Data is data marshalled to
// JSON.
func NewEvent(typ string, data any) (Event, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: event %s: marshal data: %w", typ, err)
	}
	return Event{Type: typ, SchemaVersion: 1, Data: b}, nil
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("eventstore: event %s (stream %s version %d, type %s v%d): %w", e.ID, e.Stream, e.Version, e.Type, e.SchemaVersion, err)
	}
	return nil
}

// Expected is the version a writer expects a stream to be at before its
// append: Any, NoStream, or the exact version (the number of events in
// the stream).
type Expected int64

// Special expectations.
const (
	// Any appends whatever the stream's version.
	Any Expected = -1
	// NoStream appends only if the stream has no events yet.
	NoStream Expected = 0
)

// ErrConflict is what every *ConflictError matches with errors.Is.
var ErrConflict = errors.New("eventstore: wrong expected version")

// ConflictError says a stream was not at the version the writer
// expected: another writer appended first.
type ConflictError struct {
	Stream   string
	Expected Expected
	Actual   int64 // the stream's version when the append was refused
}

// Error says which stream, what was expected and what was found.
func (e *ConflictError) Error() string {
	want := fmt.Sprintf("version %d", int64(e.Expected))
	if e.Expected == NoStream {
		want = "no stream"
	}
	return fmt.Sprintf("eventstore: stream %q: expected %s, found version %d", e.Stream, want, e.Actual)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Channel is the store.Listen channel an append notifies on commit.
const Channel = "sy_eventstore"

var migrations = []store.Migration{{
	Version: 1, Name: "events, streams, head, snapshots",
	SQL: `CREATE TABLE sy_events (
		position BIGINT PRIMARY KEY,
		stream TEXT NOT NULL,
		version BIGINT NOT NULL,
		id TEXT NOT NULL UNIQUE,
		type TEXT NOT NULL,
		schema_version INTEGER NOT NULL,
		data TEXT NOT NULL,
		metadata TEXT,
		causation_id TEXT,
		correlation_id TEXT,
		created_ms BIGINT NOT NULL,
		UNIQUE (stream, version)
	);
	CREATE TABLE sy_event_streams (
		stream TEXT PRIMARY KEY,
		version BIGINT NOT NULL
	);
	CREATE TABLE sy_event_head (
		id INTEGER PRIMARY KEY,
		position BIGINT NOT NULL
	);
	INSERT INTO sy_event_head (id, position) VALUES (1, 0);
	CREATE TABLE sy_event_snapshots (
		stream TEXT PRIMARY KEY,
		version BIGINT NOT NULL,
		schema_version INTEGER NOT NULL,
		data TEXT NOT NULL,
		created_ms BIGINT NOT NULL
	);`,
}, {
	// PostgreSQL: positions from transaction ids (see the package doc);
	// the head row goes, so that a replica still running the old code
	// fails its appends loudly instead of taking positions below the
	// readers' checkpoints. Old events keep their positions; the check
	// refuses a store whose old positions could reach the new ones (more
	// than 65,536 events per transaction id so far: not a real store).
	// SQLite keeps the head row: nothing changes there.
	Version: 2, Name: "postgres: positions from transaction ids",
	SQLite: `SELECT 1;`,
	Postgres: `DO $$ BEGIN IF (SELECT position FROM sy_event_head WHERE id = 1) > (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16) THEN RAISE EXCEPTION 'eventstore migration 2: the stored positions reach the transaction-id range (more than 65536 events per transaction id so far)'; END IF; END $$;
	ALTER TABLE sy_event_streams ADD COLUMN xid BIGINT NOT NULL DEFAULT 0;
	DROP TABLE sy_event_head;`,
}, {
	// PostgreSQL: an append is one statement (in its own transaction
	// when it is not in the caller's), so a refusal the statement finds
	// (this transaction is older than the stream's last appender, or its
	// positions run out) must fail the statement itself, not only be
	// reported to the caller: this function raises the error.
	Version: 3, Name: "postgres: appends refused inside the statement",
	SQLite:   `SELECT 1;`,
	Postgres: `CREATE FUNCTION sy_event_append_refused(me BIGINT, xid BIGINT, used BIGINT, n BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$ BEGIN IF xid <> me THEN RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = format('this transaction (id %s) is older than the stream''s last appender (id %s), whose events its own would sort before; retry the transaction', me, xid); END IF; RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = format('%s events in one transaction; PostgreSQL takes at most 65535 per transaction (append in several)', used + n); END $$;`,
}, {
	// PostgreSQL: no stream row. A stream's version is its last event's
	// (the (stream, version) unique index finds it), a conflict is the
	// insert of an existing version, and the per-stream order is checked
	// against the last event's position, whose high bits are its
	// transaction's id: an append writes what a plain insert writes. The
	// stream table goes, so that a replica still running the old code
	// fails its appends loudly instead of appending without the order
	// check; the versions it held are the events' own (same
	// transactions). sy_event_append_raced fails an append that lost a
	// race for some of its versions only (a multi-event append against
	// a concurrent one), so it inserts none or all.
	Version: 4, Name: "postgres: versions from the events, no stream row",
	SQLite: `SELECT 1;`,
	Postgres: `CREATE FUNCTION sy_event_append_raced(stream TEXT, inserted BIGINT, n BIGINT) RETURNS BIGINT LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = format('stream %s: another transaction appended at the same versions while this append ran (%s of its %s events were new); retry the transaction', stream, inserted, n); END $$;
	DROP TABLE sy_event_streams;`,
}}

// On PostgreSQL a position is the appending transaction's id shifted
// left by posShift, plus the event's number within the transaction.
const (
	posShift = 16
	maxPerTx = 1<<posShift - 1
)

// frontier is, on PostgreSQL, the smallest position a transaction still
// running (or not yet started) could take: (oldest running transaction
// id) << posShift. Readers read below it. Evaluated once per statement,
// on the statement's snapshot.
const frontier = "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)"

// Upcaster turns an event of an old shape into the next one: it returns
// the event with a different Type or a higher SchemaVersion (and the
// Data to match).
type Upcaster func(Event) (Event, error)

// Store is an event store in a kit database.
type Store struct {
	db *store.DB
	// PollInterval is how often Subscribe looks for new events when no
	// wake-up came (a wake-up is a hint; polling is the fallback).
	PollInterval time.Duration

	mu        sync.RWMutex
	upcasters map[upKey]Upcaster
}

type upKey struct {
	typ    string
	schema int
}

// Open applies the event store's migrations to db and returns the store.
func Open(ctx context.Context, db *store.DB) (*Store, error) {
	if err := db.Migrate(ctx, "eventstore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db, PollInterval: time.Second, upcasters: map[upKey]Upcaster{}}, nil
}

// DB is the database the store lives in.
func (s *Store) DB() *store.DB { return s.db }

// Upcast registers fn to turn events of type typ at schemaVersion into
// their next shape whenever they are read. Upcasters chain: the result
// is upcast again while one is registered for its type and version.
func (s *Store) Upcast(typ string, schemaVersion int, fn Upcaster) {
	s.mu.Lock()
	s.upcasters[upKey{typ, max(schemaVersion, 1)}] = fn
	s.mu.Unlock()
}

// maxUpcasts bounds a chain of upcasters, so two that turn a shape into
// each other fail instead of looping.
const maxUpcasts = 64

func (s *Store) upcast(e Event) (Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.upcasters) == 0 {
		return e, nil
	}
	for i := 0; ; i++ {
		fn, ok := s.upcasters[upKey{e.Type, e.SchemaVersion}]
		if !ok {
			return e, nil
		}
		if i == maxUpcasts {
			return e, fmt.Errorf("eventstore: event %s: more than %d upcasts from %s v%d; do two upcasters undo each other?", e.ID, maxUpcasts, e.Type, e.SchemaVersion)
		}
		next, err := fn(e)
		if err != nil {
			return e, fmt.Errorf("eventstore: upcast event %s (%s v%d): %w", e.ID, e.Type, e.SchemaVersion, err)
		}
		if next.Type == e.Type && next.SchemaVersion <= e.SchemaVersion {
			return e, fmt.Errorf("eventstore: upcaster for %s v%d returned v%d: it must raise the schema version or change the type", e.Type, e.SchemaVersion, next.SchemaVersion)
		}
		// What the store assigned stays.
		next.ID, next.Stream, next.Version, next.Position, next.Time = e.ID, e.Stream, e.Version, e.Position, e.Time
		e = next
	}
}

// Append adds events to stream in a transaction of its own, if the
// stream is at version expected. It returns the stream's new version.
// The events get their Version, Position, Time (and ID when empty).
func (s *Store) Append(ctx context.Context, stream string, expected Expected, events ...Event) (int64, error) {
	if s.db.Dialect == store.Postgres && len(events) > 0 && len(events) <= perInsertPG {
		return s.appendAutoPG(ctx, stream, expected, events)
	}
	var v int64
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		v, err = s.AppendTx(ctx, tx, stream, expected, events...)
		return err
	})
	return v, err
}

// StreamAppend is one stream's part of an AppendMany.
type StreamAppend struct {
	Stream   string
	Expected Expected
	Events   []Event
}

// AppendMany appends to several streams in one transaction: all or
// none. A conflict on any stream fails the whole batch.
func (s *Store) AppendMany(ctx context.Context, batch []StreamAppend) error {
	return s.db.InTx(ctx, func(tx *store.Tx) error { return s.AppendManyTx(ctx, tx, batch) })
}

// AppendTx is Append inside the caller's transaction: the events commit
// or roll back with the rest of it. Keep the transaction short after
// AppendTx: on SQLite the global position counter stays locked until it
// ends; on PostgreSQL readers see no event appended after its start
// until it ends.
func (s *Store) AppendTx(ctx context.Context, tx *store.Tx, stream string, expected Expected, events ...Event) (int64, error) {
	b := []StreamAppend{{Stream: stream, Expected: expected, Events: events}}
	if err := s.AppendManyTx(ctx, tx, b); err != nil {
		return 0, err
	}
	if len(events) == 0 {
		return s.StreamVersionTx(ctx, tx, stream)
	}
	return events[len(events)-1].Version, nil
}

// validate checks batch before anything is written and returns its
// number of events.
func validate(batch []StreamAppend) (int, error) {
	total := 0
	for _, b := range batch {
		if b.Stream == "" {
			return 0, errors.New("eventstore: append: empty stream name")
		}
		if b.Expected < Any {
			return 0, fmt.Errorf("eventstore: append to %q: expected version %d; want Any (-1), NoStream (0) or a version", b.Stream, b.Expected)
		}
		if !cleanText(b.Stream) || len(b.Stream) > MaxName {
			return 0, fmt.Errorf("eventstore: append: stream name %.100q (%d bytes): want UTF-8 text without NUL bytes, at most %d bytes", b.Stream, len(b.Stream), MaxName)
		}
		for i, e := range b.Events {
			if e.Type == "" {
				return 0, fmt.Errorf("eventstore: append to %q: event %d has no type", b.Stream, i)
			}
			if !cleanText(e.Type) || !cleanText(e.ID) || !cleanText(e.CausationID) || !cleanText(e.CorrelationID) {
				return 0, fmt.Errorf("eventstore: append to %q: event %d (%q): type and ids must be UTF-8 text without NUL bytes", b.Stream, i, e.Type)
			}
			if len(e.ID) > MaxName {
				return 0, fmt.Errorf("eventstore: append to %q: event %d (%s): id of %d bytes, at most %d", b.Stream, i, e.Type, len(e.ID), MaxName)
			}
			for k, v := range e.Metadata {
				if !cleanText(k) || !cleanText(v) {
					return 0, fmt.Errorf("eventstore: append to %q: event %d (%s): metadata %q: want UTF-8 text without NUL bytes", b.Stream, i, e.Type, k)
				}
			}
			if len(e.Data) > 0 && (!json.Valid(e.Data) || !utf8.Valid(e.Data)) {
				return 0, fmt.Errorf("eventstore: append to %q: event %d (%s): data is not valid JSON in UTF-8", b.Stream, i, e.Type)
			}
		}
		total += len(b.Events)
	}
	return total, nil
}

// AppendManyTx is AppendMany inside the caller's transaction. The
// Events slices are filled in place with what the store assigned.
func (s *Store) AppendManyTx(ctx context.Context, tx *store.Tx, batch []StreamAppend) error {
	total, err := validate(batch)
	if err != nil {
		return err
	}
	if tx.Dialect() == store.Postgres {
		return s.appendManyPG(ctx, tx, batch)
	}
	// 1. Stream versions, checked and advanced (row-locked until
	// commit).
	for _, b := range batch {
		n := int64(len(b.Events))
		last, err := s.advance(ctx, tx, b.Stream, b.Expected, n)
		if err != nil {
			return err
		}
		for i := range b.Events {
			b.Events[i].Stream = b.Stream
			b.Events[i].Version = last - n + int64(i) + 1
		}
	}
	if total == 0 {
		return nil
	}
	// 2. Global positions, from the head row: locked until commit, so
	// positions follow commit order and a reader never sees a later one
	// before an earlier one commits.
	var head int64
	if err := tx.QueryRow(ctx, "UPDATE sy_event_head SET position = position + ? WHERE id = 1 RETURNING position", total).Scan(&head); err != nil {
		return fmt.Errorf("eventstore: take positions: %w", err)
	}
	pos := head - int64(total) // the position before this append's first event
	now := time.Now().UTC().Truncate(time.Millisecond)
	// 3. The events, in multi-row inserts.
	const cols = 11
	const perInsert = 500
	rows := make([]*Event, 0, total)
	for bi := range batch {
		for i := range batch[bi].Events {
			e := &batch[bi].Events[i]
			pos++
			e.Position, e.Time = pos, now
			e.fillDefaults()
			rows = append(rows, e)
		}
	}
	var q strings.Builder
	args := make([]any, 0, min(len(rows), perInsert)*cols)
	for start := 0; start < len(rows); start += perInsert {
		chunk := rows[start:min(start+perInsert, len(rows))]
		q.Reset()
		args = args[:0]
		q.WriteString("INSERT INTO sy_events (position, stream, version, id, type, schema_version, data, metadata, causation_id, correlation_id, created_ms) VALUES ")
		for i, e := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
			var md any
			if len(e.Metadata) > 0 {
				b, _ := json.Marshal(e.Metadata)
				md = string(b)
			}
			args = append(args, e.Position, e.Stream, e.Version, e.ID, e.Type, e.SchemaVersion, string(e.Data), md,
				nullStr(e.CausationID), nullStr(e.CorrelationID), now.UnixMilli())
		}
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			if store.IsUniqueViolation(err) {
				return fmt.Errorf("eventstore: append: an event id is already stored (ids must be unique): %w", err)
			}
			return fmt.Errorf("eventstore: append: %w", err)
		}
	}
	return tx.Notify(ctx, Channel)
}

// appendManyPG is AppendManyTx on PostgreSQL: appendOnePG per stream
// (per 500 events of a stream), in the caller's transaction. A stream
// without events has its version checked (not locked: nothing is
// written for it).
func (s *Store) appendManyPG(ctx context.Context, tx *store.Tx, batch []StreamAppend) error {
	wrote := false
	for _, b := range batch {
		if len(b.Events) == 0 {
			if b.Expected == Any {
				continue
			}
			actual, err := s.StreamVersionTx(ctx, tx, b.Stream)
			if err != nil {
				return fmt.Errorf("eventstore: stream %q: %w", b.Stream, err)
			}
			if actual != int64(b.Expected) {
				return &ConflictError{Stream: b.Stream, Expected: b.Expected, Actual: actual}
			}
			continue
		}
		exp := b.Expected
		for start := 0; start < len(b.Events); start += perInsertPG {
			chunk := StreamAppend{Stream: b.Stream, Expected: exp, Events: b.Events[start:min(start+perInsertPG, len(b.Events))]}
			if err := s.appendOnePG(ctx, tx.Tx, false, chunk); err != nil {
				return err
			}
			exp = Expected(chunk.Events[len(chunk.Events)-1].Version)
		}
		wrote = true
	}
	if wrote {
		// Not pg_notify inside the transaction: PostgreSQL holds a
		// database-wide lock over a notifying transaction's commit, WAL
		// flush included, which would make concurrent appends commit one
		// after another again.
		tx.NotifyAfterCommit(Channel)
	}
	return nil
}

// perInsertPG is the most events appendOnePG takes (7 parameters each).
const perInsertPG = 500

// appendAutoPG is Append on PostgreSQL: one statement in a transaction
// of its own (no BEGIN and COMMIT round trips), retried like InTx
// retries a transaction when it fails with a serialization failure.
func (s *Store) appendAutoPG(ctx context.Context, stream string, expected Expected, events []Event) (int64, error) {
	b := StreamAppend{Stream: stream, Expected: expected, Events: events}
	if _, err := validate([]StreamAppend{b}); err != nil {
		return 0, err
	}
	var err error
	for attempt := 0; attempt < store.MaxAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(1<<min(attempt, 6)) * time.Millisecond):
			case <-ctx.Done():
				return 0, errors.Join(ctx.Err(), err)
			}
		}
		err = s.appendOnePG(ctx, s.db.DB, true, b)
		if err == nil {
			s.db.NotifyCommitted(Channel)
			return events[len(events)-1].Version, nil
		}
		if !store.IsRetryable(err) {
			return 0, err
		}
	}
	return 0, err
}

// rowQuerier runs a statement with PostgreSQL's own placeholders ($1,
// ...): a *sql.DB (a transaction of its own) or a *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// pgAppendKey names one shape of appendOnePG's statement.
type pgAppendKey struct {
	kind int // 0 Any, 1 NoStream, 2 an exact version
	n    int // events
	auto bool
}

// pgAppendSQL caches appendOnePG's statements for small appends (built
// once, not per append).
var pgAppendSQL sync.Map // pgAppendKey -> string

const pgAppendCached = 16

// appendOnePG appends to one stream on PostgreSQL in one statement:
// find the stream's last event (its version and position, through the
// (stream, version) unique index), check the expected version and the
// stream's order, learn this transaction's id (and, in the caller's
// transaction, how many events it appended before), insert the events
// at the next versions. There is no stream row to update: the insert
// itself is the conflict check, since a version can be inserted once.
// A refusal (the stream's last event is a younger transaction's, the
// transaction's positions run out, a race lost for some of the versions
// only) fails the statement (sy_event_append_refused and
// sy_event_append_raced raise), so nothing of it stays; a version
// conflict inserts nothing: no row when the statement's snapshot shows
// it, no event inserted when a concurrent append took the versions
// first (ON CONFLICT DO NOTHING waits for that append's transaction to
// end). An append with Any expected then runs again (it sees the winner
// now: READ COMMITTED takes a new snapshot per statement). auto says q
// is the database, the statement a transaction of its own. Round trips
// are most of a small append's cost: in a transaction of its own this
// one costs one, as a plain autocommit INSERT does.
func (s *Store) appendOnePG(ctx context.Context, q rowQuerier, auto bool, b StreamAppend) error {
	n := len(b.Events)
	kind := 2
	switch b.Expected {
	case Any:
		kind = 0
	case NoStream:
		kind = 1
	}
	key := pgAppendKey{kind, n, auto}
	var stmt string
	if v, ok := pgAppendSQL.Load(key); ok {
		stmt = v.(string)
	} else {
		stmt = buildAppendPG(key)
		if n <= pgAppendCached {
			pgAppendSQL.Store(key, stmt)
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	args := make([]any, 0, 4+7*n)
	args = append(args, b.Stream, int64(n), now.UnixMilli())
	if kind == 2 {
		args = append(args, int64(b.Expected))
	}
	for i := range b.Events {
		e := &b.Events[i]
		e.fillDefaults()
		var md any
		if len(e.Metadata) > 0 {
			m, _ := json.Marshal(e.Metadata)
			md = string(m)
		}
		args = append(args, e.ID, e.Type, e.SchemaVersion, string(e.Data), md, nullStr(e.CausationID), nullStr(e.CorrelationID))
	}
	conflict := func() error {
		var actual int64
		if err := q.QueryRowContext(ctx, streamVersionPG, b.Stream).Scan(&actual); err != nil {
			return fmt.Errorf("eventstore: stream %q: %w", b.Stream, err)
		}
		return &ConflictError{Stream: b.Stream, Expected: b.Expected, Actual: actual}
	}
	for attempt := 0; ; attempt++ {
		var v, last, inserted int64
		err := q.QueryRowContext(ctx, stmt, args...).Scan(&v, &last, &inserted)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "sy_events_stream_version_key" {
			// A transaction of its own (auto) whose versions a
			// concurrent append took: rolled back, like inserted == 0
			// below in the caller's transaction.
			err, inserted = nil, 0
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return conflict()
		case store.IsUniqueViolation(err):
			return fmt.Errorf("eventstore: append: an event id is already stored (ids must be unique): %w", err)
		case err != nil:
			return fmt.Errorf("eventstore: append to %q: %w", b.Stream, err)
		case inserted == 0 && kind != 0:
			// A concurrent append took the version first.
			return conflict()
		case inserted == 0:
			if attempt+1 < store.MaxAttempts {
				continue
			}
			return fmt.Errorf("eventstore: append to %q: %w", b.Stream, &pgconn.PgError{Severity: "ERROR", Code: "40001",
				Message: fmt.Sprintf("concurrent appends took the stream's next version %d times in a row; retry the transaction", store.MaxAttempts)})
		case inserted != int64(n):
			return fmt.Errorf("eventstore: append to %q: %d of %d events inserted", b.Stream, inserted, n)
		}
		for i := range b.Events {
			e := &b.Events[i]
			e.Stream, e.Version, e.Position, e.Time = b.Stream, v-int64(n)+int64(i)+1, last+int64(i)+1, now
		}
		return nil
	}
}

// streamVersionPG is a stream's version on PostgreSQL: its last event's
// (an index-only look-up of (stream, version) at best).
const streamVersionPG = "SELECT COALESCE(MAX(version), 0) FROM sy_events WHERE stream = $1"

// buildAppendPG writes appendOnePG's statement. Parameters: $1 the
// stream, $2 the number of events, $3 the time, [$4 the expected
// version], then 7 per event.
func buildAppendPG(k pgAppendKey) string {
	const me = "pg_current_xact_id()::text::bigint"
	p := 4
	check := "true"
	switch k.kind {
	case 1:
		check = "l.version IS NULL"
	case 2:
		check = "COALESCE(l.version, 0) = $4"
		p = 5
	}
	// ok: the stream's last event is this transaction's or an older
	// one's (its position below this transaction's range's end).
	const ok = "COALESCE(l.position, 0) < ((x.me + 1) << 16)"
	const xid = "CASE WHEN " + ok + " THEN x.me ELSE l.position >> 16 END"
	// x: this transaction's id; l: the stream's last event (none for a
	// new stream; in the caller's transaction its own earlier events
	// included).
	const lastEvent = "(SELECT " + me + " AS me) x LEFT JOIN LATERAL (SELECT version, position FROM sy_events WHERE stream = $1 ORDER BY version DESC LIMIT 1) l ON true"
	var q strings.Builder
	values := func() {
		for i := 0; i < k.n; i++ {
			if i > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "(%d::bigint, $%d::text, $%d::text, $%d::integer, $%d::text, $%d::text, $%d::text, $%d::text)", i+1, p, p+1, p+2, p+3, p+4, p+5, p+6)
			p += 7
		}
		q.WriteString(") AS v (i, id, type, sv, data, md, caus, corr)")
	}
	const cols = "INSERT INTO sy_events (position, stream, version, id, type, schema_version, data, metadata, causation_id, correlation_id, created_ms) "
	if k.auto {
		// A transaction of its own: nothing appended before in it, so
		// the positions are x.me << 16 plus 1, 2, ...; one plain INSERT
		// ... SELECT (no CTE to materialize). No row inserted: a version
		// conflict. A version a concurrent append took fails the
		// statement with a unique violation on (stream, version), which
		// was the whole transaction: nothing of it stays (cheaper than
		// ON CONFLICT's speculative insertion). Every row returns the
		// stream's version before the append and the position before
		// its first event.
		q.WriteString(cols + "SELECT (x.me << 16) + v.i, $1, COALESCE(l.version, 0) + v.i, v.id, v.type, v.sv, v.data, v.md, v.caus, v.corr, $3 FROM " + lastEvent + ", (VALUES ")
		values()
		q.WriteString(" WHERE CASE WHEN NOT (" + check + ") THEN false WHEN " + ok + " THEN true ELSE sy_event_append_refused(x.me, " + xid + ", 0, $2) END")
		q.WriteString(" RETURNING version - (position & 65535) + $2, position - (position & 65535), $2")
		return q.String()
	}
	// In the caller's transaction: u.last is the position before this
	// append's first event (after the transaction's earlier ones). b:
	// the stream's version and u.last; no row on a version conflict; the
	// statement fails when the stream's order does not allow this
	// transaction or the events do not fit its range.
	q.WriteString("WITH b AS (SELECT COALESCE(l.version, 0) AS version, u.last FROM " + lastEvent + ", LATERAL (SELECT COALESCE(MAX(position), x.me << 16) AS last FROM sy_events WHERE position > (x.me << 16) AND position < ((x.me + 1) << 16)) u WHERE CASE WHEN NOT (" + check + ") THEN false WHEN " + ok + " AND u.last + $2 < ((x.me + 1) << 16) THEN true ELSE sy_event_append_refused(x.me, " + xid + ", u.last - (x.me << 16), $2) END), ")
	q.WriteString("ins AS (" + cols + "SELECT b.last + v.i, $1, b.version + v.i, v.id, v.type, v.sv, v.data, v.md, v.caus, v.corr, $3 FROM b, (VALUES ")
	values()
	// A version a concurrent append took: it waits for that append's
	// transaction, then inserts nothing there (the caller's transaction
	// stays usable, as with a conflict the snapshot shows). Some of the
	// versions taken, not all: fail the statement rather than leave a
	// partial append.
	q.WriteString(" ON CONFLICT (stream, version) DO NOTHING RETURNING 1) ")
	q.WriteString("SELECT b.version + $2, b.last, CASE WHEN c.n = 0 OR c.n = $2 THEN c.n ELSE sy_event_append_raced($1, c.n, $2) END FROM b, (SELECT COUNT(*) AS n FROM ins) c")
	return q.String()
}

// advance checks stream's version against expected and moves it on by
// n, returning the new version (SQLite: the stream row, locked until
// commit).
func (s *Store) advance(ctx context.Context, tx *store.Tx, stream string, expected Expected, n int64) (int64, error) {
	var v int64
	q, args := advanceSQL(stream, expected, n)
	err := tx.QueryRow(ctx, q, args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		actual, err := s.StreamVersionTx(ctx, tx, stream)
		if err != nil {
			return 0, err
		}
		return 0, &ConflictError{Stream: stream, Expected: expected, Actual: actual}
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: stream %q: %w", stream, err)
	}
	return v, nil
}

// advanceSQL is the SQLite statement that checks stream against
// expected and moves it on by n, returning the new version (no row: a
// conflict).
func advanceSQL(stream string, expected Expected, n int64) (string, []any) {
	switch {
	case expected == Any:
		return `INSERT INTO sy_event_streams (stream, version) VALUES (?, ?)
			ON CONFLICT (stream) DO UPDATE SET version = sy_event_streams.version + excluded.version
			RETURNING version`, []any{stream, n}
	case expected == NoStream:
		return `INSERT INTO sy_event_streams (stream, version) VALUES (?, ?)
			ON CONFLICT (stream) DO NOTHING RETURNING version`, []any{stream, n}
	default:
		return `UPDATE sy_event_streams SET version = version + ?
			WHERE stream = ? AND version = ? RETURNING version`, []any{n, stream, int64(expected)}
	}
}

// StreamVersion is the number of events in stream (0 when it has none).
func (s *Store) StreamVersion(ctx context.Context, stream string) (int64, error) {
	var v int64
	err := s.db.QueryRow(ctx, s.streamVersionSQL(), stream).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// StreamVersionTx is StreamVersion inside tx.
func (s *Store) StreamVersionTx(ctx context.Context, tx *store.Tx, stream string) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, s.streamVersionSQL(), stream).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// streamVersionSQL reads a stream's version: on PostgreSQL its last
// event's (there is no stream row), on SQLite the stream row's.
func (s *Store) streamVersionSQL() string {
	if s.db.Dialect == store.Postgres {
		return "SELECT COALESCE(MAX(version), 0) FROM sy_events WHERE stream = ?"
	}
	return "SELECT version FROM sy_event_streams WHERE stream = ?"
}

// Head is the global position of the last event readers can see (0
// when there is none) and the time it was appended: on PostgreSQL the
// last below every transaction still running.
func (s *Store) Head(ctx context.Context) (int64, time.Time, error) {
	var pos int64
	var ms sql.NullInt64
	q := "SELECT h.position, e.created_ms FROM sy_event_head h LEFT JOIN sy_events e ON e.position = h.position WHERE h.id = 1"
	if s.db.Dialect == store.Postgres {
		q = "SELECT position, created_ms FROM sy_events WHERE position < " + frontier + " ORDER BY position DESC LIMIT 1"
	}
	err := s.db.QueryRow(ctx, q).Scan(&pos, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	var t time.Time
	if ms.Valid {
		t = time.UnixMilli(ms.Int64).UTC()
	}
	return pos, t, nil
}

const selectEvents = "SELECT position, stream, version, id, type, schema_version, data, metadata, causation_id, correlation_id, created_ms FROM sy_events "

// ReadStream returns up to limit events of stream from version from
// (inclusive), oldest first, upcast. limit <= 0 reads them all.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]Event, error) {
	q := selectEvents + "WHERE stream = ? AND version >= ? ORDER BY version"
	args := []any{stream, from}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read stream %q: %w", stream, err)
	}
	return s.scan(rows)
}

// readAllSQL reads after a position in global order: on PostgreSQL only
// below the frontier, so that no transaction still running can commit
// an event before what the reader has seen.
func (s *Store) readAllSQL() string {
	if s.db.Dialect == store.Postgres {
		return selectEvents + "WHERE position > ? AND position < " + frontier + " ORDER BY position LIMIT ?"
	}
	return selectEvents + "WHERE position > ? ORDER BY position LIMIT ?"
}

// ReadAll returns up to limit events of every stream after global
// position after (a checkpoint: the position of the last event the
// caller has handled; 0 reads from the start), in global order, upcast.
// On PostgreSQL it returns only events of transactions older than every
// transaction still running (see the package doc).
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.Query(ctx, s.readAllSQL(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read all after %d: %w", after, err)
	}
	return s.scan(rows)
}

// ReadAllTx is ReadAll inside tx. On PostgreSQL a transaction that has
// written holds its own frontier back: it reads none of its own events,
// nor any appended after it began.
func (s *Store) ReadAllTx(ctx context.Context, tx *store.Tx, after int64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := tx.Query(ctx, s.readAllSQL(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read all after %d: %w", after, err)
	}
	return s.scan(rows)
}

// CountAfter is how many events readers can see after position after
// (on PostgreSQL positions have gaps, so it is not Head - after).
func (s *Store) CountAfter(ctx context.Context, after int64) (int64, error) {
	q := "SELECT COUNT(*) FROM sy_events WHERE position > ?"
	if s.db.Dialect == store.Postgres {
		q += " AND position < " + frontier
	}
	var n int64
	if err := s.db.QueryRow(ctx, q, after).Scan(&n); err != nil {
		return 0, fmt.Errorf("eventstore: count after %d: %w", after, err)
	}
	return n, nil
}

// Pending reports, on PostgreSQL, whether any event after position
// after is committed, readable now or held back: a transaction older
// than it still runs (anywhere on the server), and that transaction's
// end sends no wake-up, so a follower that read nothing must look again
// soon (HeldBackPoll) rather than wait for a notification or its poll
// interval. It counts readable events too, since an event held back
// when the follower read may have become readable just before this
// check, with its wake-up already spent: asking only about held-back
// events would then answer false and the follower would sleep through
// it. Always false on SQLite, where every committed event is readable
// and its append's wake-up comes after the commit.
func (s *Store) Pending(ctx context.Context, after int64) (bool, error) {
	if s.db.Dialect != store.Postgres {
		return false, nil
	}
	var pending bool
	err := s.db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM sy_events WHERE position > ?)", after).Scan(&pending)
	return pending, err
}

func (s *Store) scan(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var data string
		var md, caus, corr sql.NullString
		var ms int64
		if err := rows.Scan(&e.Position, &e.Stream, &e.Version, &e.ID, &e.Type, &e.SchemaVersion, &data, &md, &caus, &corr, &ms); err != nil {
			return nil, err
		}
		e.Data = json.RawMessage(data)
		if md.Valid {
			if err := json.Unmarshal([]byte(md.String), &e.Metadata); err != nil {
				return nil, fmt.Errorf("eventstore: event %s: metadata: %w", e.ID, err)
			}
		}
		e.CausationID, e.CorrelationID = caus.String, corr.String
		e.Time = time.UnixMilli(ms).UTC()
		e, err := s.upcast(e)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// HeldBackPoll is the longest a follower waits before it looks again
// while events are held back (see Pending): the wait starts at 1 ms and
// doubles up to this, whatever the poll interval, since no wake-up comes
// when the older transaction ends.
const HeldBackPoll = 100 * time.Millisecond

// Subscribe calls fn with every event after checkpoint after, in global
// order: first the ones already stored (catch-up), then new ones as they
// commit (woken by the append's notification, polling every
// PollInterval as a fallback). On PostgreSQL, while committed events are
// held back by an older transaction still running, it looks again
// sooner (from 1 ms, doubling, up to HeldBackPoll or PollInterval if
// shorter). It returns when ctx
// ends (with ctx's error) or fn fails (with fn's error). The caller
// stores the position of the last event it handled to resume from.
func (s *Store) Subscribe(ctx context.Context, after int64, fn func(ctx context.Context, e Event) error) error {
	wake, stop := s.db.Listen(Channel)
	defer stop()
	poll := s.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	timer := time.NewTimer(poll)
	defer timer.Stop()
	const batch = 500
	held := time.Duration(0) // the wait while events are held back
	for {
		evs, err := s.ReadAll(ctx, after, batch)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		for _, e := range evs {
			if err := fn(ctx, e); err != nil {
				return err
			}
			after = e.Position
		}
		if len(evs) == batch {
			continue
		}
		wait := poll
		switch h, err := s.Pending(ctx, after); {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("eventstore: subscribe after %d: %w", after, err)
		case h:
			held = min(max(2*held, time.Millisecond), poll, HeldBackPoll)
			wait = held
		default:
			held = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// NewID is a random UUID (version 4) for an event id.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// MaxName is the longest stream name or event id an append takes: a
// PostgreSQL index entry holds about 2.7 KB at most, and a name refused
// there and not on SQLite would make the two differ.
const MaxName = 1000

// cleanText reports whether s can be stored as text on both dialects
// (PostgreSQL refuses NUL bytes and invalid UTF-8).
func cleanText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// fillDefaults gives an event about to be appended what it may leave
// out: a new ID, schema version 1, JSON null data.
func (e *Event) fillDefaults() {
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.SchemaVersion == 0 {
		e.SchemaVersion = 1
	}
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("null")
	}
}
