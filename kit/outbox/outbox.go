// Package outbox is the transactional outbox: a service writes its
// business rows and the messages announcing them in one local
// transaction (Add), and a Relay publishes the committed messages to the
// broker afterwards, so a message goes out if and only if its
// transaction committed, even when the service or the relay dies at any
// moment.
//
// # Guarantees
//
// At-least-once publishing, turned into exactly-once enqueueing by the
// broker: every message carries an id (Message.ID, the broker's Msg-Id;
// Add assigns a random one when missing), and the relay deletes a
// message only after the broker confirmed it durable. A relay that dies
// between the confirm and the delete publishes the message again when it
// (or another replica) restarts; the broker's dedup window (a queue's
// dedup_window, default 2 minutes) drops that second copy. Re-publishes
// later than the window after the first (a relay down for longer than
// the window with confirmed-but-undeleted messages, which needs a crash
// in that exact gap) reach consumers twice; consumers that must not
// apply a message twice use package kit/inbox, whose retention should
// outlast the window. Topics deduplicate only for their bound queues,
// and streams not at all: use the inbox on those consumers.
//
// # Order
//
// Messages with the same Key are published in the commit order of their
// transactions. Add serializes transactions per key: it bumps a per-key
// counter row (sy_outbox_keys), which holds that row's lock until the
// transaction ends, so a second transaction adding a message for the
// same key waits for the first to commit (or roll back) and then takes
// the next number. The number is stored with the message (seq), dense
// per key, and since the message row is inserted after the counter lock
// is taken, its row id grows in the same order. The relay reads in row
// id order. A plain auto-increment id alone would not do on PostgreSQL:
// ids are handed out when a row is inserted, not when its transaction
// commits, so a reader can see id 8 committed while id 7 is still in
// flight and publish them out of order; SQLite runs one writer at a time,
// where the two orders agree anyway. Messages without a key take no lock
// and have no order among themselves (seq 0).
//
// # Partitions and replicas
//
// Keys hash (FNV-1a) to RelayOptions.Partitions partitions. Every relay
// replica keeps a membership lease and takes leases (kit/store leases)
// on its fair share of the partitions; it publishes only messages of
// partitions it holds, and renews them every third of the lease TTL.
// One replica leads each partition, so in steady state nothing is
// published twice. A replica that dies keeps its partitions until their
// leases expire (LeaseTTL); then the others take them over and publish
// what it left. A replica whose publish round hangs for more than half
// the TTL stops renewing, so a stuck broker connection does not keep
// partitions either. Leases are renewed, and confirmed rows deleted, by
// goroutines beside the publishing loop, so neither waits for the
// database's write lock in front of the next publish; a partition is
// given away only after its round ended and its rows are deleted. Every replica must use the same Partitions (the lease
// names carry it, so replicas that disagree would not exclude each
// other).
//
// # Wake-up
//
// Add notifies the relay when its transaction commits (store
// NotifyAfterCommit: an in-process signal, and on PostgreSQL a NOTIFY
// sent right after the commit from outside the transaction, across
// processes; a NOTIFY inside the transaction would serialize the
// service's commits on PostgreSQL's notify lock), so the relay publishes
// without polling lag; it also polls
// every PollInterval, for notifications missed and for SQLite services
// whose relay runs in another process.
//
// # Tables
//
// Prepare (and NewRelay) create them, as migrations of the component
// "outbox":
//
//	sy_outbox       one row per message not yet confirmed: id (row id,
//	                relay order), msg_id, dest, msg_key, khash (key hash,
//	                31 bits), seq (per-key commit order), body, headers
//	                (JSON object), deliver_ms (earliest delivery, unix ms,
//	                0 = at once), ttl_ms, created_ms
//	sy_outbox_keys  one row per key ever used: msg_key, seq (last number)
//	sy_outbox_parked  messages the broker refused for good (see Parking):
//	                the sy_outbox columns (id is the old row id) plus
//	                error (the broker's answer) and parked_ms
//
// # Parking
//
// A message the broker will never take, whatever the retries (today:
// larger than the destination's max_message_size, broker.ErrTooLarge),
// would stop the relay at its row forever, and every message behind it
// with it. The relay instead moves such a row, in one transaction, from
// sy_outbox to sy_outbox_parked with the broker's error, counts it in
// RelayStats.Parked, reports a *ParkedError to OnError, and goes on with
// the rest of the batch (a batch refused as too large is published again
// one message at a time, to find the culprit). Parking breaks the
// per-key order around the parked message: later messages of its key
// are published without it. List parked messages with Parked, publish
// them again with Redrive (after raising the limit or shrinking the
// message: Redrive moves the row back to the end of sy_outbox, keeping
// its id, key and Msg-Id), or drop them with Discard; the command
// "switchyard outbox" does the same from a shell.
//
// # Listen to yourself
//
// The notes' alternative without a local transaction: publish the event
// to the broker first (with a stable id), then consume your own event
// and update your state from it, idempotently (kit/inbox). The state is
// then a consequence of the event, so the two cannot disagree; the price
// is that the service's own state lags its event by one broker round
// trip (reads right after the request may not see it yet). See
// Example_listenToYourself.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/store"
)

