package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

func runRelay(t *testing.T, db *store.DB, pub outbox.Publisher, opts outbox.RelayOptions) (*outbox.Relay, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := outbox.NewRelay(ctx, db, pub, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return r, stop
}

func prepare(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := context.Background()
	if err := outbox.Prepare(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "outbox-test", []store.Migration{{Version: 1, Name: "business",
		SQL: "CREATE TABLE rides (id TEXT PRIMARY KEY, n INTEGER NOT NULL);"}}); err != nil {
		t.Fatal(err)
	}
}

func TestParseDest(t *testing.T) {
	good := map[string][2]string{
		"rides":        {"queue", "rides"},
		"queue:rides":  {"queue", "rides"},
		"topic:rides":  {"topic", "rides"},
		"stream:rides": {"stream", "rides"},
	}
	for in, want := range good {
		k, n, err := outbox.ParseDest(in)
		if err != nil || string(k) != want[0] || n != want[1] {
			t.Errorf("ParseDest(%q) = %q %q %v, want %v", in, k, n, err, want)
		}
	}
	for _, in := range []string{"", "queue:", "table:rides", "topic:a b", "queue:topic:x", ":x"} {
		if _, _, err := outbox.ParseDest(in); !errors.Is(err, outbox.ErrDest) {
			t.Errorf("ParseDest(%q): %v, want ErrDest", in, err)
		}
	}
}

func FuzzParseDest(f *testing.F) {
	for _, s := range []string{"rides", "queue:rides", "topic:x", "stream:y", "q:x", ":", "queue::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, n, err := outbox.ParseDest(s)
		if err != nil {
			if !errors.Is(err, outbox.ErrDest) {
				t.Fatalf("error without ErrDest: %v", err)
			}
			return
		}
		if !broker.ValidName(n) || (k != outbox.Queue && k != outbox.Topic && k != outbox.Stream) {
			t.Fatalf("ParseDest(%q) accepted %q %q", s, k, n)
		}
	})
}

