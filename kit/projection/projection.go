// Package projection builds read models (materialized views) from
// streams of events: the query side of CQRS.
//
// A Projection names its tables, says how to create them, and how one
// message changes them. A Projector feeds it from one or more Sources
// (the event store's all-stream with EventStore; broker streams or
// another service's events through the same small interface) and keeps,
// per source, a checkpoint: the position of the last message applied.
// The checkpoint is updated in the same transaction as the view, so a
// projector killed at any moment resumes exactly where its last commit
// left it: nothing applied twice, nothing missed.
//
// Rebuild recomputes the view from zero into fresh tables while the old
// ones keep serving (and keep being updated), then swaps them in with a
// rename in one transaction. Stats reports how far each source is behind
// (events and seconds); Collector exports that to Prometheus.
package projection

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
)

// Message is one event a source delivers.
type Message struct {
	// Position is the source's position of this message: after applying
	// it, the checkpoint is Position. Positions grow strictly.
	Position int64
	ID       string // unique id of the event, when the source has one
	Stream   string // the aggregate or key it belongs to
	Type     string
	Data     json.RawMessage
	Metadata map[string]string
	Time     time.Time
}

// Source is an ordered, replayable stream of messages.
type Source interface {
	// Name identifies the source in checkpoints and metrics; keep it
	// stable.
	Name() string
	// Read returns up to limit messages after position after, in order.
	Read(ctx context.Context, after int64, limit int) ([]Message, error)
	// Head is the position of the newest message and its time (zero
	// when the source is empty).
	Head(ctx context.Context) (int64, time.Time, error)
}

// Waker is implemented by a source that can say when it has new
// messages; the projector still polls as a fallback.
type Waker interface {
	Wake() (<-chan struct{}, func())
}

// PendingChecker is implemented by a source whose newer messages can be
// committed but not yet readable (the event store on PostgreSQL, while
// an older transaction runs). Pending reports whether any message after
// a position is committed, readable or not; while one is, Run looks
// again within eventstore.HeldBackPoll instead of waiting for a wake-up
// that the older transaction's end does not send.
type PendingChecker interface {
	Pending(ctx context.Context, after int64) (bool, error)
}

// Counter is implemented by a source whose positions may have gaps (the
// event store on PostgreSQL): it counts the messages after a position,
// for Lag.Events. Without it Lag.Events is Head - Checkpoint.
type Counter interface {
	CountAfter(ctx context.Context, after int64) (int64, error)
}

// EventStore is the event store's all-stream as a Source.
func EventStore(es *eventstore.Store) Source { return esSource{es} }

type esSource struct{ es *eventstore.Store }

func (s esSource) Name() string { return "eventstore" }

func (s esSource) Read(ctx context.Context, after int64, limit int) ([]Message, error) {
	evs, err := s.es.ReadAll(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Message, len(evs))
	for i, e := range evs {
		out[i] = Message{Position: e.Position, ID: e.ID, Stream: e.Stream, Type: e.Type, Data: e.Data, Metadata: e.Metadata, Time: e.Time}
	}
	return out, nil
}

func (s esSource) Head(ctx context.Context) (int64, time.Time, error) { return s.es.Head(ctx) }

func (s esSource) CountAfter(ctx context.Context, after int64) (int64, error) {
	return s.es.CountAfter(ctx, after)
}

func (s esSource) Wake() (<-chan struct{}, func()) { return s.es.DB().Listen(eventstore.Channel) }

func (s esSource) Pending(ctx context.Context, after int64) (bool, error) {
	return s.es.Pending(ctx, after)
}

// Tables maps a projection's table names to the tables to use: the names
// themselves for the serving view, fresh ones during a rebuild.
type Tables map[string]string

// T is the table to use for name. It panics on a name the projection did
// not declare in Tables (a programming error).
func (t Tables) T(name string) string {
	n, ok := t[name]
	if !ok {
		panic(fmt.Sprintf("projection: table %q is not in the projection's Tables", name))
	}
	return n
}

