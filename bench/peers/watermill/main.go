// Command watermill compares switchyard's transactional outbox (package
// kit/outbox: Add in the service's transaction, Relay publishing to the
// broker) with Watermill's SQL forwarder (watermill-sql's Publisher
// writing into its PostgreSQL table inside the service's transaction,
// and the forwarder component moving the rows from watermill-sql's
// Subscriber to a publisher) on the same database and with the same
// destination: a switchyard broker in this process (native protocol over
// loopback TCP, default fsync policy), where every publish waits for the
// broker's durability confirm on both sides.
//
// It is a module of its own so the main module does not depend on
// Watermill. One run measures one system in one mode:
//
//	go run . -system switchyard -mode throughput -db postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run . -system watermill  -mode latency -rate 2000 -db postgres://...
//	go run . -system switchyard -mode throughput -db sqlite
//
// drain: the same transactions are all committed first with the relay
// stopped; then the relay starts and the time to the last confirm gives
// msgs/s (the relay alone, as bench/outbox measures it).
//
// throughput: -producers goroutines commit -messages messages as fast as
// they can, -per-tx messages (and one business row) per transaction,
// while the relay runs; the time from the first commit's start to the
// last broker confirm gives msgs/s.
//
// latency: transactions are started at a constant arrival rate (open
// loop, -rate messages per second, -per-tx per transaction) by a pool of
// -producers goroutines; commit-to-confirm is measured per message from
// the moment its commit returned to the moment the broker confirmed it.
//
// Both sides run on the same database/sql pool (pgx driver, 32
// connections) with the server's synchronous_commit (on). A PostgreSQL
// run uses a schema of its own, dropped at the end. It prints one RESULT
// line.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

type config struct {
	system, mode, db string
	messages, perTx  int
	producers, size  int
	rate             int
	duration         time.Duration
	batch            int
	partitions       int
	wmPoll           time.Duration
	wmBatch          int
	profile          string
}

func main() {
	var c config
	flag.StringVar(&c.system, "system", "switchyard", "`system`: switchyard (kit/outbox) or watermill (watermill-sql + forwarder)")
	flag.StringVar(&c.mode, "mode", "throughput", "`mode`: throughput, drain or latency")
	flag.StringVar(&c.db, "db", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "`database`: a postgres:// URL, or sqlite (switchyard only)")
	flag.IntVar(&c.messages, "messages", 20000, "messages for the throughput run")
	flag.IntVar(&c.perTx, "per-tx", 10, "messages per transaction (each transaction also inserts one business row)")
	flag.IntVar(&c.producers, "producers", 4, "producer goroutines")
	flag.IntVar(&c.size, "size", 256, "message body size in `bytes`")
	flag.IntVar(&c.rate, "rate", 1000, "arrival rate in messages per `second` for the latency run")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of the latency run")
	flag.IntVar(&c.batch, "batch", 500, "switchyard relay batch size (its default)")
	flag.IntVar(&c.partitions, "partitions", 4, "switchyard relay partitions")
	flag.DurationVar(&c.wmPoll, "wm-poll", 10*time.Millisecond, "watermill subscriber poll interval (its default is 1s; it has no notifications)")
	flag.IntVar(&c.wmBatch, "wm-batch", 100, "watermill subscriber SubscribeBatchSize (its default)")
	flag.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the measured phase to `file`")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "watermill peer bench:", err)
		os.Exit(1)
	}
}

// recorder notes when the broker confirmed each message id.
type recorder struct {
	mu   sync.Mutex
	at   map[string]time.Time
	want int
	done chan struct{}
}

func newRecorder(want int) *recorder {
	return &recorder{at: make(map[string]time.Time, want), want: want, done: make(chan struct{})}
}

func (r *recorder) confirmed(ids []string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if _, ok := r.at[id]; !ok {
			r.at[id] = now
		}
	}
	if len(r.at) >= r.want && r.done != nil {
		close(r.done)
		r.done = nil
	}
}

