package matching

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/geo"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

const matchTopic = "topic:" + hitch.TopicMatching

// handle applies one event of the queue through the inbox.
func (s *Service) handle(ctx context.Context, d *message.Delivery) error {
	kind := d.Headers["kind"]
	switch kind {
	case hitch.KindRideRequested, hitch.KindRideCancelled, hitch.KindRideFinished:
	default:
		return nil // not ours: ack and ignore
	}
	id := d.ID
	if id == "" {
		// No producer id (not from an outbox): the body is the best key.
		id = kind + ":" + d.Key + ":" + string(d.Body)
	}
	_, err := s.in.Process(ctx, id, func(tx *store.Tx) error {
		switch kind {
		case hitch.KindRideRequested:
			var ev hitch.RideRequested
			if err := hitch.Decode(kind, d.Body, &ev); err != nil {
				s.cfg.Logger.Warn("matching: dropping a bad event", "id", id, "err", err)
				return nil
			}
			return s.requested(ctx, tx, ev)
		default:
			var ev hitch.RideRef
			if err := hitch.Decode(kind, d.Body, &ev); err != nil {
				s.cfg.Logger.Warn("matching: dropping a bad event", "id", id, "err", err)
				return nil
			}
			state := stateCancelled
			if kind == hitch.KindRideFinished {
				state = stateFinished
			}
			return s.release(ctx, tx, ev, state)
		}
	})
	return err
}

// requested records a ride to match and tries at once.
func (s *Service) requested(ctx context.Context, tx *store.Tx, ev hitch.RideRequested) error {
	if ev.RideID == "" || ev.RiderID == "" || ev.From.Validate() != nil || ev.To.Validate() != nil {
		s.cfg.Logger.Warn("matching: dropping an invalid ride.requested", "ride", ev.RideID)
		return nil
	}
	now := s.now()
	at := ev.At
	if at.IsZero() || at.After(now) {
		at = now
	}
	deadline := at.Add(s.cfg.MatchTimeout).UnixMilli()
	res, err := tx.Exec(ctx, `INSERT INTO hm_rides (ride_id, rider_id, from_lat, from_lon, to_lat, to_lon, state, deadline_ms, next_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ride_id) DO NOTHING`,
		ev.RideID, ev.RiderID, ev.From.Lat, ev.From.Lon, ev.To.Lat, ev.To.Lon, stateSearching, deadline, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("matching: recording ride %q: %w", ev.RideID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // known already (a cancel came first, or a copy with a new id)
	}
	_, err = s.attempt(ctx, tx, ev.RideID)
	return err
}

// release ends a ride (cancelled or finished) and frees its seat if it had
// one. A ride not known yet is remembered in that state, so a request that
// arrives after its cancellation is not matched.
func (s *Service) release(ctx context.Context, tx *store.Tx, ev hitch.RideRef, state string) error {
	if ev.RideID == "" {
		return nil
	}
	var prev, driver string
	found, err := queryRow(ctx, tx, "SELECT state, driver_id FROM hm_rides WHERE ride_id = ?"+forUpdate(tx), []any{ev.RideID}, &prev, &driver)
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	if !found {
		_, err := tx.Exec(ctx, `INSERT INTO hm_rides (ride_id, rider_id, from_lat, from_lon, to_lat, to_lon, state, deadline_ms, next_ms, updated_ms)
			VALUES (?, ?, 0, 0, 0, 0, ?, 0, 0, ?) ON CONFLICT (ride_id) DO NOTHING`, ev.RideID, ev.RiderID, state, now)
		return err
	}
	if prev != stateSearching && prev != stateMatched {
		return nil // ended before
	}
	res, err := tx.Exec(ctx, "UPDATE hm_rides SET state = ?, updated_ms = ? WHERE ride_id = ? AND state = ?", state, now, ev.RideID, prev)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errors.New("matching: ride " + ev.RideID + " changed meanwhile; retrying")
	}
	if prev == stateMatched && driver != "" {
		if _, err := tx.Exec(ctx, "UPDATE hm_drivers SET reserved = reserved - 1 WHERE driver_id = ? AND reserved > 0", driver); err != nil {
			return err
		}
		return s.fill(ctx, tx, driver) // the freed seat may suit a waiting rider
	}
	return nil
}

