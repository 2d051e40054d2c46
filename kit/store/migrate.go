package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Migration is one versioned change to a component's schema.
type Migration struct {
	Version int    // 1, 2, 3, ...: applied in order, each once
	Name    string // what it does, for the record
	// SQL runs on both dialects unless the dialect's own field is set.
	// Several statements are separated by semicolons at line ends.
	SQL, SQLite, Postgres string
}

func (m Migration) sqlFor(d Dialect) string {
	if d == Postgres && m.Postgres != "" {
		return m.Postgres
	}
	if d == SQLite && m.SQLite != "" {
		return m.SQLite
	}
	return m.SQL
}

// ErrNewerSchema is returned (wrapped) by Migrate when the database holds
// migrations of the component that this build does not know: a newer
// version of the service migrated it.
var ErrNewerSchema = errors.New("the database's schema is newer than this build")

// Migrate brings component's tables up to the last of ms, in one
// transaction: all of the pending migrations apply or none does. It is
// safe to call from several replicas at once (a PostgreSQL advisory lock
// or SQLite's write lock makes them take turns; the later ones find
// nothing to do). A migration already applied whose SQL has since changed
// is an error, as is a database that knows versions this build does not
// (ErrNewerSchema).
func (db *DB) Migrate(ctx context.Context, component string, ms []Migration) error {
	if component == "" {
		return errors.New("store: Migrate: empty component name")
	}
	sorted := append([]Migration(nil), ms...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Version < sorted[j].Version })
	for i, m := range sorted {
		if m.Version != i+1 {
			return fmt.Errorf("store: %s migrations: want versions 1..%d without gaps or repeats, found %d at position %d", component, len(sorted), m.Version, i+1)
		}
		if strings.TrimSpace(m.sqlFor(db.Dialect)) == "" {
			return fmt.Errorf("store: %s migration %d (%s) has no SQL for %s", component, m.Version, m.Name, db.Dialect)
		}
	}
	if db.upToDate(ctx, component, sorted) {
		return nil
	}
	return db.InTx(ctx, func(tx *Tx) error {
		if db.Dialect == Postgres {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('switchyard.store.migrate'))"); err != nil {
				return fmt.Errorf("store: migration lock: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS sy_schema_migrations (
			component TEXT NOT NULL,
			version INTEGER NOT NULL,
			name TEXT NOT NULL,
			checksum TEXT NOT NULL,
			applied_at TEXT NOT NULL,
			PRIMARY KEY (component, version))`); err != nil {
			return fmt.Errorf("store: create sy_schema_migrations: %w", err)
		}
		applied := map[int]string{}
		rows, err := tx.Query(ctx, "SELECT version, checksum FROM sy_schema_migrations WHERE component = ?", component)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			var sum string
			if err := rows.Scan(&v, &sum); err != nil {
				rows.Close()
				return err
			}
			applied[v] = sum
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for v := range applied {
			if v > len(sorted) {
				return fmt.Errorf("store: %s: %w: it has migration %d, this build knows up to %d", component, ErrNewerSchema, v, len(sorted))
			}
		}
		for _, m := range sorted {
			text := m.sqlFor(db.Dialect)
			sum := checksum(text)
			if old, ok := applied[m.Version]; ok {
				if old != sum {
					return fmt.Errorf("store: %s migration %d (%s) was applied with different SQL (checksum %s, now %s); add a new migration instead of editing an applied one", component, m.Version, m.Name, old[:12], sum[:12])
				}
				continue
			}
			for _, stmt := range splitStatements(text) {
				if _, err := tx.Tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("store: %s migration %d (%s): %w", component, m.Version, m.Name, err)
				}
			}
			if _, err := tx.Exec(ctx, "INSERT INTO sy_schema_migrations (component, version, name, checksum, applied_at) VALUES (?, ?, ?, ?, ?)",
				component, m.Version, m.Name, sum, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
		return nil
	})
}

// upToDate reports, without taking a write lock, whether component has
// exactly the migrations ms applied with their SQL unchanged: a replica
// starting against a migrated schema then needs no write transaction (on
// SQLite a busy writer could keep it waiting for the lock for up to the
// busy timeout per call). Anything else — no table yet, a version
// missing, a checksum that differs, a newer schema, an error — answers
// false, and Migrate's locked transaction decides and reports.
func (db *DB) upToDate(ctx context.Context, component string, ms []Migration) bool {
	rows, err := db.DB.QueryContext(ctx, db.Dialect.Rebind("SELECT version, checksum FROM sy_schema_migrations WHERE component = ?"), component)
	if err != nil {
		return false
	}
	defer rows.Close()
	applied := map[int]string{}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return false
		}
		applied[v] = sum
	}
	if rows.Err() != nil || len(applied) != len(ms) {
		return false
	}
	for _, m := range ms {
		if applied[m.Version] != checksum(m.sqlFor(db.Dialect)) {
			return false
		}
	}
	return true
}

// MigrateOnce is Migrate, run once per DB handle and component: a
// library whose entry points take a *DB calls it on every use and pays
// for the migration only the first time. Concurrent first calls may each
// run Migrate (it is safe to); a failed one is tried again next time.
func (db *DB) MigrateOnce(ctx context.Context, component string, ms []Migration) error {
	db.mu.Lock()
	done := db.migrated[component]
	db.mu.Unlock()
	if done {
		return nil
	}
	if err := db.Migrate(ctx, component, ms); err != nil {
		return err
	}
	db.mu.Lock()
	if db.migrated == nil {
		db.migrated = map[string]bool{}
	}
	db.migrated[component] = true
	db.mu.Unlock()
	return nil
}

// Version is the last migration of component applied to the database (0
// when none).
func (db *DB) Version(ctx context.Context, component string) (int, error) {
	var v sql.NullInt64
	err := db.QueryRow(ctx, "SELECT MAX(version) FROM sy_schema_migrations WHERE component = ?", component).Scan(&v)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "does not exist") {
			return 0, nil
		}
		return 0, err
	}
	return int(v.Int64), nil
}

func checksum(s string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(s)))
	return hex.EncodeToString(h[:])
}

// splitStatements splits migration SQL at semicolons that end a line.
// PostgreSQL takes several statements in one Exec only without
// parameters, SQLite's driver takes them too, but one at a time gives
// errors that name the statement.
func splitStatements(s string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(s, "\n") {
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if st := strings.TrimSpace(cur.String()); st != ";" {
				out = append(out, st)
			}
			cur.Reset()
		}
	}
	if st := strings.TrimSpace(cur.String()); st != "" {
		out = append(out, st)
	}
	return out
}