// system is one outbox implementation under test.
type system interface {
	// commit writes one business row and msgs in one transaction.
	commit(ctx context.Context, row int, msgs []msg) error
	// start starts the relay; stop stops it.
	start(ctx context.Context) error
	stop()
	newID() string
}

type msg struct {
	id, key string
	body    []byte
}

func run(c config) error {
	if c.perTx < 1 || c.producers < 1 || c.messages < 1 || c.rate < 1 {
		return errors.New("-per-tx, -producers, -messages and -rate must be at least 1")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "outbox-peer-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	b, err := engine.Open(engine.Config{Dir: filepath.Join(tmp, "broker")})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Declare("bench", broker.QueueConfig{MaxLength: 10_000_000, MaxMessageSize: 1 << 20}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go native.New(b, native.Options{}).Serve(ctx, ln)
	conn, err := client.Dial(ctx, ln.Addr().String(), client.Options{})
	if err != nil {
		return err
	}
	defer conn.Close()

	dialect := "sqlite"
	dsn := "sqlite:" + filepath.Join(tmp, "svc.db")
	if strings.HasPrefix(c.db, "postgres") {
		dialect = "postgres"
		admin, err := store.Open(ctx, c.db)
		if err != nil {
			return err
		}
		var r [6]byte
		rand.Read(r[:])
		schema := "sywm_" + hex.EncodeToString(r[:])
		if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return err
		}
		defer func() { admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); admin.Close() }()
		sep := "?"
		if strings.Contains(c.db, "?") {
			sep = "&"
		}
		dsn = c.db + sep + "search_path=" + schema
	} else if c.db != "sqlite" {
		return fmt.Errorf("-db %q: want sqlite or a postgres:// URL", c.db)
	}
	if dialect == "sqlite" && c.system == "watermill" {
		return errors.New("watermill-sql supports MySQL and PostgreSQL only: -db sqlite is for -system switchyard")
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var syncCommit string
	if dialect == "postgres" {
		if err := db.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&syncCommit); err != nil {
			return err
		}
	} else {
		syncCommit = "sqlite-FULL"
	}
	if _, err := db.Exec(ctx, "CREATE TABLE rides (id BIGINT PRIMARY KEY, v TEXT)"); err != nil {
		return err
	}

	want := c.messages
	if c.mode == "latency" {
		want = int(float64(c.rate) * c.duration.Seconds())
		want -= want % c.perTx
	} else if c.mode != "throughput" && c.mode != "drain" {
		return fmt.Errorf("-mode %q: want throughput, drain or latency", c.mode)
	}
	rec := newRecorder(want)

	var sys system
	switch c.system {
	case "switchyard":
		sys, err = newSwitchyard(ctx, db, conn, rec, c)
	case "watermill":
		sys, err = newWatermill(db.DB, conn, rec, c)
	default:
		err = fmt.Errorf("-system %q: want switchyard or watermill", c.system)
	}
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if started {
			sys.stop()
		}
	}()
	if c.mode != "drain" {
		if err := sys.start(ctx); err != nil {
			return err
		}
		started = true
	}

	body := make([]byte, c.size)
	// watermill's default payload column is JSON; a JSON string body
	// keeps the size the same for both systems.
	body[0], body[len(body)-1] = '"', '"'
	for i := 1; i < len(body)-1; i++ {
		body[i] = 'a' + byte(i%26)
	}
	txs := want / c.perTx
	batches := make([][]msg, txs)
	for t := range batches {
		ms := make([]msg, c.perTx)
		for j := range ms {
			i := t*c.perTx + j
			ms[j] = msg{id: sys.newID(), key: "k" + strconv.Itoa(i%64), body: body}
		}
		batches[t] = ms
	}
	committed := make([]time.Time, txs)
	stopProf, err := startProfile(c.profile)
	if err != nil {
		return err
	}
	defer stopProf()

	var perr atomic.Pointer[error]
	work := make(chan int, txs)
	var wg sync.WaitGroup
	for range c.producers {
		wg.Go(func() {
			for t := range work {
				if err := sys.commit(ctx, t, batches[t]); err != nil {
					perr.CompareAndSwap(nil, &err)
				}
				committed[t] = time.Now()
			}
		})
	}
	rec.mu.Lock()
	done := rec.done
	rec.mu.Unlock()
	t0 := time.Now()
	late := 0
	if c.mode != "latency" {
		for t := range txs {
			work <- t
		}
	} else {
		every := time.Second * time.Duration(c.perTx) / time.Duration(c.rate)
		for t := range txs {
			due := t0.Add(time.Duration(t) * every)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			} else if d < -every {
				late++
			}
			work <- t
		}
	}
	close(work)
	wg.Wait()
	commitDur := time.Since(t0)
	if p := perr.Load(); p != nil {
		return fmt.Errorf("producer: %w", *p)
	}
	if c.mode == "drain" {
		// Everything is committed; the relay starts now and the clock
		// with it (its start-up counts). commit_s reports the commit
		// phase, which is not timed.
		t0 = time.Now()
		if err := sys.start(ctx); err != nil {
			return err
		}
		started = true
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		rec.mu.Lock()
		n := len(rec.at)
		rec.mu.Unlock()
		return fmt.Errorf("only %d of %d messages confirmed 5 minutes after the last commit", n, want)
	}
	stopProf()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var last time.Time
	lat := make([]time.Duration, 0, want)
	for t, ms := range batches {
		for _, m := range ms {
			at := rec.at[m.id]
			if at.After(last) {
				last = at
			}
			lat = append(lat, max(at.Sub(committed[t]), 0))
		}
	}
	if c.mode != "latency" {
		el := last.Sub(t0)
		fmt.Printf("RESULT outbox_peer_%s system=%s db=%s messages=%d per_tx=%d producers=%d size=%d synchronous_commit=%s commit_s=%.2f total_s=%.2f msgs_per_s=%.0f\n",
			c.mode, c.system, dialect, want, c.perTx, c.producers, c.size, syncCommit, commitDur.Seconds(), el.Seconds(), float64(want)/el.Seconds())
		return nil
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	achieved := float64(want) / commitDur.Seconds()
	fmt.Printf("RESULT outbox_peer_latency system=%s db=%s rate=%d achieved_rate=%.0f late_tx=%d per_tx=%d producers=%d messages=%d synchronous_commit=%s p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f\n",
		c.system, dialect, c.rate, achieved, late, c.perTx, c.producers, want, syncCommit, q(0.5), q(0.9), q(0.99), q(0.999), q(1))
	return nil
}