// Projection is a read model: its tables and how messages change them.
type Projection struct {
	// Name identifies the projection's checkpoints.
	Name string
	// Tables are the names of the read model's tables (plain SQL
	// identifiers).
	Tables []string
	// Create makes the tables, named by t. Name indexes after the
	// table (t.T("rides") + "_by_rider") so a rebuild's fresh tables
	// get their own.
	Create func(ctx context.Context, tx *store.Tx, t Tables) error
	// Handle applies m to the tables named by t, inside tx (which also
	// advances the checkpoint). It must touch only the database through
	// tx: it runs again when the transaction is retried.
	Handle func(ctx context.Context, tx *store.Tx, t Tables, src string, m Message) error
	// Batch is how many messages one transaction applies (default 100).
	Batch int
	// PollInterval is how often Run looks for messages when no wake-up
	// came (default 1 s).
	PollInterval time.Duration
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,40}$`)

var migrations = []store.Migration{{
	Version: 1, Name: "projections and checkpoints",
	SQL: `CREATE TABLE sy_projections (
		name TEXT PRIMARY KEY,
		generation BIGINT NOT NULL
	);
	CREATE TABLE sy_projection_checkpoints (
		projection TEXT NOT NULL,
		source TEXT NOT NULL,
		position BIGINT NOT NULL,
		msg_time_ms BIGINT NOT NULL,
		PRIMARY KEY (projection, source)
	);`,
}}

// Projector runs a projection over its sources in a database.
type Projector struct {
	db      *store.DB
	p       Projection
	sources []Source
	live    Tables
}

// New checks p, applies the projection machinery's migrations, and
// creates p's tables if this is the projection's first start (safe from
// several replicas at once).
func New(ctx context.Context, db *store.DB, p Projection, sources ...Source) (*Projector, error) {
	if p.Name == "" || p.Create == nil || p.Handle == nil {
		return nil, errors.New("projection: a projection needs a Name, Create and Handle")
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("projection %s: no sources", p.Name)
	}
	seen := map[string]bool{}
	for _, s := range sources {
		if seen[s.Name()] {
			return nil, fmt.Errorf("projection %s: two sources named %q", p.Name, s.Name())
		}
		seen[s.Name()] = true
	}
	live := Tables{}
	for _, t := range p.Tables {
		if !ident.MatchString(t) {
			return nil, fmt.Errorf("projection %s: table name %q: want letters, digits and _ (at most 41, not starting with a digit)", p.Name, t)
		}
		live[t] = t
	}
	if p.Batch <= 0 {
		p.Batch = 100
	}
	if p.PollInterval <= 0 {
		p.PollInterval = time.Second
	}
	if err := db.Migrate(ctx, "projection", migrations); err != nil {
		return nil, err
	}
	err := db.InTx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, "INSERT INTO sy_projections (name, generation) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", p.Name)
		if err != nil {
			return err
		}
		// Every source has a checkpoint: a source added to a projection
		// that exists already starts from its beginning (a step that
		// finds no checkpoint takes it for a rebuild's swapped away and
		// applies nothing).
		for _, s := range sources {
			if _, err := tx.Exec(ctx, "INSERT INTO sy_projection_checkpoints (projection, source, position, msg_time_ms) VALUES (?, ?, 0, 0) ON CONFLICT (projection, source) DO NOTHING",
				p.Name, s.Name()); err != nil {
				return err
			}
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // created before
		}
		return p.Create(ctx, tx, live)
	})
	if err != nil {
		return nil, fmt.Errorf("projection %s: create: %w", p.Name, err)
	}
	return &Projector{db: db, p: p, sources: sources, live: live}, nil
}

func setCheckpoint(ctx context.Context, tx *store.Tx, proj, src string, pos, ms int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO sy_projection_checkpoints (projection, source, position, msg_time_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT (projection, source) DO UPDATE SET position = excluded.position, msg_time_ms = excluded.msg_time_ms`, proj, src, pos, ms)
	return err
}

