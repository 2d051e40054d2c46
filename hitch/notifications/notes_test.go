package notifications

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNotesFor(t *testing.T) {
	at := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	ref := hitch.RideRef{RideID: "ride-1", RiderID: "rider-1", DriverID: "driver-1", At: at}
	type want struct{ user, event string }
	cases := []struct {
		name    string
		kind    string
		payload any
		want    []want
		field   string // a field Data must hold
	}{
		{"matched", hitch.KindRideMatched, hitch.RideMatched{RideRef: ref, From: hitch.Point{Lat: 40.71, Lon: -74}},
			[]want{{"rider-1", DriverFound}, {"driver-1", PassengerFound}}, `"from":{"lat":40.71`},
		{"started", hitch.KindRideStarted, ref, []want{{"rider-1", RideStarted}, {"driver-1", RideStarted}}, `"ride_id":"ride-1"`},
		{"finished", hitch.KindRideFinished, hitch.RideFinished{RideRef: ref, FareCents: 700, FeeCents: 140},
			[]want{{"rider-1", RideFinished}, {"driver-1", RideFinished}}, `"fare_cents":700`},
		{"charged", hitch.KindPaymentCharged, hitch.PaymentCharged{RideRef: ref, AmountCents: 700, FeeCents: 140, ChargeID: "ch-1"},
			[]want{{"rider-1", Receipt}}, `"amount_cents":700`},
		{"paid", hitch.KindRidePaid, ref, []want{{"rider-1", Receipt}}, `"status":"paid"`},
		{"payout", hitch.KindPayoutPaid, hitch.PayoutPaid{RideRef: ref, AmountCents: 560}, []want{{"driver-1", Payout}}, `"amount_cents":560`},
		{"no driver", hitch.KindRideNoDriver, hitch.RideRef{RideID: "ride-1", RiderID: "rider-1"}, []want{{"rider-1", NoDriver}}, `"ride_id"`},
		{"match none", hitch.KindMatchNone, hitch.RideRef{RideID: "ride-1", RiderID: "rider-1"}, []want{{"rider-1", NoDriver}}, `"ride_id"`},
		{"payment failed", hitch.KindPaymentFailed, hitch.PaymentFailed{RideRef: ref, Reason: "declined"},
			[]want{{"rider-1", PaymentFailed}, {"driver-1", PaymentFailed}}, `"reason":"declined"`},
		{"cancelled", hitch.KindRideCancelled, hitch.RideCancelled{RideRef: ref, By: "rider"},
			[]want{{"rider-1", RideCancelled}, {"driver-1", RideCancelled}}, `"by":"rider"`},
		{"requested concerns no client", hitch.KindRideRequested, hitch.RideRequested{RideRef: ref}, nil, ""},
		{"match.found waits for ride.matched", hitch.KindMatchFound, hitch.MatchFound{RideRef: ref}, nil, ""},
		{"location is not a notification", hitch.KindLocation, hitch.DriverLocation{DriverID: "d"}, nil, ""},
		{"unknown kind", "ride.teleported", ref, nil, ""},
		{"matched without a driver", hitch.KindRideMatched, hitch.RideMatched{RideRef: hitch.RideRef{RideID: "r", RiderID: "x"}}, nil, ""},
		{"no ride id", hitch.KindRideStarted, hitch.RideRef{RiderID: "x"}, nil, ""},
		{"started before a driver: rider only", hitch.KindRideStarted, hitch.RideRef{RideID: "r", RiderID: "x"}, []want{{"x", RideStarted}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := notesFor(c.kind, "ev-1", mustJSON(t, c.payload))
			if len(got) != len(c.want) {
				t.Fatalf("got %d notes %+v, want %v", len(got), got, c.want)
			}
			for i, w := range c.want {
				n := got[i]
				if n.User != w.user || n.Event != w.event || n.ID != "ev-1" {
					t.Errorf("note %d: %s/%s id %s, want %s/%s id ev-1", i, n.User, n.Event, n.ID, w.user, w.event)
				}
				if !strings.Contains(string(n.Data), c.field) || !strings.Contains(string(n.Data), `"ride_id"`) {
					t.Errorf("note %d data %s: want ride_id and %s", i, n.Data, c.field)
				}
			}
		})
	}
	if got := notesFor(hitch.KindRideStarted, "x", []byte("{not json")); got != nil {
		t.Errorf("garbage body: %v", got)
	}
}

func TestSSEID(t *testing.T) {
	for _, id := range []string{"ev-1", "0190a1b2-c3d4", strings.Repeat("a", maxIDLen)} {
		if sseID(id) != id {
			t.Errorf("sseID(%q) = %q, want it unchanged", id, sseID(id))
		}
	}
	for _, id := range []string{"", "a b", "x\ny", "x\rdata: evil", "é", strings.Repeat("a", maxIDLen+1), "nul\x00"} {
		got := sseID(id)
		if got == id || sseID(got) != got || strings.ContainsAny(got, " \r\n") {
			t.Errorf("sseID(%q) = %q: want a safe digest", id, got)
		}
	}
}

// Whatever the broker carries, a note is well-formed: a safe id, a known
// event, JSON data on one line with the ride id.
func FuzzNotesFor(f *testing.F) {
	ref := hitch.RideRef{RideID: "r", RiderID: "a", DriverID: "b"}
	f.Add(hitch.KindRideMatched, "ev", mustJSON(f, hitch.RideMatched{RideRef: ref}))
	f.Add(hitch.KindPaymentCharged, "x\ny", mustJSON(f, hitch.PaymentCharged{RideRef: ref, AmountCents: 5}))
	f.Add(hitch.KindRideCancelled, "", []byte(`{"ride_id":"r\n","rider_id":"\u2028","by":"rider"}`))
	f.Add(hitch.KindRideFinished, "id", []byte(`{"ride_id":1}`))
	f.Fuzz(func(t *testing.T, kind, id string, body []byte) {
		for _, n := range notesFor(kind, id, body) {
			if sseID(n.ID) != n.ID || n.User == "" || n.Ride == "" {
				t.Fatalf("bad note %+v", n)
			}
			if strings.ContainsAny(string(n.Data), "\r\n") || !json.Valid(n.Data) {
				t.Fatalf("data %q is not one line of JSON", n.Data)
			}
			switch n.Event {
			case DriverFound, PassengerFound, RideStarted, RideFinished, Receipt, Payout, NoDriver, PaymentFailed, RideCancelled:
			default:
				t.Fatalf("unknown event %q", n.Event)
			}
		}
	})
}

// Any id a producer chooses (or a client sends as Last-Event-ID) becomes
// something that cannot break an SSE frame and that sseID leaves alone.
func FuzzSSEID(f *testing.F) {
	for _, s := range []string{"ev-1", "", "a\nb", "\x00", strings.Repeat("z", 200), "id: x\r\n\r\ndata: y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		got := sseID(id)
		if got == "" || len(got) > maxIDLen || strings.ContainsAny(got, " \r\n\x00") || sseID(got) != got {
			t.Fatalf("sseID(%q) = %q", id, got)
		}
	})
}
