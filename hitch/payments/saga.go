package payments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/retry"
)

// SagaName is the payment saga's definition name.
const SagaName = "hitch-ride-payment"

// Payment states (pay_payments.state).
const (
	StatePending = "pending" // the saga is charging the rider
	StateCharged = "charged" // the rider paid; the driver is being paid
	StatePaid    = "paid"    // the driver was paid: done
	StateFailed  = "failed"  // declined, or refunded after an impossible payout: nothing taken
)

// Ledger accounts.
const (
	AccountFees     = "platform:fees"
	AccountClearing = "processor:clearing"
)

func riderAccount(id string) string  { return "rider:" + id }
func driverAccount(id string) string { return "driver:" + id }

// Idempotency keys, derived from the ride id alone: whichever replica, after
// whichever crash, asks the processor about a ride asks with the same key.
func chargeKey(ride string) string { return "hitch/ride/" + ride + "/charge" }
func payoutKey(ride string) string { return "hitch/ride/" + ride + "/payout" }
func refundKey(ride string) string { return "hitch/ride/" + ride + "/refund" }

// payInput is the saga's input: what ride.finished said.
type payInput struct {
	RideID    string `json:"ride_id"`
	RiderID   string `json:"rider_id"`
	DriverID  string `json:"driver_id"`
	FareCents int64  `json:"fare_cents"`
	FeeCents  int64  `json:"fee_cents"`
}

// payData is the saga's data after the charge.
type payData struct {
	payInput
	ChargeID string `json:"charge_id"`
}

// forever is the attempts of a step that fails for a transient reason: it
// is tried until the processor gives a definitive answer, because giving up
// on a charge whose outcome is unknown could leave a rider charged for a
// ride marked unpaid. A saga stuck this way is visible (state running,
// attempt and last error in GET /v1/payments/{ride_id}).
const forever = 1 << 30

func (s *Service) definition() *saga.Definition {
	stepTimeout := s.cfg.Processor.Timeout + 5*time.Second
	pol := saga.Policy{MaxAttempts: forever, CompensationAttempts: forever,
		Backoff: retry.Backoff{Base: s.cfg.Saga.RetryBase, Cap: s.cfg.Saga.RetryCap}}
	return &saga.Definition{Name: SagaName, Retry: pol, Steps: []saga.Step{
		{Name: "charge-rider", Action: s.charge, Compensation: s.refund, Timeout: stepTimeout},
		{Name: "pay-driver", Action: s.payout, Timeout: stepTimeout},
	}}
}

// charge charges the rider the fare. Declined (or refused) -> the payment
// fails with nothing taken, and the saga ends (no step completed, nothing to
// compensate). A transient failure is retried with the same key.
func (s *Service) charge(ctx context.Context, sc *saga.StepContext) error {
	var in payInput
	if err := sc.Input(&in); err != nil {
		return saga.Permanent(err)
	}
	var res chargeResp
	err := s.proc.post(ctx, "/v1/charges", chargeKey(in.RideID), chargeReq{AmountCents: in.FareCents, Currency: s.cfg.Currency,
		Card: "card-" + in.RiderID, Customer: in.RiderID, Description: "Hitch ride " + in.RideID}, &res)
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		reason := fmt.Sprintf("charge refused: %s", refused.Code)
		if ferr := s.fail(ctx, sc, in, reason, ""); ferr != nil {
			return ferr
		}
		return saga.Permanent(err)
	case err != nil:
		return err
	case res.Status == "declined":
		reason := "card declined: " + res.DeclineCode
		if ferr := s.fail(ctx, sc, in, reason, res.ChargeID); ferr != nil {
			return ferr
		}
		return saga.Permanent(errors.New(reason))
	case res.Status != "succeeded" || res.ChargeID == "" || res.AmountCents != in.FareCents:
		return fmt.Errorf("charge of ride %s: unexpected answer %+v (want succeeded, %d cents)", in.RideID, res, in.FareCents)
	}
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		if err := sc.Fence(ctx, tx); err != nil {
			return err
		}
		posted, err := postLedger(ctx, tx, in.RideID, "charge", []entry{
			{riderAccount(in.RiderID), -in.FareCents},
			{AccountClearing, in.FareCents},
		})
		if err != nil || !posted {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE pay_payments SET state = ?, charge_id = ?, updated_ms = ? WHERE ride_id = ?",
			StateCharged, res.ChargeID, time.Now().UnixMilli(), in.RideID); err != nil {
			return err
		}
		return s.emit(ctx, tx, hitch.KindPaymentCharged, in.RideID, "charged", hitch.PaymentCharged{
			RideRef: ref(in), AmountCents: in.FareCents, FeeCents: in.FeeCents, ChargeID: res.ChargeID})
	})
	if err != nil {
		return err
	}
	return sc.SetData(payData{payInput: in, ChargeID: res.ChargeID})
}

