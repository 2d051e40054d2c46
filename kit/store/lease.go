package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

var leaseMigrations = []Migration{{
	Version: 1, Name: "leases",
	SQL: `CREATE TABLE IF NOT EXISTS sy_leases (
		name TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		token BIGINT NOT NULL,
		expires_ms BIGINT NOT NULL
	)`,
}}

// Lease is the right of one holder to act for a named partition until
// Expires. Token grows by one every time the lease changes hands: a
// fencing token that writes can carry so that a holder which lost the
// lease (paused, partitioned) is refused by whoever checks it.
type Lease struct {
	Name    string
	Holder  string
	Token   int64
	Expires time.Time
}

// ErrNotHeld is returned by Renew and Release when holder does not hold
// the lease (it expired and someone else took it).
var ErrNotHeld = errors.New("store: lease not held")

// PrepareLeases creates the lease table (a migration of the "store.leases"
// component). TryLease calls it on first use.
func (db *DB) PrepareLeases(ctx context.Context) error {
	return db.Migrate(ctx, "store.leases", leaseMigrations)
}

// TryLease takes the lease name for holder for ttl if it is free or
// expired, or renews it if holder already has it. It returns the lease
// and whether holder holds it now. Holders' clocks must agree to well
// within ttl (one machine, or NTP).
func (db *DB) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, bool, error) {
	if err := db.PrepareLeasesOnce(ctx); err != nil {
		return Lease{}, false, err
	}
	var l Lease
	held := false
	err := db.InTx(ctx, func(tx *Tx) error {
		now := time.Now()
		exp := now.Add(ttl).UnixMilli()
		var cur Lease
		var curExp int64
		err := tx.QueryRow(ctx, "SELECT holder, token, expires_ms FROM sy_leases WHERE name = ?"+forUpdate(db.Dialect), name).Scan(&cur.Holder, &cur.Token, &curExp)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.Exec(ctx, "INSERT INTO sy_leases (name, holder, token, expires_ms) VALUES (?, ?, 1, ?) ON CONFLICT (name) DO NOTHING", name, holder, exp); err != nil {
				return err
			}
			// A concurrent insert may have won; read what is there.
			if err := tx.QueryRow(ctx, "SELECT holder, token, expires_ms FROM sy_leases WHERE name = ?", name).Scan(&cur.Holder, &cur.Token, &curExp); err != nil {
				return err
			}
		case err != nil:
			return err
		case cur.Holder == holder:
			if _, err := tx.Exec(ctx, "UPDATE sy_leases SET expires_ms = ? WHERE name = ?", exp, name); err != nil {
				return err
			}
			curExp = exp
		case curExp <= now.UnixMilli():
			cur.Holder, cur.Token, curExp = holder, cur.Token+1, exp
			if _, err := tx.Exec(ctx, "UPDATE sy_leases SET holder = ?, token = ?, expires_ms = ? WHERE name = ?", holder, cur.Token, exp, name); err != nil {
				return err
			}
		}
		l = Lease{Name: name, Holder: cur.Holder, Token: cur.Token, Expires: time.UnixMilli(curExp)}
		held = cur.Holder == holder
		return nil
	})
	return l, held, err
}

// ReleaseLease gives the lease up early so another holder can take it at
// once. It is ErrNotHeld if holder does not hold it.
func (db *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := db.PrepareLeasesOnce(ctx); err != nil {
		return err
	}
	res, err := db.Exec(ctx, "UPDATE sy_leases SET expires_ms = 0 WHERE name = ? AND holder = ?", name, holder)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotHeld
	}
	return nil
}

// CheckLease reports whether token is still the current token of name and
// unexpired, inside tx: a fenced write checks it in the same transaction.
func CheckLease(ctx context.Context, tx *Tx, name string, token int64) error {
	var cur, exp int64
	err := tx.QueryRow(ctx, "SELECT token, expires_ms FROM sy_leases WHERE name = ?", name).Scan(&cur, &exp)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (cur != token || exp <= time.Now().UnixMilli())) {
		return ErrNotHeld
	}
	return err
}

// PrepareLeasesOnce is PrepareLeases, run once per DB.
func (db *DB) PrepareLeasesOnce(ctx context.Context) error {
	db.mu.Lock()
	done := db.leasesReady
	db.mu.Unlock()
	if done {
		return nil
	}
	if err := db.PrepareLeases(ctx); err != nil {
		return err
	}
	db.mu.Lock()
	db.leasesReady = true
	db.mu.Unlock()
	return nil
}

func forUpdate(d Dialect) string {
	if d == Postgres {
		return " FOR UPDATE"
	}
	return "" // SQLite transactions here begin IMMEDIATE: already exclusive for writers
}
