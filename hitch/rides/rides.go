package rides

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

// Config is the rides service's settings.
type Config struct {
	// Fares price a ride by its great-circle distance. Default
	// hitch.DefaultFares (250 + 150 per mile cents, fee 20%).
	Fares hitch.Fares `yaml:"fares"`
	// MaxBodyBytes bounds a request body; larger ones get 413. Default
	// 65536.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Consumers is how many messages of each consumed queue are handled
	// at once. Default 8.
	Consumers int `yaml:"consumers"`
	// InboxRetention is how long a consumed message's id is remembered
	// (kit/inbox: a copy arriving later is applied again). Default 7 days.
	InboxRetention time.Duration `yaml:"inbox_retention"`
	// RelayPollInterval is how often the outbox relay looks for messages
	// without a wake-up (a relay in this process is woken on commit).
	// Default 1s.
	RelayPollInterval time.Duration `yaml:"relay_poll_interval"`
	// RelayLeaseTTL is how long a dead replica's outbox partitions stay
	// with it before another replica publishes them. Default 10s.
	RelayLeaseTTL time.Duration `yaml:"relay_lease_ttl"`
	// SnapshotEvery snapshots a ride's state every N events (0: never;
	// a ride has at most six, so the default is 0).
	SnapshotEvery int64 `yaml:"snapshot_every"`

	Logger *slog.Logger `yaml:"-"` // default: discard
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Fares == (hitch.Fares{}) {
		c.Fares = hitch.DefaultFares
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.Consumers == 0 {
		c.Consumers = 8
	}
	if c.InboxRetention == 0 {
		c.InboxRetention = 7 * 24 * time.Hour
	}
	if c.RelayPollInterval == 0 {
		c.RelayPollInterval = time.Second
	}
	if c.RelayLeaseTTL == 0 {
		c.RelayLeaseTTL = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate reports every bad setting, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.Fares.BaseCents < 0 {
		errs = append(errs, config.Fieldf("fares.base_cents", "%d: must not be negative", c.Fares.BaseCents))
	}
	if c.Fares.PerMileCents < 0 {
		errs = append(errs, config.Fieldf("fares.per_mile_cents", "%d: must not be negative", c.Fares.PerMileCents))
	}
	if math.IsNaN(c.Fares.FeePercent) || c.Fares.FeePercent < 0 || c.Fares.FeePercent > 100 {
		errs = append(errs, config.Fieldf("fares.fee_percent", "%v: want 0..100", c.Fares.FeePercent))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, config.Fieldf("max_body_bytes", "%d: must not be negative", c.MaxBodyBytes))
	}
	if c.Consumers < 0 || c.Consumers > 1024 {
		errs = append(errs, config.Fieldf("consumers", "%d: want 1..1024", c.Consumers))
	}
	if c.InboxRetention < 0 {
		errs = append(errs, config.Fieldf("inbox_retention", "%s: must not be negative", c.InboxRetention))
	}
	if c.RelayPollInterval < 0 {
		errs = append(errs, config.Fieldf("relay_poll_interval", "%s: must not be negative", c.RelayPollInterval))
	}
	if c.RelayLeaseTTL < 0 || (c.RelayLeaseTTL > 0 && c.RelayLeaseTTL < 30*time.Millisecond) {
		errs = append(errs, config.Fieldf("relay_lease_ttl", "%s: want at least 30ms", c.RelayLeaseTTL))
	}
	if c.SnapshotEvery < 0 {
		errs = append(errs, config.Fieldf("snapshot_every", "%d: must not be negative", c.SnapshotEvery))
	}
	return errors.Join(errs...)
}

// Component is the migration component of the service's own tables.
const Component = "hitch-rides"

var migrations = []store.Migration{{
	Version: 1, Name: "rides (inline projection of the streams) and idempotency keys",
	SQL: `CREATE TABLE rides (
		id TEXT PRIMARY KEY,
		rider_id TEXT NOT NULL,
		driver_id TEXT NOT NULL,
		status TEXT NOT NULL,
		from_lat DOUBLE PRECISION NOT NULL,
		from_lon DOUBLE PRECISION NOT NULL,
		to_lat DOUBLE PRECISION NOT NULL,
		to_lon DOUBLE PRECISION NOT NULL,
		fare_cents BIGINT NOT NULL,
		fee_cents BIGINT NOT NULL,
		distance_mi DOUBLE PRECISION NOT NULL,
		cancelled_by TEXT NOT NULL,
		created_ms BIGINT NOT NULL,
		matched_ms BIGINT NOT NULL,
		started_ms BIGINT NOT NULL,
		finished_ms BIGINT NOT NULL,
		closed_ms BIGINT NOT NULL,
		updated_ms BIGINT NOT NULL,
		version BIGINT NOT NULL
	);
	CREATE UNIQUE INDEX rides_one_active_per_rider ON rides (rider_id) WHERE status IN ('searching', 'matched', 'started');
	CREATE INDEX rides_by_driver ON rides (driver_id);
	CREATE TABLE ride_requests (
		rider_id TEXT NOT NULL,
		idem_key TEXT NOT NULL,
		body_hash TEXT NOT NULL,
		ride_id TEXT NOT NULL,
		created_ms BIGINT NOT NULL,
		PRIMARY KEY (rider_id, idem_key)
	);`,
}}

// Service is the rides service.
type Service struct {
	db    *store.DB
	bus   message.Backend
	cfg   Config
	log   *slog.Logger
	es    *eventstore.Store
	agg   *eventstore.Aggregate[Ride]
	inbox *inbox.Inbox

	mu    sync.Mutex
	stats Stats
}

// Stats count what the consumers did.
type Stats struct {
	Applied   int64 // messages that changed a ride (or answered a late match)
	Ignored   int64 // messages of unknown kinds, for unknown rides, or not applicable to the ride's status
	Malformed int64 // messages whose payload could not be read (acked and logged)
	Conflicts int64 // commands retried after losing an optimistic-concurrency race
}

// New opens the service on db (running its migrations and the event
// store's, inbox's and outbox's) and bus. It starts nothing.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	if db == nil {
		return nil, errors.New("rides: no database")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rides: config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if err := db.Migrate(ctx, Component, migrations); err != nil {
		return nil, fmt.Errorf("rides: migrate: %w", err)
	}
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("rides: event store: %w", err)
	}
	if err := outbox.Prepare(ctx, db); err != nil {
		return nil, fmt.Errorf("rides: %w", err)
	}
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: hitch.Rides, Retention: cfg.InboxRetention})
	if err != nil {
		return nil, fmt.Errorf("rides: %w", err)
	}
	s := &Service{db: db, bus: bus, cfg: cfg, log: cfg.Logger, es: es, inbox: in}
	s.agg = &eventstore.Aggregate[Ride]{Store: es, Category: "ride", Apply: apply, SnapshotEvery: cfg.SnapshotEvery}
	return s, nil
}

