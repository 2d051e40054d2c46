package views_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/hitch/views"
	"github.com/switchyard/switchyard/kit/store"
)

// The payment arrives before the ride's finish and twice; the receipt
// and the earnings come out right anyway, and again after a rebuild.
func Example() {
	dir, _ := os.MkdirTemp("", "views-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "views.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	svc, err := views.New(ctx, db, nil, views.Config{}) // nil bus: fed by hand here, by Run from the queues in service
	if err != nil {
		panic(err)
	}
	ride := `"ride_id": "r1", "rider_id": "ann", "driver_id": "dan"`
	for _, e := range []struct{ id, kind, body string }{
		{"p1", "payment.charged", `{` + ride + `, "amount_cents": 745, "fee_cents": 149, "charge_id": "ch_1"}`},
		{"p1", "payment.charged", `{` + ride + `, "amount_cents": 745, "fee_cents": 149, "charge_id": "ch_1"}`},
		{"p2", "payout.paid", `{` + ride + `, "amount_cents": 596}`},
		{"e1", "ride.finished", `{` + ride + `, "distance_mi": 3.302, "fare_cents": 745, "fee_cents": 149}`},
	} {
		stored, _ := svc.Ingest(ctx, e.id, e.kind, []byte(e.body))
		fmt.Println(e.kind, "stored:", stored)
	}
	svc.CatchUp(ctx)
	show := func() {
		r, _ := svc.Receipt(ctx, "r1")
		fmt.Printf("receipt: %s, fare %d, fee %d, charged %d\n", r.Payment, r.Fare, r.Fee, r.TotalCharged)
		e, _ := svc.Earnings(ctx, "dan")
		fmt.Printf("earnings: %d rides, gross %d, fees %d, net paid %d\n", e.Rides, e.Gross, e.Fees, e.NetPaid)
	}
	show()
	svc.Rebuild(ctx)
	show()
	// Output:
	// payment.charged stored: true
	// payment.charged stored: false
	// payout.paid stored: true
	// ride.finished stored: true
	// receipt: charged, fare 745, fee 149, charged 745
	// earnings: 1 rides, gross 745, fees 149, net paid 596
	// receipt: charged, fare 745, fee 149, charged 745
	// earnings: 1 rides, gross 745, fees 149, net paid 596
}
