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
// Every event also gets a global position: 1, 2, 3, ... over all
// streams, in commit order, without gaps. ReadAll reads from a
// checkpoint and Subscribe catches up from one and then follows new
// events live. Positions are handed out from a counter row that an
// appending transaction locks until it commits, so no reader ever sees
// position 5 before 4 has committed (the trap of a plain sequence, whose
// values are taken before commit); the price is that appends to one
// store commit one at a time, which SQLite does anyway. Append in
// batches (AppendMany) for throughput.
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

	"github.com/switchyard/switchyard/kit/store"
)

// Event is one stored fact about an aggregate.
type Event struct {
	ID            string            // unique; generated when empty on append
	Stream        string            // the aggregate's stream, e.g. "ride-42"
	Version       int64             // 1, 2, 3, ... within the stream (set on append)
	Position      int64             // 1, 2, 3, ... over all streams, commit order (set on append)
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
}}

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
// or roll back with the rest of it. The global position counter stays
// locked until that transaction ends, so keep it short after AppendTx.
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

// AppendManyTx is AppendMany inside the caller's transaction. The
// Events slices are filled in place with what the store assigned.
func (s *Store) AppendManyTx(ctx context.Context, tx *store.Tx, batch []StreamAppend) error {
	total := 0
	for _, b := range batch {
		if b.Stream == "" {
			return errors.New("eventstore: append: empty stream name")
		}
		if b.Expected < Any {
			return fmt.Errorf("eventstore: append to %q: expected version %d; want Any (-1), NoStream (0) or a version", b.Stream, b.Expected)
		}
		if !cleanText(b.Stream) {
			return fmt.Errorf("eventstore: append: stream name %q: want UTF-8 text without NUL bytes", b.Stream)
		}
		for i, e := range b.Events {
			if e.Type == "" {
				return fmt.Errorf("eventstore: append to %q: event %d has no type", b.Stream, i)
			}
			if !cleanText(e.Type) || !cleanText(e.ID) || !cleanText(e.CausationID) || !cleanText(e.CorrelationID) {
				return fmt.Errorf("eventstore: append to %q: event %d (%q): type and ids must be UTF-8 text without NUL bytes", b.Stream, i, e.Type)
			}
			for k, v := range e.Metadata {
				if !cleanText(k) || !cleanText(v) {
					return fmt.Errorf("eventstore: append to %q: event %d (%s): metadata %q: want UTF-8 text without NUL bytes", b.Stream, i, e.Type, k)
				}
			}
			if len(e.Data) > 0 && !json.Valid(e.Data) {
				return fmt.Errorf("eventstore: append to %q: event %d (%s): data is not valid JSON", b.Stream, i, e.Type)
			}
		}
		total += len(b.Events)
	}
	var head int64
	if tx.Dialect() == store.Postgres && len(batch) == 1 && total > 0 {
		// One statement on PostgreSQL: check and advance the stream,
		// take the positions, queue the commit's notification
		// (pg_notify is transactional, delivered at commit, to this
		// process too). Fewer round trips is most of an append's cost.
		b := batch[0]
		n := int64(total)
		adv, args := advanceSQL(b.Stream, b.Expected, n)
		var last int64
		var dummy bool
		err := tx.QueryRow(ctx, "WITH s AS ("+adv+") UPDATE sy_event_head SET position = position + ? WHERE id = 1 AND EXISTS (SELECT 1 FROM s) RETURNING position, (SELECT version FROM s), pg_notify('"+Channel+"', '') IS NULL",
			append(args, n)...).Scan(&head, &last, &dummy)
		if errors.Is(err, sql.ErrNoRows) {
			actual, err := s.StreamVersionTx(ctx, tx, b.Stream)
			if err != nil {
				return err
			}
			return &ConflictError{Stream: b.Stream, Expected: b.Expected, Actual: actual}
		}
		if err != nil {
			return fmt.Errorf("eventstore: append to %q: %w", b.Stream, err)
		}
		for i := range b.Events {
			b.Events[i].Stream = b.Stream
			b.Events[i].Version = last - n + int64(i) + 1
		}
	} else {
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
		// 2. Global positions, from the head row: locked until commit,
		// so positions follow commit order and a reader never sees a
		// later one before an earlier one commits.
		takeQ := "UPDATE sy_event_head SET position = position + ? WHERE id = 1 RETURNING position"
		if tx.Dialect() == store.Postgres {
			takeQ = "UPDATE sy_event_head SET position = position + ? WHERE id = 1 RETURNING position, pg_notify('" + Channel + "', '') IS NULL"
		}
		var dummy bool
		dest := []any{&head}
		if tx.Dialect() == store.Postgres {
			dest = append(dest, &dummy)
		}
		if err := tx.QueryRow(ctx, takeQ, total).Scan(dest...); err != nil {
			return fmt.Errorf("eventstore: take positions: %w", err)
		}
	}
	pos := head - int64(total)
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
			if e.ID == "" {
				e.ID = NewID()
			}
			if e.SchemaVersion == 0 {
				e.SchemaVersion = 1
			}
			if len(e.Data) == 0 {
				e.Data = json.RawMessage("null")
			}
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
	if tx.Dialect() == store.Postgres {
		return nil // notified above
	}
	return tx.Notify(ctx, Channel)
}

// advance checks stream's version against expected and moves it on by
// n, returning the new version.
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

// advanceSQL is the statement that checks stream against expected and
// moves it on by n, returning the new version (no row: a conflict).
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
	err := s.db.QueryRow(ctx, "SELECT version FROM sy_event_streams WHERE stream = ?", stream).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// StreamVersionTx is StreamVersion inside tx.
func (s *Store) StreamVersionTx(ctx context.Context, tx *store.Tx, stream string) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, "SELECT version FROM sy_event_streams WHERE stream = ?", stream).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// Head is the global position of the last committed event (0 when the
// store is empty) and the time it was appended.
func (s *Store) Head(ctx context.Context) (int64, time.Time, error) {
	var pos int64
	var ms sql.NullInt64
	err := s.db.QueryRow(ctx, "SELECT h.position, e.created_ms FROM sy_event_head h LEFT JOIN sy_events e ON e.position = h.position WHERE h.id = 1").Scan(&pos, &ms)
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

// ReadAll returns up to limit events of every stream after global
// position after (a checkpoint: the position of the last event the
// caller has handled; 0 reads from the start), in global order, upcast.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.Query(ctx, selectEvents+"WHERE position > ? ORDER BY position LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read all after %d: %w", after, err)
	}
	return s.scan(rows)
}

// ReadAllTx is ReadAll inside tx.
func (s *Store) ReadAllTx(ctx context.Context, tx *store.Tx, after int64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := tx.Query(ctx, selectEvents+"WHERE position > ? ORDER BY position LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read all after %d: %w", after, err)
	}
	return s.scan(rows)
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

// Subscribe calls fn with every event after checkpoint after, in global
// order: first the ones already stored (catch-up), then new ones as they
// commit (woken by the append's notification, polling every
// PollInterval as a fallback). It returns when ctx ends (with ctx's
// error) or fn fails (with fn's error). The caller stores the position
// of the last event it handled to resume from.
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
		timer.Reset(poll)
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
