package cardprocessor

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Handler serves the processor's API (see the package doc).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", s.money(func(ctx context.Context, key string, body []byte) (int, any, bool, error) {
		req, err := ParseCharge(body)
		if err != nil {
			return 0, nil, false, err
		}
		c, replay, err := s.createCharge(ctx, key, req)
		return http.StatusCreated, c, replay, err
	}))
	mux.HandleFunc("POST /v1/refunds", s.money(func(ctx context.Context, key string, body []byte) (int, any, bool, error) {
		req, err := ParseRefund(body)
		if err != nil {
			return 0, nil, false, err
		}
		rf, replay, err := s.createRefund(ctx, key, req)
		return http.StatusCreated, rf, replay, err
	}))
	mux.HandleFunc("POST /v1/payouts", s.money(func(ctx context.Context, key string, body []byte) (int, any, bool, error) {
		req, err := ParsePayout(body)
		if err != nil {
			return 0, nil, false, err
		}
		p, replay, err := s.createPayout(ctx, key, req)
		return http.StatusCreated, p, replay, err
	}))
	mux.HandleFunc("GET /v1/charges/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, err := scanCharge(s.db.QueryRow(r.Context(), "SELECT "+chargeCols+" FROM cp_charges WHERE id = ?", r.PathValue("id")))
		s.answer(w, c, "charge", r.PathValue("id"), err)
	})
	mux.HandleFunc("GET /v1/refunds/{id}", func(w http.ResponseWriter, r *http.Request) {
		var rf Refund
		err := s.db.QueryRow(r.Context(), "SELECT id, idempotency_key, charge_id, amount_cents, created_ms FROM cp_refunds WHERE id = ?",
			r.PathValue("id")).Scan(&rf.ID, &rf.IdempotencyKey, &rf.ChargeID, &rf.AmountCents, &rf.Created)
		s.answer(w, rf, "refund", r.PathValue("id"), err)
	})
	mux.HandleFunc("GET /v1/payouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		var p Payout
		err := s.db.QueryRow(r.Context(), `SELECT id, idempotency_key, status, failure_code, driver, amount_cents, currency, created_ms
  FROM cp_payouts WHERE id = ?`, r.PathValue("id")).
			Scan(&p.ID, &p.IdempotencyKey, &p.Status, &p.FailureCode, &p.Driver, &p.AmountCents, &p.Currency, &p.Created)
		s.answer(w, p, "payout", r.PathValue("id"), err)
	})
	mux.HandleFunc("GET /v1/summary", func(w http.ResponseWriter, r *http.Request) {
		sum, err := s.Summarize(r.Context())
		s.answer(w, sum, "", "", err)
	})
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.faults.get())
	})
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			writeBodyError(w, err)
			return
		}
		f, err := ParseFaults(body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_faults", err.Error())
			return
		}
		s.faults.set(f)
		writeJSON(w, http.StatusOK, s.faults.get())
	})
	mux.HandleFunc("DELETE /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		s.faults.set(Faults{})
		writeJSON(w, http.StatusOK, s.faults.get())
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

// moneyFunc does a money-moving call: status and body to answer, whether
// it was a replay of the key, or an error.
type moneyFunc func(ctx context.Context, key string, body []byte) (status int, v any, replay bool, err error)

// money wraps a money-moving call with the key check, the injected faults
// and the error mapping.
func (s *Service) money(fn moneyFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.stats.requests.Add(1)
		key := r.Header.Get("Idempotency-Key")
		if err := CheckKey(key); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_idempotency_key", err.Error())
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			writeBodyError(w, err)
			return
		}
		f, what, after := s.faults.plan()
		if f.Latency > 0 && !sleep(r.Context(), time.Duration(f.Latency)) {
			return
		}
		if what != faultNone && !after {
			s.strike(w, r, what, f)
			return
		}
		status, v, replay, err := fn(r.Context(), key, body)
		if err != nil {
			s.writeOpError(w, err)
			return
		}
		if replay {
			s.stats.replays.Add(1)
		}
		if what != faultNone {
			// The work is done and committed; the caller hears otherwise.
			s.strike(w, r, what, f)
			return
		}
		if replay {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		writeJSON(w, status, v)
	}
}

// strike answers a call with its injected fault.
func (s *Service) strike(w http.ResponseWriter, r *http.Request, what fault, f Faults) {
	if what == faultHang {
		s.stats.hung.Add(1)
		sleep(r.Context(), time.Duration(f.MaxHang))
		writeError(w, http.StatusGatewayTimeout, "injected_timeout", "injected fault: the processor hung")
		return
	}
	s.stats.failed.Add(1)
	writeError(w, http.StatusInternalServerError, "injected_failure", "injected fault: internal error")
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Service) writeOpError(w http.ResponseWriter, err error) {
	var fe *fieldError
	var ce *conflictError
	var nf *notFoundError
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, errKeyReuse):
		writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reuse", err.Error())
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, ce.code, ce.msg)
	case errors.As(err, &nf):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	default:
		s.log.Error("cardprocessor: database", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "database error")
	}
}

func (s *Service) answer(w http.ResponseWriter, v any, what, id string, err error) {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		writeError(w, http.StatusNotFound, "not_found", what+" "+id+" not found")
	case err != nil:
		s.writeOpError(w, err)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

func writeBodyError(w http.ResponseWriter, err error) {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body over the limit of "+itoa(mb.Limit)+" bytes")
		return
	}
	writeError(w, http.StatusBadRequest, "invalid_request", "reading the body: "+err.Error())
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}
