package views_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/hitch/views"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// event is one message as a producer publishes it.
type event struct {
	id, kind, ride, topic string
	payload               any
}

// world is a set of rides with known outcomes: their events and what the
// views must show for them.
type world struct {
	events   []event
	receipts map[string]views.Receipt // status, payment, total_charged, fare, fee, driver
	earnings map[string]views.Earnings
	riders   map[string]string // ride -> rider
}

var drivers = []string{"driver-a", "driver-b", "driver-c"}

// newWorld makes n rides of every outcome, with random drivers and
// distances.
func newWorld(rng *rand.Rand, n int) *world {
	w := &world{receipts: map[string]views.Receipt{}, earnings: map[string]views.Earnings{}, riders: map[string]string{}}
	for _, d := range drivers {
		w.earnings[d] = views.Earnings{DriverID: d}
	}
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for i := range n {
		ride := fmt.Sprintf("ride-%03d", i)
		rider := fmt.Sprintf("rider-%d", i%7)
		driver := drivers[rng.IntN(len(drivers))]
		w.riders[ride] = rider
		ref := func(withDriver bool) hitch.RideRef {
			at = at.Add(time.Second)
			r := hitch.RideRef{RideID: ride, RiderID: rider, At: at}
			if withDriver {
				r.DriverID = driver
			}
			return r
		}
		seq := 0
		add := func(kind, topic string, p any) {
			seq++
			w.events = append(w.events, event{id: fmt.Sprintf("%s/%d", ride, seq), kind: kind, ride: ride, topic: topic, payload: p})
		}
		rides, pays := hitch.TopicRides, hitch.TopicPayments
		dist := float64(rng.IntN(20000)) / 1000
		fare, fee := hitch.DefaultFares.Fare(dist)
		outcome := i % 6
		add(hitch.KindRideRequested, rides, hitch.RideRequested{RideRef: ref(false)})
		want := views.Receipt{RideID: ride, RiderID: rider, Status: "searching", Payment: "none"}
		if outcome == 5 {
			add(hitch.KindRideNoDriver, rides, ref(false))
			want.Status = "no_driver"
			w.receipts[ride] = want
			continue
		}
		add(hitch.KindRideMatched, rides, hitch.RideMatched{RideRef: ref(true)})
		want.DriverID = driver
		if outcome == 4 {
			add(hitch.KindRideCancelled, rides, hitch.RideCancelled{RideRef: ref(true), By: "driver"})
			late := ref(false)
			late.DriverID = "driver-late" // a released late match: not this ride's driver
			add(hitch.KindRideCancelled, rides, hitch.RideCancelled{RideRef: late, By: "driver"})
			want.Status = "cancelled"
			w.receipts[ride] = want
			continue
		}
		add(hitch.KindRideStarted, rides, ref(true))
		add(hitch.KindRideFinished, rides, hitch.RideFinished{RideRef: ref(true), DistanceMi: dist, FareCents: fare, FeeCents: fee})
		want.Status, want.Payment, want.Fare, want.Fee, want.DistanceMi = "finished", "pending", fare, fee, dist
		e := w.earnings[driver]
		e.Rides++
		switch outcome {
		case 0, 1: // charged; paid out (0) or not yet (1)
			add(hitch.KindPaymentCharged, pays, hitch.PaymentCharged{RideRef: ref(true), AmountCents: fare, FeeCents: fee, ChargeID: "ch-" + ride})
			add(hitch.KindRidePaid, rides, ref(true))
			want.Status, want.Payment, want.TotalCharged, want.ChargeID = "paid", "charged", fare, "ch-"+ride
			e.Gross += fare
			e.Fees += fee
			if outcome == 0 {
				add(hitch.KindPayoutPaid, pays, hitch.PayoutPaid{RideRef: ref(true), AmountCents: fare - fee})
				e.NetPaid += fare - fee
			}
		case 2: // declined
			add(hitch.KindPaymentFailed, pays, hitch.PaymentFailed{RideRef: ref(true), Reason: "card declined"})
			add(hitch.KindRidePayFailed, rides, ref(true))
			want.Status, want.Payment, want.FailureReason = "payment_failed", "failed", "card declined"
		case 3: // finished, the payment not heard of yet
		}
		e.Pending = e.Gross - e.Fees - e.NetPaid
		w.earnings[driver] = e
		w.receipts[ride] = want
	}
	return w
}

