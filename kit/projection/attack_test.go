package projection_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// renamed is a source under another name.
type renamed struct {
	projection.Source
	name string
}

func (r renamed) Name() string { return r.name }

// TestSourceAddedLater: a service adds a source to a projection that
// already runs. New made checkpoints only when it created the
// projection, and a step that found no checkpoint row took it for a
// rebuild's that was swapped away: the new source was silently never
// applied (Run idle, CatchUp done, only the lag growing). A new source
// starts from its beginning.
func TestSourceAddedLater(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		es, _ := eventstore.Open(ctx, db)
		want := map[string][3]int64{}
		deposit(t, ctx, es, rand.New(rand.NewPCG(9, 10)), want, 3, 12)
		pr, err := projection.New(ctx, db, balances, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		// The next release reads a second source too (here: the same
		// events under another name, into a view that counts per source).
		counts := balances
		counts.Name = "counts"
		counts.Tables = []string{"counts"}
		counts.Create = func(ctx context.Context, tx *store.Tx, t projection.Tables) error {
			_, err := tx.Exec(ctx, "CREATE TABLE "+t.T("counts")+" (src TEXT PRIMARY KEY, n BIGINT NOT NULL)")
			return err
		}
		counts.Handle = func(ctx context.Context, tx *store.Tx, t projection.Tables, src string, m projection.Message) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+t.T("counts")+" (src, n) VALUES (?, 1) ON CONFLICT (src) DO UPDATE SET n = "+t.T("counts")+".n + 1", src)
			return err
		}
		v1, err := projection.New(ctx, db, counts, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		if err := v1.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		v2, err := projection.New(ctx, db, counts, projection.EventStore(es), renamed{projection.EventStore(es), "copy"})
		if err != nil {
			t.Fatal(err)
		}
		if err := v2.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := db.QueryRow(ctx, "SELECT COALESCE(SUM(n), 0) FROM counts WHERE src = 'copy'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		lags, err := v2.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 12 {
			t.Fatalf("the added source applied %d of its 12 messages (lags %+v)", n, lags)
		}
		for _, l := range lags {
			if l.Events != 0 {
				t.Fatalf("lag after catching up: %+v", lags)
			}
		}
	})
}

// TestConcurrentRebuilds: Rebuild is meant for one replica at a time,
// but two started together (an operator's command run on every
// replica) shared one rebuild checkpoint: the first stepped on the
// second's checkpoint into its own tables, then swapped in a partial
// table and dropped the serving checkpoint, after which the view never
// moved again. Now the rebuild that was superseded fails and leaves the
// view to the other; the view then equals the one the events give, and
// keeps following.
func TestConcurrentRebuilds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		es, _ := eventstore.Open(ctx, db)
		want := map[string][3]int64{}
		deposit(t, ctx, es, rand.New(rand.NewPCG(11, 12)), want, 4, 30)
		// Replica A's source stops before its rebuild's second read until
		// replica B's rebuild has finished.
		gate := &gated{Source: projection.EventStore(es), release: make(chan struct{})}
		a, err := projection.New(ctx, db, balances, gate)
		if err != nil {
			t.Fatal(err)
		}
		b, err := projection.New(ctx, db, balances, projection.EventStore(es))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		errA := make(chan error, 1)
		gate.arm()
		go func() { errA <- a.Rebuild(ctx) }()
		select {
		case <-gate.waiting:
		case <-ctx.Done():
			t.Fatal("replica A's rebuild never read")
		}
		if err := b.Rebuild(ctx); err != nil {
			t.Fatalf("replica B's rebuild: %v", err)
		}
		close(gate.release)
		if err := <-errA; !errors.Is(err, projection.ErrRebuildSuperseded) {
			t.Fatalf("replica A's rebuild, superseded by B's: %v", err)
		}
		if _, err := db.Exec(ctx, "SELECT 1 FROM balances__r1"); err == nil {
			t.Fatal("replica A's fresh table balances__r1 was left behind")
		}
		deposit(t, ctx, es, rand.New(rand.NewPCG(13, 14)), want, 4, 10)
		if err := b.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if got := readModel(t, ctx, db, "balances"); !equal(got, want) {
			t.Fatalf("view after two rebuilds\n got %v\nwant %v", got, want)
		}
	})
}

// gated is a source whose reads, once armed, stop at the second until
// release closes.
type gated struct {
	projection.Source
	mu      sync.Mutex
	armed   bool
	reads   int
	waiting chan struct{}
	release chan struct{}
}

func (g *gated) arm() {
	g.mu.Lock()
	g.armed, g.reads, g.waiting = true, 0, make(chan struct{})
	g.mu.Unlock()
}

func (g *gated) Read(ctx context.Context, after int64, limit int) ([]projection.Message, error) {
	g.mu.Lock()
	block := false
	if g.armed {
		g.reads++
		if g.reads == 2 {
			block = true
			close(g.waiting)
		}
	}
	g.mu.Unlock()
	if block {
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Source.Read(ctx, after, limit)
}
