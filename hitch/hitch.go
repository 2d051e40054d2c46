// Package hitch holds what Hitch's services share and nothing else: the
// events they exchange through the broker (names, payloads, where they are
// published and who reads them), the identity the gateway forwards, and the
// fare rules. Each service lives in its own package under hitch/ and owns its
// own database; they meet only here, on the wire.
//
// Hitch is the notes' running example: "Allow people to join drivers on the
// same route, who are willing to take passengers for a fee."
//
// # Event flow
//
// Every event is a broker.Message whose Headers["kind"] is the event kind
// (KindRideRequested ...), whose ID is the event id (the broker's Msg-Id:
// a re-relay by the outbox is dropped by the queue's dedup window, and the
// consumer's inbox drops anything older) and whose Key is the ride id (per
// ride order). The body is the JSON payload named beside the kind.
//
// Producers publish through their transactional outbox to one topic each;
// every consuming service reads a durable queue of its own bound to that
// topic (Bindings), so each gets every event once its transaction committed,
// even across crashes. Notifications, which only push to connected clients,
// subscribe to the topics live (at most once: a missed push is recovered by
// reading the ride).
package hitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// Services, by the name each registers in discovery and the gateway's
// upstream that routes to it.
const (
	Identity      = "identity"      // registration, login, JWTs, JWKS
	Location      = "location"      // driver positions, nearby search
	Matching      = "matching"      // driver availability, rider-to-driver matching
	Rides         = "rides"         // the ride lifecycle, event-sourced
	Payments      = "payments"      // charge, fee, payout saga; ledger
	CardProcessor = "cardprocessor" // simulated external card processor
	Notifications = "notifications" // SSE and WebSocket pushes
	Views         = "views"         // read models: receipts, driver earnings
)

// Topics: one per producing service.
const (
	TopicRides     = "hitch.rides"     // produced by rides
	TopicMatching  = "hitch.matching"  // produced by matching
	TopicPayments  = "hitch.payments"  // produced by payments
	TopicLocations = "hitch.locations" // produced by location (live only, at most once)
)

// Bindings lists, per topic, the durable queues bound to it: one per
// consuming service, named CONSUMER.TOPIC-SUFFIX. The broker config that
// `hitch up` writes declares exactly these.
var Bindings = map[string][]string{
	TopicRides:     {QueueMatchingRides, QueuePaymentsRides, QueueViewsRides},
	TopicMatching:  {QueueRidesMatching},
	TopicPayments:  {QueueRidesPayments, QueueViewsPayments},
	TopicLocations: nil,
}

// Queues, each read by one service (all its replicas share it).
const (
	QueueMatchingRides = "matching.rides" // matching reads ride.requested, ride.cancelled, ride.finished
	QueuePaymentsRides = "payments.rides" // payments reads ride.finished
	QueueViewsRides    = "views.rides"    // views reads ride.* for receipts and earnings
	QueueRidesMatching = "rides.matching" // rides reads match.found, match.none
	QueueRidesPayments = "rides.payments" // rides reads payment.charged, payment.failed
	QueueViewsPayments = "views.payments" // views reads payment.*, payout.paid
)

// Event kinds (Headers["kind"]) and, in the comment, their payload type.
const (
	KindRideRequested  = "ride.requested"      // RideRequested, by rides
	KindRideMatched    = "ride.matched"        // RideMatched, by rides
	KindRideNoDriver   = "ride.no_driver"      // RideRef, by rides
	KindRideStarted    = "ride.started"        // RideRef, by rides
	KindRideFinished   = "ride.finished"       // RideFinished, by rides
	KindRideCancelled  = "ride.cancelled"      // RideCancelled, by rides
	KindRidePaid       = "ride.paid"           // RideRef, by rides
	KindRidePayFailed  = "ride.payment_failed" // RideRef, by rides
	KindMatchFound     = "match.found"         // MatchFound, by matching
	KindMatchNone      = "match.none"          // RideRef, by matching
	KindPaymentCharged = "payment.charged"     // PaymentCharged, by payments
	KindPaymentFailed  = "payment.failed"      // PaymentFailed, by payments
	KindPayoutPaid     = "payout.paid"         // PayoutPaid, by payments
	KindLocation       = "driver.location"     // DriverLocation, by location (live topic)
)

// Point is a position in degrees (WGS 84).
type Point struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Validate reports a position that is not on Earth.
func (p Point) Validate() error {
	if math.IsNaN(p.Lat) || math.IsNaN(p.Lon) || p.Lat < -90 || p.Lat > 90 || p.Lon < -180 || p.Lon > 180 {
		return fmt.Errorf("position (%v, %v): want lat in [-90, 90] and lon in [-180, 180]", p.Lat, p.Lon)
	}
	return nil
}

