package payments

import (
	"testing"

	"github.com/switchyard/switchyard/hitch"
)

// FuzzRideFinished feeds arbitrary ride.finished payloads to the decoding
// and validation the consumer does before it starts a saga: nothing may
// panic, and an accepted event must be one the saga can pay (ids present
// and bounded, 0 <= fee <= fare, fare positive and bounded).
func FuzzRideFinished(f *testing.F) {
	for _, s := range []string{
		`{"ride_id":"r1","rider_id":"ann","driver_id":"dan","fare_cents":1750,"fee_cents":350}`,
		`{"ride_id":"r1","rider_id":"ann","driver_id":"dan","fare_cents":-1,"fee_cents":0}`,
		`{"ride_id":"","fare_cents":1e30}`, `null`, `[]`, `{"fee_cents":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var ev hitch.RideFinished
		if err := hitch.Decode(hitch.KindRideFinished, body, &ev); err != nil {
			return
		}
		if err := validFinished(ev); err != nil {
			return
		}
		if ev.RideID == "" || ev.RiderID == "" || ev.DriverID == "" || len(ev.RideID) > maxRef ||
			ev.FareCents <= 0 || ev.FareCents > 100_000_000 || ev.FeeCents < 0 || ev.FeeCents > ev.FareCents {
			t.Fatalf("accepted %+v", ev)
		}
		if net := ev.FareCents - ev.FeeCents; net < 0 {
			t.Fatalf("negative payout %d", net)
		}
	})
}
