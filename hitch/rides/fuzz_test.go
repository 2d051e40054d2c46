package rides

import (
	"context"
	"errors"
	"testing"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// FuzzDecodeCreate: any body is either refused with an error naming a
// field or yields two positions on Earth.
func FuzzDecodeCreate(f *testing.F) {
	for _, s := range []string{
		`{"from": {"lat": 40.7, "lon": -73.9}, "to": {"lat": 40.8, "lon": -74}}`,
		`{"from": {"lat": 1e309, "lon": 0}, "to": {"lat": 0, "lon": 0}}`,
		`{"from": null, "to": {}}`, `{"from": {"lat": -90, "lon": 180}, "to": {"lat": 90, "lon": -180}}`,
		`{}`, `[]`, `null`, `{"from": {"lat": 1}}{}`, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		from, to, err := decodeCreate(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if from.Validate() != nil || to.Validate() != nil {
			t.Fatalf("accepted %v %v", from, to)
		}
		if d := distanceMi(from, to); d < 0 || d > 12500 || d != d {
			t.Fatalf("distance %v between %v and %v", d, from, to)
		}
	})
}

// FuzzConsume: any message on the service's queues is applied, ignored
// or refused as malformed; none fails the consumer or breaks a ride.
func FuzzConsume(f *testing.F) {
	db := storetest.SQLite(f)
	ctx := context.Background()
	s, err := New(ctx, db, nil, Config{})
	if err != nil {
		f.Fatal(err)
	}
	res, err := s.Request(ctx, RequestInput{RiderID: "r", From: hitch.Point{Lat: 1, Lon: 1}, To: hitch.Point{Lat: 2, Lon: 2}})
	if err != nil {
		f.Fatal(err)
	}
	id := res.RideID
	f.Add("m1", hitch.KindMatchFound, []byte(`{"ride_id": "`+id+`", "driver_id": "d"}`))
	f.Add("m2", hitch.KindMatchNone, []byte(`{"ride_id": "`+id+`"}`))
	f.Add("m3", hitch.KindPaymentCharged, []byte(`{"ride_id": "`+id+`", "amount_cents": -5}`))
	f.Add("m4", hitch.KindPaymentFailed, []byte(`{"ride_id": 7}`))
	f.Add("m5", "x", []byte(`{`))
	f.Fuzz(func(t *testing.T, msgID, kind string, body []byte) {
		if msgID == "" {
			msgID = "empty"
		}
		_, err := s.apply(ctx, msgID, kind, body)
		if err != nil && !errors.Is(err, errSkip) && !errors.Is(err, errMalformed) && !errors.Is(err, ErrNotFound) {
			// Ids the database cannot store are refused by it: that is a
			// nack, and the broker's dead-lettering ends it.
			t.Logf("apply(%q, %q, %q): %v", msgID, kind, body, err)
		}
		r, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.Fold(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != f.Version || r.Status != f.Status {
			t.Fatalf("table %+v, fold %+v", r, f)
		}
	})
}
