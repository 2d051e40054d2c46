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
// msg_id; an id longer than 200 bytes, one that is not UTF-8 text
// without NUL bytes, and one that starts with "sha256:" are stored as
// "sha256:" and their digest), a migration of the component "inbox"
// that Process applies on first use. Process inserts the id first: on PostgreSQL a second
// delivery of the same id that runs concurrently waits on the key until
// the first commits (then skips) or rolls back (then applies).
//
// # Retention
//
// Ids are kept for Options.Retention (default 7 days); an Inbox deletes
// older ones every ExpireEvery (default Retention/100, at least a
// minute) as part of Process, so a consumer's table holds about
// Retention's worth of ids and no more. (The package-level Process never
// forgets: call Expire, or use an Inbox.)
//
// The guarantee, stated: a copy of a message is skipped if it arrives
// within Retention of the first processing of its id. The copies a
// broker makes arrive within its redelivery horizon:
//
//   - redelivery of an unacked message: as long as it can stay in its
//     queue (message_ttl, retention, max_deliveries × the visibility
//     timeout and nack delays, a consumer down for a weekend);
//   - a producer's re-publish (an outbox relay that died between the
//     broker's confirm and its delete): the broker's dedup window
//     (dedup_window, default 2 minutes) catches it while it is young;
//     the inbox catches copies older than that window.
//
// Retention must outlast that horizon. Inbox.Handler also enforces it
// where it can: a delivery whose id is unknown and which was published
// more than Options.MaxAge ago (default 90% of Retention, the rest is
// room for clock skew between the broker and the consumers) may be a copy
// whose id already expired, so it is refused with ErrTooOld (nacked,
// and dead-lettered after the queue's max_deliveries for an operator to
// look at) rather than applied a second time. A known id is acked
// whatever its age.
//
// Ages are measured with Options.Now (default time.Now) on the
// consumers: keep their clocks within a small fraction of Retention of
// each other, since a consumer whose clock runs ahead expires ids early.
//
// Longer retention costs one small row per message for that long; the
// broker's window is kept in memory and is therefore much shorter.
package inbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	return process(ctx, db, consumer, msgID, time.Now(), nil, fn)
}

// maxStoredID is the longest message id stored as it is; longer ones
// (producers choose them, brokers take ids as long as a message) are
// stored as a digest, since PostgreSQL refuses a primary key entry of more
// than about 2.7 KB and a message whose id it refuses could never be
// processed.
const maxStoredID = 200