// RideRef names a ride and its parties; the payload of events that say
// nothing more.
type RideRef struct {
	RideID   string    `json:"ride_id"`
	RiderID  string    `json:"rider_id"`
	DriverID string    `json:"driver_id,omitempty"`
	At       time.Time `json:"at"`
}

// RideRequested: a rider looks for a driver from From to To.
type RideRequested struct {
	RideRef
	From Point `json:"from"`
	To   Point `json:"to"`
}

// MatchFound: matching reserved a seat of DriverID for the ride.
type MatchFound struct {
	RideRef
	DetourMi float64 `json:"detour_mi"`
}

// RideMatched: the ride took the match (rides' own event, after MatchFound).
type RideMatched struct {
	RideRef
	From Point `json:"from"`
	To   Point `json:"to"`
}

// RideCancelled: the rider or the driver cancelled before the start.
type RideCancelled struct {
	RideRef
	By string `json:"by"` // "rider" or "driver"
}

// RideFinished: the driver finished the ride; what to charge.
type RideFinished struct {
	RideRef
	DistanceMi float64 `json:"distance_mi"`
	FareCents  int64   `json:"fare_cents"`
	FeeCents   int64   `json:"fee_cents"` // the service's share of the fare
}

// PaymentCharged: the rider's card was charged the fare, exactly once.
type PaymentCharged struct {
	RideRef
	AmountCents int64  `json:"amount_cents"`
	FeeCents    int64  `json:"fee_cents"`
	ChargeID    string `json:"charge_id"`
}

// PaymentFailed: the charge was declined or could not be made; nothing is
// owed and nothing was taken (compensated).
type PaymentFailed struct {
	RideRef
	Reason string `json:"reason"`
}

// PayoutPaid: the driver was paid the fare minus the fee, exactly once.
type PayoutPaid struct {
	RideRef
	AmountCents int64 `json:"amount_cents"`
}

// DriverLocation: a driver's reported position.
type DriverLocation struct {
	DriverID string `json:"driver_id"`
	Point
	At time.Time `json:"at"`
}

// Event builds the broker message for an event: the kind header, id, the
// ride id as ordering key, and the JSON payload.
func Event(kind, id, key string, payload any) (broker.Message, error) {
	if kind == "" || id == "" {
		return broker.Message{}, errors.New("hitch: an event needs a kind and an id")
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return broker.Message{}, fmt.Errorf("hitch: encoding %s: %w", kind, err)
	}
	return broker.Message{ID: id, Key: key, Body: body, Headers: map[string]string{"kind": kind}}, nil
}

// Decode reads an event's payload into v, naming the kind on error.
func Decode(kind string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("hitch: decoding %s payload: %w", kind, err)
	}
	return nil
}

// Roles a user registers with; the JWT's scope claim carries it and the
// gateway forwards it in X-Scopes.
const (
	RoleRider  = "rider"
	RoleDriver = "driver"
)

// Headers the gateway sets from a verified JWT (package auth): the user id
// (the token's sub) and its scopes (the role). Services trust them because
// only the gateway reaches them, and the gateway strips any a client sends.
const (
	HeaderUser   = "X-Consumer"
	HeaderScopes = "X-Scopes"
)

// Caller is the authenticated user of a request.
type Caller struct {
	ID   string
	Role string // RoleRider or RoleDriver
}

// CallerOf reads the caller from the gateway's identity headers; ok is false
// when there is none (the request did not come through an authenticated
// route).
func CallerOf(r *http.Request) (c Caller, ok bool) {
	c.ID = r.Header.Get(HeaderUser)
	for _, s := range strings.Fields(r.Header.Get(HeaderScopes)) {
		if s == RoleRider || s == RoleDriver {
			c.Role = s
		}
	}
	return c, c.ID != "" && c.Role != ""
}

// Fares: what a ride costs and who gets what. Integer cents throughout.
type Fares struct {
	BaseCents    int64   `yaml:"base_cents"`     // default 250
	PerMileCents int64   `yaml:"per_mile_cents"` // default 150
	FeePercent   float64 `yaml:"fee_percent"`    // the service fee's share of the fare, default 20
}

// DefaultFares are the fares when none are configured.
var DefaultFares = Fares{BaseCents: 250, PerMileCents: 150, FeePercent: 20}

// Fare is the fare for a ride of distance miles and the service fee within
// it, rounded to the cent (half away from zero). The driver is paid
// fare - fee.
func (f Fares) Fare(distanceMi float64) (fare, fee int64) {
	if distanceMi < 0 || math.IsNaN(distanceMi) {
		distanceMi = 0
	}
	fare = f.BaseCents + int64(math.Round(distanceMi*float64(f.PerMileCents)))
	fee = int64(math.Round(float64(fare) * f.FeePercent / 100))
	return fare, fee
}
