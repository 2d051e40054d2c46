package matching

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/geo"
	"github.com/switchyard/switchyard/kit/store"
)

// Handler serves POST /v1/drivers/me/availability and GET /healthz.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/drivers/me/availability", s.serveAvailability)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
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

// Availability is the body of POST /v1/drivers/me/availability and its
// answer (with Reserved: the seats taken by matched rides).
type Availability struct {
	Ready    bool         `json:"ready"`
	From     *hitch.Point `json:"from,omitempty"`
	To       *hitch.Point `json:"to,omitempty"`
	Seats    int          `json:"seats"`
	Reserved int          `json:"reserved"`
}

var errSeatsReserved = errors.New("seats reserved")

func (s *Service) serveAvailability(w http.ResponseWriter, r *http.Request) {
	c, ok := hitch.CallerOf(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "no authenticated user: the gateway sets "+hitch.HeaderUser+" and "+hitch.HeaderScopes)
		return
	}
	if c.Role != hitch.RoleDriver {
		writeError(w, http.StatusForbidden, "forbidden", "only drivers offer seats; the caller is a "+c.Role)
		return
	}
	var body struct {
		Ready *bool        `json:"ready"`
		From  *hitch.Point `json:"from"`
		To    *hitch.Point `json:"to"`
		Seats *int         `json:"seats"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_json", `body: want {"ready": bool, "from": {"lat", "lon"}, "to": {"lat", "lon"}, "seats": int}: `+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad_json", "body: want one JSON object, found more after it")
		return
	}
	if body.Ready == nil {
		writeError(w, http.StatusBadRequest, "missing_field", "ready: required (true offers seats, false withdraws)")
		return
	}
	now := s.now().UnixMilli()
	if !*body.Ready {
		var a Availability
		err := s.db.InTx(r.Context(), func(tx *store.Tx) error {
			if _, err := tx.Exec(r.Context(), "UPDATE hm_drivers SET ready = 0, version = version + 1, updated_ms = ? WHERE driver_id = ?", now, c.ID); err != nil {
				return err
			}
			var fail error
			a, fail = readAvailability(r.Context(), tx, c.ID)
			return fail
		})
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "withdrawing: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, a)
		return
	}
	switch {
	case body.From == nil:
		writeError(w, http.StatusBadRequest, "missing_field", "from: required when ready is true")
		return
	case body.To == nil:
		writeError(w, http.StatusBadRequest, "missing_field", "to: required when ready is true")
		return
	case body.Seats == nil:
		writeError(w, http.StatusBadRequest, "missing_field", "seats: required when ready is true")
		return
	}
	if err := body.From.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_from", "from: "+err.Error())
		return
	}
	if err := body.To.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_to", "to: "+err.Error())
		return
	}
	if n := *body.Seats; n < 1 || n > s.cfg.MaxSeats {
		writeError(w, http.StatusBadRequest, "invalid_seats", fmt.Sprintf("seats: want 1 to %d, got %d", s.cfg.MaxSeats, n))
		return
	}
	route := geo.Route{From: geo.Point{Lat: body.From.Lat, Lon: body.From.Lon}, To: geo.Point{Lat: body.To.Lat, Lon: body.To.Lon}}
	if l := route.LengthMi(); l < s.cfg.MinRouteMi || l > s.cfg.MaxRouteMi {
		writeError(w, http.StatusBadRequest, "invalid_to",
			fmt.Sprintf("to: the route from `from` is %.3f mi; want %v to %v mi", l, s.cfg.MinRouteMi, s.cfg.MaxRouteMi))
		return
	}
	box := route.Box(s.cfg.CorridorMi)
	var a Availability
	err := s.db.InTx(r.Context(), func(tx *store.Tx) error {
		res, err := tx.Exec(r.Context(), `INSERT INTO hm_drivers (driver_id, ready, from_lat, from_lon, to_lat, to_lon,
				min_lat, max_lat, min_lon, max_lon, seats, reserved, version, updated_ms)
			VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1, ?)
			ON CONFLICT (driver_id) DO UPDATE SET ready = 1, from_lat = excluded.from_lat, from_lon = excluded.from_lon,
				to_lat = excluded.to_lat, to_lon = excluded.to_lon, min_lat = excluded.min_lat, max_lat = excluded.max_lat,
				min_lon = excluded.min_lon, max_lon = excluded.max_lon, seats = excluded.seats,
				version = hm_drivers.version + 1, updated_ms = excluded.updated_ms
			WHERE hm_drivers.reserved <= excluded.seats`,
			c.ID, route.From.Lat, route.From.Lon, route.To.Lat, route.To.Lon,
			box.MinLat, box.MaxLat, box.MinLon, box.MaxLon, *body.Seats, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errSeatsReserved
		}
		// Seats on a new route may suit rides already waiting: give them
		// now, in this transaction, rather than at their next re-check.
		if err := s.fill(r.Context(), tx, c.ID); err != nil {
			return err
		}
		a, err = readAvailability(r.Context(), tx, c.ID)
		return err
	})
	switch {
	case errors.Is(err, errSeatsReserved):
		cur, _ := s.current(r.Context(), c.ID)
		writeError(w, http.StatusConflict, "seats_reserved",
			fmt.Sprintf("seats: %d are reserved by matched rides; offer at least that many", cur.Reserved))
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "unavailable", "offering seats: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, a)
	}
}

func (s *Service) current(ctx context.Context, driver string) (Availability, error) {
	var a Availability
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		a, err = readAvailability(ctx, tx, driver)
		return err
	})
	return a, err
}

func readAvailability(ctx context.Context, tx *store.Tx, driver string) (Availability, error) {
	var a Availability
	var ready int
	var from, to hitch.Point
	found, err := queryRow(ctx, tx, "SELECT ready, from_lat, from_lon, to_lat, to_lon, seats, reserved FROM hm_drivers WHERE driver_id = ?",
		[]any{driver}, &ready, &from.Lat, &from.Lon, &to.Lat, &to.Lon, &a.Seats, &a.Reserved)
	if err != nil || !found {
		return a, err
	}
	a.Ready = ready == 1
	a.From, a.To = &from, &to
	return a, nil
}
