package views

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/hitch"
)

// Handler serves GET /v1/rides/{id}/receipt (the ride's rider),
// GET /v1/drivers/me/earnings (a driver) and GET /healthz.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/rides/{id}/receipt", s.serveReceipt)
	mux.HandleFunc("GET /v1/drivers/me/earnings", s.serveEarnings)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	// One user's data: never kept by a browser or an intermediary.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

func (s *Service) caller(w http.ResponseWriter, r *http.Request, role string) (hitch.Caller, bool) {
	c, ok := hitch.CallerOf(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "no authenticated user: the gateway sets "+hitch.HeaderUser+" and "+hitch.HeaderScopes)
		return c, false
	}
	if c.Role != role {
		writeError(w, http.StatusForbidden, "wrong_role", "only a "+role+" may read this")
		return c, false
	}
	return c, true
}

func (s *Service) serveReceipt(w http.ResponseWriter, r *http.Request) {
	c, ok := s.caller(w, r, hitch.RoleRider)
	if !ok {
		return
	}
	id := r.PathValue("id")
	rec, err := Receipt{}, ErrNotFound
	if cleanText(id) && len(id) <= 256 { // else no ride has it, and the database would refuse it
		rec, err = s.Receipt(r.Context(), id)
	}
	if err == nil && rec.RiderID != c.ID {
		err = ErrNotFound // someone else's ride: do not say it exists
	}
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "receipt_not_found", "no receipt for that ride (yet: views follow the ride's events)")
		return
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "views: receipt", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the receipt could not be read; try again")
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Service) serveEarnings(w http.ResponseWriter, r *http.Request) {
	c, ok := s.caller(w, r, hitch.RoleDriver)
	if !ok {
		return
	}
	e, err := s.Earnings(r.Context(), c.ID)
	if err != nil {
		s.log.ErrorContext(r.Context(), "views: earnings", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the earnings could not be read; try again")
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Service) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var one int
	if err := s.db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		writeError(w, http.StatusServiceUnavailable, "database_down", "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
