package views

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/store"
)

// Config is the views service's settings.
type Config struct {
	// Consumers is how many messages of each queue are handled at once.
	// Default 8.
	Consumers int `yaml:"consumers"`
	// InboxRetention is how long a consumed message's id is remembered.
	// Default 7 days.
	InboxRetention time.Duration `yaml:"inbox_retention"`
	// PollInterval is how often the projector looks for new events when
	// no append woke it. Default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// RetryDelay is the wait before the projector runs again after an
	// error (a lost database). Default 1s.
	RetryDelay time.Duration `yaml:"retry_delay"`

	Logger *slog.Logger `yaml:"-"` // default: discard
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Consumers == 0 {
		c.Consumers = 8
	}
	if c.InboxRetention == 0 {
		c.InboxRetention = 7 * 24 * time.Hour
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate reports every bad setting, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.Consumers < 0 || c.Consumers > 1024 {
		errs = append(errs, config.Fieldf("consumers", "%d: want 1..1024", c.Consumers))
	}
	if c.InboxRetention < 0 {
		errs = append(errs, config.Fieldf("inbox_retention", "%s: must not be negative", c.InboxRetention))
	}
	if c.PollInterval < 0 {
		errs = append(errs, config.Fieldf("poll_interval", "%s: must not be negative", c.PollInterval))
	}
	if c.RetryDelay < 0 {
		errs = append(errs, config.Fieldf("retry_delay", "%s: must not be negative", c.RetryDelay))
	}
	return errors.Join(errs...)
}

// Component is the migration component of the service's own tables.
const Component = "hitch-views"

var migrations = []store.Migration{{
	Version: 1, Name: "ingest counters",
	SQL: `CREATE TABLE views_ingest (
		kind TEXT PRIMARY KEY,
		events BIGINT NOT NULL
	);`,
}}

// Service is the views service.
type Service struct {
	db    *store.DB
	bus   message.Backend
	cfg   Config
	log   *slog.Logger
	es    *eventstore.Store
	inbox *inbox.Inbox
	pr    *projection.Projector

	mu    sync.Mutex
	stats Stats
}

// Stats count what the consumers did.
type Stats struct {
	Stored  int64 // events appended to the local log
	Skipped int64 // unknown kinds, payloads without a ride, unreadable payloads (acked)
}

// New opens the service on db (its migrations, the event store's, the
// inbox's and the projection's) and bus. It starts nothing.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	if db == nil {
		return nil, errors.New("views: no database")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("views: config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if err := db.Migrate(ctx, Component, migrations); err != nil {
		return nil, fmt.Errorf("views: migrate: %w", err)
	}
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("views: event store: %w", err)
	}
	es.PollInterval = cfg.PollInterval
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: hitch.Views, Retention: cfg.InboxRetention})
	if err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}
	p := readModel()
	p.PollInterval = cfg.PollInterval
	pr, err := projection.New(ctx, db, p, projection.EventStore(es))
	if err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}
	return &Service{db: db, bus: bus, cfg: cfg, log: cfg.Logger, es: es, inbox: in, pr: pr}, nil
}

// Stats returns the consumers' counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Projector is the read model's projector (for its lag: Stats, or
// projection.Collector).
func (s *Service) Projector() *projection.Projector { return s.pr }

// CatchUp projects every event received so far.
func (s *Service) CatchUp(ctx context.Context) error { return s.pr.CatchUp(ctx) }

// Rebuild recomputes receipts and earnings from the local log into
// fresh tables and swaps them in; the old ones answer until the swap.
// Run it from one replica at a time.
func (s *Service) Rebuild(ctx context.Context) error { return s.pr.Rebuild(ctx) }

// Run consumes the queues and keeps the projection up to date until ctx
// ends; then it returns nil. Several replicas may run at once.
func (s *Service) Run(ctx context.Context) error {
	if s.bus == nil {
		return errors.New("views: Run needs a message bus")
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
		OnError:   func(src string, err error) { s.log.Warn("views: consumer", "source", src, "err", err) },
	})
	if err != nil {
		return fmt.Errorf("views: router: %w", err)
	}
	// Transient failures (a busy or restarting database) are retried
	// here first, with backoff, before the message is nacked.
	router.Use(message.Retry(message.RetryConfig{Attempts: 5}))
	for _, q := range []string{hitch.QueueViewsRides, hitch.QueueViewsPayments} {
		if err := router.Handle("queue:"+q, s.handleMessage, message.RouteOptions{}); err != nil {
			return fmt.Errorf("views: route %s: %w", q, err)
		}
	}
	var wg sync.WaitGroup
	var routerErr error
	wg.Add(3)
	go func() { defer wg.Done(); expireInbox(ctx, s.inbox, s.cfg.InboxRetention, s.log) }()
	go func() { defer wg.Done(); routerErr = router.Run(ctx) }()
	go func() {
		defer wg.Done()
		for {
			err := s.pr.Run(ctx)
			if ctx.Err() != nil {
				return
			}
			s.log.Error("views: projector stopped; restarting", "err", err, "after", s.cfg.RetryDelay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.RetryDelay):
			}
		}
	}()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return routerErr
}

