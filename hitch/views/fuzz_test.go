package views

import (
	"context"
	"testing"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// FuzzIngest: whatever arrives on the queues, the projection keeps
// projecting (a Handle error would stop it) and earnings stay the sum
// of the receipts' contributions.
func FuzzIngest(f *testing.F) {
	db := storetest.SQLite(f)
	ctx := context.Background()
	s, err := New(ctx, db, nil, Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("1", hitch.KindRideFinished, []byte(`{"ride_id": "r1", "driver_id": "d", "fare_cents": 700, "fee_cents": 140}`))
	f.Add("2", hitch.KindPaymentCharged, []byte(`{"ride_id": "r1", "driver_id": "d", "amount_cents": 700, "fee_cents": 140}`))
	f.Add("3", hitch.KindPayoutPaid, []byte(`{"ride_id": "r1", "driver_id": "d", "amount_cents": 560}`))
	f.Add("4", hitch.KindPaymentFailed, []byte(`{"ride_id": "r1", "driver_id": "e", "reason": "\u0000"}`))
	f.Add("5", hitch.KindRideCancelled, []byte(`{"ride_id": "r2", "at": "2026-01-01T00:00:00Z"}`))
	f.Add("6", "x", []byte(`{`))
	f.Fuzz(func(t *testing.T, id, kind string, body []byte) {
		if _, err := s.Ingest(ctx, id, kind, body); err != nil {
			t.Logf("ingest refused (a nack): %v", err)
		}
		if err := s.CatchUp(ctx); err != nil {
			t.Fatalf("projection stopped on %q %q: %v", kind, body, err)
		}
		var rides, gross, sum int64
		if err := db.QueryRow(ctx, "SELECT COALESCE(SUM(rides), 0), COALESCE(SUM(gross_cents), 0) FROM earnings").Scan(&rides, &gross); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM receipts WHERE finished_ms IS NOT NULL AND driver_id IS NOT NULL`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if rides != sum {
			t.Fatalf("earnings count %d rides, receipts %d", rides, sum)
		}
	})
}
