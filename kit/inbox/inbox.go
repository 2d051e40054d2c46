// Package inbox is the idempotent consumer: a handler's side effects and
// the record that its message was processed commit in one transaction,
// so a message the broker delivers again (its ack was lost, the consumer
// died after the commit) is acknowledged without being applied twice —
// exactly-once processing on top of at-least-once delivery. For services
// with a database it replaces broker/client's ProcessedStore, whose
// record is not atomic with the handler's effects.
//
// # Table
//
// sy_inbox (consumer, msg_id, processed_ms), primary key (consumer,
// msg_id), a migration of the component "inbox" that Process applies on
// first use. Process inserts the id first: on PostgreSQL a second
// delivery of the same id that runs concurrently waits on the key until
// the first commits (then skips) or rolls back (then applies).
//
// # Retention
//
// Ids are kept for Options.Retention (default 7 days) and then deleted
// by Expire (Inbox.Handler runs it now and then). A message delivered
// again after its id expired is applied again, so the retention must
// outlast every way a copy can arrive late:
//
//   - redelivery of an unacked message: as long as it can stay in its
//     queue (message_ttl, retention, a consumer down for a weekend);
//   - a producer's re-publish (an outbox relay that died between the
//     broker's confirm and its delete): the broker's dedup window
//     (dedup_window, default 2 minutes) catches it while it is young;
//     the inbox catches copies older than that window.
//
// Longer retention costs one small row per message for that long; the
// broker's window is kept in memory and is therefore much shorter.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/store"
)

var migrations = []store.Migration{{
	Version: 1, Name: "processed message ids",
	SQL: `CREATE TABLE sy_inbox (
		consumer TEXT NOT NULL,
		msg_id TEXT NOT NULL,
		processed_ms BIGINT NOT NULL,
		PRIMARY KEY (consumer, msg_id)
	);
	CREATE INDEX sy_inbox_processed ON sy_inbox (processed_ms);`,
}}

// Prepare creates or upgrades the inbox table (Process does it on first
// use per DB handle).
func Prepare(ctx context.Context, db *store.DB) error {
	if err := db.MigrateOnce(ctx, "inbox", migrations); err != nil {
		return fmt.Errorf("inbox: preparing table: %w", err)
	}
	return nil
}

// Process runs fn in a transaction that also records msgID as processed
// by consumer, unless it already is: then fn does not run and Process
// returns false, nil (acknowledge the message). If fn fails, nothing is
// recorded and its error is returned (do not acknowledge: it will come
// again). fn may run more than once on transient conflicts (see
// store.DB.InTx); its effects must all go through tx.
func Process(ctx context.Context, db *store.DB, consumer, msgID string, fn func(tx *store.Tx) error) (applied bool, err error) {
	if consumer == "" || msgID == "" {
		return false, fmt.Errorf("inbox: Process needs a consumer name and a message id (got %q, %q)", consumer, msgID)
	}
	if err := Prepare(ctx, db); err != nil {
		return false, err
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		applied = false
		res, err := tx.Exec(ctx, "INSERT INTO sy_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?) ON CONFLICT (consumer, msg_id) DO NOTHING",
			consumer, msgID, time.Now().UnixMilli())
		if err != nil {
			return fmt.Errorf("inbox: recording %q: %w", msgID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return nil // processed before
		}
		if err := fn(tx); err != nil {
			return err
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return applied, nil
}

// Expire deletes the ids of consumer processed more than retention ago
// and returns how many.
func Expire(ctx context.Context, db *store.DB, consumer string, retention time.Duration) (int64, error) {
	if err := Prepare(ctx, db); err != nil {
		return 0, err
	}
	res, err := db.Exec(ctx, "DELETE FROM sy_inbox WHERE consumer = ? AND processed_ms < ?", consumer, time.Now().Add(-retention).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("inbox: expiring ids of %q: %w", consumer, err)
	}
	return res.RowsAffected()
}

// Options configure an Inbox.
type Options struct {
	// Consumer names this consumer: ids are deduplicated per consumer,
	// so two services reading the same events each apply them. Required.
	Consumer string
	// Retention is how long a processed id is remembered. Default 7 days.
	// See the package doc for what it must outlast.
	Retention time.Duration
	// ExpireEvery is how often Handler deletes expired ids. Default
	// Retention/100, at least a minute.
	ExpireEvery time.Duration
}

// Inbox is one consumer's inbox in a database.
type Inbox struct {
	db         *store.DB
	opts       Options
	lastExpire atomic.Int64 // unix ms
	skipped    atomic.Int64
}

// New prepares the table and returns consumer's inbox.
func New(ctx context.Context, db *store.DB, opts Options) (*Inbox, error) {
	if opts.Consumer == "" {
		return nil, errors.New("inbox: Options.Consumer is required")
	}
	if opts.Retention < 0 || opts.ExpireEvery < 0 {
		return nil, fmt.Errorf("inbox: negative retention %s or expire interval %s", opts.Retention, opts.ExpireEvery)
	}
	if opts.Retention == 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.ExpireEvery == 0 {
		opts.ExpireEvery = max(opts.Retention/100, time.Minute)
	}
	if err := Prepare(ctx, db); err != nil {
		return nil, err
	}
	in := &Inbox{db: db, opts: opts}
	in.lastExpire.Store(time.Now().UnixMilli())
	return in, nil
}

// Process is the package's Process for this inbox's consumer.
func (in *Inbox) Process(ctx context.Context, msgID string, fn func(tx *store.Tx) error) (bool, error) {
	applied, err := Process(ctx, in.db, in.opts.Consumer, msgID, fn)
	if err == nil && !applied {
		in.skipped.Add(1)
	}
	return applied, err
}

// Skipped is how many messages this inbox acknowledged without applying
// them because their id was already processed.
func (in *Inbox) Skipped() int64 { return in.skipped.Load() }

// Expire deletes this consumer's ids older than the retention.
func (in *Inbox) Expire(ctx context.Context) (int64, error) {
	return Expire(ctx, in.db, in.opts.Consumer, in.opts.Retention)
}

// Handler adapts fn for broker/client's Conn.Consume on queue: each
// delivery is processed through the inbox (its id is
// client.MessageKey(queue, d): the producer's Msg-Id, else the queue's
// message id), and Consume acks it only after the transaction committed,
// or after finding it already processed. A failing fn nacks it. ctx
// bounds the transactions; expired ids are deleted every ExpireEvery.
func (in *Inbox) Handler(ctx context.Context, queue string, fn func(ctx context.Context, tx *store.Tx, d broker.Delivery) error) func(broker.Delivery) error {
	return func(d broker.Delivery) error {
		if now := time.Now(); now.Sub(time.UnixMilli(in.lastExpire.Load())) > in.opts.ExpireEvery {
			in.lastExpire.Store(now.UnixMilli())
			in.Expire(ctx) // best effort: a failure is retried next interval
		}
		_, err := in.Process(ctx, client.MessageKey(queue, d), func(tx *store.Tx) error { return fn(ctx, tx, d) })
		return err
	}
}