// switchyard: outbox.Add in the transaction, outbox.Relay to the broker.
type syOutbox struct {
	db    *store.DB
	relay *outbox.Relay
	stopR context.CancelFunc
	done  chan struct{}
}

func newSwitchyard(ctx context.Context, db *store.DB, conn *client.Conn, rec *recorder, c config) (*syOutbox, error) {
	if err := outbox.Prepare(ctx, db); err != nil {
		return nil, err
	}
	pub := outbox.NewBroker(conn)
	confirming := outbox.PublisherFunc(func(ctx context.Context, dest string, msgs ...broker.Message) error {
		if err := pub.Publish(ctx, dest, msgs...); err != nil {
			return err
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		rec.confirmed(ids)
		return nil
	})
	relay, err := outbox.NewRelay(ctx, db, confirming, outbox.RelayOptions{Batch: c.batch, Partitions: c.partitions, PollInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return &syOutbox{db: db, relay: relay}, nil
}

func (s *syOutbox) newID() string { return outbox.NewID() }

func (s *syOutbox) commit(ctx context.Context, row int, msgs []msg) error {
	return s.db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO rides (id, v) VALUES (?, ?)", row, "r"); err != nil {
			return err
		}
		bm := make([]broker.Message, len(msgs))
		for i, m := range msgs {
			bm[i] = broker.Message{ID: m.id, Key: m.key, Body: m.body}
		}
		return outbox.Add(ctx, tx, "queue:bench", bm...)
	})
}

