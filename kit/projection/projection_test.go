package projection_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// balances is the read model of the tests: per account, the balance, the
// number of deposits applied and the last stream version applied.
var balances = projection.Projection{
	Name:   "balances",
	Tables: []string{"balances"},
	Batch:  7,
	Create: func(ctx context.Context, tx *store.Tx, t projection.Tables) error {
		_, err := tx.Exec(ctx, "CREATE TABLE "+t.T("balances")+" (account TEXT PRIMARY KEY, balance BIGINT NOT NULL, n BIGINT NOT NULL, last_version BIGINT NOT NULL)")
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "CREATE INDEX "+t.T("balances")+"_by_balance ON "+t.T("balances")+" (balance)")
		return err
	},
	Handle: func(ctx context.Context, tx *store.Tx, t projection.Tables, src string, m projection.Message) error {
		var d struct{ Amount int64 }
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return err
		}
		var version int64
		if _, err := fmt.Sscan(m.Metadata["v"], &version); err != nil {
			return fmt.Errorf("metadata v: %w", err)
		}
		var last int64
		err := tx.QueryRow(ctx, "SELECT last_version FROM "+t.T("balances")+" WHERE account = ?", m.Stream).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if version != last+1 {
			return fmt.Errorf("account %s: version %d after %d: applied twice or out of order", m.Stream, version, last)
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+t.T("balances")+` (account, balance, n, last_version) VALUES (?, ?, 1, ?)
			ON CONFLICT (account) DO UPDATE SET balance = `+t.T("balances")+`.balance + excluded.balance, n = `+t.T("balances")+`.n + 1, last_version = excluded.last_version`,
			m.Stream, d.Amount, version)
		return err
	},
}

// depositHeld appends n deposits to random accounts among accounts
// (with the stream version in the metadata, for the read model's order
// check), adds them to want and returns the last one's position. It
// does not wait for them to be readable.
func depositHeld(t testing.TB, ctx context.Context, es *eventstore.Store, r *rand.Rand, want map[string][3]int64, accounts int, n int) int64 {
	t.Helper()
	var last int64
	for range n {
		acct := fmt.Sprintf("acct-%d", r.IntN(accounts))
		amt := int64(1 + r.IntN(100))
		w := want[acct]
		e, _ := eventstore.NewEvent("Deposited", map[string]int64{"amount": amt})
		e.Metadata = map[string]string{"v": fmt.Sprint(w[2] + 1)}
		evs := []eventstore.Event{e}
		if _, err := es.Append(ctx, acct, eventstore.Expected(w[2]), evs...); err != nil {
			t.Fatal(err)
		}
		last = evs[0].Position
		want[acct] = [3]int64{w[0] + amt, w[1] + 1, w[2] + 1}
	}
	return last
}

