package payments

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/kit/saga"
)

// Payment is a ride's payment as GET /v1/payments/{ride_id} shows it.
type Payment struct {
	RideID      string    `json:"ride_id"`
	RiderID     string    `json:"rider_id"`
	DriverID    string    `json:"driver_id"`
	State       string    `json:"state"` // pending, charged, paid, failed
	Reason      string    `json:"reason,omitempty"`
	FareCents   int64     `json:"fare_cents"`
	FeeCents    int64     `json:"fee_cents"`
	PayoutCents int64     `json:"payout_cents"`
	ChargeID    string    `json:"charge_id,omitempty"`
	PayoutID    string    `json:"payout_id,omitempty"`
	RefundID    string    `json:"refund_id,omitempty"`
	Created     time.Time `json:"created_at"`
	Updated     time.Time `json:"updated_at"`
	// Saga is where the payment's saga is: its state, the step it is in,
	// the failed attempts of that step and the last error.
	Saga *SagaStatus `json:"saga,omitempty"`
}

// SagaStatus is the operator's view of a payment saga.
type SagaStatus struct {
	State     string `json:"state"`
	Step      string `json:"step,omitempty"`
	Attempt   int    `json:"attempt"`
	LastError string `json:"last_error,omitempty"`
}

// ErrNotFound: no payment for that ride.
var ErrNotFound = errors.New("payments: no payment for that ride")

// Payment returns a ride's payment with its saga's status.
func (s *Service) Payment(ctx context.Context, ride string) (Payment, error) {
	var p Payment
	var created, updated int64
	err := s.db.QueryRow(ctx, `SELECT ride_id, rider_id, driver_id, state, reason, fare_cents, fee_cents, charge_id, payout_id, refund_id,
  created_ms, updated_ms FROM pay_payments WHERE ride_id = ?`, ride).Scan(&p.RideID, &p.RiderID, &p.DriverID, &p.State, &p.Reason,
		&p.FareCents, &p.FeeCents, &p.ChargeID, &p.PayoutID, &p.RefundID, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, err
	}
	p.PayoutCents = p.FareCents - p.FeeCents
	p.Created, p.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	if info, err := s.orch.Get(ctx, ride); err == nil {
		p.Saga = &SagaStatus{State: string(info.State), Step: info.Step, Attempt: info.Attempt, LastError: info.LastError}
	} else if !errors.Is(err, saga.ErrNotFound) {
		return p, err
	}
	return p, nil
}

// Balance is the ledger's check: every account's balance and their total,
// which double entry keeps at zero.
type Balance struct {
	Accounts     []AccountBalance `json:"accounts"`
	TotalCents   int64            `json:"total_cents"`
	Balanced     bool             `json:"balanced"`
	Transactions int64            `json:"transactions"`
	// Unbalanced lists transactions whose entries do not sum to zero
	// (none, unless the ledger was tampered with).
	Unbalanced []string `json:"unbalanced"`
}

// AccountBalance is one account's sum of entries.
type AccountBalance struct {
	Account string `json:"account"`
	Cents   int64  `json:"balance_cents"`
}

// Ledger sums the ledger per account.
func (s *Service) Ledger(ctx context.Context) (Balance, error) {
	b := Balance{Accounts: []AccountBalance{}, Unbalanced: []string{}}
	rows, err := s.db.Query(ctx, "SELECT account, SUM(amount_cents) FROM pay_ledger_entries GROUP BY account ORDER BY account")
	if err != nil {
		return b, err
	}
	defer rows.Close()
	for rows.Next() {
		var a AccountBalance
		if err := rows.Scan(&a.Account, &a.Cents); err != nil {
			return b, err
		}
		b.Accounts = append(b.Accounts, a)
		b.TotalCents += a.Cents
	}
	if err := rows.Err(); err != nil {
		return b, err
	}
	urows, err := s.db.Query(ctx, "SELECT tx_id FROM pay_ledger_entries GROUP BY tx_id HAVING SUM(amount_cents) <> 0 ORDER BY tx_id")
	if err != nil {
		return b, err
	}
	defer urows.Close()
	for urows.Next() {
		var id string
		if err := urows.Scan(&id); err != nil {
			return b, err
		}
		b.Unbalanced = append(b.Unbalanced, id)
	}
	if err := urows.Err(); err != nil {
		return b, err
	}
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM pay_ledger_tx").Scan(&b.Transactions); err != nil {
		return b, err
	}
	b.Balanced = b.TotalCents == 0 && len(b.Unbalanced) == 0
	return b, nil
}

// Handler serves the service's internal API: GET /v1/payments/{ride_id},
// GET /v1/ledger/balance and GET /healthz. None of it is routed by the
// gateway (riders see their receipt through views).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/payments/{ride_id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("ride_id")
		if id == "" || len(id) > maxRef {
			writeError(w, http.StatusBadRequest, "invalid_ride_id", "ride_id: want 1 to 200 bytes")
			return
		}
		p, err := s.Payment(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, "not_found", "no payment for ride "+id)
		case err != nil:
			s.log.ErrorContext(r.Context(), "payments: reading a payment", "ride", id, "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "database error")
		default:
			writeJSON(w, http.StatusOK, p)
		}
	})
	mux.HandleFunc("GET /v1/ledger/balance", func(w http.ResponseWriter, r *http.Request) {
		b, err := s.Ledger(r.Context())
		if err != nil {
			s.log.ErrorContext(r.Context(), "payments: summing the ledger", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "database error")
			return
		}
		writeJSON(w, http.StatusOK, b)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.db.PingContext(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, "database_down", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no route "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}