// forUpdate locks the rows a SELECT reads on PostgreSQL (SQLite's
// transactions hold the database's write lock already).
func forUpdate(tx *store.Tx) string {
	if tx.Dialect() == store.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// queryRow scans the first row of q into dest; found is false without one.
func queryRow(ctx context.Context, tx *store.Tx, q string, args []any, dest ...any) (found bool, err error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	return true, rows.Close()
}

type candidate struct {
	driver  string
	version int64
	fit     geo.Fit
}

// attempt tries to match the ride now, in tx: it claims the ride (still
// searching), measures the drivers whose corridor box holds both ends, and
// reserves a seat of the best one still free. On success it writes
// match.found to the outbox. Without a candidate it schedules the next
// check, or gives up with match.none past the deadline.
func (s *Service) attempt(ctx context.Context, tx *store.Tx, rideID string) (matched bool, err error) {
	now := s.now().UnixMilli()
	var rider string
	var from, to geo.Point
	var deadline int64
	found, err := queryRow(ctx, tx, "SELECT rider_id, from_lat, from_lon, to_lat, to_lon, deadline_ms FROM hm_rides WHERE ride_id = ? AND state = ?"+forUpdate(tx),
		[]any{rideID, stateSearching}, &rider, &from.Lat, &from.Lon, &to.Lat, &to.Lon, &deadline)
	if err != nil || !found {
		return false, err // not found: matched, given up or ended by someone else
	}
	rows, err := tx.Query(ctx, `SELECT driver_id, version, from_lat, from_lon, to_lat, to_lon FROM hm_drivers
		WHERE ready = 1 AND reserved < seats
		AND min_lat <= ? AND max_lat >= ? AND min_lon <= ? AND max_lon >= ?
		AND min_lat <= ? AND max_lat >= ? AND min_lon <= ? AND max_lon >= ?`,
		from.Lat, from.Lat, from.Lon, from.Lon, to.Lat, to.Lat, to.Lon, to.Lon)
	if err != nil {
		return false, fmt.Errorf("matching: finding drivers for %q: %w", rideID, err)
	}
	var cands []candidate
	for rows.Next() {
		var c candidate
		var r geo.Route
		if err := rows.Scan(&c.driver, &c.version, &r.From.Lat, &r.From.Lon, &r.To.Lat, &r.To.Lon); err != nil {
			rows.Close()
			return false, err
		}
		if c.driver == rider {
			continue
		}
		c.fit = r.FitOf(from, to)
		if c.fit.Matches(s.cfg.CorridorMi) {
			cands = append(cands, c)
		}
	}
	if err := rows.Close(); err != nil {
		return false, err
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].fit.DetourMi != cands[j].fit.DetourMi {
			return cands[i].fit.DetourMi < cands[j].fit.DetourMi
		}
		return cands[i].driver < cands[j].driver
	})
	for _, c := range cands {
		res, err := tx.Exec(ctx, "UPDATE hm_drivers SET reserved = reserved + 1 WHERE driver_id = ? AND version = ? AND ready = 1 AND reserved < seats",
			c.driver, c.version)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // taken or changed meanwhile: the next best
		}
		ok, err := s.matched(ctx, tx, rideID, rider, c.driver, c.fit.DetourMi)
		if err == nil && !ok {
			err = fmt.Errorf("matching: ride %q stopped searching while locked", rideID)
		}
		return err == nil, err
	}
	if now >= deadline {
		if _, err := tx.Exec(ctx, "UPDATE hm_rides SET state = ?, updated_ms = ? WHERE ride_id = ?", stateNoDriver, now, rideID); err != nil {
			return false, err
		}
		ev, err := hitch.Event(hitch.KindMatchNone, "matching:none:"+rideID, rideID,
			hitch.RideRef{RideID: rideID, RiderID: rider, At: time.UnixMilli(now).UTC()})
		if err != nil {
			return false, err
		}
		return false, outbox.Add(ctx, tx, matchTopic, ev)
	}
	// Drivers who become free match waiting rides themselves (fill); this
	// re-check is the safety net, and the last one gives up at the deadline.
	next := min(now+s.cfg.RecheckEvery.Milliseconds(), deadline)
	_, err = tx.Exec(ctx, "UPDATE hm_rides SET next_ms = ? WHERE ride_id = ?", next, rideID)
	return false, err
}

// matched marks the ride matched to driver, if it is still searching,
// and adds match.found to the outbox, in tx; ok is false (and nothing
// written) when the ride stopped searching meanwhile. The caller reserves
// the seat in the same transaction.
func (s *Service) matched(ctx context.Context, tx *store.Tx, rideID, rider, driver string, detour float64) (ok bool, err error) {
	now := s.now()
	res, err := tx.Exec(ctx, "UPDATE hm_rides SET state = ?, driver_id = ?, detour_mi = ?, updated_ms = ? WHERE ride_id = ? AND state = ?",
		stateMatched, driver, detour, now.UnixMilli(), rideID, stateSearching)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil
	}
	ev, err := hitch.Event(hitch.KindMatchFound, "matching:found:"+rideID, rideID, hitch.MatchFound{
		RideRef:  hitch.RideRef{RideID: rideID, RiderID: rider, DriverID: driver, At: now.UTC()},
		DetourMi: detour,
	})
	if err != nil {
		return false, err
	}
	return true, outbox.Add(ctx, tx, matchTopic, ev)
}

