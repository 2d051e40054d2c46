package views

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/store"
)

// ProjectionName names the read model's checkpoints.
const ProjectionName = "hitch_views"

// readModel is the projection from the local log to receipts and
// earnings. Column conventions: NULL is "not known yet"; every fact
// column is set by the first event carrying it (COALESCE) and never
// changed, so the row does not depend on the order of its events.
func readModel() projection.Projection {
	return projection.Projection{
		Name:   ProjectionName,
		Tables: []string{"receipts", "earnings"},
		Create: func(ctx context.Context, tx *store.Tx, t projection.Tables) error {
			for _, q := range []string{
				`CREATE TABLE ` + t.T("receipts") + ` (
					ride_id TEXT PRIMARY KEY,
					rider_id TEXT,
					driver_id TEXT,
					distance_mi DOUBLE PRECISION,
					fare_cents BIGINT,
					fee_cents BIGINT,
					charged_cents BIGINT,
					charged_fee_cents BIGINT,
					charge_id TEXT,
					failure_reason TEXT,
					payout_cents BIGINT,
					requested_ms BIGINT,
					matched_ms BIGINT,
					started_ms BIGINT,
					finished_ms BIGINT,
					cancelled_ms BIGINT,
					no_driver_ms BIGINT,
					charged_ms BIGINT,
					failed_ms BIGINT,
					payout_ms BIGINT
				)`,
				`CREATE INDEX ` + t.T("receipts") + `_by_driver ON ` + t.T("receipts") + ` (driver_id)`,
				`CREATE TABLE ` + t.T("earnings") + ` (
					driver_id TEXT PRIMARY KEY,
					rides BIGINT NOT NULL,
					gross_cents BIGINT NOT NULL,
					fees_cents BIGINT NOT NULL,
					net_paid_cents BIGINT NOT NULL
				)`,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		},
		Handle: handle,
	}
}

// contribution is what one ride adds to its driver's earnings.
type contribution struct {
	driver                      string
	rides, gross, fees, netPaid int64
}

func (c contribution) zero() bool {
	return c.rides == 0 && c.gross == 0 && c.fees == 0 && c.netPaid == 0
}

// contributionOf computes a ride's contribution from its row alone.
func contributionOf(ctx context.Context, tx *store.Tx, receipts, ride string) (contribution, error) {
	var driver sql.NullString
	var finished, charged, chargedFee, failed, payout sql.NullInt64
	err := tx.QueryRow(ctx, "SELECT driver_id, finished_ms, charged_cents, charged_fee_cents, failed_ms, payout_cents FROM "+receipts+" WHERE ride_id = ?", ride).
		Scan(&driver, &finished, &charged, &chargedFee, &failed, &payout)
	if err != nil {
		return contribution{}, err
	}
	c := contribution{driver: driver.String}
	if finished.Valid {
		c.rides = 1
	}
	if charged.Valid && !failed.Valid {
		c.gross, c.fees = charged.Int64, chargedFee.Int64
	}
	if payout.Valid {
		c.netPaid = payout.Int64
	}
	return c, nil
}

func addEarnings(ctx context.Context, tx *store.Tx, earnings string, c contribution, sign int64) error {
	if c.driver == "" || c.zero() {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+earnings+` (driver_id, rides, gross_cents, fees_cents, net_paid_cents) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (driver_id) DO UPDATE SET rides = `+earnings+`.rides + excluded.rides,
			gross_cents = `+earnings+`.gross_cents + excluded.gross_cents,
			fees_cents = `+earnings+`.fees_cents + excluded.fees_cents,
			net_paid_cents = `+earnings+`.net_paid_cents + excluded.net_paid_cents`,
		c.driver, sign*c.rides, sign*c.gross, sign*c.fees, sign*c.netPaid)
	return err
}

func msOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// handle applies one logged event. A payload it cannot read is skipped
// (Ingest already refused those; an upcast gone wrong must not wedge the
// projector).
func handle(ctx context.Context, tx *store.Tx, t projection.Tables, _ string, m projection.Message) error {
	receipts, earnings := t.T("receipts"), t.T("earnings")
	carriesDriver, ok := kinds[m.Type]
	if !ok {
		return nil
	}
	var ref hitch.RideRef
	if err := hitch.Decode(m.Type, m.Data, &ref); err != nil || ref.RideID == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+receipts+" (ride_id) VALUES (?) ON CONFLICT (ride_id) DO NOTHING", ref.RideID); err != nil {
		return err
	}
	before, err := contributionOf(ctx, tx, receipts, ref.RideID)
	if err != nil {
		return err
	}
	driver := ""
	if carriesDriver {
		driver = ref.DriverID
	}
	at := msOrNil(ref.At)
	if at == nil {
		at = m.Time.UnixMilli() // logged time: better than none
	}
	set := "rider_id = COALESCE(rider_id, ?), driver_id = COALESCE(driver_id, ?)"
	args := []any{strOrNil(ref.RiderID), strOrNil(driver)}
	col := func(name string, v any) {
		set += ", " + name + " = COALESCE(" + name + ", ?)"
		args = append(args, v)
	}
	switch m.Type {
	case hitch.KindRideRequested:
		col("requested_ms", at)
	case hitch.KindRideMatched:
		col("matched_ms", at)
	case hitch.KindRideStarted:
		col("started_ms", at)
	case hitch.KindRideNoDriver:
		col("no_driver_ms", at)
	case hitch.KindRideCancelled:
		col("cancelled_ms", at)
	case hitch.KindRideFinished:
		var p hitch.RideFinished
		if err := hitch.Decode(m.Type, m.Data, &p); err != nil {
			return nil
		}
		col("finished_ms", at)
		col("distance_mi", p.DistanceMi)
		col("fare_cents", p.FareCents)
		col("fee_cents", p.FeeCents)
	case hitch.KindPaymentCharged:
		var p hitch.PaymentCharged
		if err := hitch.Decode(m.Type, m.Data, &p); err != nil {
			return nil
		}
		col("charged_ms", at)
		col("charged_cents", p.AmountCents)
		col("charged_fee_cents", p.FeeCents)
		col("charge_id", strOrNil(p.ChargeID))
	case hitch.KindPaymentFailed:
		var p hitch.PaymentFailed
		if err := hitch.Decode(m.Type, m.Data, &p); err != nil {
			return nil
		}
		col("failed_ms", at)
		col("failure_reason", strOrNil(p.Reason))
	case hitch.KindRidePayFailed:
		// rides' own word for payment.failed: the same fact, no reason.
		col("failed_ms", at)
	case hitch.KindPayoutPaid:
		var p hitch.PayoutPaid
		if err := hitch.Decode(m.Type, m.Data, &p); err != nil {
			return nil
		}
		col("payout_ms", at)
		col("payout_cents", p.AmountCents)
	case hitch.KindRidePaid:
		// rides' word for payment.charged; the amounts come from payments.
	}
	args = append(args, ref.RideID)
	if _, err := tx.Exec(ctx, "UPDATE "+receipts+" SET "+set+" WHERE ride_id = ?", args...); err != nil {
		return fmt.Errorf("receipt of %s: %w", ref.RideID, err)
	}
	after, err := contributionOf(ctx, tx, receipts, ref.RideID)
	if err != nil {
		return err
	}
	if before == after {
		return nil
	}
	if err := addEarnings(ctx, tx, earnings, before, -1); err != nil {
		return err
	}
	return addEarnings(ctx, tx, earnings, after, +1)
}

