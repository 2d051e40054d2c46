package cardprocessor

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
)

// Config configures the processor.
type Config struct {
	// Faults are injected from the start (as if POSTed to /v1/faults).
	// Default none.
	Faults *Faults `yaml:"faults"`
	// Logger receives errors of the database. Default: discard.
	Logger *slog.Logger `yaml:"-"`
}

// WithDefaults returns c with unset fields filled.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	if c.Faults != nil {
		return c.Faults.Validate()
	}
	return nil
}

// Service is a running card processor.
type Service struct {
	db     *store.DB
	log    *slog.Logger
	faults *injector
	stats  counters
}

type counters struct {
	requests, replays, failed, hung atomic.Int64
}

// Stats are the calls the processor saw, for tests and the summary.
type Stats struct {
	Requests int64 `json:"requests"` // POST calls to charges, refunds and payouts
	Replays  int64 `json:"replays"`  // answered from a stored idempotency key
	Failed   int64 `json:"failed"`   // answered 500 by an injected fault
	Hung     int64 `json:"hung"`     // held by an injected timeout
}

var migrations = []store.Migration{{Version: 1, Name: "charges, refunds, payouts", SQL: `
CREATE TABLE cp_charges (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, request_hash TEXT NOT NULL,
  amount_cents BIGINT NOT NULL, currency TEXT NOT NULL, card TEXT NOT NULL, customer TEXT NOT NULL, description TEXT NOT NULL,
  status TEXT NOT NULL, decline_code TEXT NOT NULL, refunded_cents BIGINT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE cp_refunds (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, request_hash TEXT NOT NULL,
  charge_id TEXT NOT NULL, amount_cents BIGINT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE cp_payouts (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, request_hash TEXT NOT NULL,
  driver TEXT NOT NULL, amount_cents BIGINT NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL, failure_code TEXT NOT NULL,
  created_ms BIGINT NOT NULL)`}}

// New opens the processor on its database (migrations under component
// "hitch-cardprocessor"). bus is unused (the processor sends no events) and
// may be nil.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	_ = bus
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cardprocessor: config: %w", err)
	}
	if db == nil {
		return nil, errors.New("cardprocessor: a database is required")
	}
	if err := db.Migrate(ctx, "hitch-cardprocessor", migrations); err != nil {
		return nil, fmt.Errorf("cardprocessor: migrating: %w", err)
	}
	s := &Service{db: db, log: cfg.Logger, faults: newInjector()}
	if cfg.Faults != nil {
		s.faults.set(*cfg.Faults)
	}
	return s, nil
}

// Run has no background work: it waits for ctx to end and returns nil.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// SetFaults replaces the injected faults (the POST /v1/faults of tests in
// the same process).
func (s *Service) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faults.set(f)
	return nil
}

// Stats returns the calls seen so far.
func (s *Service) Stats() Stats {
	return Stats{Requests: s.stats.requests.Load(), Replays: s.stats.replays.Load(),
		Failed: s.stats.failed.Load(), Hung: s.stats.hung.Load()}
}

// Charge is a stored charge.
type Charge struct {
	ID             string `json:"charge_id"`
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status"` // succeeded or declined
	DeclineCode    string `json:"decline_code,omitempty"`
	AmountCents    int64  `json:"amount_cents"`
	RefundedCents  int64  `json:"refunded_cents"`
	Currency       string `json:"currency"`
	Card           string `json:"card"`
	Customer       string `json:"customer"`
	Description    string `json:"description"`
	Created        int64  `json:"created_ms"`
}

// Refund is a stored refund.
type Refund struct {
	ID             string `json:"refund_id"`
	IdempotencyKey string `json:"idempotency_key"`
	ChargeID       string `json:"charge_id"`
	AmountCents    int64  `json:"amount_cents"`
	Created        int64  `json:"created_ms"`
}

// Payout is a stored payout.
type Payout struct {
	ID             string `json:"payout_id"`
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status"` // paid or failed
	FailureCode    string `json:"failure_code,omitempty"`
	Driver         string `json:"driver"`
	AmountCents    int64  `json:"amount_cents"`
	Currency       string `json:"currency"`
	Created        int64  `json:"created_ms"`
}

// Charge statuses and payout statuses.
const (
	StatusSucceeded = "succeeded"
	StatusDeclined  = "declined"
	StatusPaid      = "paid"
	StatusFailed    = "failed"
)

// errKeyReuse: the key was used with a different request.
var errKeyReuse = errors.New("idempotency key reused with a different request")

// conflictError is a request the processor's state refuses (409).
type conflictError struct{ code, msg string }

func (e *conflictError) Error() string { return e.msg }

// notFoundError: 404.
type notFoundError struct{ what, id string }

func (e *notFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.what, e.id) }

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

const chargeCols = "id, idempotency_key, status, decline_code, amount_cents, refunded_cents, currency, card, customer, description, created_ms"

