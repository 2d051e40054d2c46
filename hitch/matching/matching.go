package matching

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

// Config is the matching service's settings.
type Config struct {
	// CorridorMi is how far from a driver's straight route a rider's pickup
	// and drop-off may lie, in miles. Default 0.5 (the rule).
	CorridorMi float64 `yaml:"corridor_mi"`
	// MatchTimeout is how long after a ride's request matching keeps
	// looking before it gives up with match.none. Default 30s.
	MatchTimeout time.Duration `yaml:"match_timeout"`
	// RecheckEvery is how often a ride still searching is tried again
	// (a safety net: a driver whose seats become free is matched with the
	// waiting rides at once). The last try is at the deadline. Default 5s.
	RecheckEvery time.Duration `yaml:"recheck_every"`
	// MaxSeats is the most seats a driver may offer. Default 8.
	MaxSeats int `yaml:"max_seats"`
	// MinRouteMi and MaxRouteMi bound a driver's route length. Default 0.1
	// and 500.
	MinRouteMi float64 `yaml:"min_route_mi"`
	MaxRouteMi float64 `yaml:"max_route_mi"`
	// MaxBodyBytes bounds a request body; larger is 413. Default 4096.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Consumers is how many messages of the queue are handled at once.
	// Default 8.
	Consumers int `yaml:"consumers"`
	// InboxRetention is how long a consumed message's id is remembered.
	// Default 7 days.
	InboxRetention time.Duration `yaml:"inbox_retention"`
	// RelayPollInterval is how often the outbox relay looks for messages
	// without a wake-up. Default 1s.
	RelayPollInterval time.Duration `yaml:"relay_poll_interval"`
	// RelayLeaseTTL is how long a dead replica's outbox partitions stay
	// with it. Default 10s.
	RelayLeaseTTL time.Duration `yaml:"relay_lease_ttl"`

	Logger *slog.Logger `yaml:"-"` // default: discard
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.CorridorMi == 0 {
		c.CorridorMi = 0.5
	}
	if c.MatchTimeout == 0 {
		c.MatchTimeout = 30 * time.Second
	}
	if c.RecheckEvery == 0 {
		c.RecheckEvery = 5 * time.Second
	}
	if c.MaxSeats == 0 {
		c.MaxSeats = 8
	}
	if c.MinRouteMi == 0 {
		c.MinRouteMi = 0.1
	}
	if c.MaxRouteMi == 0 {
		c.MaxRouteMi = 500
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4096
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
	miles := func(key string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			errs = append(errs, config.Fieldf(key, "want a positive number of miles, got %v", v))
		}
	}
	miles("corridor_mi", c.CorridorMi)
	miles("min_route_mi", c.MinRouteMi)
	miles("max_route_mi", c.MaxRouteMi)
	if c.MinRouteMi > c.MaxRouteMi {
		errs = append(errs, config.Fieldf("min_route_mi", "%v is above max_route_mi %v", c.MinRouteMi, c.MaxRouteMi))
	}
	dur := func(key string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, config.Fieldf(key, "want a positive duration, got %s", d))
		}
	}
	dur("match_timeout", c.MatchTimeout)
	dur("recheck_every", c.RecheckEvery)
	dur("inbox_retention", c.InboxRetention)
	dur("relay_poll_interval", c.RelayPollInterval)
	dur("relay_lease_ttl", c.RelayLeaseTTL)
	if c.MaxSeats < 1 || c.MaxSeats > 100 {
		errs = append(errs, config.Fieldf("max_seats", "want 1 to 100, got %d", c.MaxSeats))
	}
	if c.Consumers < 1 {
		errs = append(errs, config.Fieldf("consumers", "want at least 1, got %d", c.Consumers))
	}
	if c.MaxBodyBytes < 64 {
		errs = append(errs, config.Fieldf("max_body_bytes", "want at least 64, got %d", c.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// component names the service's migrations; consumer its inbox.
const (
	component = "hitch-matching"
	consumer  = "hitch-matching"
)

var migrations = []store.Migration{{
	Version: 1, Name: "drivers and rides",
	SQL: `CREATE TABLE hm_drivers (
		driver_id TEXT PRIMARY KEY,
		ready INTEGER NOT NULL,
		from_lat DOUBLE PRECISION NOT NULL,
		from_lon DOUBLE PRECISION NOT NULL,
		to_lat DOUBLE PRECISION NOT NULL,
		to_lon DOUBLE PRECISION NOT NULL,
		min_lat DOUBLE PRECISION NOT NULL,
		max_lat DOUBLE PRECISION NOT NULL,
		min_lon DOUBLE PRECISION NOT NULL,
		max_lon DOUBLE PRECISION NOT NULL,
		seats INTEGER NOT NULL,
		reserved INTEGER NOT NULL DEFAULT 0,
		version BIGINT NOT NULL,
		updated_ms BIGINT NOT NULL
	);
	CREATE INDEX hm_drivers_box ON hm_drivers (ready, min_lat, max_lat);
	CREATE TABLE hm_rides (
		ride_id TEXT PRIMARY KEY,
		rider_id TEXT NOT NULL,
		from_lat DOUBLE PRECISION NOT NULL,
		from_lon DOUBLE PRECISION NOT NULL,
		to_lat DOUBLE PRECISION NOT NULL,
		to_lon DOUBLE PRECISION NOT NULL,
		state TEXT NOT NULL,
		driver_id TEXT NOT NULL DEFAULT '',
		detour_mi DOUBLE PRECISION NOT NULL DEFAULT 0,
		deadline_ms BIGINT NOT NULL,
		next_ms BIGINT NOT NULL,
		updated_ms BIGINT NOT NULL
	);
	CREATE INDEX hm_rides_due ON hm_rides (state, next_ms);
	CREATE INDEX hm_rides_pickup ON hm_rides (state, from_lat);
	CREATE INDEX hm_rides_driver ON hm_rides (driver_id, state);`,
}}

// Ride states in hm_rides.
const (
	stateSearching = "searching"
	stateMatched   = "matched"
	stateNoDriver  = "no_driver"
	stateCancelled = "cancelled"
	stateFinished  = "finished"
)

// Service is the matching service.
type Service struct {
	cfg Config
	db  *store.DB
	bus message.Backend
	in  *inbox.Inbox
	now func() time.Time
}

// New opens the service on its database (migrations of "hitch-matching",
// the outbox's and the inbox's tables) and the bus. It starts nothing.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("matching: config: %w", err)
	}
	if db == nil || bus == nil {
		return nil, errors.New("matching: a database and a message bus are required")
	}
	if err := db.Migrate(ctx, component, migrations); err != nil {
		return nil, fmt.Errorf("matching: migrating: %w", err)
	}
	if err := outbox.Prepare(ctx, db); err != nil {
		return nil, fmt.Errorf("matching: %w", err)
	}
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: consumer, Retention: cfg.InboxRetention})
	if err != nil {
		return nil, fmt.Errorf("matching: %w", err)
	}
	return &Service{cfg: cfg, db: db, bus: bus, in: in, now: time.Now}, nil
}

