package notifications

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/switchyard/switchyard/hitch"
)

// Notification names: the SSE event names and the WebSocket frames'
// "event" field.
const (
	DriverFound    = "driver_found"    // rider: a driver took the ride
	PassengerFound = "passenger_found" // driver: a rider joins the route
	RideStarted    = "ride_started"    // rider and driver
	RideFinished   = "ride_finished"   // rider and driver: distance and fare
	Receipt        = "receipt"         // rider: what was charged
	Payout         = "payout"          // driver: what was paid out
	NoDriver       = "no_driver"       // rider: nobody matched in time
	PaymentFailed  = "payment_failed"  // rider and driver: nothing was charged
	RideCancelled  = "ride_cancelled"  // rider and driver: the ride was cancelled before the start
)

// Note is one notification for one user. Data is the JSON object sent to
// the client; it always holds "ride_id".
type Note struct {
	ID    string          // the SSE id: the broker event's id (the same on every replica)
	User  string          // who gets it
	Event string          // DriverFound ...
	Ride  string          // the ride id
	Data  json.RawMessage // one line of JSON
}

// Payloads of the notifications (Data), one per event name.
type (
	// FoundData is DriverFound's and PassengerFound's payload.
	FoundData struct {
		RideID   string      `json:"ride_id"`
		RiderID  string      `json:"rider_id"`
		DriverID string      `json:"driver_id"`
		From     hitch.Point `json:"from"`
		To       hitch.Point `json:"to"`
		At       time.Time   `json:"at"`
	}
	// RefData is the payload of notifications that name the ride only
	// (RideStarted, NoDriver, RideCancelled; Reason for PaymentFailed and
	// By for RideCancelled).
	RefData struct {
		RideID   string    `json:"ride_id"`
		RiderID  string    `json:"rider_id"`
		DriverID string    `json:"driver_id,omitempty"`
		Reason   string    `json:"reason,omitempty"`
		By       string    `json:"by,omitempty"`
		At       time.Time `json:"at"`
	}
	// FinishedData is RideFinished's payload.
	FinishedData struct {
		RideID     string    `json:"ride_id"`
		DistanceMi float64   `json:"distance_mi"`
		FareCents  int64     `json:"fare_cents"`
		FeeCents   int64     `json:"fee_cents"`
		At         time.Time `json:"at"`
	}
	// ReceiptData is Receipt's payload. From ride.paid alone (when
	// payment.charged was not seen) the amounts are zero and Status says
	// "paid": GET /v1/rides/{id}/receipt has the rest.
	ReceiptData struct {
		RideID      string    `json:"ride_id"`
		Status      string    `json:"status"`
		AmountCents int64     `json:"amount_cents,omitempty"`
		FeeCents    int64     `json:"fee_cents,omitempty"`
		ChargeID    string    `json:"charge_id,omitempty"`
		At          time.Time `json:"at"`
	}
	// PayoutData is Payout's payload.
	PayoutData struct {
		RideID      string    `json:"ride_id"`
		AmountCents int64     `json:"amount_cents"`
		At          time.Time `json:"at"`
	}
)

// maxIDLen bounds a broker event id used as an SSE id as is; longer or
// unsafe ids are replaced by a digest.
const maxIDLen = 128

// sseID makes an event id safe for an SSE "id:" line and a Last-Event-ID
// header: printable ASCII without spaces, at most maxIDLen bytes; anything
// else becomes the hex digest of the id (stable, so every replica agrees).
func sseID(id string) string {
	ok := id != "" && len(id) <= maxIDLen
	for i := 0; ok && i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			ok = false
		}
	}
	if ok {
		return id
	}
	h := sha256.Sum256([]byte(id))
	return "h" + hex.EncodeToString(h[:16])
}

// notesFor turns one broker event into the notifications it causes: none
// for kinds that concern no client or a payload that does not decode or
// names nobody. It never fails: a bad event is a dropped push, and the
// client recovers by reading the ride.
func notesFor(kind, id string, body []byte) []Note {
	var out []Note
	add := func(user, event, ride string, data any) {
		if user == "" || ride == "" {
			return
		}
		b, err := json.Marshal(data)
		if err != nil {
			return
		}
		out = append(out, Note{ID: sseID(id), User: user, Event: event, Ride: ride, Data: b})
	}
	switch kind {
	case hitch.KindRideMatched:
		var p hitch.RideMatched
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		d := FoundData{RideID: p.RideID, RiderID: p.RiderID, DriverID: p.DriverID, From: p.From, To: p.To, At: p.At}
		if p.DriverID == "" {
			return nil
		}
		add(p.RiderID, DriverFound, p.RideID, d)
		add(p.DriverID, PassengerFound, p.RideID, d)
	case hitch.KindRideStarted:
		var p hitch.RideRef
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		d := RefData{RideID: p.RideID, RiderID: p.RiderID, DriverID: p.DriverID, At: p.At}
		add(p.RiderID, RideStarted, p.RideID, d)
		add(p.DriverID, RideStarted, p.RideID, d)
	case hitch.KindRideFinished:
		var p hitch.RideFinished
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		d := FinishedData{RideID: p.RideID, DistanceMi: p.DistanceMi, FareCents: p.FareCents, FeeCents: p.FeeCents, At: p.At}
		add(p.RiderID, RideFinished, p.RideID, d)
		add(p.DriverID, RideFinished, p.RideID, d)
	case hitch.KindPaymentCharged:
		var p hitch.PaymentCharged
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		add(p.RiderID, Receipt, p.RideID, ReceiptData{RideID: p.RideID, Status: "paid",
			AmountCents: p.AmountCents, FeeCents: p.FeeCents, ChargeID: p.ChargeID, At: p.At})
	case hitch.KindRidePaid:
		var p hitch.RideRef
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		add(p.RiderID, Receipt, p.RideID, ReceiptData{RideID: p.RideID, Status: "paid", At: p.At})
	case hitch.KindPayoutPaid:
		var p hitch.PayoutPaid
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		add(p.DriverID, Payout, p.RideID, PayoutData{RideID: p.RideID, AmountCents: p.AmountCents, At: p.At})
	case hitch.KindRideNoDriver, hitch.KindMatchNone:
		var p hitch.RideRef
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		add(p.RiderID, NoDriver, p.RideID, RefData{RideID: p.RideID, RiderID: p.RiderID, At: p.At})
	case hitch.KindPaymentFailed:
		var p hitch.PaymentFailed
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		d := RefData{RideID: p.RideID, RiderID: p.RiderID, DriverID: p.DriverID, Reason: p.Reason, At: p.At}
		add(p.RiderID, PaymentFailed, p.RideID, d)
		add(p.DriverID, PaymentFailed, p.RideID, d)
	case hitch.KindRidePayFailed:
		var p hitch.RideRef
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		d := RefData{RideID: p.RideID, RiderID: p.RiderID, DriverID: p.DriverID, At: p.At}
		add(p.RiderID, PaymentFailed, p.RideID, d)
		add(p.DriverID, PaymentFailed, p.RideID, d)
	case hitch.KindRideCancelled:
		var p hitch.RideCancelled
		if hitch.Decode(kind, body, &p) != nil {
			return nil
		}
		d := RefData{RideID: p.RideID, RiderID: p.RiderID, DriverID: p.DriverID, By: p.By, At: p.At}
		add(p.RiderID, RideCancelled, p.RideID, d)
		add(p.DriverID, RideCancelled, p.RideID, d)
	}
	return out
}