// payout pays the driver fare - fee. A payout the processor refuses for
// good (a closed account) fails the step, and the saga compensates: the
// rider's charge is refunded. A transient failure is retried with the same
// key.
func (s *Service) payout(ctx context.Context, sc *saga.StepContext) error {
	var d payData
	if err := sc.Data(&d); err != nil {
		return saga.Permanent(err)
	}
	net := d.FareCents - d.FeeCents
	var res payoutResp
	if net > 0 {
		err := s.proc.post(ctx, "/v1/payouts", payoutKey(d.RideID), payoutReq{Driver: d.DriverID, AmountCents: net, Currency: s.cfg.Currency}, &res)
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			return s.payoutImpossible(ctx, sc, d, "payout refused: "+refused.Code, err)
		case err != nil:
			return err
		case res.Status == "failed":
			return s.payoutImpossible(ctx, sc, d, "payout failed: "+res.FailureCode, errors.New("payout failed: "+res.FailureCode))
		case res.Status != "paid" || res.AmountCents != net:
			return fmt.Errorf("payout of ride %s: unexpected answer %+v (want paid, %d cents)", d.RideID, res, net)
		}
	}
	return s.db.InTx(ctx, func(tx *store.Tx) error {
		if err := sc.Fence(ctx, tx); err != nil {
			return err
		}
		posted, err := postLedger(ctx, tx, d.RideID, "payout", []entry{
			{AccountClearing, -d.FareCents},
			{driverAccount(d.DriverID), net},
			{AccountFees, d.FeeCents},
		})
		if err != nil || !posted {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE pay_payments SET state = ?, payout_id = ?, updated_ms = ? WHERE ride_id = ?",
			StatePaid, res.PayoutID, time.Now().UnixMilli(), d.RideID); err != nil {
			return err
		}
		return s.emit(ctx, tx, hitch.KindPayoutPaid, d.RideID, "payout", hitch.PayoutPaid{RideRef: ref(d.payInput), AmountCents: net})
	})
}

// payoutImpossible records why the payout cannot be made and fails the
// step for good, which turns the saga to its compensation.
func (s *Service) payoutImpossible(ctx context.Context, sc *saga.StepContext, d payData, reason string, cause error) error {
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		if err := sc.Fence(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE pay_payments SET reason = ?, updated_ms = ? WHERE ride_id = ? AND state = ?",
			reason, time.Now().UnixMilli(), d.RideID, StateCharged)
		return err
	})
	if err != nil {
		return err
	}
	return saga.Permanent(cause)
}