func scanCharge(row interface{ Scan(...any) error }) (Charge, error) {
	var c Charge
	err := row.Scan(&c.ID, &c.IdempotencyKey, &c.Status, &c.DeclineCode, &c.AmountCents, &c.RefundedCents, &c.Currency,
		&c.Card, &c.Customer, &c.Description, &c.Created)
	return c, err
}

// createCharge makes a charge under key, or returns the one the key already
// made (replay true). It is ErrKeyReuse when the key made another request.
func (s *Service) createCharge(ctx context.Context, key string, req ChargeRequest) (c Charge, replay bool, err error) {
	hash := hashOf(req)
	f := s.faults.get()
	declined := hasPrefix(req.Card, f.DeclinePrefixes) || (req.Customer != "" && hasPrefix(req.Customer, f.DeclinePrefixes)) || s.faults.declineDraw()
	c = Charge{ID: newID("ch_"), IdempotencyKey: key, Status: StatusSucceeded, AmountCents: req.AmountCents, Currency: req.Currency,
		Card: req.Card, Customer: req.Customer, Description: req.Description, Created: time.Now().UnixMilli()}
	if declined {
		c.Status, c.DeclineCode = StatusDeclined, "card_declined"
	}
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO cp_charges (id, idempotency_key, request_hash, amount_cents, currency, card, customer, description,
  status, decline_code, refunded_cents, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (idempotency_key) DO NOTHING`,
			c.ID, key, hash, c.AmountCents, c.Currency, c.Card, c.Customer, c.Description, c.Status, c.DeclineCode, c.Created)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			replay = false
			return nil
		}
		replay = true
		var stored string
		if err := tx.QueryRow(ctx, "SELECT request_hash FROM cp_charges WHERE idempotency_key = ?", key).Scan(&stored); err != nil {
			return err
		}
		if stored != hash {
			return errKeyReuse
		}
		c, err = scanCharge(tx.QueryRow(ctx, "SELECT "+chargeCols+" FROM cp_charges WHERE idempotency_key = ?", key))
		return err
	})
	return c, replay, err
}

// createRefund refunds part or all of a succeeded charge under key.
func (s *Service) createRefund(ctx context.Context, key string, req RefundRequest) (r Refund, replay bool, err error) {
	hash := hashOf(req)
	r = Refund{ID: newID("re_"), IdempotencyKey: key, ChargeID: req.ChargeID, AmountCents: req.AmountCents, Created: time.Now().UnixMilli()}
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO cp_refunds (id, idempotency_key, request_hash, charge_id, amount_cents, created_ms)
  VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING`, r.ID, key, hash, r.ChargeID, r.AmountCents, r.Created)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			replay = true
			var stored string
			if err := tx.QueryRow(ctx, "SELECT request_hash FROM cp_refunds WHERE idempotency_key = ?", key).Scan(&stored); err != nil {
				return err
			}
			if stored != hash {
				return errKeyReuse
			}
			return tx.QueryRow(ctx, "SELECT id, idempotency_key, charge_id, amount_cents, created_ms FROM cp_refunds WHERE idempotency_key = ?", key).
				Scan(&r.ID, &r.IdempotencyKey, &r.ChargeID, &r.AmountCents, &r.Created)
		}
		replay = false
		// One statement checks and moves the money, so concurrent refunds
		// of one charge (under different keys) cannot exceed it.
		res, err = tx.Exec(ctx, `UPDATE cp_charges SET refunded_cents = refunded_cents + ?
  WHERE id = ? AND status = 'succeeded' AND refunded_cents + ? <= amount_cents`, r.AmountCents, r.ChargeID, r.AmountCents)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		c, err := scanCharge(tx.QueryRow(ctx, "SELECT "+chargeCols+" FROM cp_charges WHERE id = ?", r.ChargeID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return &notFoundError{what: "charge", id: r.ChargeID}
		case err != nil:
			return err
		case c.Status != StatusSucceeded:
			return &conflictError{code: "charge_not_refundable", msg: fmt.Sprintf("charge %s is %s: only a succeeded charge can be refunded", c.ID, c.Status)}
		default:
			return &conflictError{code: "amount_too_large", msg: fmt.Sprintf("refund of %d cents: charge %s has %d of %d cents left to refund",
				r.AmountCents, c.ID, c.AmountCents-c.RefundedCents, c.AmountCents)}
		}
	})
	return r, replay, err
}