// Stats returns the consumers' counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Service) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// Run relays the outbox to the broker and consumes the service's queues
// until ctx ends; then it returns nil. Several replicas may run at once
// against the same database and queues.
func (s *Service) Run(ctx context.Context) error {
	if s.bus == nil {
		return errors.New("rides: Run needs a message bus")
	}
	relay, err := outbox.NewRelay(ctx, s.db, s.bus, outbox.RelayOptions{
		PollInterval: s.cfg.RelayPollInterval,
		LeaseTTL:     s.cfg.RelayLeaseTTL,
		OnError:      func(err error) { s.log.Warn("rides: outbox relay", "err", err) },
	})
	if err != nil {
		return fmt.Errorf("rides: outbox relay: %w", err)
	}
	router, err := message.NewRouter(s.bus, message.RouterConfig{
		Concurrency: s.cfg.Consumers,
		// A small prefetch: a replica that dies takes a delivery of every
		// message it held with it (they come back after the visibility
		// timeout, counting toward the dead-letter limit).
		Prefetch: 2 * s.cfg.Consumers,
		// A failure that outlasts the in-process retries (a database
		// down for seconds) goes back to the queue for a while: each
		// delivery counts toward the queue's dead-lettering.
		NackDelay: time.Second,
		OnError:   func(src string, err error) { s.log.Warn("rides: consumer", "source", src, "err", err) },
	})
	if err != nil {
		return fmt.Errorf("rides: router: %w", err)
	}
	// Transient failures (a busy or restarting database) are retried
	// here first, with backoff, before the message is nacked.
	router.Use(message.Retry(message.RetryConfig{Attempts: 5}))
	for _, q := range []string{hitch.QueueRidesMatching, hitch.QueueRidesPayments} {
		if err := router.Handle("queue:"+q, s.handleMessage, message.RouteOptions{}); err != nil {
			return fmt.Errorf("rides: route %s: %w", q, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(3)
	go func() { defer wg.Done(); errs[0] = relay.Run(ctx) }()
	go func() { defer wg.Done(); errs[1] = router.Run(ctx) }()
	go func() { defer wg.Done(); expireInbox(ctx, s.inbox, s.cfg.InboxRetention, s.log) }()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// ErrNotFound: no such ride (or not one the caller may see).
var ErrNotFound = errors.New("ride not found")

// conflictError: the ride's status does not allow the command.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// change is what a decision produces: events for the ride's stream (each
// also published) and messages only published (a late match's release).
type change struct {
	events  []eventstore.Event
	publish []broker.Message
}

func (c *change) record(kind string, payload any) error {
	e, err := eventstore.NewEvent(kind, payload)
	if err != nil {
		return err
	}
	e.ID = eventstore.NewID()
	c.events = append(c.events, e)
	return nil
}

// txRunner runs a transaction: db.InTx for commands, an inbox Process
// for consumed messages.
type txRunner func(ctx context.Context, fn func(tx *store.Tx) error) error

func (s *Service) plainTx(ctx context.Context, fn func(tx *store.Tx) error) error {
	return s.db.InTx(ctx, fn)
}

// maxConflicts bounds how often a command reloads after losing a race.
const maxConflicts = 20

// mutate loads ride id, lets decide say what changes, and commits the
// change (stream events, their outbox messages, the rides row, extra
// messages) through run; on an optimistic-concurrency conflict it loads
// and decides again. It returns the ride as committed.
func (s *Service) mutate(ctx context.Context, id string, run txRunner, decide func(r Ride) (change, error)) (Ride, error) {
	for attempt := 0; ; attempt++ {
		root, err := s.agg.Load(ctx, id)
		if err != nil {
			return Ride{}, err
		}
		if root.Version == 0 {
			// Nothing stored yet: decide must not see a ride.
			root.State = Ride{}
		}
		ch, err := decide(root.State)
		if err != nil {
			return root.State, err
		}
		for _, e := range ch.events {
			if err := s.agg.RecordEvent(root, e); err != nil {
				return root.State, fmt.Errorf("rides: recording %s: %w", e.Type, err)
			}
		}
		var after Ride
		err = run(ctx, func(tx *store.Tx) error {
			r := *root
			r.Pending = append([]eventstore.Event(nil), root.Pending...)
			if err := s.commitTx(ctx, tx, &r, ch); err != nil {
				return err
			}
			after = r.State
			return nil
		})
		if errors.Is(err, eventstore.ErrConflict) && attempt < maxConflicts {
			s.count(func(st *Stats) { st.Conflicts++ })
			continue
		}
		if err != nil {
			return root.State, err
		}
		return after, nil
	}
}

// commitTx writes a decided change inside tx.
func (s *Service) commitTx(ctx context.Context, tx *store.Tx, r *eventstore.Root[Ride], ch change) error {
	if len(r.Pending) > 0 {
		evs := r.Pending
		if err := s.agg.SaveTx(ctx, tx, r); err != nil {
			return err
		}
		msgs := make([]broker.Message, 0, len(evs))
		for _, e := range evs {
			msgs = append(msgs, broker.Message{ID: e.ID, Key: r.ID, Body: e.Data, Headers: map[string]string{"kind": e.Type}})
		}
		if err := outbox.Add(ctx, tx, "topic:"+hitch.TopicRides, msgs...); err != nil {
			return err
		}
		if err := upsertRow(ctx, tx, r.State); err != nil {
			return err
		}
	}
	if len(ch.publish) > 0 {
		return outbox.Add(ctx, tx, "topic:"+hitch.TopicRides, ch.publish...)
	}
	return nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// errActiveRide: the rider already has a ride in progress (the partial
// unique index refused a second one).
var errActiveRide = errors.New("rider already has an active ride")

func upsertRow(ctx context.Context, tx *store.Tx, r Ride) error {
	_, err := tx.Exec(ctx, `INSERT INTO rides (id, rider_id, driver_id, status, from_lat, from_lon, to_lat, to_lon,
		fare_cents, fee_cents, distance_mi, cancelled_by, created_ms, matched_ms, started_ms, finished_ms, closed_ms, updated_ms, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET driver_id = excluded.driver_id, status = excluded.status,
			fare_cents = excluded.fare_cents, fee_cents = excluded.fee_cents, distance_mi = excluded.distance_mi,
			cancelled_by = excluded.cancelled_by, matched_ms = excluded.matched_ms, started_ms = excluded.started_ms,
			finished_ms = excluded.finished_ms, closed_ms = excluded.closed_ms, updated_ms = excluded.updated_ms,
			version = excluded.version
		WHERE rides.version < excluded.version`,
		r.ID, r.RiderID, r.DriverID, r.Status, r.From.Lat, r.From.Lon, r.To.Lat, r.To.Lon,
		r.FareCents, r.FeeCents, r.DistanceMi, r.CancelledBy, ms(r.CreatedAt), ms(r.MatchedAt), ms(r.StartedAt),
		ms(r.FinishedAt), ms(r.ClosedAt), ms(r.UpdatedAt), r.Version)
	if err != nil {
		if store.IsUniqueViolation(err) {
			return errActiveRide
		}
		return fmt.Errorf("rides: writing ride %s: %w", r.ID, err)
	}
	return nil
}

const selectRide = `SELECT id, rider_id, driver_id, status, from_lat, from_lon, to_lat, to_lon, fare_cents, fee_cents,
	distance_mi, cancelled_by, created_ms, matched_ms, started_ms, finished_ms, closed_ms, updated_ms, version FROM rides `

func scanRide(row interface{ Scan(...any) error }) (Ride, error) {
	var r Ride
	var c, m, st, f, cl, u int64
	err := row.Scan(&r.ID, &r.RiderID, &r.DriverID, &r.Status, &r.From.Lat, &r.From.Lon, &r.To.Lat, &r.To.Lon,
		&r.FareCents, &r.FeeCents, &r.DistanceMi, &r.CancelledBy, &c, &m, &st, &f, &cl, &u, &r.Version)
	if err != nil {
		return r, err
	}
	r.CreatedAt, r.MatchedAt, r.StartedAt, r.FinishedAt, r.ClosedAt, r.UpdatedAt = fromMs(c), fromMs(m), fromMs(st), fromMs(f), fromMs(cl), fromMs(u)
	return r, nil
}

// Get reads a ride's current state from the rides table.
func (s *Service) Get(ctx context.Context, id string) (Ride, error) {
	r, err := scanRide(s.db.QueryRow(ctx, selectRide+"WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Ride{}, ErrNotFound
	}
	if err != nil {
		return Ride{}, fmt.Errorf("rides: reading ride %s: %w", id, err)
	}
	return r, nil
}

// Fold is a ride's state folded from its stream (the source of truth;
// Get reads the table kept from it).
func (s *Service) Fold(ctx context.Context, id string) (Ride, error) {
	root, err := s.agg.Load(ctx, id)
	if err != nil {
		return Ride{}, err
	}
	if root.Version == 0 {
		return Ride{}, ErrNotFound
	}
	return root.State, nil
}

// Events returns the ride's stream, oldest first.
func (s *Service) Events(ctx context.Context, id string) ([]eventstore.Event, error) {
	return s.es.ReadStream(ctx, s.agg.Stream(id), 1, 0)
}

// RebuildTable refolds every ride's stream into the rides table: the
// repair for a table lost or suspected wrong (the streams are the
// truth). It returns how many rides it wrote.
func (s *Service) RebuildTable(ctx context.Context) (int, error) {
	var after int64
	seen := map[string]bool{}
	n := 0
	for {
		evs, err := s.es.ReadAll(ctx, after, 1000)
		if err != nil {
			return n, err
		}
		if len(evs) == 0 {
			return n, nil
		}
		for _, e := range evs {
			after = e.Position
			if len(e.Stream) <= len("ride-") || e.Stream[:5] != "ride-" || seen[e.Stream] {
				continue
			}
			seen[e.Stream] = true
			r, err := s.Fold(ctx, e.Stream[5:])
			if err != nil {
				return n, err
			}
			err = s.db.InTx(ctx, func(tx *store.Tx) error {
				if _, err := tx.Exec(ctx, "DELETE FROM rides WHERE id = ?", r.ID); err != nil {
					return err
				}
				return upsertRow(ctx, tx, r)
			})
			if err != nil {
				return n, err
			}
			n++
		}
	}
}

// expireInbox deletes the inbox's ids older than the retention every
// hundredth of it (at least every minute, at most hourly) until ctx ends.
func expireInbox(ctx context.Context, in *inbox.Inbox, retention time.Duration, log *slog.Logger) {
	every := min(max(retention/100, time.Minute), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := in.Expire(ctx); err != nil {
				log.Warn("inbox: expiring ids", "err", err)
			} else if n > 0 {
				log.Info("inbox: expired ids", "count", n)
			}
		}
	}
}