// Channel is the store notification channel Add notifies and the relay
// listens on.
const Channel = "sy_outbox"

var migrations = []store.Migration{{
	Version: 1, Name: "outbox and per-key sequence",
	SQLite: `CREATE TABLE sy_outbox (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		msg_id TEXT NOT NULL,
		dest TEXT NOT NULL,
		msg_key TEXT NOT NULL,
		khash INTEGER NOT NULL,
		seq BIGINT NOT NULL,
		body BLOB NOT NULL,
		headers TEXT NOT NULL,
		deliver_ms BIGINT NOT NULL,
		ttl_ms BIGINT NOT NULL,
		created_ms BIGINT NOT NULL
	);
	CREATE TABLE sy_outbox_keys (msg_key TEXT PRIMARY KEY, seq BIGINT NOT NULL);`,
	Postgres: `CREATE TABLE sy_outbox (
		id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		msg_id TEXT NOT NULL,
		dest TEXT NOT NULL,
		msg_key TEXT NOT NULL,
		khash INTEGER NOT NULL,
		seq BIGINT NOT NULL,
		body BYTEA NOT NULL,
		headers TEXT NOT NULL,
		deliver_ms BIGINT NOT NULL,
		ttl_ms BIGINT NOT NULL,
		created_ms BIGINT NOT NULL
	);
	CREATE TABLE sy_outbox_keys (msg_key TEXT PRIMARY KEY, seq BIGINT NOT NULL);`,
}, {
	Version: 2, Name: "parked messages the broker refuses",
	SQLite: `CREATE TABLE sy_outbox_parked (
		id INTEGER PRIMARY KEY,
		msg_id TEXT NOT NULL,
		dest TEXT NOT NULL,
		msg_key TEXT NOT NULL,
		khash INTEGER NOT NULL,
		seq BIGINT NOT NULL,
		body BLOB NOT NULL,
		headers TEXT NOT NULL,
		deliver_ms BIGINT NOT NULL,
		ttl_ms BIGINT NOT NULL,
		created_ms BIGINT NOT NULL,
		error TEXT NOT NULL,
		parked_ms BIGINT NOT NULL
	);`,
	Postgres: `CREATE TABLE sy_outbox_parked (
		id BIGINT PRIMARY KEY,
		msg_id TEXT NOT NULL,
		dest TEXT NOT NULL,
		msg_key TEXT NOT NULL,
		khash INTEGER NOT NULL,
		seq BIGINT NOT NULL,
		body BYTEA NOT NULL,
		headers TEXT NOT NULL,
		deliver_ms BIGINT NOT NULL,
		ttl_ms BIGINT NOT NULL,
		created_ms BIGINT NOT NULL,
		error TEXT NOT NULL,
		parked_ms BIGINT NOT NULL
	);`,
}}

// Prepare creates or upgrades the outbox tables. Call it once at start
// (NewRelay does); Add runs inside the caller's transaction and cannot.
func Prepare(ctx context.Context, db *store.DB) error {
	if err := db.MigrateOnce(ctx, "outbox", migrations); err != nil {
		return fmt.Errorf("outbox: preparing tables: %w", err)
	}
	return nil
}

// ErrDest is returned (wrapped) for a destination Add or a Publisher
// cannot parse.
var ErrDest = errors.New("outbox: bad destination")

// Kind is what a destination names.
type Kind string

// The destination kinds.
const (
	Queue  Kind = "queue"
	Topic  Kind = "topic"
	Stream Kind = "stream"
)

// ParseDest splits a destination into its kind and name:
//
//	queue:NAME   a queue (Conn.Publish); a bare NAME means the same
//	topic:NAME   a topic (Conn.PublishTopic)
//	stream:NAME  a stream (Conn.Append)
//
// NAME must be a valid broker name.
func ParseDest(dest string) (Kind, string, error) {
	kind, name := Queue, dest
	if k, n, ok := strings.Cut(dest, ":"); ok {
		switch Kind(k) {
		case Queue, Topic, Stream:
			kind, name = Kind(k), n
		default:
			return "", "", fmt.Errorf("%w %q: unknown kind %q; want queue:NAME, topic:NAME or stream:NAME", ErrDest, dest, k)
		}
	}
	if !broker.ValidName(name) {
		return "", "", fmt.Errorf("%w %q: %q is not a valid broker name", ErrDest, dest, name)
	}
	return kind, name, nil
}

// NewID returns a random message id (128 bits, hex).
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyHash is the partition hash of a key (31 bits, so it fits a signed
// INTEGER column on both dialects).
func keyHash(s string) int64 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int64(h.Sum32() & 0x7fffffff)
}

