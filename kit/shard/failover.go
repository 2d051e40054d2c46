package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard/switchyard/kit/store"
)

// PrimaryLease is the lease name a Failover keeps on the current primary.
// It lives in the primary's own sy_leases table, so streaming replication
// carries it to the standbys.
const PrimaryLease = "sy_primary"

// Node is one PostgreSQL server of an active-passive group.
type Node struct {
	Name string // stable name, recorded as the lease holder
	DSN  string // postgres:// URL
}

// FailoverConfig tunes a Failover.
type FailoverConfig struct {
	// Nodes: the primary and its streaming standbys, in preference order
	// for promotion. At least two.
	Nodes []Node
	// LeaseTTL is how long a primary may accept fenced writes after the
	// last successful renewal. Default 3s. Failover waits it out before
	// promoting, so an unreachable old primary has stopped accepting
	// fenced writes first.
	LeaseTTL time.Duration
	// CheckInterval is how often the primary is checked and its lease
	// renewed. Default LeaseTTL/6.
	CheckInterval time.Duration
	// FailAfter consecutive failed checks start a failover. Default 3.
	FailAfter int
	// KeepSynchronous leaves synchronous_standby_names as it is on a
	// promoted standby. By default it is cleared after promotion: the
	// new primary usually has no standby yet, and a synchronous setting
	// copied from the old primary would block every commit until one
	// attaches. Set it when you would rather stop writes than run with
	// a single copy.
	KeepSynchronous bool
	// OnEvent, when set, hears what the failover does (promotions,
	// fencing), for logs.
	OnEvent func(Event)
}

// Event is something a Failover did.
type Event struct {
	Time    time.Time
	Kind    string // "primary", "promote", "fence", "check-failed"
	Node    string
	Message string
}

// Failover keeps one primary among Nodes: it renews a lease on the
// primary, promotes a standby (pg_promote) when the primary stops
// answering, and fences every other node that answers as a primary
// (default_transaction_read_only). Writes made through Write check the
// lease inside their transaction, so an old primary refuses them even
// where fencing could not reach it. Run one Failover per group (for
// example in one elected process); it does not arbitrate between rival
// controllers.
//
// Without losing committed writes on failover needs synchronous
// replication (synchronous_standby_names on the primary); with
// asynchronous replication the last commits before a crash may be lost,
// as with any PostgreSQL failover.
type Failover struct {
	cfg FailoverConfig
	dbs []*store.DB

	mu      sync.Mutex
	primary int
	expires time.Time // expiry of the last renewal that succeeded
}

// NewFailover connects to every node (those down are retried later) and
// takes the primary lease on the node that is not in recovery.
func NewFailover(ctx context.Context, cfg FailoverConfig) (*Failover, error) {
	if len(cfg.Nodes) < 2 {
		return nil, fmt.Errorf("shard: failover needs at least two nodes, got %d", len(cfg.Nodes))
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = cfg.LeaseTTL / 6
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = 3
	}
	f := &Failover{cfg: cfg, primary: -1}
	seen := map[string]bool{}
	for _, n := range cfg.Nodes {
		if n.Name == "" || seen[n.Name] {
			return nil, fmt.Errorf("shard: failover node name %q is empty or repeated", n.Name)
		}
		seen[n.Name] = true
		db, err := store.Open(ctx, n.DSN)
		if err != nil {
			// database/sql reconnects by itself; a node down now is fine
			// as long as a primary answers.
			db2, err2 := openLazy(n.DSN)
			if err2 != nil {
				return nil, err
			}
			db = db2
		}
		if db.Dialect != store.Postgres {
			return nil, fmt.Errorf("shard: failover node %s: only PostgreSQL streaming replication is supported", n.Name)
		}
		f.dbs = append(f.dbs, db)
	}
	for i := range f.dbs {
		if rec, err := inRecovery(ctx, f.dbs[i]); err == nil && !rec {
			f.primary = i
			break
		}
	}
	if f.primary < 0 {
		f.Close()
		return nil, errors.New("shard: failover: no node answers as a primary")
	}
	if err := f.renew(ctx); err != nil {
		f.Close()
		return nil, fmt.Errorf("shard: failover: take the primary lease on %s: %w", cfg.Nodes[f.primary].Name, err)
	}
	f.event("primary", f.primary, "holds the primary lease")
	return f, nil
}

func openLazy(dsn string) (*store.DB, error) {
	h, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	return &store.DB{DB: h, Dialect: store.Postgres}, nil
}

// Close closes every node's handle.
func (f *Failover) Close() error {
	for _, db := range f.dbs {
		db.Close()
	}
	return nil
}

// Primary is the current primary's handle and name.
func (f *Failover) Primary() (*store.DB, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dbs[f.primary], f.cfg.Nodes[f.primary].Name
}

// Node is the handle of the named node, or nil.
func (f *Failover) Node(name string) *store.DB {
	for i, n := range f.cfg.Nodes {
		if n.Name == name {
			return f.dbs[i]
		}
	}
	return nil
}

// Write runs fn in a fenced transaction on the current primary.
func (f *Failover) Write(ctx context.Context, fn func(tx *store.Tx) error) error {
	db, name := f.Primary()
	return FencedWrite(ctx, db, name, fn)
}

