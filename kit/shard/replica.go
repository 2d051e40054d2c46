package shard

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/switchyard/switchyard/kit/store"
)

// Position is how far a write got in the primary's log: a PostgreSQL WAL
// LSN ("0/3000148"), or "" when unknown (SQLite, or nothing written yet).
// A client keeps the Position of its last write to read its own writes.
type Position string

// Replicated is a primary database with read replicas (PostgreSQL
// streaming replicas; any handles work, but read-your-writes needs
// PostgreSQL's replay positions).
type Replicated struct {
	Primary  *store.DB
	Replicas []*store.DB
	next     atomic.Uint64
}

// Write runs fn in a transaction on the primary and returns the position
// after its commit, for a later ReadAfter.
func (r *Replicated) Write(ctx context.Context, fn func(tx *store.Tx) error) (Position, error) {
	if err := r.Primary.InTx(ctx, fn); err != nil {
		return "", err
	}
	return position(ctx, r.Primary)
}

func position(ctx context.Context, db *store.DB) (Position, error) {
	if db.Dialect != store.Postgres {
		return "", nil
	}
	var lsn string
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("shard: write position: %w", err)
	}
	return Position(lsn), nil
}

// Read gives fn a replica (round robin), or the primary when there is
// none. Data may lag the primary by the replication delay.
func (r *Replicated) Read(ctx context.Context, fn func(db *store.DB) error) error {
	return r.ReadAfter(ctx, "", fn)
}

// ReadAfter gives fn a database that has applied everything up to after:
// the first replica (round robin from the next) whose replay position has
// reached it, or the primary when none has — read-your-writes without
// waiting. An empty after reads any replica.
func (r *Replicated) ReadAfter(ctx context.Context, after Position, fn func(db *store.DB) error) error {
	n := len(r.Replicas)
	if n == 0 {
		return fn(r.Primary)
	}
	start := int(r.next.Add(1))
	for k := 0; k < n; k++ {
		rep := r.Replicas[(start+k)%n]
		if after == "" {
			return fn(rep)
		}
		if rep.Dialect != store.Postgres {
			break
		}
		var ok bool
		err := rep.QueryRow(ctx, "SELECT COALESCE(pg_last_wal_replay_lsn() >= ?::pg_lsn, false)", string(after)).Scan(&ok)
		if err == nil && ok {
			return fn(rep)
		}
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fn(r.Primary)
}

// ErrFenced is returned by a fenced write on a database that is not the
// primary the fence names, or whose primary lease has expired: an old
// primary after a failover.
var ErrFenced = errors.New("shard: write fenced: this database is not the current primary")
