package rides

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/switchyard/switchyard/hitch"
)

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func ref(r Ride, at time.Time) hitch.RideRef {
	return hitch.RideRef{RideID: r.ID, RiderID: r.RiderID, DriverID: r.DriverID, At: at}
}

// Start starts ride id for its matched driver c. Starting a ride already
// started is answered with the ride (a retried request).
func (s *Service) Start(ctx context.Context, id string, c hitch.Caller) (Ride, error) {
	return s.mutate(ctx, id, s.plainTx, func(r Ride) (change, error) {
		var ch change
		if r.ID == "" || c.Role != hitch.RoleDriver || r.DriverID != c.ID {
			return ch, ErrNotFound
		}
		switch r.Status {
		case Started:
			return ch, nil
		case Matched:
			return ch, ch.record(hitch.KindRideStarted, ref(r, now()))
		}
		return ch, &conflictError{fmt.Sprintf("ride %s is %s: only a matched ride can start", r.ID, r.Status)}
	})
}

// Finish finishes ride id for its driver c, pricing it by the
// great-circle distance from its pickup to its drop-off. Finishing a
// ride already finished (or paid) is answered with the ride.
func (s *Service) Finish(ctx context.Context, id string, c hitch.Caller) (Ride, error) {
	return s.mutate(ctx, id, s.plainTx, func(r Ride) (change, error) {
		var ch change
		if r.ID == "" || c.Role != hitch.RoleDriver || r.DriverID != c.ID {
			return ch, ErrNotFound
		}
		switch r.Status {
		case Finished, Paid, PaymentFailed:
			return ch, nil
		case Started:
			// Priced from the distance as shown (to the thousandth of a
			// mile), so anyone can recompute the fare from the event.
			d := math.Round(distanceMi(r.From, r.To)*1000) / 1000
			fare, fee := s.cfg.Fares.Fare(d)
			return ch, ch.record(hitch.KindRideFinished, hitch.RideFinished{RideRef: ref(r, now()),
				DistanceMi: d, FareCents: fare, FeeCents: fee})
		}
		return ch, &conflictError{fmt.Sprintf("ride %s is %s: only a started ride can finish", r.ID, r.Status)}
	})
}

// Cancel cancels ride id for its rider, or its matched driver, before
// it starts. Cancelling a cancelled ride is answered with the ride.
func (s *Service) Cancel(ctx context.Context, id string, c hitch.Caller) (Ride, error) {
	return s.mutate(ctx, id, s.plainTx, func(r Ride) (change, error) {
		var ch change
		if r.ID == "" || !party(c, r) {
			return ch, ErrNotFound
		}
		switch r.Status {
		case Cancelled:
			return ch, nil
		case Searching, Matched:
			return ch, ch.record(hitch.KindRideCancelled, hitch.RideCancelled{RideRef: ref(r, now()), By: c.Role})
		}
		return ch, &conflictError{fmt.Sprintf("ride %s is %s: a ride can be cancelled only before it starts", r.ID, r.Status)}
	})
}