// FencedWrite runs fn in a transaction on db only if db's primary lease
// is held by node and unexpired, checked inside the transaction (with a
// row lock, so a renewal or takeover cannot slip between check and
// commit) and again after fn, before the commit, so a write that
// outlived the lease rolls back. Otherwise it returns ErrFenced.
func FencedWrite(ctx context.Context, db *store.DB, node string, fn func(tx *store.Tx) error) error {
	err := db.InTx(ctx, func(tx *store.Tx) error {
		var holder string
		var exp int64
		q := "SELECT holder, expires_ms FROM sy_leases WHERE name = ?"
		if db.Dialect == store.Postgres {
			q += " FOR SHARE"
		}
		err := tx.QueryRow(ctx, q, PrimaryLease).Scan(&holder, &exp)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && (holder != node || exp <= time.Now().UnixMilli())) {
			return ErrFenced
		}
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		// fn may have outlived the lease: past its expiry the failover
		// may have promoted a standby, and this commit would be lost.
		if time.Now().UnixMilli() >= exp {
			return fmt.Errorf("%w (the lease of %s expired during the write)", ErrFenced, node)
		}
		return nil
	})
	// A node the failover made read-only is fenced too.
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "25006" {
		return fmt.Errorf("%w (%s is read-only)", ErrFenced, node)
	}
	return err
}

// Run checks the primary every CheckInterval until ctx ends, renewing its
// lease, failing over when it stops answering, and fencing any other
// node that answers as a primary.
func (f *Failover) Run(ctx context.Context) error {
	t := time.NewTicker(f.cfg.CheckInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, f.cfg.LeaseTTL/2)
		err := f.renew(cctx)
		cancel()
		if err == nil {
			failures = 0
			f.fenceOthers(ctx)
			continue
		}
		failures++
		f.mu.Lock()
		p := f.primary
		f.mu.Unlock()
		f.event("check-failed", p, err.Error())
		if failures < f.cfg.FailAfter {
			continue
		}
		if err := f.failover(ctx); err != nil {
			f.event("check-failed", p, "failover: "+err.Error())
			continue
		}
		failures = 0
	}
}

func (f *Failover) renew(ctx context.Context) error {
	f.mu.Lock()
	p := f.primary
	f.mu.Unlock()
	l, held, err := f.dbs[p].TryLease(ctx, PrimaryLease, f.cfg.Nodes[p].Name, f.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("primary lease held by %s until %s", l.Holder, l.Expires.Format(time.RFC3339Nano))
	}
	f.mu.Lock()
	f.expires = l.Expires
	f.mu.Unlock()
	return nil
}

// failover waits out the old primary's lease, then promotes the first
// standby that answers and takes the lease there.
func (f *Failover) failover(ctx context.Context) error {
	f.mu.Lock()
	old, wait := f.primary, time.Until(f.expires)
	f.mu.Unlock()
	if wait > 0 {
		select {
		case <-time.After(wait + 10*time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var errs []error
	for k := 1; k < len(f.dbs); k++ {
		i := (old + k) % len(f.dbs)
		db := f.dbs[i]
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		rec, err := inRecovery(cctx, db)
		if err == nil && rec {
			var ok bool
			err = db.QueryRow(cctx, "SELECT pg_promote(true, 55)").Scan(&ok)
			if err == nil && !ok {
				err = errors.New("pg_promote did not finish in time")
			}
			if err == nil && !f.cfg.KeepSynchronous {
				_, err1 := db.Exec(cctx, "ALTER SYSTEM SET synchronous_standby_names = ''")
				_, err2 := db.Exec(cctx, "SELECT pg_reload_conf()")
				err = errors.Join(err1, err2)
			}
		}
		if err == nil {
			var l store.Lease
			var held bool
			l, held, err = db.TryLease(cctx, PrimaryLease, f.cfg.Nodes[i].Name, f.cfg.LeaseTTL)
			if err == nil && !held {
				err = fmt.Errorf("lease still held by %s", l.Holder)
			}
			if err == nil {
				f.mu.Lock()
				f.primary, f.expires = i, l.Expires
				f.mu.Unlock()
				cancel()
				f.event("promote", i, fmt.Sprintf("promoted after %s stopped answering; lease token %d", f.cfg.Nodes[old].Name, l.Token))
				return nil
			}
		}
		cancel()
		errs = append(errs, fmt.Errorf("%s: %w", f.cfg.Nodes[i].Name, err))
	}
	return errors.Join(errs...)
}

// fenceOthers makes every non-primary node that answers as a primary
// (an old primary restarted) read-only.
func (f *Failover) fenceOthers(ctx context.Context) {
	f.mu.Lock()
	p := f.primary
	f.mu.Unlock()
	for i, db := range f.dbs {
		if i == p {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, f.cfg.CheckInterval)
		rec, err := inRecovery(cctx, db)
		if err == nil && !rec {
			var ro string
			if db.QueryRow(cctx, "SHOW default_transaction_read_only").Scan(&ro) == nil && ro != "on" {
				_, err1 := db.Exec(cctx, "ALTER SYSTEM SET default_transaction_read_only = on")
				_, err2 := db.Exec(cctx, "SELECT pg_reload_conf()")
				if err := errors.Join(err1, err2); err != nil {
					f.event("fence", i, "could not make it read-only: "+err.Error())
				} else {
					f.event("fence", i, "answered as a primary; made read-only")
				}
			}
		}
		cancel()
	}
}

func inRecovery(ctx context.Context, db *store.DB) (bool, error) {
	var rec bool
	err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
	return rec, err
}

func (f *Failover) event(kind string, node int, msg string) {
	if f.cfg.OnEvent != nil {
		f.cfg.OnEvent(Event{Time: time.Now(), Kind: kind, Node: f.cfg.Nodes[node].Name, Message: msg})
	}
}