// Receipt is a ride's receipt as the rider sees it. Money in cents.
type Receipt struct {
	RideID        string     `json:"ride_id"`
	RiderID       string     `json:"rider_id"`
	DriverID      string     `json:"driver_id"`
	Status        string     `json:"status"`  // the ride as far as views has heard
	Payment       string     `json:"payment"` // none (not finished), pending, charged or failed
	DistanceMi    float64    `json:"distance_mi"`
	Fare          int64      `json:"fare"`
	Fee           int64      `json:"fee"`
	TotalCharged  int64      `json:"total_charged"`
	ChargeID      string     `json:"charge_id,omitempty"`
	FailureReason string     `json:"failure_reason,omitempty"`
	RequestedAt   *time.Time `json:"requested_at,omitempty"`
	MatchedAt     *time.Time `json:"matched_at,omitempty"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	ChargedAt     *time.Time `json:"charged_at,omitempty"`
	CancelledAt   *time.Time `json:"cancelled_at,omitempty"`
}

// ErrNotFound: no receipt for that ride (yet).
var ErrNotFound = errors.New("no receipt")

func tm(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// Receipt reads ride id's receipt.
func (s *Service) Receipt(ctx context.Context, id string) (Receipt, error) {
	var rider, driver, chargeID, reason sql.NullString
	var dist sql.NullFloat64
	var fare, fee, charged, chargedFee, payout, req, matched, started, finished, cancelled, noDriver, chargedAt, failed sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT rider_id, driver_id, distance_mi, fare_cents, fee_cents, charged_cents, charged_fee_cents,
		charge_id, failure_reason, payout_cents, requested_ms, matched_ms, started_ms, finished_ms, cancelled_ms, no_driver_ms,
		charged_ms, failed_ms FROM receipts WHERE ride_id = ?`, id).
		Scan(&rider, &driver, &dist, &fare, &fee, &charged, &chargedFee, &chargeID, &reason, &payout,
			&req, &matched, &started, &finished, &cancelled, &noDriver, &chargedAt, &failed)
	if errors.Is(err, sql.ErrNoRows) {
		return Receipt{}, ErrNotFound
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("views: receipt of %s: %w", id, err)
	}
	r := Receipt{RideID: id, RiderID: rider.String, DriverID: driver.String, DistanceMi: dist.Float64,
		Fare: fare.Int64, Fee: fee.Int64, ChargeID: chargeID.String, FailureReason: reason.String,
		RequestedAt: tm(req), MatchedAt: tm(matched), StartedAt: tm(started), FinishedAt: tm(finished),
		ChargedAt: tm(chargedAt), CancelledAt: tm(cancelled)}
	if !fare.Valid && charged.Valid { // the charge came first
		r.Fare, r.Fee = charged.Int64, chargedFee.Int64
	}
	switch {
	case failed.Valid:
		r.Status, r.Payment = "payment_failed", "failed"
	case charged.Valid:
		r.Status, r.Payment, r.TotalCharged = "paid", "charged", charged.Int64
	case finished.Valid:
		r.Status, r.Payment = "finished", "pending"
	case cancelled.Valid:
		r.Status, r.Payment = "cancelled", "none"
	case noDriver.Valid:
		r.Status, r.Payment = "no_driver", "none"
	case started.Valid:
		r.Status, r.Payment = "started", "none"
	case matched.Valid:
		r.Status, r.Payment = "matched", "none"
	default:
		r.Status, r.Payment = "searching", "none"
	}
	return r, nil
}

// Earnings is a driver's earnings. Money in cents: Gross is what riders
// were charged for the driver's rides, Fees the service's share of it,
// NetPaid what was paid out to the driver, Pending what is still owed
// (Gross - Fees - NetPaid).
type Earnings struct {
	DriverID string `json:"driver_id"`
	Rides    int64  `json:"rides"` // rides the driver finished
	Gross    int64  `json:"gross"`
	Fees     int64  `json:"fees"`
	NetPaid  int64  `json:"net_paid"`
	Pending  int64  `json:"pending"`
}

// Earnings reads a driver's earnings (zero for a driver without rides).
func (s *Service) Earnings(ctx context.Context, driver string) (Earnings, error) {
	e := Earnings{DriverID: driver}
	err := s.db.QueryRow(ctx, "SELECT rides, gross_cents, fees_cents, net_paid_cents FROM earnings WHERE driver_id = ?", driver).
		Scan(&e.Rides, &e.Gross, &e.Fees, &e.NetPaid)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("views: earnings of %s: %w", driver, err)
	}
	e.Pending = e.Gross - e.Fees - e.NetPaid
	return e, nil
}
