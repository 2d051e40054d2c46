package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
)

// Component is the migration component of the service's tables.
const Component = "hitch-payments"

// consumer names the service's inbox.
const consumer = "hitch-payments"

var migrations = []store.Migration{{Version: 1, Name: "payments and the double-entry ledger", SQL: `
CREATE TABLE pay_payments (ride_id TEXT PRIMARY KEY, rider_id TEXT NOT NULL, driver_id TEXT NOT NULL,
  fare_cents BIGINT NOT NULL, fee_cents BIGINT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
  charge_id TEXT NOT NULL, payout_id TEXT NOT NULL, refund_id TEXT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);
CREATE TABLE pay_ledger_tx (id TEXT PRIMARY KEY, ride_id TEXT NOT NULL, kind TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE pay_ledger_entries (tx_id TEXT NOT NULL, account TEXT NOT NULL, amount_cents BIGINT NOT NULL, PRIMARY KEY (tx_id, account));
CREATE INDEX pay_ledger_entries_by_account ON pay_ledger_entries (account)`}}

// Service is the payments service.
type Service struct {
	cfg  Config
	db   *store.DB
	bus  message.Backend
	log  *slog.Logger
	proc *processor
	orch *saga.Orchestrator
	in   *inbox.Inbox
	def  *saga.Definition

	runOnce sync.Once
}

// New opens the service on its database (migrations under component
// "hitch-payments", plus the kit's outbox, inbox and saga tables) and the
// message bus. It starts nothing in the background.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("payments: config: %w", err)
	}
	if db == nil || bus == nil {
		return nil, errors.New("payments: a database and a message bus are required")
	}
	if err := db.Migrate(ctx, Component, migrations); err != nil {
		return nil, fmt.Errorf("payments: migrating: %w", err)
	}
	if err := outbox.Prepare(ctx, db); err != nil {
		return nil, fmt.Errorf("payments: outbox tables: %w", err)
	}
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: consumer})
	if err != nil {
		return nil, fmt.Errorf("payments: inbox: %w", err)
	}
	proc, err := newProcessor(cfg)
	if err != nil {
		return nil, fmt.Errorf("payments: processor client: %w", err)
	}
	orch, err := saga.New(ctx, db, saga.Options{Concurrency: cfg.Saga.Concurrency, ClaimTTL: cfg.Saga.ClaimTTL,
		PollInterval: cfg.Saga.PollInterval, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("payments: saga orchestrator: %w", err)
	}
	s := &Service{cfg: cfg, db: db, bus: bus, log: cfg.Logger, proc: proc, orch: orch, in: in}
	s.def = s.definition()
	if err := orch.Register(s.def); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	return s, nil
}

// Run consumes ride.finished from hitch.QueuePaymentsRides, drives the
// payment sagas and relays the outbox until ctx ends, then returns nil.
// Several replicas may run at once on one database and queue.
func (s *Service) Run(ctx context.Context) error {
	first := false
	s.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("payments: Run called twice")
	}
	router, err := message.NewRouter(s.bus, message.RouterConfig{Concurrency: s.cfg.Consumers, Prefetch: s.cfg.Prefetch, ShutdownTimeout: 5 * time.Second,
		NackDelay: 200 * time.Millisecond,
		OnError: func(source string, err error) {
			s.log.Warn("payments: consuming", "source", source, "err", err)
		}})
	if err != nil {
		return err
	}
	if err := router.Handle("queue:"+hitch.QueuePaymentsRides, s.handle, message.RouteOptions{}); err != nil {
		return err
	}
	relay, err := outbox.NewRelay(ctx, s.db, s.bus, outbox.RelayOptions{LeaseTTL: s.cfg.RelayLeaseTTL, PollInterval: s.cfg.RelayPollInterval,
		OnError: func(err error) { s.log.Warn("payments: outbox relay", "err", err) }})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, run := range []func(context.Context) error{router.Run, relay.Run, s.orch.Run, s.expireInbox} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.log.Error("payments: background work stopped", "err", err)
	}
	return nil
}

// expireInbox deletes processed event ids past the inbox's retention (7
// days), hourly: inbox.Process, unlike Inbox.Handler, does not.
func (s *Service) expireInbox(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.in.Expire(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("payments: expiring inbox ids", "err", err)
			}
		}
	}
}

// Breaker is the card processor's circuit breaker (for tests and metrics).
func (s *Service) Breaker() *breaker.Breaker { return s.proc.breaker() }

// Orchestrator is the service's saga orchestrator (for the operator:
// List, Get and Retry of parked sagas).
func (s *Service) Orchestrator() *saga.Orchestrator { return s.orch }

// maxRef bounds ids taken from events.
const maxRef = 200

// handle starts the payment saga of a finished ride, once: the inbox drops
// a redelivered event, and a second ride.finished of the same ride (another
// event id) finds its payment row and saga already there.
func (s *Service) handle(ctx context.Context, d *message.Delivery) error {
	kind := d.Headers["kind"]
	if kind != hitch.KindRideFinished {
		return nil // not ours: ack and ignore
	}
	var ev hitch.RideFinished
	if err := hitch.Decode(kind, d.Body, &ev); err != nil {
		s.log.ErrorContext(ctx, "payments: dropping an undecodable event", "id", d.ID, "err", err)
		return nil
	}
	if err := validFinished(ev); err != nil {
		s.log.ErrorContext(ctx, "payments: dropping an invalid ride.finished", "id", d.ID, "err", err)
		return nil
	}
	id := d.ID
	if id == "" {
		id = kind + "/" + ev.RideID
	}
	_, err := s.in.Process(ctx, id, func(tx *store.Tx) error {
		now := time.Now().UnixMilli()
		res, err := tx.Exec(ctx, `INSERT INTO pay_payments (ride_id, rider_id, driver_id, fare_cents, fee_cents, state, reason,
  charge_id, payout_id, refund_id, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, '', '', '', '', ?, ?) ON CONFLICT (ride_id) DO NOTHING`,
			ev.RideID, ev.RiderID, ev.DriverID, ev.FareCents, ev.FeeCents, StatePending, now, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // this ride's payment exists already
		}
		return saga.Start(ctx, tx, s.def, ev.RideID, payInput{RideID: ev.RideID, RiderID: ev.RiderID, DriverID: ev.DriverID,
			FareCents: ev.FareCents, FeeCents: ev.FeeCents})
	})
	return err
}

func validFinished(ev hitch.RideFinished) error {
	var errs []error
	for name, v := range map[string]string{"ride_id": ev.RideID, "rider_id": ev.RiderID, "driver_id": ev.DriverID} {
		if v == "" || len(v) > maxRef {
			errs = append(errs, fmt.Errorf("%s %.40q: want 1 to %d bytes", name, v, maxRef))
		}
	}
	if ev.FareCents <= 0 || ev.FareCents > 100_000_000 {
		errs = append(errs, fmt.Errorf("fare_cents %d: want 1 to 100000000", ev.FareCents))
	}
	if ev.FeeCents < 0 || ev.FeeCents > ev.FareCents {
		errs = append(errs, fmt.Errorf("fee_cents %d: want 0 to the fare (%d)", ev.FeeCents, ev.FareCents))
	}
	return errors.Join(errs...)
}

func percent(f float64) config.Percent { return config.Percent(f) }