// fill gives driver's free seats to the rides waiting for one, in tx: the
// searching rides whose both ends lie in the driver's corridor box, oldest
// request first, each if it fits the route. Called in the transaction that
// made seats free (an offer, a cancelled or finished ride), so a waiting
// rider is matched at once instead of at the next re-check.
func (s *Service) fill(ctx context.Context, tx *store.Tx, driver string) error {
	var ready, seats, taken int
	var r geo.Route
	var b geo.Box
	found, err := queryRow(ctx, tx, `SELECT ready, seats, reserved, from_lat, from_lon, to_lat, to_lon, min_lat, max_lat, min_lon, max_lon
		FROM hm_drivers WHERE driver_id = ?`+forUpdate(tx), []any{driver},
		&ready, &seats, &taken, &r.From.Lat, &r.From.Lon, &r.To.Lat, &r.To.Lon, &b.MinLat, &b.MaxLat, &b.MinLon, &b.MaxLon)
	if err != nil || !found || ready != 1 || taken >= seats {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT ride_id, rider_id, from_lat, from_lon, to_lat, to_lon FROM hm_rides
		WHERE state = ? AND from_lat >= ? AND from_lat <= ? AND from_lon >= ? AND from_lon <= ?
		AND to_lat >= ? AND to_lat <= ? AND to_lon >= ? AND to_lon <= ?
		ORDER BY deadline_ms, ride_id LIMIT 1000`,
		stateSearching, b.MinLat, b.MaxLat, b.MinLon, b.MaxLon, b.MinLat, b.MaxLat, b.MinLon, b.MaxLon)
	if err != nil {
		return fmt.Errorf("matching: finding rides for driver %q: %w", driver, err)
	}
	type waiting struct {
		ride, rider string
		detour      float64
	}
	var fits []waiting
	for rows.Next() && len(fits) < seats-taken {
		var w waiting
		var from, to geo.Point
		if err := rows.Scan(&w.ride, &w.rider, &from.Lat, &from.Lon, &to.Lat, &to.Lon); err != nil {
			rows.Close()
			return err
		}
		if w.rider == driver {
			continue
		}
		if f := r.FitOf(from, to); f.Matches(s.cfg.CorridorMi) {
			w.detour = f.DetourMi
			fits = append(fits, w)
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, w := range fits {
		// Claim the ride first: another transaction may have matched or
		// ended it since it was read (then it is skipped, seat kept).
		ok, err := s.matched(ctx, tx, w.ride, w.rider, driver, w.detour)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE hm_drivers SET reserved = reserved + 1 WHERE driver_id = ?", driver); err != nil {
			return err
		}
	}
	return nil
}

// recheckLoop tries the rides still searching whose next check is due,
// and now and then forgets what is older than the inbox retention.
func (s *Service) recheckLoop(ctx context.Context) {
	t := time.NewTicker(min(s.cfg.RecheckEvery, time.Second))
	defer t.Stop()
	lastClean := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if every := max(s.cfg.InboxRetention/100, time.Minute); time.Since(lastClean) > every {
			lastClean = time.Now()
			if err := s.clean(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("matching: cleaning up", "err", err)
			}
		}
		if err := s.recheck(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("matching: re-checking searching rides", "err", err)
		}
	}
}

// recheck runs one round over the due rides, each in its own transaction.
func (s *Service) recheck(ctx context.Context) error {
	rows, err := s.db.Query(ctx, "SELECT ride_id FROM hm_rides WHERE state = ? AND next_ms <= ? ORDER BY next_ms LIMIT 200",
		stateSearching, s.now().UnixMilli())
	if err != nil {
		return err
	}
	var due []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		due = append(due, id)
	}
	rows.Close()
	for _, id := range due {
		if err := s.db.InTx(ctx, func(tx *store.Tx) error {
			_, err := s.attempt(ctx, tx, id)
			return err
		}); err != nil {
			return fmt.Errorf("ride %q: %w", id, err)
		}
	}
	return nil
}

// clean deletes the inbox's ids older than the retention and the rides
// that ended longer ago than that (a copy of their events arriving later
// than the retention is not expected: see kit/inbox).
func (s *Service) clean(ctx context.Context) error {
	if _, err := s.in.Expire(ctx); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, "DELETE FROM hm_rides WHERE state IN (?, ?, ?) AND updated_ms < ?",
		stateNoDriver, stateCancelled, stateFinished, s.now().Add(-s.cfg.InboxRetention).UnixMilli())
	return err
}