func (s *syOutbox) start(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	s.stopR, s.done = cancel, make(chan struct{})
	go func() { s.relay.Run(rctx); close(s.done) }()
	// The relay takes its partition leases on its first round; wait for
	// them so the measured phase does not include start-up.
	deadline := time.Now().Add(30 * time.Second)
	for len(s.relay.Held()) == 0 {
		if time.Now().After(deadline) {
			return errors.New("switchyard relay took no partition within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func (s *syOutbox) stop() { s.stopR(); <-s.done }

// watermill: watermill-sql's Publisher on the service's *sql.Tx (wrapped
// by the forwarder's envelope publisher), and the forwarder moving the
// rows from watermill-sql's Subscriber to brokerPublisher.
type wmOutbox struct {
	db     *sql.DB
	fwd    *forwarder.Forwarder
	schema wsql.DefaultPostgreSQLSchema
	done   chan error
	cancel context.CancelFunc
}

const wmTopic = "sy_outbox"

func newWatermill(db *sql.DB, conn *client.Conn, rec *recorder, c config) (*wmOutbox, error) {
	logger := watermill.NopLogger{}
	schema := wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: c.wmBatch}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter:    schema,
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     c.wmPoll,
	}, logger)
	if err != nil {
		return nil, err
	}
	fwd, err := forwarder.NewForwarder(sub, &brokerPublisher{conn: conn, rec: rec}, logger, forwarder.Config{ForwarderTopic: wmTopic})
	if err != nil {
		return nil, err
	}
	// The tables must exist before the first producer writes (a drain
	// run commits everything before the forwarder starts).
	if err := sub.SubscribeInitialize(wmTopic); err != nil {
		return nil, err
	}
	return &wmOutbox{db: db, fwd: fwd, schema: schema}, nil
}

func (w *wmOutbox) newID() string { return watermill.NewUUID() }

func (w *wmOutbox) commit(ctx context.Context, row int, msgs []msg) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO rides (id, v) VALUES ($1, $2)", row, "r"); err != nil {
		return err
	}
	sqlPub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: w.schema}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: wmTopic})
	wm := make([]*message.Message, len(msgs))
	for i, m := range msgs {
		wm[i] = message.NewMessage(m.id, m.body)
		wm[i].Metadata.Set("key", m.key)
	}
	if err := pub.Publish("bench", wm...); err != nil {
		return err
	}
	return tx.Commit()
}

func (w *wmOutbox) start(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	w.cancel, w.done = cancel, make(chan error, 1)
	go func() { w.done <- w.fwd.Run(rctx) }()
	select {
	case <-w.fwd.Running():
		return nil
	case err := <-w.done:
		return fmt.Errorf("watermill forwarder: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("watermill forwarder not running after 30s")
	}
}

func (w *wmOutbox) stop() { w.fwd.Close(); w.cancel(); <-w.done }

// brokerPublisher is a Watermill message.Publisher that publishes to the
// switchyard broker and returns once the broker confirmed the messages
// durable, as outbox.Broker does for the switchyard relay. The topic is
// the queue name; metadata "key" is the ordering key.
type brokerPublisher struct {
	conn *client.Conn
	rec  *recorder
}

func (p *brokerPublisher) Publish(topic string, msgs ...*message.Message) error {
	bm := make([]broker.Message, len(msgs))
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		bm[i] = broker.Message{ID: m.UUID, Key: m.Metadata.Get("key"), Body: m.Payload}
		ids[i] = m.UUID
	}
	ctx := context.Background()
	if len(msgs) > 0 {
		ctx = msgs[0].Context()
	}
	if _, err := p.conn.Publish(ctx, topic, bm...); err != nil {
		return err
	}
	p.rec.confirmed(ids)
	return nil
}

func (p *brokerPublisher) Close() error { return nil }