// Run consumes hitch.QueueMatchingRides (through the inbox), relays the
// outbox and re-checks the rides still searching, until ctx ends; then it
// returns nil.
func (s *Service) Run(ctx context.Context) error {
	relay, err := outbox.NewRelay(ctx, s.db, s.bus, outbox.RelayOptions{
		PollInterval: s.cfg.RelayPollInterval, LeaseTTL: s.cfg.RelayLeaseTTL,
		OnError: func(err error) { s.cfg.Logger.Warn("matching: outbox relay", "err", err) },
	})
	if err != nil {
		return fmt.Errorf("matching: outbox relay: %w", err)
	}
	router, err := message.NewRouter(s.bus, message.RouterConfig{
		Concurrency: s.cfg.Consumers, NackDelay: 500 * time.Millisecond,
		OnError: func(src string, err error) { s.cfg.Logger.Warn("matching: consuming", "source", src, "err", err) },
	})
	if err != nil {
		return fmt.Errorf("matching: router: %w", err)
	}
	router.Handle("queue:"+hitch.QueueMatchingRides, s.handle, message.RouteOptions{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	go func() { errs <- relay.Run(rctx) }()
	go func() { errs <- router.Run(rctx) }()
	go func() { s.recheckLoop(rctx); errs <- nil }()
	var first error
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil && rctx.Err() == nil && first == nil {
			first = err
			cancel() // one part failed for good: stop the others
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return first
}