func TestRelayOptionsValidate(t *testing.T) {
	err := outbox.RelayOptions{Partitions: -1, LeaseTTL: time.Millisecond, Batch: 20000, PollInterval: -1}.Validate()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{"partitions -1", "lease TTL 1ms", "batch 20000", "poll interval"} {
		if !containsStr(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (outbox.RelayOptions{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestOutbox is the shared suite, run on SQLite and PostgreSQL.
func TestOutbox(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		t.Run("commit publishes, rollback does not", func(t *testing.T) { testCommitRollback(t, db) })
		t.Run("per-key commit order under concurrency", func(t *testing.T) { testKeyOrder(t, db) })
		t.Run("many keys per Add under concurrency", func(t *testing.T) { testManyKeys(t, db) })
	})
}

// testManyKeys runs concurrent transactions that each add messages for
// several overlapping keys, in a shuffled slice order: Add numbers all
// keys of a transaction in one statement, which must neither deadlock
// nor leave gaps, and row order must follow each key's numbers.
func testManyKeys(t *testing.T, db *store.DB) {
	ctx := context.Background()
	prepare(t, db)
	const workers, txs, keys = 6, 15, 9
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range txs {
				var msgs []broker.Message
				for k := range 5 {
					key := "m" + strconv.Itoa((w+i+2*k)%keys)
					msgs = append(msgs, broker.Message{Key: key, Body: []byte("x")}, broker.Message{Key: key})
				}
				rand.Shuffle(len(msgs), func(a, b int) { msgs[a], msgs[b] = msgs[b], msgs[a] })
				if err := db.InTx(ctx, func(tx *store.Tx) error { return outbox.Add(ctx, tx, "queue:q", msgs...) }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, "SELECT msg_key, seq FROM sy_outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	last := map[string]int64{}
	total := 0
	for rows.Next() {
		var k string
		var seq int64
		if err := rows.Scan(&k, &seq); err != nil {
			t.Fatal(err)
		}
		if seq != last[k]+1 {
			t.Fatalf("key %s: seq %d after %d in row order: numbers out of order or with a gap", k, seq, last[k])
		}
		last[k] = seq
		total++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if total != workers*txs*10 {
		t.Fatalf("%d rows, want %d", total, workers*txs*10)
	}
}

func testCommitRollback(t *testing.T, db *store.DB) {
	ctx := context.Background()
	prepare(t, db)
	rec := newRecorder()
	runRelay(t, db, rec, outbox.RelayOptions{Partitions: 4, LeaseTTL: time.Second, PollInterval: 20 * time.Millisecond})
	var assigned string
	err := db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO rides (id, n) VALUES ('r1', 1)"); err != nil {
			return err
		}
		msgs := []broker.Message{
			{Body: []byte("created"), Key: "r1", Headers: map[string]string{"type": "RideCreated"}},
			{Body: []byte("fixed"), ID: "my-id", Key: "r1", TTL: time.Minute},
		}
		if err := outbox.Add(ctx, tx, "queue:rides", msgs...); err != nil {
			return err
		}
		assigned = msgs[0].ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(assigned) != 32 {
		t.Fatalf("Add did not assign an id: %q", assigned)
	}
	boom := errors.New("boom")
	err = db.InTx(ctx, func(tx *store.Tx) error {
		if err := outbox.Add(ctx, tx, "queue:rides", broker.Message{Body: []byte("rolled back"), Key: "r1"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *store.Tx) error { return outbox.Add(ctx, tx, "table:x", broker.Message{}) }); !errors.Is(err, outbox.ErrDest) {
		t.Fatalf("bad dest: %v", err)
	}
	waitFor(t, 10*time.Second, "two messages published", func() bool { return rec.total() >= 2 })
	waitFor(t, 10*time.Second, "outbox empty", func() bool { n, _ := outbox.Pending(ctx, db); return n == 0 })
	got := rec.get("queue:rides")
	if len(got) != 2 || got[0].ID != assigned || string(got[0].Body) != "created" || got[0].Headers["type"] != "RideCreated" ||
		got[1].ID != "my-id" || got[1].Key != "r1" || got[1].TTL != time.Minute {
		t.Fatalf("published %+v", got)
	}
	// A rolled-back message never appears, however long we look: the
	// outbox is empty and the count stayed two.
	if rec.total() != 2 {
		t.Fatalf("published %d messages, want 2", rec.total())
	}
}

// testKeyOrder commits many transactions on a few keys concurrently.
// Each transaction adds its message first and then increments the key's
// business counter without any lock of its own, writing the value it
// got into the message: only the outbox's per-key lock keeps the
// increments from being lost, and the relay must publish 1, 2, 3, ...
// per key.
func testKeyOrder(t *testing.T, db *store.DB) {
	ctx := context.Background()
	prepare(t, db)
	const keys, perKey, workers = 4, 24, 8
	for k := range keys {
		if _, err := db.Exec(ctx, "INSERT INTO rides (id, n) VALUES (?, 0)", "k"+strconv.Itoa(k)); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	runRelay(t, db, rec, outbox.RelayOptions{Partitions: 3, LeaseTTL: time.Second, PollInterval: 20 * time.Millisecond, Batch: 7})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range keys * perKey / workers {
				key := "k" + strconv.Itoa((w+i)%keys)
				err := db.InTx(ctx, func(tx *store.Tx) error {
					m := broker.Message{Key: key, Body: []byte("?")}
					if err := outbox.Add(ctx, tx, "queue:rides", m); err != nil {
						return err
					}
					var id string
					if err := tx.QueryRow(ctx, "SELECT msg_id FROM sy_outbox WHERE id = (SELECT MAX(id) FROM sy_outbox WHERE msg_key = ?)", key).Scan(&id); err != nil {
						return err
					}
					var n int
					if err := tx.QueryRow(ctx, "SELECT n FROM rides WHERE id = ?", key).Scan(&n); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // widen the window for a lost update
					if _, err := tx.Exec(ctx, "UPDATE rides SET n = ? WHERE id = ?", n+1, key); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "UPDATE sy_outbox SET body = ? WHERE msg_id = ?", []byte(strconv.Itoa(n+1)), id)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "all published", func() bool { return rec.total() >= keys*perKey })
	next := map[string]int{}
	for _, m := range rec.get("queue:rides") {
		next[m.Key]++
		if string(m.Body) != strconv.Itoa(next[m.Key]) {
			t.Fatalf("key %s: message %d has body %q: commit order broken", m.Key, next[m.Key], m.Body)
		}
	}
	for k := range keys {
		var n int
		db.QueryRow(ctx, "SELECT n FROM rides WHERE id = ?", "k"+strconv.Itoa(k)).Scan(&n)
		if n != perKey || next["k"+strconv.Itoa(k)] != perKey {
			t.Errorf("key k%d: counter %d, published %d, want %d", k, n, next["k"+strconv.Itoa(k)], perKey)
		}
	}
	if rec.total() != keys*perKey {
		t.Errorf("published %d, want %d (a duplicate)", rec.total(), keys*perKey)
	}
}

// TestReplicas runs three relays on one outbox: they share the
// partitions, nothing is published twice, and when one hangs (holding
// its leases, renewing none) the others take its partitions over after
// the lease TTL and publish its messages.
func TestReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		prepare(t, db)
		const parts = 8
		rec := newRecorder()
		opts := outbox.RelayOptions{Partitions: parts, LeaseTTL: time.Second, PollInterval: 10 * time.Millisecond, OnError: func(err error) { t.Logf("relay: %v", err) }}
		var relays []*outbox.Relay
		for i := range 3 {
			o := opts
			o.Holder = fmt.Sprintf("r%d", i)
			r, _ := runRelay(t, db, rec, o)
			relays = append(relays, r)
		}
		waitFor(t, 10*time.Second, "partitions shared 3/3/2", func() bool {
			seen := map[int]bool{}
			for _, r := range relays {
				h := r.Held()
				if len(h) < 2 || len(h) > 3 {
					return false
				}
				for _, p := range h {
					seen[p] = true
				}
			}
			return len(seen) == parts
		})
		add := func(from, to int) {
			for i := from; i < to; i++ {
				err := db.InTx(ctx, func(tx *store.Tx) error {
					return outbox.Add(ctx, tx, "queue:q", broker.Message{Key: "k" + strconv.Itoa(i%13), ID: "m" + strconv.Itoa(i)})
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		add(0, 200)
		waitFor(t, 20*time.Second, "200 published", func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.count) >= 200
		})

		// A hung relay: its publisher blocks, so it neither publishes nor
		// renews; its leases expire and the others take over.
		hang := make(chan struct{})
		defer close(hang)
		hung := outbox.PublisherFunc(func(ctx context.Context, dest string, msgs ...broker.Message) error {
			select {
			case <-hang:
			case <-ctx.Done():
			}
			return errors.New("hung")
		})
		o := opts
		o.Holder = "hung"
		hr, _ := runRelay(t, db, hung, o)
		waitFor(t, 10*time.Second, "the hung relay to hold partitions", func() bool { return len(hr.Held()) > 0 })
		add(200, 400)
		waitFor(t, 20*time.Second, "400 published despite the hung replica", func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.count) >= 400
		})
		rec.mu.Lock()
		defer rec.mu.Unlock()
		// In steady state nothing is published twice. A copy can only come
		// from a round that outlived its lease (a replica stalled past the
		// TTL on an overloaded machine); the relay counts those as Late.
		var late, lost int64
		for _, r := range relays {
			late += r.Stats().Late
			lost += r.Stats().Lost
		}
		dups := 0
		for _, c := range rec.count {
			dups += c - 1
		}
		if dups > 0 && late+lost == 0 {
			t.Errorf("%d messages published twice though no replica ever outlived its lease", dups)
		} else if dups > 0 {
			t.Logf("%d copies; %d messages in rounds that outlived their lease, %d leases lost to stalls (machine overloaded)", dups, late, lost)
		}
		if len(rec.count) != 400 {
			t.Errorf("%d distinct messages published, want 400", len(rec.count))
		}
	})
}

// TestBrokerPublisher relays to a real broker: a queue, a topic with a
// bound queue, and a stream; a destination of a kind the publisher has no
// client for is an error.
func TestBrokerPublisher(t *testing.T) {
	b, addr := startBroker(t)
	for _, q := range []string{"rides", "fanout"} {
		if err := b.Declare(q, broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.DeclareTopic("events", broker.TopicConfig{Queues: []string{"fanout"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareStream("log", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := storetest.SQLite(t)
	prepare(t, db)
	runRelay(t, db, outbox.NewBroker(conn), outbox.RelayOptions{PollInterval: 20 * time.Millisecond})
	err = db.InTx(ctx, func(tx *store.Tx) error {
		for _, d := range []string{"rides", "topic:events", "stream:log"} {
			if err := outbox.Add(ctx, tx, d, broker.Message{ID: "id-" + d, Key: "r1", Body: []byte(d)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"rides", "fanout"} {
		var ds []broker.Delivery
		waitFor(t, 10*time.Second, "a message in "+q, func() bool {
			ds, _ = b.Receive(ctx, q, broker.ReceiveOptions{Max: 10, AutoAck: true})
			return len(ds) > 0
		})
		if len(ds) != 1 || ds[0].MsgID == "" || ds[0].Key != "r1" {
			t.Fatalf("%s: %+v", q, ds)
		}
	}
	waitFor(t, 10*time.Second, "a message in the stream", func() bool {
		ms, _ := b.Read(ctx, "log", 0, broker.ReadOptions{Max: 10})
		return len(ms) == 1 && string(ms[0].Body) == "stream:log"
	})
	onlyQueues := outbox.Broker{Queues: conn}
	if err := onlyQueues.Publish(ctx, "stream:log", broker.Message{}); !errors.Is(err, outbox.ErrDest) {
		t.Fatalf("stream without a stream client: %v", err)
	}
	if err := onlyQueues.Publish(ctx, "nope", broker.Message{}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
}