// storedID is the msg_id column's value for msgID: the id itself, or
// "sha256:" and its digest for an id that is long, is not text
// PostgreSQL stores (NUL bytes, invalid UTF-8: such a message, too,
// could never be processed there), or looks like a digest (so that a
// producer cannot choose an id equal to another one's digest and have
// that message skipped).
func storedID(msgID string) string {
	if len(msgID) <= maxStoredID && utf8.ValidString(msgID) && strings.IndexByte(msgID, 0) < 0 && !strings.HasPrefix(msgID, "sha256:") {
		return msgID
	}
	sum := sha256.Sum256([]byte(msgID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkConsumer refuses a consumer name PostgreSQL cannot store (the
// service's own configuration, so an error rather than a digest).
func checkConsumer(consumer string) error {
	if !utf8.ValidString(consumer) || strings.IndexByte(consumer, 0) >= 0 {
		return fmt.Errorf("inbox: consumer name %q: want UTF-8 text without NUL bytes", consumer)
	}
	return nil
}

// ErrTooOld is returned for a delivery with an unknown id published
// longer ago than Options.MaxAge: its id may have expired already, so
// applying it could apply it twice.
var ErrTooOld = errors.New("inbox: message older than the retention can vouch for")

// process is Process with the clock's now and, when tooOld is not nil,
// a check that runs only for an id that is not recorded yet: an error
// from it rolls back the record and is returned.
func process(ctx context.Context, db *store.DB, consumer, msgID string, now time.Time, tooOld func() error, fn func(tx *store.Tx) error) (applied bool, err error) {
	if consumer == "" || msgID == "" {
		return false, fmt.Errorf("inbox: Process needs a consumer name and a message id (got %q, %q)", consumer, msgID)
	}
	if err := checkConsumer(consumer); err != nil {
		return false, err
	}
	if err := Prepare(ctx, db); err != nil {
		return false, err
	}
	key := storedID(msgID)
	err = db.InTx(ctx, func(tx *store.Tx) error {
		applied = false
		res, err := tx.Exec(ctx, "INSERT INTO sy_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?) ON CONFLICT (consumer, msg_id) DO NOTHING",
			consumer, key, now.UnixMilli())
		if err != nil {
			return fmt.Errorf("inbox: recording %q: %w", key, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return nil // processed before
		}
		if tooOld != nil {
			if err := tooOld(); err != nil {
				return err
			}
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
// and returns how many. It deletes in batches of expireBatch rows, each
// its own statement, so a large backlog does not hold one long lock.
func Expire(ctx context.Context, db *store.DB, consumer string, retention time.Duration) (int64, error) {
	return expire(ctx, db, consumer, time.Now().Add(-retention))
}

const expireBatch = 1000

func expire(ctx context.Context, db *store.DB, consumer string, before time.Time) (int64, error) {
	if err := Prepare(ctx, db); err != nil {
		return 0, err
	}
	var total int64
	for {
		res, err := db.Exec(ctx, "DELETE FROM sy_inbox WHERE consumer = ? AND msg_id IN (SELECT msg_id FROM sy_inbox WHERE consumer = ? AND processed_ms < ? LIMIT ?)",
			consumer, consumer, before.UnixMilli(), expireBatch)
		if err != nil {
			return total, fmt.Errorf("inbox: expiring ids of %q: %w", consumer, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}

// Options configure an Inbox.
type Options struct {
	// Consumer names this consumer: ids are deduplicated per consumer,
	// so two services reading the same events each apply them. Required.
	Consumer string
	// Retention is how long a processed id is remembered. Default 7 days.
	// See the package doc for what it must outlast.
	Retention time.Duration
	// ExpireEvery is how often Process (and so Handler) deletes expired
	// ids. Default Retention/100, at least a minute.
	ExpireEvery time.Duration
	// MaxAge is the oldest delivery Handler applies when its id is not
	// recorded (by the broker's publish time); older ones fail with
	// ErrTooOld, since their id may have expired. At most Retention;
	// default 90% of it; -1 applies any age (a copy older than
	// Retention is then applied again).
	MaxAge time.Duration
	// Now is the clock for processed times and expiry. Default time.Now.
	Now func() time.Time
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
	if err := checkConsumer(opts.Consumer); err != nil {
		return nil, err
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
	switch {
	case opts.MaxAge == 0:
		opts.MaxAge = opts.Retention / 10 * 9
	case opts.MaxAge > opts.Retention || opts.MaxAge < -1:
		return nil, fmt.Errorf("inbox: MaxAge %s: expected -1 or at most the retention %s (an older copy's id may have expired)", opts.MaxAge, opts.Retention)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := Prepare(ctx, db); err != nil {
		return nil, err
	}
	in := &Inbox{db: db, opts: opts}
	in.lastExpire.Store(opts.Now().UnixMilli())
	return in, nil
}

// Process is the package's Process for this inbox's consumer, on the
// inbox's clock; every ExpireEvery one call first deletes the ids older
// than the retention (best effort: a failure is tried again next
// interval).
func (in *Inbox) Process(ctx context.Context, msgID string, fn func(tx *store.Tx) error) (bool, error) {
	return in.process(ctx, msgID, time.Time{}, fn)
}

// process is Process; a non-zero published time is the broker's publish
// time of the delivery, checked against MaxAge for an unknown id.
func (in *Inbox) process(ctx context.Context, msgID string, published time.Time, fn func(tx *store.Tx) error) (bool, error) {
	now := in.opts.Now()
	if last := in.lastExpire.Load(); now.Sub(time.UnixMilli(last)) > in.opts.ExpireEvery || now.UnixMilli() < last {
		// One caller expires (a clock that went back restarts the interval).
		if in.lastExpire.CompareAndSwap(last, now.UnixMilli()) {
			_, _ = expire(ctx, in.db, in.opts.Consumer, now.Add(-in.opts.Retention))
		}
	}
	var tooOld func() error
	if !published.IsZero() && in.opts.MaxAge >= 0 {
		tooOld = func() error {
			if age := now.Sub(published); age > in.opts.MaxAge {
				return fmt.Errorf("%w: %q published %s ago (at %s), max age %s of retention %s: acknowledge or redrive it by hand if it was never applied",
					ErrTooOld, storedID(msgID), age.Round(time.Second), published.UTC().Format(time.RFC3339), in.opts.MaxAge, in.opts.Retention)
			}
			return nil
		}
	}
	applied, err := process(ctx, in.db, in.opts.Consumer, msgID, now, tooOld, fn)
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
	return expire(ctx, in.db, in.opts.Consumer, in.opts.Now().Add(-in.opts.Retention))
}

// Handler adapts fn for broker/client's Conn.Consume on queue: each
// delivery is processed through the inbox (its id is
// client.MessageKey(queue, d): the producer's Msg-Id, else the queue's
// message id), and Consume acks it only after the transaction committed,
// or after finding it already processed. A failing fn nacks it, and so
// does ErrTooOld: an unknown id published longer ago than MaxAge (see
// Retention in the package doc). ctx bounds the transactions; expired ids
// are deleted every ExpireEvery.
func (in *Inbox) Handler(ctx context.Context, queue string, fn func(ctx context.Context, tx *store.Tx, d broker.Delivery) error) func(broker.Delivery) error {
	return func(d broker.Delivery) error {
		_, err := in.process(ctx, client.MessageKey(queue, d), d.PublishedAt, func(tx *store.Tx) error { return fn(ctx, tx, d) })
		return err
	}
}