// handleMessage stores one event of the queues in the local log, once.
func (s *Service) handleMessage(ctx context.Context, d *message.Delivery) error {
	_, err := s.Ingest(ctx, d.ID, d.Headers["kind"], d.Body)
	return err
}

// kinds views keeps, and whether each carries the ride's driver as the
// one who drove it (a ride.cancelled may name a driver whose late match
// was released).
var kinds = map[string]bool{
	hitch.KindRideRequested:  false,
	hitch.KindRideMatched:    true,
	hitch.KindRideNoDriver:   false,
	hitch.KindRideStarted:    true,
	hitch.KindRideFinished:   true,
	hitch.KindRideCancelled:  false,
	hitch.KindRidePaid:       true,
	hitch.KindRidePayFailed:  true,
	hitch.KindPaymentCharged: true,
	hitch.KindPaymentFailed:  true,
	hitch.KindPayoutPaid:     true,
}

// cleanText reports whether s can be stored as text on both databases:
// UTF-8 without NUL, neither raw nor escaped in JSON (PostgreSQL refuses
// NUL in text), and ids of at most 256 bytes.
func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0) && !strings.Contains(s, `\u0000`)
}

// decodeRef reads the event's whole payload (so a malformed one is
// refused here, not in the projection) and returns its ride reference.
func decodeRef(kind string, body []byte) (hitch.RideRef, error) {
	var err error
	var ref hitch.RideRef
	switch kind {
	case hitch.KindRideRequested:
		var p hitch.RideRequested
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	case hitch.KindRideMatched:
		var p hitch.RideMatched
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	case hitch.KindRideFinished:
		var p hitch.RideFinished
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	case hitch.KindRideCancelled:
		var p hitch.RideCancelled
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	case hitch.KindPaymentCharged:
		var p hitch.PaymentCharged
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	case hitch.KindPaymentFailed:
		var p hitch.PaymentFailed
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	case hitch.KindPayoutPaid:
		var p hitch.PayoutPaid
		err = hitch.Decode(kind, body, &p)
		ref = p.RideRef
	default:
		err = hitch.Decode(kind, body, &ref)
	}
	return ref, err
}

// Ingest appends the event (message id, kind, JSON payload) to the
// local log through the inbox, and reports whether it was stored (false:
// seen before, or not an event views keeps; those are logged and must be
// acked).
func (s *Service) Ingest(ctx context.Context, id, kind string, body []byte) (bool, error) {
	if _, ok := kinds[kind]; !ok {
		s.skip("unknown kind", kind, id, nil)
		return false, nil
	}
	ref, err := decodeRef(kind, body)
	if err != nil || ref.RideID == "" {
		s.skip("unreadable payload or no ride_id", kind, id, err)
		return false, nil
	}
	if id == "" || !cleanText(id) || !cleanText(ref.RideID) || !cleanText(ref.RiderID) || !cleanText(ref.DriverID) || !cleanText(string(body)) {
		s.skip("no message id, or ids or payload not storable as text", kind, id, nil)
		return false, nil
	}
	stored := false
	_, err = s.inbox.Process(ctx, id, func(tx *store.Tx) error {
		stored = false
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM sy_events WHERE id = ?", id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil // the inbox forgot it, the log did not
		}
		e := eventstore.Event{ID: id, Type: kind, SchemaVersion: 1, Data: body}
		if _, err := s.es.AppendTx(ctx, tx, "ride-"+ref.RideID, eventstore.Any, e); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO views_ingest (kind, events) VALUES (?, 1)
			ON CONFLICT (kind) DO UPDATE SET events = views_ingest.events + 1`, kind)
		stored = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("views: storing %s %s: %w", kind, id, err)
	}
	if stored {
		s.mu.Lock()
		s.stats.Stored++
		s.mu.Unlock()
	}
	return stored, nil
}

func (s *Service) skip(why, kind, id string, err error) {
	s.mu.Lock()
	s.stats.Skipped++
	s.mu.Unlock()
	s.log.Info("views: event skipped", "why", why, "kind", kind, "id", id, "err", err)
}

// expireInbox deletes the inbox's ids older than the retention every
// hundredth of it (at least every minute, at most hourly) until ctx ends.
// An id expired from the inbox is still caught by the log's unique
// event id (Ingest checks it).
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