// refund is the compensation of the charge: the rider gets the fare back,
// the ledger reverses the charge, and the payment fails.
func (s *Service) refund(ctx context.Context, sc *saga.StepContext) error {
	var d payData
	if err := sc.Data(&d); err != nil {
		return saga.Permanent(err)
	}
	var res refundResp
	err := s.proc.post(ctx, "/v1/refunds", refundKey(d.RideID), refundReq{ChargeID: d.ChargeID, AmountCents: d.FareCents}, &res)
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		return saga.Permanent(err) // parks the saga for an operator
	case err != nil:
		return err
	}
	return s.db.InTx(ctx, func(tx *store.Tx) error {
		if err := sc.Fence(ctx, tx); err != nil {
			return err
		}
		posted, err := postLedger(ctx, tx, d.RideID, "refund", []entry{
			{riderAccount(d.RiderID), d.FareCents},
			{AccountClearing, -d.FareCents},
		})
		if err != nil || !posted {
			return err
		}
		var reason string
		if err := tx.QueryRow(ctx, "SELECT reason FROM pay_payments WHERE ride_id = ?", d.RideID).Scan(&reason); err != nil {
			return err
		}
		if reason == "" {
			reason = "payout impossible"
		}
		reason += "; the charge was refunded"
		if _, err := tx.Exec(ctx, "UPDATE pay_payments SET state = ?, reason = ?, refund_id = ?, updated_ms = ? WHERE ride_id = ?",
			StateFailed, reason, res.RefundID, time.Now().UnixMilli(), d.RideID); err != nil {
			return err
		}
		return s.emit(ctx, tx, hitch.KindPaymentFailed, d.RideID, "failed", hitch.PaymentFailed{RideRef: ref(d.payInput), Reason: reason})
	})
}

// fail marks a payment failed before any money moved and emits
// payment.failed, once.
func (s *Service) fail(ctx context.Context, sc *saga.StepContext, in payInput, reason, chargeID string) error {
	return s.db.InTx(ctx, func(tx *store.Tx) error {
		if err := sc.Fence(ctx, tx); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, "UPDATE pay_payments SET state = ?, reason = ?, charge_id = ?, updated_ms = ? WHERE ride_id = ? AND state = ?",
			StateFailed, reason, chargeID, time.Now().UnixMilli(), in.RideID, StatePending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // failed already (a re-run after a crash)
		}
		return s.emit(ctx, tx, hitch.KindPaymentFailed, in.RideID, "failed", hitch.PaymentFailed{RideRef: ref(in), Reason: reason})
	})
}

// emit adds an event to the outbox in tx. Its id is derived from the ride
// and what happened, so a re-run that got past the guards above would
// still be dropped by the broker's dedup and the consumers' inboxes.
func (s *Service) emit(ctx context.Context, tx *store.Tx, kind, ride, what string, payload any) error {
	m, err := hitch.Event(kind, "payments/"+ride+"/"+what, ride, payload)
	if err != nil {
		return err
	}
	return outbox.Add(ctx, tx, "topic:"+hitch.TopicPayments, m)
}

func ref(in payInput) hitch.RideRef {
	return hitch.RideRef{RideID: in.RideID, RiderID: in.RiderID, DriverID: in.DriverID, At: time.Now().UTC()}
}

// entry is one line of a ledger transaction.
type entry struct {
	account string
	cents   int64
}

// postLedger records the ledger transaction "<ride>/<kind>" with its
// entries, once: it reports false (and writes nothing) when the
// transaction exists. The entries must sum to zero.
func postLedger(ctx context.Context, tx *store.Tx, ride, kind string, entries []entry) (bool, error) {
	var sum int64
	for _, e := range entries {
		sum += e.cents
	}
	if sum != 0 {
		return false, fmt.Errorf("ledger: transaction %s/%s does not balance: its entries sum to %d cents", ride, kind, sum)
	}
	id := ride + "/" + kind
	res, err := tx.Exec(ctx, "INSERT INTO pay_ledger_tx (id, ride_id, kind, created_ms) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
		id, ride, kind, time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	for _, e := range entries {
		if e.cents == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, "INSERT INTO pay_ledger_entries (tx_id, account, amount_cents) VALUES (?, ?, ?)", id, e.account, e.cents); err != nil {
			return false, err
		}
	}
	return true, nil
}
