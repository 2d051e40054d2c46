// Package store is the service kit's storage layer: one API over SQLite
// (the default, pure Go, nothing to install) and PostgreSQL, so every
// stateful pattern (outbox, inbox, sagas, event store, projections) runs
// on either with the same code and one shared test suite.
//
// A DB is a database/sql handle that knows its dialect. SQL is written
// with `?` placeholders and rebound for PostgreSQL. Migrations are
// versioned per component, checksummed, and safe to run from several
// replicas at once. Leases give one replica leadership of a named
// partition, with a fencing token. Notify and Listen wake waiters after a
// commit without polling lag: PostgreSQL LISTEN/NOTIFY across processes,
// an in-process signal for SQLite; callers still poll as a fallback.
//
// Durability: SQLite runs in WAL mode with synchronous=FULL (a commit is
// on disk when it returns, also across power loss), busy_timeout 10 s and
// BEGIN IMMEDIATE transactions, so writers queue instead of failing with
// SQLITE_BUSY halfway through a transaction. PostgreSQL keeps the
// server's settings (synchronous_commit on by default).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect says which engine a DB talks to.
type Dialect int

// The dialects.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is a database handle that knows its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
	dsn     string // for Listen's dedicated connection (PostgreSQL)

	mu          sync.Mutex
	waiters     map[string]map[chan struct{}]struct{}
	pgl         *pgListener
	leasesReady bool
	migrated    map[string]bool // components MigrateOnce brought up to date
	later       map[string]bool // channels NotifyAfterCommit still has to send (PostgreSQL)
	sending     bool            // a notifyLater goroutine runs
	// origin is the payload of this handle's notifications (PostgreSQL):
	// its listener skips them, since every commit that sends one has
	// woken this handle's waiters in process already.
	origin string
}

// Open opens the database a URL names:
//
//	sqlite:PATH, sqlite://PATH, file:PATH or a bare path  SQLite file (created)
//	postgres://... or postgresql://...                     PostgreSQL (pgx)
//
// A bare path ending in .db/.sqlite works too. For SQLite the directory is
// created. The connection is checked before Open returns.
func Open(ctx context.Context, dsn string) (*DB, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if err := checkPostgresURL(dsn); err != nil {
			return nil, err
		}
		h, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", redact(dsn), err)
		}
		h.SetMaxOpenConns(32)
		h.SetMaxIdleConns(32)
		h.SetConnMaxIdleTime(5 * time.Minute)
		if err := h.PingContext(ctx); err != nil {
			h.Close()
			return nil, fmt.Errorf("store: connect to %s: %w", redact(dsn), err)
		}
		return &DB{DB: h, Dialect: Postgres, dsn: dsn, origin: newOrigin()}, nil
	case strings.Contains(dsn, "://") && !strings.HasPrefix(dsn, "sqlite://"):
		return nil, fmt.Errorf("store: %q: unknown database URL scheme; want sqlite:PATH or postgres://", redact(dsn))
	}
	path := dsn
	for _, p := range []string{"sqlite://", "sqlite:", "file:"} {
		if strings.HasPrefix(path, p) {
			path = strings.TrimPrefix(path, p)
			break
		}
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return nil, fmt.Errorf("store: %q: options in a SQLite URL are not taken; the kit sets WAL, synchronous=FULL and busy_timeout itself", dsn)
	}
	if path == "" {
		return nil, fmt.Errorf("store: %q: empty SQLite path", dsn)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	h, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One writer at a time is SQLite's model; more connections only help
	// readers, and WAL lets them read beside the writer.
	h.SetMaxOpenConns(8)
	h.SetMaxIdleConns(8)
	// Switching a new file to WAL takes an exclusive lock that SQLite does
	// not wait for with busy_timeout: replicas opening one fresh file at
	// once get SQLITE_BUSY here. Try again for a while.
	var err2 error
	deadline := time.Now().Add(10 * time.Second)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err2 = h.PingContext(ctx)
		if err2 == nil || !IsRetryable(err2) || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err2 != nil {
		h.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err2)
	}
	return &DB{DB: h, Dialect: SQLite, dsn: path}, nil
}

// Close closes the handle and any Listen connection.
func (db *DB) Close() error {
	db.mu.Lock()
	l := db.pgl
	db.pgl = nil
	db.mu.Unlock()
	if l != nil {
		l.stop()
	}
	return db.DB.Close()
}

// redact hides a password in a database URL for error messages: the
// user info's password, a query that names a password (pgx takes
// ?password=), and anything after the host when the text is not a URL
// whose parts can be told apart (a password with a stray '%', a space,
// a '/' or a '#' that was not percent-encoded).
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		if i := strings.Index(dsn, "://"); i >= 0 {
			return dsn[:i+3] + "xxxxx (not a valid URL, hidden)"
		}
		return "xxxxx (not a valid URL, hidden)"
	}
	if strings.Contains(u.Path, "@") || strings.Contains(u.Fragment, "@") || strings.Contains(u.RawQuery, "@") {
		// The user info was not recognised (or only its start was: a
		// password with '?' ends it early): host and port are part of it.
		return u.Scheme + "://xxxxx (user info not percent-encoded, hidden)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		hide := err != nil
		for k := range q {
			hide = hide || strings.Contains(strings.ToLower(k), "pass")
		}
		if hide {
			u.RawQuery = "xxxxx"
		}
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "xxxxx", ""
	}
	return u.String()
}