// createPayout pays a driver under key (or fails for a closed account).
func (s *Service) createPayout(ctx context.Context, key string, req PayoutRequest) (p Payout, replay bool, err error) {
	hash := hashOf(req)
	f := s.faults.get()
	p = Payout{ID: newID("po_"), IdempotencyKey: key, Status: StatusPaid, Driver: req.Driver, AmountCents: req.AmountCents,
		Currency: req.Currency, Created: time.Now().UnixMilli()}
	if hasPrefix(req.Driver, f.ClosedPrefixes) {
		p.Status, p.FailureCode = StatusFailed, "account_closed"
	}
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO cp_payouts (id, idempotency_key, request_hash, driver, amount_cents, currency, status, failure_code, created_ms)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING`,
			p.ID, key, hash, p.Driver, p.AmountCents, p.Currency, p.Status, p.FailureCode, p.Created)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			replay = false
			return nil
		}
		replay = true
		var stored string
		if err := tx.QueryRow(ctx, "SELECT request_hash FROM cp_payouts WHERE idempotency_key = ?", key).Scan(&stored); err != nil {
			return err
		}
		if stored != hash {
			return errKeyReuse
		}
		return tx.QueryRow(ctx, `SELECT id, idempotency_key, status, failure_code, driver, amount_cents, currency, created_ms
  FROM cp_payouts WHERE idempotency_key = ?`, key).
			Scan(&p.ID, &p.IdempotencyKey, &p.Status, &p.FailureCode, &p.Driver, &p.AmountCents, &p.Currency, &p.Created)
	})
	return p, replay, err
}

// Charges lists every charge, oldest first (for tests and reconciliation).
func (s *Service) Charges(ctx context.Context) ([]Charge, error) {
	rows, err := s.db.Query(ctx, "SELECT "+chargeCols+" FROM cp_charges ORDER BY created_ms, id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Charge
	for rows.Next() {
		c, err := scanCharge(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Refunds lists every refund.
func (s *Service) Refunds(ctx context.Context) ([]Refund, error) {
	rows, err := s.db.Query(ctx, "SELECT id, idempotency_key, charge_id, amount_cents, created_ms FROM cp_refunds ORDER BY created_ms, id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		var r Refund
		if err := rows.Scan(&r.ID, &r.IdempotencyKey, &r.ChargeID, &r.AmountCents, &r.Created); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Payouts lists every payout.
func (s *Service) Payouts(ctx context.Context) ([]Payout, error) {
	rows, err := s.db.Query(ctx, `SELECT id, idempotency_key, status, failure_code, driver, amount_cents, currency, created_ms
  FROM cp_payouts ORDER BY created_ms, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Payout
	for rows.Next() {
		var p Payout
		if err := rows.Scan(&p.ID, &p.IdempotencyKey, &p.Status, &p.FailureCode, &p.Driver, &p.AmountCents, &p.Currency, &p.Created); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Summary is what the processor moved, for GET /v1/summary.
type Summary struct {
	Charges struct {
		Succeeded   int64 `json:"succeeded"`
		Declined    int64 `json:"declined"`
		AmountCents int64 `json:"amount_cents"` // of succeeded charges
	} `json:"charges"`
	Refunds struct {
		Count       int64 `json:"count"`
		AmountCents int64 `json:"amount_cents"`
	} `json:"refunds"`
	Payouts struct {
		Paid        int64 `json:"paid"`
		Failed      int64 `json:"failed"`
		AmountCents int64 `json:"amount_cents"` // of paid payouts
	} `json:"payouts"`
	// NetCents is what the processor holds for its merchant: charged -
	// refunded - paid out.
	NetCents int64 `json:"net_cents"`
	Stats    Stats `json:"requests"`
}

// Summarize adds up what the processor moved.
func (s *Service) Summarize(ctx context.Context) (Summary, error) {
	var sum Summary
	err := s.db.QueryRow(ctx, `SELECT
  (SELECT COUNT(*) FROM cp_charges WHERE status = 'succeeded'),
  (SELECT COUNT(*) FROM cp_charges WHERE status = 'declined'),
  (SELECT COALESCE(SUM(amount_cents), 0) FROM cp_charges WHERE status = 'succeeded'),
  (SELECT COUNT(*) FROM cp_refunds),
  (SELECT COALESCE(SUM(amount_cents), 0) FROM cp_refunds),
  (SELECT COUNT(*) FROM cp_payouts WHERE status = 'paid'),
  (SELECT COUNT(*) FROM cp_payouts WHERE status = 'failed'),
  (SELECT COALESCE(SUM(amount_cents), 0) FROM cp_payouts WHERE status = 'paid')`).Scan(
		&sum.Charges.Succeeded, &sum.Charges.Declined, &sum.Charges.AmountCents, &sum.Refunds.Count, &sum.Refunds.AmountCents,
		&sum.Payouts.Paid, &sum.Payouts.Failed, &sum.Payouts.AmountCents)
	sum.NetCents = sum.Charges.AmountCents - sum.Refunds.AmountCents - sum.Payouts.AmountCents
	sum.Stats = s.Stats()
	return sum, err
}

// readBody reads at most maxBody bytes; more is a *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
}