// Add writes msgs, bound for dest, into the outbox in the caller's
// transaction: they are published if and only if tx commits. A message
// without an ID gets one (NewID; msgs is updated in place, so the caller
// can log or return it). Messages with the same Key are published in the
// commit order of their transactions, and in slice order within one Add:
// Add holds the key's counter lock until tx ends, so concurrent
// transactions on the same key queue behind each other (see the package
// doc). Delay counts from the commit; TTL from the publish. The outbox
// tables must exist (Prepare). The trace context of ctx's span (the
// business request's) is stored with each message that carries none
// (traceparent, tracestate headers; the caller's maps are not modified),
// so the relay's publish, later and elsewhere, joins that trace.
func Add(ctx context.Context, tx *store.Tx, dest string, msgs ...broker.Message) error {
	if _, _, err := ParseDest(dest); err != nil {
		return err
	}
	if err := checkMessages(dest, msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	// Take the key counters in sorted order, so that two transactions
	// adding the same keys do not deadlock on them.
	counts := map[string]int64{}
	for _, m := range msgs {
		if m.Key != "" {
			counts[m.Key]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	next := make(map[string]int64, len(keys)) // the first number of each key in this Add
	// One statement numbers every key of this Add (chunked); its rows are
	// upserted, and their locks taken, in VALUES order, which is sorted.
	for lo := 0; lo < len(keys); lo += addChunk {
		chunk := keys[lo:min(lo+addChunk, len(keys))]
		var q strings.Builder
		q.WriteString("INSERT INTO sy_outbox_keys (msg_key, seq) VALUES ")
		args := make([]any, 0, 2*len(chunk))
		for i, k := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?)")
			args = append(args, k, counts[k])
		}
		q.WriteString(" ON CONFLICT (msg_key) DO UPDATE SET seq = sy_outbox_keys.seq + excluded.seq RETURNING msg_key, seq")
		rows, err := tx.Query(ctx, q.String(), args...)
		if err != nil {
			return fmt.Errorf("outbox: numbering keys %q..: %w", chunk[0], err)
		}
		for rows.Next() {
			var k string
			var last int64
			if err := rows.Scan(&k, &last); err != nil {
				rows.Close()
				return fmt.Errorf("outbox: numbering keys %q..: %w", chunk[0], err)
			}
			next[k] = last - counts[k] + 1
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("outbox: numbering keys %q..: %w", chunk[0], err)
		}
	}
	for _, k := range keys {
		if _, ok := next[k]; !ok {
			return fmt.Errorf("outbox: numbering key %q: the database returned no number", k)
		}
	}
	for i := range msgs {
		if msgs[i].ID == "" {
			msgs[i].ID = NewID()
		}
	}
	traced := broker.WithTraceContext(ctx, msgs)
	now := time.Now().UnixMilli()
	// One multi-row INSERT per chunk instead of one statement per message:
	// a transaction of k messages costs one round trip, not k. Rows get
	// their ids in VALUES order, so slice order is still relay order.
	args := make([]any, 0, min(len(msgs), addChunk)*addCols)
	var q strings.Builder
	flush := func(first int) error {
		if len(args) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("outbox: adding messages %q.. for %q: %w", msgs[first].ID, dest, err)
		}
		args = args[:0]
		q.Reset()
		return nil
	}
	first := 0
	for i := range msgs {
		m := &traced[i]
		var seq int64
		h := keyHash(m.ID)
		if m.Key != "" {
			seq = next[m.Key]
			next[m.Key]++
			h = keyHash(m.Key)
		}
		headers := ""
		if len(m.Headers) > 0 {
			b, err := json.Marshal(m.Headers)
			if err != nil {
				return fmt.Errorf("outbox: encoding headers: %w", err)
			}
			headers = string(b)
		}
		var deliver int64
		if m.Delay > 0 {
			deliver = now + m.Delay.Milliseconds()
		}
		body := m.Body
		if body == nil {
			body = []byte{}
		}
		if len(args) == 0 {
			first = i
			q.WriteString("INSERT INTO sy_outbox (msg_id, dest, msg_key, khash, seq, body, headers, deliver_ms, ttl_ms, created_ms) VALUES ")
		} else {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		args = append(args, m.ID, dest, m.Key, h, seq, body, headers, deliver, m.TTL.Milliseconds(), now)
		if len(args) >= addChunk*addCols {
			if err := flush(first); err != nil {
				return err
			}
		}
	}
	if err := flush(first); err != nil {
		return err
	}
	tx.NotifyAfterCommit(Channel)
	return nil
}

// addChunk is the most rows one INSERT of Add carries (addCols
// parameters each: well under SQLite's and PostgreSQL's limits).
const (
	addChunk = 500
	addCols  = 10
)

// Pending is how many messages wait in the outbox.
func Pending(ctx context.Context, db *store.DB) (int, error) {
	var n int
	err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_outbox").Scan(&n)
	return n, err
}
