package rides

import (
	"fmt"
	"math"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/eventstore"
)

// Ride statuses, as GET /v1/rides/{id} shows them.
const (
	Searching     = "searching"
	Matched       = "matched"
	Started       = "started"
	Finished      = "finished"
	Paid          = "paid"
	PaymentFailed = "payment_failed"
	NoDriver      = "no_driver"
	Cancelled     = "cancelled"
)

// active reports whether a ride in status holds its rider (a rider has
// at most one active ride).
func active(status string) bool {
	return status == Searching || status == Matched || status == Started
}

// Ride is a ride's state: the fold of its stream.
type Ride struct {
	ID          string      `json:"id"`
	Status      string      `json:"status"`
	RiderID     string      `json:"rider_id"`
	DriverID    string      `json:"driver_id"`
	From        hitch.Point `json:"from"`
	To          hitch.Point `json:"to"`
	FareCents   int64       `json:"fare_cents"`
	FeeCents    int64       `json:"fee_cents"`
	DistanceMi  float64     `json:"distance_mi"`
	CancelledBy string      `json:"cancelled_by,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	MatchedAt   time.Time   `json:"matched_at"`
	StartedAt   time.Time   `json:"started_at"`
	FinishedAt  time.Time   `json:"finished_at"`
	ClosedAt    time.Time   `json:"closed_at"` // paid, payment_failed, no_driver or cancelled
	UpdatedAt   time.Time   `json:"updated_at"`
	Version     int64       `json:"version"` // stream version the state includes
}

// transitions: which status each event kind may follow.
var transitions = map[string][]string{
	hitch.KindRideRequested: {""},
	hitch.KindRideMatched:   {Searching},
	hitch.KindRideNoDriver:  {Searching},
	hitch.KindRideStarted:   {Matched},
	hitch.KindRideFinished:  {Started},
	hitch.KindRideCancelled: {Searching, Matched},
	hitch.KindRidePaid:      {Finished},
	hitch.KindRidePayFailed: {Finished, Paid},
}

func allowed(kind, from string) bool {
	for _, s := range transitions[kind] {
		if s == from {
			return true
		}
	}
	return false
}

// apply folds one event of the ride's stream into its state. It refuses
// an event its state does not allow, so Record cannot store one.
func apply(r Ride, e eventstore.Event) (Ride, error) {
	if _, ok := transitions[e.Type]; !ok {
		return r, fmt.Errorf("ride %s: unknown event type %q", r.ID, e.Type)
	}
	if !allowed(e.Type, r.Status) {
		return r, fmt.Errorf("ride %s: %s not allowed in status %q", r.ID, e.Type, r.Status)
	}
	var ref hitch.RideRef
	switch e.Type {
	case hitch.KindRideRequested:
		var p hitch.RideRequested
		if err := e.Decode(&p); err != nil {
			return r, err
		}
		ref = p.RideRef
		r.ID, r.RiderID, r.From, r.To, r.Status, r.CreatedAt = p.RideID, p.RiderID, p.From, p.To, Searching, p.At
	case hitch.KindRideMatched:
		var p hitch.RideMatched
		if err := e.Decode(&p); err != nil {
			return r, err
		}
		ref = p.RideRef
		r.DriverID, r.Status, r.MatchedAt = p.DriverID, Matched, p.At
	case hitch.KindRideFinished:
		var p hitch.RideFinished
		if err := e.Decode(&p); err != nil {
			return r, err
		}
		ref = p.RideRef
		r.Status, r.FinishedAt = Finished, p.At
		r.FareCents, r.FeeCents, r.DistanceMi = p.FareCents, p.FeeCents, p.DistanceMi
	case hitch.KindRideCancelled:
		var p hitch.RideCancelled
		if err := e.Decode(&p); err != nil {
			return r, err
		}
		ref = p.RideRef
		r.Status, r.CancelledBy, r.ClosedAt = Cancelled, p.By, p.At
	default: // payloads that are a RideRef
		if err := e.Decode(&ref); err != nil {
			return r, err
		}
		switch e.Type {
		case hitch.KindRideNoDriver:
			r.Status, r.ClosedAt = NoDriver, ref.At
		case hitch.KindRideStarted:
			r.Status, r.StartedAt = Started, ref.At
		case hitch.KindRidePaid:
			r.Status, r.ClosedAt = Paid, ref.At
		case hitch.KindRidePayFailed:
			r.Status, r.ClosedAt = PaymentFailed, ref.At
		}
	}
	if ref.RideID != r.ID {
		return r, fmt.Errorf("ride %s: %s names ride %q", r.ID, e.Type, ref.RideID)
	}
	r.UpdatedAt = ref.At
	r.Version = e.Version
	return r, nil
}

// distanceMi is the great-circle distance between a and b in miles
// (haversine on a sphere of the Earth's mean radius).
func distanceMi(a, b hitch.Point) float64 {
	const earthMi = 3958.7613
	rad := math.Pi / 180
	dLat := (b.Lat - a.Lat) * rad
	dLon := (b.Lon - a.Lon) * rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthMi * math.Asin(math.Min(1, math.Sqrt(h)))
}
