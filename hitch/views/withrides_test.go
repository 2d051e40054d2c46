package views_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/hitch/rides"
	"github.com/switchyard/switchyard/hitch/views"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// The rides service's own events (through its outbox, the rides topic
// and views.rides) and the payments events (on the payments topic, read
// by rides and views alike) make the rider's receipt and the driver's
// earnings: the two services agree on the contract.
func TestWithRides(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := hitchtest.StartBroker(t)
	rs, err := rides.New(ctx, storetest.SQLite(t), b.Open(t), rides.Config{RelayPollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := views.New(ctx, storetest.SQLite(t), b.Open(t), views.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runs := make(chan error, 2)
	go func() { runs <- rs.Run(ctx) }()
	go func() { runs <- vs.Run(ctx) }()
	defer func() { cancel(); <-runs; <-runs }()
	ann := hitch.Caller{ID: "ann", Role: hitch.RoleRider}
	dan := hitch.Caller{ID: "dan", Role: hitch.RoleDriver}
	srv := httptest.NewServer(rs.Handler())
	defer srv.Close()
	post := func(c hitch.Caller, path, body string) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set(hitch.HeaderUser, c.ID)
		req.Header.Set(hitch.HeaderScopes, c.Role)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode >= 300 {
			t.Fatalf("POST %s: %v %v", path, res.Status, err)
		}
		res.Body.Close()
	}
	res, err := rs.Request(ctx, rides.RequestInput{RiderID: ann.ID, From: hitch.Point{Lat: 40.758, Lon: -73.9855}, To: hitch.Point{Lat: 40.7128, Lon: -74.006}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.RideID
	bus := b.Open(t)
	publish := func(topic, kind, msgID string, p any) {
		m, _ := hitch.Event(kind, msgID, id, p)
		if err := bus.Publish(ctx, "topic:"+topic, m); err != nil {
			t.Fatal(err)
		}
	}
	publish(hitch.TopicMatching, hitch.KindMatchFound, "m1", hitch.MatchFound{RideRef: hitch.RideRef{RideID: id, RiderID: ann.ID, DriverID: dan.ID}})
	waitUntil(t, "matched", func() bool { r, _ := rs.Get(ctx, id); return r.Status == rides.Matched })
	post(dan, "/v1/rides/"+id+"/start", "")
	post(dan, "/v1/rides/"+id+"/finish", "")
	r, _ := rs.Get(ctx, id)
	ref := hitch.RideRef{RideID: id, RiderID: ann.ID, DriverID: dan.ID, At: time.Now()}
	publish(hitch.TopicPayments, hitch.KindPaymentCharged, "c1", hitch.PaymentCharged{RideRef: ref, AmountCents: r.FareCents, FeeCents: r.FeeCents, ChargeID: "ch"})
	publish(hitch.TopicPayments, hitch.KindPayoutPaid, "p1", hitch.PayoutPaid{RideRef: ref, AmountCents: r.FareCents - r.FeeCents})
	waitUntil(t, "paid", func() bool { r, _ := rs.Get(ctx, id); return r.Status == rides.Paid })
	waitUntil(t, "receipt", func() bool {
		rec, err := vs.Receipt(ctx, id)
		return err == nil && rec.Payment == "charged" && rec.FinishedAt != nil && rec.StartedAt != nil && rec.MatchedAt != nil
	})
	rec, _ := vs.Receipt(ctx, id)
	if rec.Fare != r.FareCents || rec.Fee != r.FeeCents || rec.TotalCharged != r.FareCents || rec.DistanceMi != r.DistanceMi || rec.DriverID != dan.ID {
		t.Fatalf("receipt %+v for ride %+v", rec, r)
	}
	waitUntil(t, "earnings", func() bool { e, _ := vs.Earnings(ctx, dan.ID); return e.NetPaid > 0 })
	e, _ := vs.Earnings(ctx, dan.ID)
	if e != (views.Earnings{DriverID: dan.ID, Rides: 1, Gross: r.FareCents, Fees: r.FeeCents, NetPaid: r.FareCents - r.FeeCents}) {
		t.Fatalf("earnings %+v for ride %+v", e, r)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