// deposit appends n deposits (depositHeld) and waits until they are
// readable: on PostgreSQL another package's open transaction can hold
// new events back a moment, and callers expect CatchUp to find them.
func deposit(t testing.TB, ctx context.Context, es *eventstore.Store, r *rand.Rand, want map[string][3]int64, accounts int, n int) {
	t.Helper()
	last := depositHeld(t, ctx, es, r, want, accounts, n)
	for n > 0 {
		evs, err := es.ReadAll(ctx, last-1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 && evs[0].Position == last {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("event at position %d never readable", last)
		case <-time.After(5 * time.Millisecond): // poll inside ctx's deadline
		}
	}
}

func readModel(t testing.TB, ctx context.Context, db *store.DB, table string) map[string][3]int64 {
	t.Helper()
	rows, err := db.Query(ctx, "SELECT account, balance, n, last_version FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string][3]int64{}
	for rows.Next() {
		var a string
		var v [3]int64
		if err := rows.Scan(&a, &v[0], &v[1], &v[2]); err != nil {
			t.Fatal(err)
		}
		got[a] = v
	}
	return got
}

func equal(a, b map[string][3]int64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestProjectCatchUpAndLag(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		es, err := eventstore.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		want := map[string][3]int64{}
		deposit(t, ctx, es, r, want, 5, 40)
		pr, err := projection.New(ctx, db, balances, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		// A second replica starting finds the tables made.
		if _, err := projection.New(ctx, db, balances, projection.EventStore(es)); err != nil {
			t.Fatal(err)
		}
		lags, err := pr.Stats(ctx)
		head, _, _ := es.Head(ctx)
		if err != nil || len(lags) != 1 || lags[0].Events != 40 || lags[0].Head != head || lags[0].Checkpoint != 0 || lags[0].Source != "eventstore" {
			t.Fatalf("lag before: %+v %v", lags, err)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(projection.Collector(pr))
		if n, err := testutil.GatherAndCount(reg, "switchyard_projection_lag_events"); err != nil || n != 1 {
			t.Fatalf("gauge: %d %v", n, err)
		}
		err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP switchyard_projection_lag_events Messages of the source not yet applied to the projection's view.
# TYPE switchyard_projection_lag_events gauge
switchyard_projection_lag_events{projection="balances",source="eventstore"} 40
`), "switchyard_projection_lag_events")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := pr.Step(ctx); err != nil || n != 7 {
			t.Fatalf("one step applied %d: %v", n, err)
		}
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if got := readModel(t, ctx, db, "balances"); !equal(got, want) {
			t.Fatalf("read model\n got %v\nwant %v", got, want)
		}
		lags, _ = pr.Stats(ctx)
		if lags[0].Events != 0 || lags[0].Seconds != 0 || lags[0].Checkpoint != head {
			t.Fatalf("lag after: %+v", lags)
		}
		if cp, _ := pr.Checkpoint(ctx, "eventstore"); cp != head {
			t.Fatalf("checkpoint %d", cp)
		}
	})
}

// A handler that fails leaves the checkpoint before the message, and
// nothing of its batch applied.
func TestHandlerErrorRollsBack(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		es, _ := eventstore.Open(ctx, db)
		r := rand.New(rand.NewPCG(3, 4))
		want := map[string][3]int64{}
		deposit(t, ctx, es, r, want, 2, 5)
		bad, _ := eventstore.NewEvent("Deposited", "not an object")
		bad.Metadata = map[string]string{"v": "1"}
		if _, err := es.Append(ctx, "poison", eventstore.NoStream, bad); err != nil {
			t.Fatal(err)
		}
		p := balances
		p.Batch = 100
		pr, err := projection.New(ctx, db, p, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		all, _ := es.ReadAll(ctx, 0, 0)
		err = pr.CatchUp(ctx)
		if len(all) != 6 || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("position %d", all[5].Position)) {
			t.Fatalf("poison message: %v", err)
		}
		if cp, _ := pr.Checkpoint(ctx, "eventstore"); cp != 0 {
			t.Fatalf("checkpoint moved to %d", cp)
		}
		if got := readModel(t, ctx, db, "balances"); len(got) != 0 {
			t.Fatalf("half a batch applied: %v", got)
		}
	})
}

// sliceSource is another service's events, as a test source.
type sliceSource struct {
	mu   sync.Mutex
	msgs []projection.Message
}

func (s *sliceSource) Name() string { return "names" }
func (s *sliceSource) Read(_ context.Context, after int64, limit int) ([]projection.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []projection.Message
	for _, m := range s.msgs {
		if m.Position > after && len(out) < limit {
			out = append(out, m)
		}
	}
	return out, nil
}
func (s *sliceSource) Head(context.Context) (int64, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return 0, time.Time{}, nil
	}
	m := s.msgs[len(s.msgs)-1]
	return m.Position, m.Time, nil
}

// One view joined from two services' events: balances from the event
// store, names from another source.
func TestTwoSources(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		es, _ := eventstore.Open(ctx, db)
		names := &sliceSource{}
		now := time.Now()
		for i, n := range []string{"ann", "bob"} {
			d, _ := json.Marshal(map[string]string{"name": n})
			names.msgs = append(names.msgs, projection.Message{Position: int64(10 * (i + 1)), Stream: fmt.Sprintf("acct-%d", i), Type: "Named", Data: d, Time: now})
		}
		for i := range 2 {
			e, _ := eventstore.NewEvent("Deposited", map[string]int{"amount": 5 * (i + 1)})
			es.Append(ctx, fmt.Sprintf("acct-%d", i), eventstore.Any, e)
		}
		p := projection.Projection{
			Name:   "owners",
			Tables: []string{"owners"},
			Create: func(ctx context.Context, tx *store.Tx, t projection.Tables) error {
				_, err := tx.Exec(ctx, "CREATE TABLE "+t.T("owners")+" (account TEXT PRIMARY KEY, name TEXT, balance BIGINT NOT NULL DEFAULT 0)")
				return err
			},
			Handle: func(ctx context.Context, tx *store.Tx, t projection.Tables, src string, m projection.Message) error {
				var d struct {
					Name   string
					Amount int64
				}
				json.Unmarshal(m.Data, &d)
				q := "INSERT INTO " + t.T("owners") + " (account, balance) VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET balance = " + t.T("owners") + ".balance + excluded.balance"
				arg := any(d.Amount)
				if src == "names" {
					q = "INSERT INTO " + t.T("owners") + " (account, name) VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET name = excluded.name"
					arg = d.Name
				}
				_, err := tx.Exec(ctx, q, m.Stream, arg)
				return err
			},
		}
		if _, err := projection.New(ctx, db, p, projection.EventStore(es), projection.EventStore(es)); err == nil {
			t.Fatal("two sources with one name accepted")
		}
		pr, err := projection.New(ctx, db, p, projection.EventStore(es), names)
		if err != nil {
			t.Fatal(err)
		}
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		rows, _ := db.Query(ctx, "SELECT account, name, balance FROM owners ORDER BY account")
		var got []string
		for rows.Next() {
			var a, n string
			var b int64
			rows.Scan(&a, &n, &b)
			got = append(got, fmt.Sprintf("%s=%s:%d", a, n, b))
		}
		rows.Close()
		if fmt.Sprint(got) != "[acct-0=ann:5 acct-1=bob:10]" {
			t.Fatalf("joined view: %v", got)
		}
		if cp, _ := pr.Checkpoint(ctx, "names"); cp != 20 {
			t.Fatalf("names checkpoint %d", cp)
		}
	})
}

// Rebuild while the serving view keeps being read and updated: readers
// never fail, and afterwards the view equals the one the events give.
func TestRebuildSwap(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		es, _ := eventstore.Open(ctx, db)
		r := rand.New(rand.NewPCG(5, 6))
		want := map[string][3]int64{}
		deposit(t, ctx, es, r, want, 6, 40)
		p := balances
		p.PollInterval = 20 * time.Millisecond
		pr, err := projection.New(ctx, db, p, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		// Corrupt the serving view, as a bug in an old Handle would:
		// the rebuild must recompute it from the events.
		if _, err := db.Exec(ctx, "UPDATE balances SET balance = -1"); err != nil {
			t.Fatal(err)
		}
		runCtx, stopRun := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- pr.Run(runCtx) }()
		stopReads := make(chan struct{})
		readErr := make(chan error, 1)
		go func() {
			defer close(readErr)
			for {
				select {
				case <-stopReads:
					return
				default:
				}
				var n int
				if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM balances").Scan(&n); err != nil {
					readErr <- err
					return
				}
				time.Sleep(time.Millisecond) // pace the reader; not a wait
			}
		}()
		writeDone := make(chan struct{})
		go func() {
			defer close(writeDone)
			deposit(t, ctx, es, rand.New(rand.NewPCG(7, 8)), want, 6, 25)
		}()
		for range 2 {
			if err := pr.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}
		}
		<-writeDone
		close(stopReads)
		if err := <-readErr; err != nil {
			t.Fatalf("a reader failed during the rebuild: %v", err)
		}
		stopRun()
		if err := <-runDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		head, _, _ := es.Head(ctx)
		if got := readModel(t, ctx, db, "balances"); !equal(got, want) {
			cp, _ := pr.Checkpoint(ctx, "eventstore")
			all, _ := es.ReadAll(ctx, 0, 1000)
			t.Fatalf("after rebuild (checkpoint %d, head %d, %d events)\n got %v\nwant %v", cp, head, len(all), got, want)
		}
		if cp, _ := pr.Checkpoint(ctx, "eventstore"); cp != head {
			t.Fatalf("checkpoint %d, head %d", cp, head)
		}
	})
}

func TestNewRejects(t *testing.T) {
	db := storetest.SQLite(t)
	ctx := context.Background()
	es, _ := eventstore.Open(ctx, db)
	src := projection.EventStore(es)
	bad := balances
	bad.Tables = []string{"x; DROP TABLE y"}
	if _, err := projection.New(ctx, db, bad, src); err == nil || !strings.Contains(err.Error(), "table name") {
		t.Fatalf("bad table name: %v", err)
	}
	if _, err := projection.New(ctx, db, projection.Projection{Name: "x"}, src); err == nil {
		t.Fatal("projection without Create/Handle accepted")
	}
	if _, err := projection.New(ctx, db, balances); err == nil {
		t.Fatal("projection without sources accepted")
	}
}

// Run follows new events by wake-up (polling is off in effect here) and
// stops with the error of a message it cannot apply.
func TestRunFollowsAndStopsOnError(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		es, _ := eventstore.Open(ctx, db)
		p := balances
		p.PollInterval = time.Hour
		pr, err := projection.New(ctx, db, p, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		runDone := make(chan error, 1)
		go func() { runDone <- pr.Run(ctx) }()
		r := rand.New(rand.NewPCG(9, 10))
		want := map[string][3]int64{}
		// The position of the n-th event (on PostgreSQL positions have
		// gaps, and an event is readable once every older transaction
		// has ended).
		nth := func(n int) int64 {
			for {
				all, err := es.ReadAll(ctx, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(all) >= n {
					return all[n-1].Position
				}
				select {
				case <-ctx.Done():
					t.Fatalf("event %d never readable", n)
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		for i := range 3 {
			deposit(t, ctx, es, r, want, 2, 1)
			pos := nth(i + 1)
			for {
				cp, err := pr.Checkpoint(ctx, "eventstore")
				if err != nil {
					t.Fatal(err)
				}
				if cp == pos {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("Run did not apply event %d at position %d (checkpoint %d)", i+1, pos, cp)
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		if got := readModel(t, ctx, db, "balances"); !equal(got, want) {
			t.Fatalf("got %v want %v", got, want)
		}
		bad, _ := eventstore.NewEvent("Deposited", map[string]int{"amount": 1}) // no "v" metadata
		es.Append(ctx, "acct-x", eventstore.Any, bad)
		badPos := nth(4)
		select {
		case err := <-runDone:
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("position %d", badPos)) {
				t.Fatalf("Run stopped with %v", err)
			}
		case <-ctx.Done():
			t.Fatal("Run did not stop on a bad message")
		}
	})
}

// On PostgreSQL an event appended while an older transaction runs
// (anywhere on the server) is committed but not yet readable: the
// append's wake-up finds nothing, and the older transaction's end sends
// none. Run must look again soon by itself, not at its poll interval
// (an hour here): it applies the event once the older transaction ends.
func TestRunCatchesUpAfterHeldBackEvents(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	p := balances
	p.PollInterval = time.Hour
	pr, err := projection.New(ctx, db, p, projection.EventStore(es))
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- pr.Run(ctx) }()

	// The older transaction: it has a transaction id (as a writer does)
	// and stays open until released.
	holding, release, ended := make(chan error, 1), make(chan struct{}), make(chan error, 1)
	go func() {
		ended <- db.InTx(ctx, func(tx *store.Tx) error {
			var xid string
			err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid)
			holding <- err
			<-release
			return err
		})
	}()
	if err := <-holding; err != nil {
		t.Fatal(err)
	}
	want := map[string][3]int64{}
	depositHeld(t, ctx, es, rand.New(rand.NewPCG(11, 12)), want, 1, 1) // held back: do not wait for it
	if pending, err := es.Pending(ctx, 0); err != nil || !pending {
		t.Fatalf("Pending with an older transaction open: %v %v, want true", pending, err)
	}
	// Let Run's wake-up come and go while the event is held back, then
	// end the older transaction.
	time.Sleep(200 * time.Millisecond) // Run sees the wake-up and finds nothing to read
	close(release)
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	for !equal(readModel(t, ctx, db, "balances"), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("Run did not apply the event within 30s of its transaction's end (view %v, want %v)", readModel(t, context.Background(), db, "balances"), want)
		case err := <-runDone:
			t.Fatalf("Run returned: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Readable now, after Run's checkpoint 0: still pending, or a
	// follower whose read raced the older transaction's end (it read
	// nothing, then the event became readable before it asked) would
	// sleep through it.
	all, err := es.ReadAll(ctx, 0, 0)
	if err != nil || len(all) != 1 {
		t.Fatalf("ReadAll: %v %v", all, err)
	}
	if pending, err := es.Pending(ctx, 0); err != nil || !pending {
		t.Fatalf("Pending with a readable event after the position: %v %v, want true", pending, err)
	}
	if pending, err := es.Pending(ctx, all[0].Position); err != nil || pending {
		t.Fatalf("Pending after the last event: %v %v, want false", pending, err)
	}
	cancel()
	<-runDone
}