// deliveries shuffles the events and repeats some: 30% again with the
// same id (a redelivery), 10% with a new id (a re-publish the inbox no
// longer remembers).
func (w *world) deliveries(rng *rand.Rand) []event {
	out := append([]event(nil), w.events...)
	for _, e := range w.events {
		if rng.Float64() < 0.3 {
			out = append(out, e)
		}
		if rng.Float64() < 0.1 {
			e.id += "/again"
			out = append(out, e)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func body(t *testing.T, p any) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// check compares the views with the world.
func (w *world) check(t *testing.T, svc *views.Service) {
	t.Helper()
	ctx := context.Background()
	for ride, want := range w.receipts {
		got, err := svc.Receipt(ctx, ride)
		if err != nil {
			t.Fatalf("receipt %s: %v", ride, err)
		}
		if got.Status != want.Status || got.Payment != want.Payment || got.TotalCharged != want.TotalCharged ||
			got.Fare != want.Fare || got.Fee != want.Fee || got.DriverID != want.DriverID || got.RiderID != want.RiderID ||
			got.ChargeID != want.ChargeID || got.FailureReason != want.FailureReason || got.DistanceMi != want.DistanceMi {
			t.Fatalf("receipt %s:\n got %+v\nwant %+v", ride, got, want)
		}
	}
	for d, want := range w.earnings {
		got, err := svc.Earnings(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("earnings of %s:\n got %+v\nwant %+v", d, got, want)
		}
	}
	if e, _ := svc.Earnings(ctx, "driver-late"); e.Rides != 0 || e.Gross != 0 {
		t.Fatalf("a released late match earned %+v", e)
	}
}

// Events in any order and more than once converge to the same receipts
// and earnings; a rebuild from the local log gives them again.
func TestConvergesShuffledAndDuplicated(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		svc, err := views.New(ctx, db, nil, views.Config{})
		if err != nil {
			t.Fatal(err)
		}
		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 7))
		w := newWorld(rng, 60)
		ds := w.deliveries(rng)
		for i, e := range ds {
			if _, err := svc.Ingest(ctx, e.id, e.kind, body(t, e.payload)); err != nil {
				t.Fatal(err)
			}
			if i%17 == 0 { // project part-way, as Run would
				if err := svc.CatchUp(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := svc.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: %d events, %d deliveries", seed, len(w.events), len(ds))
		w.check(t, svc)
		// Corrupt the view, then rebuild it from the log.
		if _, err := db.Exec(ctx, "UPDATE earnings SET gross_cents = gross_cents + 999"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, "DELETE FROM receipts WHERE ride_id = 'ride-000'"); err != nil {
			t.Fatal(err)
		}
		if err := svc.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		w.check(t, svc)
	})
}

// Through the broker: producers publish to their topics in a shuffled
// order with copies; two replicas of views consume; the HTTP API shows
// the receipts and earnings once they converge.
func TestThroughBroker(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		b := hitchtest.StartBroker(t)
		var srv *httptest.Server
		var svc *views.Service
		var replicas []*views.Service
		for i := range 2 {
			s, err := views.New(context.Background(), db, b.Open(t), views.Config{PollInterval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			replicas = append(replicas, s)
			if i == 0 {
				svc, srv = s, httptest.NewServer(s.Handler())
				t.Cleanup(srv.Close)
			}
		}
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
		w := newWorld(rng, 24)
		pub := b.Open(t)
		ds := w.deliveries(rng)
		distinct := map[string]bool{}
		for _, e := range ds {
			distinct[e.id] = true
		}
		for _, e := range ds {
			m, err := hitch.Event(e.kind, e.id, e.ride, e.payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(context.Background(), "topic:"+e.topic, m); err != nil {
				t.Fatal(err)
			}
		}
		get := func(c *hitch.Caller, path string) (int, map[string]any) {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			if c != nil {
				req.Header.Set(hitch.HeaderUser, c.ID)
				req.Header.Set(hitch.HeaderScopes, c.Role)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("GET %s: %q: %v", path, b, err)
			}
			return res.StatusCode, m
		}
		deadline := time.Now().Add(20 * time.Second)
		for _, d := range drivers {
			want := w.earnings[d]
			c := &hitch.Caller{ID: d, Role: hitch.RoleDriver}
			for {
				code, m := get(c, "/v1/drivers/me/earnings")
				if code == 200 && m["rides"] == float64(want.Rides) && m["gross"] == float64(want.Gross) &&
					m["fees"] == float64(want.Fees) && m["net_paid"] == float64(want.NetPaid) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("earnings of %s: %d %v, want %+v", d, code, m, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// Earnings converge before receipts that do not count toward
		// them (a cancelled ride's): wait for every event in the log.
		for {
			if n := replicas[0].Stats().Stored + replicas[1].Stats().Stored; n == int64(len(distinct)) {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("%d events stored, want %d", n, len(distinct))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := svc.CatchUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.check(t, svc)

		// The receipt over HTTP, and who may read it.
		var paid string
		for ride, r := range w.receipts {
			if r.Payment == "charged" {
				paid = ride
				break
			}
		}
		rider := &hitch.Caller{ID: w.riders[paid], Role: hitch.RoleRider}
		code, m := get(rider, "/v1/rides/"+paid+"/receipt")
		want := w.receipts[paid]
		if code != 200 || m["total_charged"] != float64(want.TotalCharged) || m["fare"] != float64(want.Fare) ||
			m["fee"] != float64(want.Fee) || m["payment"] != "charged" || m["driver_id"] != want.DriverID || m["finished_at"] == nil {
			t.Fatalf("receipt: %d %v, want %+v", code, m, want)
		}
		for _, c := range []struct {
			who  *hitch.Caller
			path string
			code int
			err  string
		}{
			{nil, "/v1/rides/" + paid + "/receipt", 401, "unauthenticated"},
			{&hitch.Caller{ID: "someone-else", Role: hitch.RoleRider}, "/v1/rides/" + paid + "/receipt", 404, "receipt_not_found"},
			{&hitch.Caller{ID: want.DriverID, Role: hitch.RoleDriver}, "/v1/rides/" + paid + "/receipt", 403, "wrong_role"},
			{rider, "/v1/rides/nope/receipt", 404, "receipt_not_found"},
			{rider, "/v1/rides/%00/receipt", 404, "receipt_not_found"},
			{rider, "/v1/rides/%ff/receipt", 404, "receipt_not_found"},
			{rider, "/v1/drivers/me/earnings", 403, "wrong_role"},
			{nil, "/v1/drivers/me/earnings", 401, "unauthenticated"},
			{rider, "/v1/other", 404, "not_found"},
		} {
			code, m := get(c.who, c.path)
			if code != c.code || m["code"] != c.err {
				t.Errorf("GET %s as %v: %d %v, want %d %s", c.path, c.who, code, m, c.code, c.err)
			}
		}
		code, m = get(&hitch.Caller{ID: "driver-new", Role: hitch.RoleDriver}, "/v1/drivers/me/earnings")
		if code != 200 || m["rides"] != float64(0) {
			t.Fatalf("new driver's earnings: %d %v", code, m)
		}
		if code, _ := get(nil, "/healthz"); code != 200 {
			t.Fatalf("healthz %d", code)
		}
	})
}

// Garbage on the queues is acked and skipped: it never reaches the
// projection, which keeps projecting.
func TestSkipsGarbage(t *testing.T) {
	storetest.Each(t, testSkipsGarbage)
}

func testSkipsGarbage(t *testing.T, db *store.DB) {
	ctx := context.Background()
	svc, err := views.New(ctx, db, nil, views.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, kind, body string }{
		{"1", "ride.unknown", `{"ride_id": "r"}`},
		{"2", hitch.KindRideFinished, `{not json`},
		{"3", hitch.KindRideFinished, `{"fare_cents": 5}`},
		{"", hitch.KindRideFinished, `{"ride_id": "r"}`},
		{"4", hitch.KindRideFinished, `{"ride_id": "r", "fare_cents": "x"}`},
		{"5", hitch.KindPaymentFailed, `{"ride_id": "r", "reason": "nul \u0000"}`},
		{"6", hitch.KindPaymentFailed, `{"ride_id": "r\u0000"}`},
		{"7\x00", hitch.KindPaymentFailed, `{"ride_id": "r"}`},
		{"8", hitch.KindPaymentFailed, "{\"ride_id\": \"r\xff\"}"},
		{"9", hitch.KindPaymentCharged, `{"ride_id": "r", "amount_cents": 10, "driver_id": "d"}`},
	} {
		if _, err := svc.Ingest(ctx, c.id, c.kind, []byte(c.body)); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	if err := svc.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if st := svc.Stats(); st.Skipped != 9 || st.Stored != 1 {
		t.Fatalf("stats %+v", st)
	}
	if e, _ := svc.Earnings(ctx, "d"); e.Gross != 10 || e.Rides != 0 {
		t.Fatalf("earnings %+v", e)
	}
}

func TestConfigValidate(t *testing.T) {
	err := views.Config{Consumers: -1, PollInterval: -time.Second}.Validate()
	for _, key := range []string{"consumers", "poll_interval"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}
