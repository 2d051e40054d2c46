package rides

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
)

// HeaderIdempotencyKey makes POST /v1/rides safe to retry: the same key
// from the same rider answers with the ride the first request created.
const HeaderIdempotencyKey = "Idempotency-Key"

// Handler serves the public API (see the package doc and docs/hitch.md).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/rides", s.serveCreate)
	mux.HandleFunc("GET /v1/rides/{id}", s.serveGet)
	mux.HandleFunc("POST /v1/rides/{id}/start", s.serveCommand(hitch.KindRideStarted))
	mux.HandleFunc("POST /v1/rides/{id}/finish", s.serveCommand(hitch.KindRideFinished))
	mux.HandleFunc("POST /v1/rides/{id}/cancel", s.serveCommand(hitch.KindRideCancelled))
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

// caller returns the authenticated caller, or answers 401.
func caller(w http.ResponseWriter, r *http.Request) (hitch.Caller, bool) {
	c, ok := hitch.CallerOf(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "no authenticated user: the gateway sets "+hitch.HeaderUser+" and "+hitch.HeaderScopes)
	}
	return c, ok
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

// rideJSON is a ride as the API shows it: money in integer cents, times
// RFC 3339 (omitted until they happen).
type rideJSON struct {
	ID          string      `json:"id"`
	Status      string      `json:"status"`
	RiderID     string      `json:"rider_id"`
	DriverID    string      `json:"driver_id"`
	From        hitch.Point `json:"from"`
	To          hitch.Point `json:"to"`
	Fare        int64       `json:"fare"`
	Fee         int64       `json:"fee"`
	DistanceMi  float64     `json:"distance_mi"`
	CancelledBy string      `json:"cancelled_by,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	MatchedAt   *time.Time  `json:"matched_at,omitempty"`
	StartedAt   *time.Time  `json:"started_at,omitempty"`
	FinishedAt  *time.Time  `json:"finished_at,omitempty"`
	ClosedAt    *time.Time  `json:"closed_at,omitempty"`
	UpdatedAt   time.Time   `json:"updated_at"`
	Version     int64       `json:"version"`
}

func opt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toJSON(r Ride) rideJSON {
	return rideJSON{ID: r.ID, Status: r.Status, RiderID: r.RiderID, DriverID: r.DriverID, From: r.From, To: r.To,
		Fare: r.FareCents, Fee: r.FeeCents, DistanceMi: r.DistanceMi, CancelledBy: r.CancelledBy,
		CreatedAt: r.CreatedAt, MatchedAt: opt(r.MatchedAt), StartedAt: opt(r.StartedAt), FinishedAt: opt(r.FinishedAt),
		ClosedAt: opt(r.ClosedAt), UpdatedAt: r.UpdatedAt, Version: r.Version}
}

// party reports whether c may see ride r: its rider, or its driver.
func party(c hitch.Caller, r Ride) bool {
	return (c.Role == hitch.RoleRider && c.ID == r.RiderID) || (c.Role == hitch.RoleDriver && r.DriverID != "" && c.ID == r.DriverID)
}

func (s *Service) serveGet(w http.ResponseWriter, r *http.Request) {
	c, ok := caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !cleanID(id) {
		s.writeErr(w, ErrNotFound) // no ride has such an id; the database would refuse it
		return
	}
	ride, err := s.Get(r.Context(), id)
	if err == nil && !party(c, ride) {
		err = ErrNotFound // someone else's ride: do not say it exists
	}
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(ride))
}

func (s *Service) writeErr(w http.ResponseWriter, err error) {
	var ce *conflictError
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "ride_not_found", "no such ride")
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, "ride_state_conflict", ce.msg)
	case errors.Is(err, errActiveRide):
		writeError(w, http.StatusConflict, "active_ride_exists", "the rider already has a ride searching, matched or started")
	default:
		s.log.Error("rides: request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the ride could not be changed; try again")
	}
}

// createRequest is POST /v1/rides's body.
type createRequest struct {
	From *hitch.Point `json:"from"`
	To   *hitch.Point `json:"to"`
}

// MinRideMi is the shortest ride a rider may request (matching's shortest
// driver route is 0.1 mi).
const MinRideMi = 0.1

// decodeCreate reads and checks a create request; its error names the
// bad field.
func decodeCreate(body []byte) (hitch.Point, hitch.Point, error) {
	var req createRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return hitch.Point{}, hitch.Point{}, fmt.Errorf("body: want JSON {\"from\": {\"lat\", \"lon\"}, \"to\": {\"lat\", \"lon\"}}: %v", err)
	}
	if dec.More() {
		return hitch.Point{}, hitch.Point{}, errors.New("body: trailing data after the JSON object")
	}
	if req.From == nil {
		return hitch.Point{}, hitch.Point{}, errors.New("from: missing")
	}
	if req.To == nil {
		return hitch.Point{}, hitch.Point{}, errors.New("to: missing")
	}
	if err := req.From.Validate(); err != nil {
		return hitch.Point{}, hitch.Point{}, fmt.Errorf("from: %v", err)
	}
	if err := req.To.Validate(); err != nil {
		return hitch.Point{}, hitch.Point{}, fmt.Errorf("to: %v", err)
	}
	// A ride nobody could be matched with (the matching rule needs a
	// trip along a driver's route) would only wait for its timeout.
	if d := distanceMi(*req.From, *req.To); d < MinRideMi {
		return hitch.Point{}, hitch.Point{}, fmt.Errorf("to: %.3f mi from the pickup: want a ride of at least %.1f mi", d, MinRideMi)
	}
	return *req.From, *req.To, nil
}

// readBody reads a bounded body, answering 413 or 400 itself.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body: larger than %d bytes", s.cfg.MaxBodyBytes))
		} else {
			writeError(w, http.StatusBadRequest, "bad_body", "body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

func validKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Service) serveCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := caller(w, r)
	if !ok {
		return
	}
	if c.Role != hitch.RoleRider {
		writeError(w, http.StatusForbidden, "wrong_role", "only riders request rides")
		return
	}
	key := r.Header.Get(HeaderIdempotencyKey)
	if _, sent := r.Header[http.CanonicalHeaderKey(HeaderIdempotencyKey)]; sent && !validKey(key) {
		writeError(w, http.StatusBadRequest, "bad_idempotency_key", HeaderIdempotencyKey+": want 1..255 printable ASCII characters")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	from, to, err := decodeCreate(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	sum := sha256.Sum256(body)
	res, err := s.Request(r.Context(), RequestInput{RiderID: c.ID, From: from, To: to, IdempotencyKey: key, BodyHash: hex.EncodeToString(sum[:])})
	if errors.Is(err, errKeyReused) {
		writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused", HeaderIdempotencyKey+": already used for a different request body")
		return
	}
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"ride_id": res.RideID, "status": Searching})
}

// RequestInput is a rider's request for a ride.
type RequestInput struct {
	RiderID        string
	From, To       hitch.Point
	IdempotencyKey string // optional
	BodyHash       string // what the key was used for
}

// RequestResult names the ride a request created, or found for its key.
type RequestResult struct {
	RideID   string
	Replayed bool // the key was seen before: no new ride
}

var errKeyReused = errors.New("idempotency key reused with another request")

// Request creates a searching ride for a rider who has no active one,
// publishing ride.requested. With an idempotency key already used by the
// same rider it returns that request's ride instead.
func (s *Service) Request(ctx context.Context, in RequestInput) (RequestResult, error) {
	id := eventstore.NewID()
	now := time.Now().UTC().Truncate(time.Millisecond)
	ev, err := eventstore.NewEvent(hitch.KindRideRequested, hitch.RideRequested{
		RideRef: hitch.RideRef{RideID: id, RiderID: in.RiderID, At: now}, From: in.From, To: in.To})
	if err != nil {
		return RequestResult{}, err
	}
	ev.ID = eventstore.NewID()
	var res RequestResult
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		res = RequestResult{RideID: id}
		if in.IdempotencyKey != "" {
			done, err := s.claimKey(ctx, tx, in, &res)
			if err != nil || done {
				return err
			}
		}
		root := &eventstore.Root[Ride]{ID: id}
		if err := s.agg.RecordEvent(root, ev); err != nil {
			return err
		}
		return s.commitTx(ctx, tx, root, change{})
	})
	return res, err
}

// claimKey records the rider's idempotency key for this request, or
// finds the ride an earlier request with it created (done).
func (s *Service) claimKey(ctx context.Context, tx *store.Tx, in RequestInput, res *RequestResult) (done bool, err error) {
	q := `INSERT INTO ride_requests (rider_id, idem_key, body_hash, ride_id, created_ms) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (rider_id, idem_key) DO NOTHING`
	r, err := tx.Exec(ctx, q, in.RiderID, in.IdempotencyKey, in.BodyHash, res.RideID, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("rides: idempotency key: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil || n == 1 {
		return false, err
	}
	var hash, ride string
	err = tx.QueryRow(ctx, "SELECT body_hash, ride_id FROM ride_requests WHERE rider_id = ? AND idem_key = ?", in.RiderID, in.IdempotencyKey).Scan(&hash, &ride)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("rides: idempotency key %q vanished", in.IdempotencyKey)
	}
	if err != nil {
		return false, err
	}
	if hash != in.BodyHash {
		return true, errKeyReused
	}
	res.RideID, res.Replayed = ride, true
	return true, nil
}

func (s *Service) serveCommand(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := caller(w, r)
		if !ok {
			return
		}
		if kind != hitch.KindRideCancelled && c.Role != hitch.RoleDriver {
			writeError(w, http.StatusForbidden, "wrong_role", "only the ride's driver starts and finishes it")
			return
		}
		// Commands take no body; a client may send an empty JSON object.
		body, ok := s.readBody(w, r)
		if !ok {
			return
		}
		if t := strings.TrimSpace(string(body)); t != "" && t != "{}" {
			writeError(w, http.StatusBadRequest, "bad_request", "body: want none or {}")
			return
		}
		id := r.PathValue("id")
		if !cleanID(id) {
			s.writeErr(w, ErrNotFound)
			return
		}
		var ride Ride
		var err error
		switch kind {
		case hitch.KindRideStarted:
			ride, err = s.Start(r.Context(), id, c)
		case hitch.KindRideFinished:
			ride, err = s.Finish(r.Context(), id, c)
		default:
			ride, err = s.Cancel(r.Context(), id, c)
		}
		if err != nil {
			s.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, toJSON(ride))
	}
}