func forUpdate(d store.Dialect) string {
	if d == store.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// checkpoint reads a checkpoint (0 when missing).
func (pr *Projector) checkpoint(ctx context.Context, key, src string) (int64, error) {
	var pos int64
	err := pr.db.QueryRow(ctx, "SELECT position FROM sy_projection_checkpoints WHERE projection = ? AND source = ?", key, src).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return pos, err
}

// Checkpoint is the position of the last message of source applied to
// the serving view.
func (pr *Projector) Checkpoint(ctx context.Context, source string) (int64, error) {
	return pr.checkpoint(ctx, pr.p.Name, source)
}

// step applies one batch of src to the tables t under checkpoint key.
// It returns how many messages it applied (0: nothing new, or another
// projector moved the checkpoint meanwhile and the batch was dropped).
func (pr *Projector) step(ctx context.Context, key string, gen int64, t Tables, src Source) (int, error) {
	for {
		n, stale, err := pr.try(ctx, key, gen, t, src)
		if !stale || err != nil {
			return n, err
		}
		// The checkpoint moved between reading it and locking it: another
		// replica, a swap, or a commit of ours whose outcome reached the
		// server after its caller gave up. Start again from the new one.
	}
}

func (pr *Projector) try(ctx context.Context, key string, gen int64, t Tables, src Source) (applied int, stale bool, err error) {
	cp, err := pr.checkpoint(ctx, key, src.Name())
	if err != nil {
		return 0, false, err
	}
	msgs, err := src.Read(ctx, cp, pr.p.Batch)
	if err != nil {
		return 0, false, fmt.Errorf("projection %s: read %s after %d: %w", pr.p.Name, src.Name(), cp, err)
	}
	if len(msgs) == 0 {
		return 0, false, nil
	}
	err = pr.db.InTx(ctx, func(tx *store.Tx) error {
		applied, stale = 0, false
		var cur int64
		err := tx.QueryRow(ctx, "SELECT position FROM sy_projection_checkpoints WHERE projection = ? AND source = ?"+forUpdate(tx.Dialect()), key, src.Name()).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // a rebuild's checkpoint that was swapped away
		}
		if err != nil {
			return err
		}
		if cur != cp {
			stale = true
			return nil
		}
		if gen > 0 {
			if err := pr.checkGeneration(ctx, tx, gen, ""); err != nil {
				return err
			}
		}
		last := cp
		for _, m := range msgs {
			if m.Position <= last {
				return fmt.Errorf("projection %s: source %s delivered position %d after %d: positions must grow", pr.p.Name, src.Name(), m.Position, last)
			}
			if err := pr.p.Handle(ctx, tx, t, src.Name(), m); err != nil {
				return fmt.Errorf("projection %s: handle %s %s (position %d of %s): %w", pr.p.Name, m.Type, m.ID, m.Position, src.Name(), err)
			}
			last = m.Position
		}
		applied = len(msgs)
		_, err = tx.Exec(ctx, "UPDATE sy_projection_checkpoints SET position = ?, msg_time_ms = ? WHERE projection = ? AND source = ?",
			last, msgs[len(msgs)-1].Time.UnixMilli(), key, src.Name())
		return err
	})
	return applied, stale, err
}