// checkPostgresURL refuses a PostgreSQL URL whose user info did not
// parse as such: an '@' after the host means a password with an
// unencoded '/', '?' or '#', which pgx would read as host, port and
// database (connecting elsewhere, as another user, with the password as
// the database name in its error).
func checkPostgresURL(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil // pgx reports it, without the password
	}
	if strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") || strings.Contains(u.Fragment, "@") {
		return fmt.Errorf("store: %s: '@' after the host: percent-encode '/', '?', '#' and '@' in the user name and password", redact(dsn))
	}
	return nil
}

// Rebind turns the `?` placeholders of q into the dialect's ($1, $2, ...
// for PostgreSQL). Question marks inside quoted strings, quoted
// identifiers and comments are left alone.
func (d Dialect) Rebind(q string) string {
	if d != Postgres || strings.IndexByte(q, '?') < 0 {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			end := len(q) - 1
			if j >= 0 {
				end = i + 2 + j + 1
			}
			b.WriteString(q[i : end+1])
			i = end
		case c == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Exec runs q (with ? placeholders) outside a transaction.
func (db *DB) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return db.DB.ExecContext(ctx, db.Dialect.Rebind(q), args...)
}

// Query runs q (with ? placeholders) outside a transaction.
func (db *DB) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.DB.QueryContext(ctx, db.Dialect.Rebind(q), args...)
}

// QueryRow runs q (with ? placeholders) outside a transaction.
func (db *DB) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(ctx, db.Dialect.Rebind(q), args...)
}

// Tx is a transaction that rebinds placeholders and collects the
// notifications to send when it commits.
type Tx struct {
	*sql.Tx
	db       *DB
	channels []string
	after    []string // NotifyAfterCommit channels
}

// DB returns the database the transaction belongs to.
func (tx *Tx) DB() *DB { return tx.db }

// Dialect is the dialect of the transaction's database.
func (tx *Tx) Dialect() Dialect { return tx.db.Dialect }

// Exec runs q (with ? placeholders) in the transaction.
func (tx *Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.Tx.ExecContext(ctx, tx.db.Dialect.Rebind(q), args...)
}

// Query runs q (with ? placeholders) in the transaction.
func (tx *Tx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.Tx.QueryContext(ctx, tx.db.Dialect.Rebind(q), args...)
}

// QueryRow runs q (with ? placeholders) in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.Tx.QueryRowContext(ctx, tx.db.Dialect.Rebind(q), args...)
}

// Notify wakes the listeners of channel once the transaction commits
// (never if it rolls back). On PostgreSQL this is pg_notify, delivered to
// every process; on SQLite, to Listen callers in this process.
func (tx *Tx) Notify(ctx context.Context, channel string) error {
	for _, c := range tx.channels {
		if c == channel {
			return nil
		}
	}
	tx.channels = append(tx.channels, channel)
	if tx.db.Dialect == Postgres {
		_, err := tx.Tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", channel, tx.db.origin)
		return err
	}
	return nil
}

// NotifyAfterCommit is Notify without PostgreSQL's commit lock: the
// listeners of channel are woken after the transaction committed (never
// if it rolls back), in this process at once and, on PostgreSQL, in other
// processes by a pg_notify sent from outside the transaction shortly
// after (coalesced: one in flight per handle, covering every commit
// before it). A transactional NOTIFY makes PostgreSQL take a database-wide
// lock from the commit's start to its end, WAL flush included, so
// concurrent notifying transactions commit one after another instead of
// sharing a flush; for a hot path (the outbox's Add) that costs more than
// half the commit throughput. The price: a process that dies between its
// commit and the send wakes other processes only at their next poll,
// which Listen's callers do anyway.
func (tx *Tx) NotifyAfterCommit(channel string) {
	if !slices.Contains(tx.after, channel) {
		tx.after = append(tx.after, channel)
	}
}

// MaxAttempts is how many times InTx runs a transaction that fails with a
// serialization failure, deadlock or busy database before giving up.
const MaxAttempts = 10

// InTx runs fn in a transaction and commits it. fn may run more than once:
// a transaction that fails with a serialization failure, a deadlock or a
// busy SQLite database is rolled back and retried (up to MaxAttempts), so
// fn must not have effects outside the transaction. Any other error from
// fn rolls back and is returned as is.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	var err error
	for attempt := 0; attempt < MaxAttempts; attempt++ {
		if attempt > 0 {
			d := time.Duration(1<<min(attempt, 6)) * time.Millisecond
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return errors.Join(ctx.Err(), err)
			}
		}
		err = db.tryTx(ctx, fn)
		if err == nil || !IsRetryable(err) {
			return err
		}
	}
	return err
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	stx, err := db.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	tx := &Tx{Tx: stx, db: db}
	defer func() {
		if p := recover(); p != nil {
			stx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		stx.Rollback()
		return err
	}
	if err := stx.Commit(); err != nil {
		return err
	}
	for _, c := range tx.channels {
		db.signal(c)
	}
	for _, c := range tx.after {
		db.NotifyCommitted(c)
	}
	return nil
}

// NotifyCommitted wakes the listeners of channel for a write that has
// committed already (a statement run outside a transaction, in one of
// its own): what NotifyAfterCommit does when its transaction commits.
func (db *DB) NotifyCommitted(channel string) {
	db.signal(channel)
	if db.Dialect == Postgres {
		db.notifyLater(channel)
	}
}

// IsRetryable reports whether err is a transient conflict that a retry
// of the whole transaction may get past: PostgreSQL serialization
// failure (40001) or deadlock (40P01), SQLite busy or locked.
func IsRetryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// IsUniqueViolation reports whether err is a unique or primary key
// constraint violation.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