// Step applies one batch from each source to the serving view and
// returns how many messages it applied.
func (pr *Projector) Step(ctx context.Context) (int, error) {
	total := 0
	for _, s := range pr.sources {
		n, err := pr.step(ctx, pr.p.Name, 0, pr.live, s)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// CatchUp applies messages until no source has any left.
func (pr *Projector) CatchUp(ctx context.Context) error {
	for {
		n, err := pr.Step(ctx)
		if err != nil || n == 0 {
			return err
		}
	}
}

// Run keeps the view up to date until ctx ends (returning ctx's error)
// or a message cannot be applied (returning that error; the checkpoint
// stays before the message, so a restart retries it).
func (pr *Projector) Run(ctx context.Context) error {
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the wake-up forwarders on any return
	wake := make(chan struct{}, 1)
	for _, s := range pr.sources {
		w, ok := s.(Waker)
		if !ok {
			continue
		}
		ch, stop := w.Wake()
		defer stop()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-ch:
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	timer := time.NewTimer(pr.p.PollInterval)
	defer timer.Stop()
	held := time.Duration(0) // the wait while a source's messages are held back
	for {
		n, err := pr.Step(ctx)
		if err != nil {
			if outer.Err() != nil {
				return outer.Err()
			}
			return err
		}
		if n > 0 {
			continue
		}
		wait := pr.p.PollInterval
		switch h, err := pr.pending(ctx); {
		case err != nil:
			if outer.Err() != nil {
				return outer.Err()
			}
			return err
		case h:
			held = min(max(2*held, time.Millisecond), wait, eventstore.HeldBackPoll)
			wait = held
		default:
			held = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return outer.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// pending reports whether any source has messages after this
// projection's checkpoint that are committed, readable or held back.
func (pr *Projector) pending(ctx context.Context) (bool, error) {
	for _, s := range pr.sources {
		hb, ok := s.(PendingChecker)
		if !ok {
			continue
		}
		cp, err := pr.Checkpoint(ctx, s.Name())
		if err != nil {
			return false, err
		}
		if h, err := hb.Pending(ctx, cp); err != nil || h {
			return h, err
		}
	}
	return false, nil
}

// Rebuild recomputes the view from zero into fresh tables while the
// serving tables keep answering (and Run keeps updating them), then
// swaps the fresh tables in under the serving names, with their
// checkpoints, in one transaction. Run it from one replica at a time: of
// two that overlap, the one started first fails with
// ErrRebuildSuperseded and the other swaps in its view.
func (pr *Projector) Rebuild(ctx context.Context) error {
	var gen int64
	key := pr.p.Name + "#rebuild"
	fresh := Tables{}
	err := pr.db.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.QueryRow(ctx, "UPDATE sy_projections SET generation = generation + 1 WHERE name = ? RETURNING generation", pr.p.Name).Scan(&gen); err != nil {
			return err
		}
		for _, t := range pr.p.Tables {
			fresh[t] = fmt.Sprintf("%s__r%d", t, gen)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM sy_projection_checkpoints WHERE projection = ?", key); err != nil {
			return err
		}
		for _, s := range pr.sources {
			if err := setCheckpoint(ctx, tx, key, s.Name(), 0, 0); err != nil {
				return err
			}
		}
		return pr.p.Create(ctx, tx, fresh)
	})
	if err != nil {
		return fmt.Errorf("projection %s: rebuild: create fresh tables: %w", pr.p.Name, err)
	}
	for {
		total := 0
		for _, s := range pr.sources {
			n, err := pr.step(ctx, key, gen, fresh, s)
			if err != nil {
				pr.dropFresh(fresh, err)
				return fmt.Errorf("projection %s: rebuild: %w", pr.p.Name, err)
			}
			total += n
		}
		if total == 0 {
			break
		}
	}
	err = pr.db.InTx(ctx, func(tx *store.Tx) error {
		// Lock the serving checkpoints first, as a projector step does,
		// then replace tables and checkpoints.
		for _, s := range pr.sources {
			var pos int64
			err := tx.QueryRow(ctx, "SELECT position FROM sy_projection_checkpoints WHERE projection = ? AND source = ?"+forUpdate(tx.Dialect()), pr.p.Name, s.Name()).Scan(&pos)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if err := pr.checkGeneration(ctx, tx, gen, forUpdate(tx.Dialect())); err != nil {
			return err
		}
		// Only a complete rebuild is swapped in: one checkpoint per source.
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM sy_projection_checkpoints WHERE projection = ?", key).Scan(&n); err != nil {
			return err
		}
		if n != len(pr.sources) {
			return fmt.Errorf("%w: %d of its %d checkpoints are gone", ErrRebuildSuperseded, len(pr.sources)-n, len(pr.sources))
		}
		for _, t := range pr.p.Tables {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "ALTER TABLE "+fresh[t]+" RENAME TO "+t); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM sy_projection_checkpoints WHERE projection = ?", pr.p.Name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE sy_projection_checkpoints SET projection = ? WHERE projection = ?", pr.p.Name, key)
		return err
	})
	if err != nil {
		pr.dropFresh(fresh, err)
		return fmt.Errorf("projection %s: rebuild: swap: %w", pr.p.Name, err)
	}
	return nil
}

// ErrRebuildSuperseded is returned (wrapped) by a Rebuild that another
// Rebuild of the projection, started after it, took over: the later one
// builds and swaps in the view; this one leaves the serving view alone.
var ErrRebuildSuperseded = errors.New("projection: another rebuild started after this one")

// checkGeneration fails with ErrRebuildSuperseded unless gen is still
// the projection's latest rebuild (lock: "" or forUpdate's clause).
func (pr *Projector) checkGeneration(ctx context.Context, tx *store.Tx, gen int64, lock string) error {
	var cur int64
	if err := tx.QueryRow(ctx, "SELECT generation FROM sy_projections WHERE name = ?"+lock, pr.p.Name).Scan(&cur); err != nil {
		return err
	}
	if cur != gen {
		return fmt.Errorf("%w (rebuild %d, now %d)", ErrRebuildSuperseded, gen, cur)
	}
	return nil
}

// dropFresh drops a superseded rebuild's fresh tables (best effort: a
// leftover is harmless, the next rebuild has other names).
func (pr *Projector) dropFresh(fresh Tables, cause error) {
	if !errors.Is(cause, ErrRebuildSuperseded) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, t := range pr.p.Tables {
		pr.db.Exec(ctx, "DROP TABLE IF EXISTS "+fresh[t])
	}
}

// Lag is how far the serving view is behind one source.
type Lag struct {
	Source     string
	Checkpoint int64   // position of the last message applied
	Head       int64   // position of the source's newest message
	Events     int64   // messages after Checkpoint up to Head (Head - Checkpoint unless the source is a Counter)
	Seconds    float64 // age of the last applied message relative to the newest, 0 when caught up
}

// Stats reports the lag behind each source.
func (pr *Projector) Stats(ctx context.Context) ([]Lag, error) {
	out := make([]Lag, 0, len(pr.sources))
	for _, s := range pr.sources {
		l := Lag{Source: s.Name()}
		var ms int64
		err := pr.db.QueryRow(ctx, "SELECT position, msg_time_ms FROM sy_projection_checkpoints WHERE projection = ? AND source = ?", pr.p.Name, s.Name()).Scan(&l.Checkpoint, &ms)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		head, at, err := s.Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("projection %s: head of %s: %w", pr.p.Name, s.Name(), err)
		}
		l.Head = head
		l.Events = max(0, head-l.Checkpoint)
		if c, ok := s.(Counter); ok && l.Events > 0 {
			if l.Events, err = c.CountAfter(ctx, l.Checkpoint); err != nil {
				return nil, fmt.Errorf("projection %s: lag behind %s: %w", pr.p.Name, s.Name(), err)
			}
		}
		if l.Events > 0 && !at.IsZero() {
			since := time.UnixMilli(ms)
			if ms == 0 {
				since = at // nothing applied yet: no better reference
			}
			l.Seconds = max(0, at.Sub(since).Seconds())
		}
		out = append(out, l)
	}
	return out, nil
}

// Collector exports the projectors' lag as Prometheus gauges
// switchyard_projection_lag_events and switchyard_projection_lag_seconds,
// labelled by projection and source, measured at each scrape.
func Collector(prs ...*Projector) prometheus.Collector { return collector(prs) }

type collector []*Projector

var (
	lagEventsDesc = prometheus.NewDesc("switchyard_projection_lag_events",
		"Messages of the source not yet applied to the projection's view.", []string{"projection", "source"}, nil)
	lagSecondsDesc = prometheus.NewDesc("switchyard_projection_lag_seconds",
		"How much older the projection's last applied message is than the source's newest.", []string{"projection", "source"}, nil)
	lagErrorsDesc = prometheus.NewDesc("switchyard_projection_lag_up",
		"1 when the projection's lag could be measured at this scrape, 0 when not.", []string{"projection"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagEventsDesc
	ch <- lagSecondsDesc
	ch <- lagErrorsDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, pr := range c {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		lags, err := pr.Stats(ctx)
		cancel()
		up := 1.0
		if err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(lagErrorsDesc, prometheus.GaugeValue, up, pr.p.Name)
		for _, l := range lags {
			ch <- prometheus.MustNewConstMetric(lagEventsDesc, prometheus.GaugeValue, float64(l.Events), pr.p.Name, l.Source)
			ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, l.Seconds, pr.p.Name, l.Source)
		}
	}
}
