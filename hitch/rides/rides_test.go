package rides_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/hitch/rides"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// env is a rides service with its Run going, its API on a test server,
// and a reader of what it publishes (the matching.rides queue, as
// matching would read it).
type env struct {
	t   *testing.T
	svc *rides.Service
	srv *httptest.Server
	bus message.Backend
	out *collector
}

var (
	ann  = hitch.Caller{ID: "rider-ann", Role: hitch.RoleRider}
	bob  = hitch.Caller{ID: "rider-bob", Role: hitch.RoleRider}
	dan  = hitch.Caller{ID: "driver-dan", Role: hitch.RoleDriver}
	dora = hitch.Caller{ID: "driver-dora", Role: hitch.RoleDriver}
)

// Pickup and drop-off about 3.1 miles apart (Manhattan-ish).
var (
	pickup  = hitch.Point{Lat: 40.7580, Lon: -73.9855}
	dropoff = hitch.Point{Lat: 40.7128, Lon: -74.0060}
)

func start(t *testing.T, db *store.DB, b *hitchtest.Broker, cfg rides.Config) (*rides.Service, *httptest.Server) {
	t.Helper()
	bus := b.Open(t)
	cfg.RelayPollInterval = 50 * time.Millisecond
	cfg.RelayLeaseTTL = time.Second
	svc, err := rides.New(context.Background(), db, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return svc, srv
}

func newEnv(t *testing.T, db *store.DB) *env {
	b := hitchtest.StartBroker(t)
	svc, srv := start(t, db, b, rides.Config{})
	e := &env{t: t, svc: svc, srv: srv, bus: b.Open(t)}
	e.out = collect(t, e.bus, hitch.QueueMatchingRides)
	return e
}

// collector keeps every message of a queue, acked.
type collector struct {
	mu   sync.Mutex
	msgs []*message.Delivery
}

func collect(t *testing.T, bus message.Backend, queue string) *collector {
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.Subscribe(ctx, "queue:"+queue, message.SubscribeOptions{}, func(d *message.Delivery) {
			c.mu.Lock()
			c.msgs = append(c.msgs, d)
			c.mu.Unlock()
			d.Ack(ctx)
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// kinds lists the kinds received for ride id, in order.
func (c *collector) kinds(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, d := range c.msgs {
		if d.Key == id {
			out = append(out, d.Headers["kind"])
		}
	}
	return out
}

func (c *collector) find(id, kind string) *message.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.msgs {
		if d.Key == id && d.Headers["kind"] == kind {
			return d
		}
	}
	return nil
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type resp struct {
	status int
	body   map[string]any
	header http.Header
}

func (e *env) do(c *hitch.Caller, method, path, body string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if c != nil {
		req.Header.Set(hitch.HeaderUser, c.ID)
		req.Header.Set(hitch.HeaderScopes, c.Role)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			e.t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, b, err)
		}
	}
	return r
}

func (e *env) expect(r resp, status int, code string) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d (body %v)", r.status, status, r.body)
	}
	if code != "" && r.body["code"] != code {
		e.t.Fatalf("code %v, want %s (body %v)", r.body["code"], code, r.body)
	}
}

func rideBody(from, to hitch.Point) string {
	b, _ := json.Marshal(map[string]hitch.Point{"from": from, "to": to})
	return string(b)
}

// request creates a ride for c and returns its id.
func (e *env) request(c hitch.Caller) string {
	e.t.Helper()
	r := e.do(&c, "POST", "/v1/rides", rideBody(pickup, dropoff))
	e.expect(r, http.StatusAccepted, "")
	if r.body["status"] != "searching" {
		e.t.Fatalf("status %v, want searching", r.body["status"])
	}
	return r.body["ride_id"].(string)
}

func (e *env) status(c hitch.Caller, id string) string {
	e.t.Helper()
	r := e.do(&c, "GET", "/v1/rides/"+id, "")
	e.expect(r, http.StatusOK, "")
	return r.body["status"].(string)
}

func (e *env) waitStatus(c hitch.Caller, id, want string) {
	e.t.Helper()
	waitFor(e.t, "ride "+id+" "+want, func() bool { return e.status(c, id) == want })
}

// publish puts an event on one of the service's queues, as matching or
// payments would (through their topics).
func (e *env) publish(queue, kind, msgID, rideID string, payload any) {
	e.t.Helper()
	m, err := hitch.Event(kind, msgID, rideID, payload)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.bus.Publish(context.Background(), "queue:"+queue, m); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) match(id string, rider, driver hitch.Caller, msgID string) {
	e.publish(hitch.QueueRidesMatching, hitch.KindMatchFound, msgID, id,
		hitch.MatchFound{RideRef: hitch.RideRef{RideID: id, RiderID: rider.ID, DriverID: driver.ID, At: time.Now()}})
}

func (e *env) streamKinds(id string) []string {
	e.t.Helper()
	evs, err := e.svc.Events(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func eq(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// A ride from request to payment: matched through the queue, started
// and finished by its driver, priced by distance, paid through the
// queue; every step in the stream and on the topic, in order.
func TestRideToPayment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		id := e.request(ann)
		waitFor(t, "ride.requested published", func() bool { return e.out.find(id, hitch.KindRideRequested) != nil })
		if e.status(ann, id) != "searching" {
			t.Fatal("not searching")
		}
		// The driver cannot see or start it before the match.
		e.expect(e.do(&dan, "GET", "/v1/rides/"+id, ""), 404, "ride_not_found")
		e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/start", ""), 404, "ride_not_found")

		e.match(id, ann, dan, "m-"+id)
		e.waitStatus(ann, id, "matched")
		r := e.do(&dan, "GET", "/v1/rides/"+id, "")
		e.expect(r, 200, "")
		if r.body["driver_id"] != dan.ID || r.body["rider_id"] != ann.ID {
			t.Fatalf("ride %v", r.body)
		}
		e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/finish", ""), 409, "ride_state_conflict")
		e.expect(e.do(&dora, "POST", "/v1/rides/"+id+"/start", ""), 404, "ride_not_found")
		e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/start", "{}"), 200, "")
		e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/start", ""), 200, "") // a retry: no second event
		r = e.do(&dan, "POST", "/v1/rides/"+id+"/finish", "")
		e.expect(r, 200, "")
		// 3.302 mi by the haversine formula (0.0452 deg of latitude is
		// 3.123 mi, 0.0205 deg of longitude at 40.7 deg N is 1.074 mi).
		wantFare, wantFee := hitch.DefaultFares.Fare(3.302)
		if r.body["status"] != "finished" || r.body["fare"] != float64(wantFare) || r.body["fee"] != float64(wantFee) {
			t.Fatalf("finished ride %v, want fare %d fee %d", r.body, wantFare, wantFee)
		}
		if d := r.body["distance_mi"].(float64); d != 3.302 {
			t.Fatalf("distance %v, want 3.302 mi", d)
		}
		waitFor(t, "ride.finished published", func() bool { return e.out.find(id, hitch.KindRideFinished) != nil })
		var fin hitch.RideFinished
		if err := hitch.Decode(hitch.KindRideFinished, e.out.find(id, hitch.KindRideFinished).Body, &fin); err != nil {
			t.Fatal(err)
		}
		if fin.FareCents != wantFare || fin.FeeCents != wantFee || fin.DriverID != dan.ID || fin.RiderID != ann.ID {
			t.Fatalf("ride.finished %+v", fin)
		}
		e.publish(hitch.QueueRidesPayments, hitch.KindPaymentCharged, "pay-"+id, id, hitch.PaymentCharged{
			RideRef: fin.RideRef, AmountCents: fin.FareCents, FeeCents: fin.FeeCents, ChargeID: "ch-1"})
		e.waitStatus(ann, id, "paid")
		want := []string{hitch.KindRideRequested, hitch.KindRideMatched, hitch.KindRideStarted, hitch.KindRideFinished, hitch.KindRidePaid}
		if got := e.streamKinds(id); !eq(got, want) {
			t.Fatalf("stream %v, want %v", got, want)
		}
		waitFor(t, "ride.paid published", func() bool { return len(e.out.kinds(id)) == len(want) })
		if got := e.out.kinds(id); !eq(got, want) {
			t.Fatalf("published %v, want %v", got, want)
		}
		// The table agrees with the fold of the stream.
		folded, err := e.svc.Fold(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := e.svc.Get(context.Background(), id)
		if fmt.Sprint(folded) != fmt.Sprint(got) {
			t.Fatalf("table %+v\nfold  %+v", got, folded)
		}
		// The rider is free to ride again.
		e.request(ann)
	})
}

func TestNoDriver(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		id := e.request(ann)
		e.expect(e.do(&ann, "POST", "/v1/rides", rideBody(pickup, dropoff)), 409, "active_ride_exists")
		e.publish(hitch.QueueRidesMatching, hitch.KindMatchNone, "none-"+id, id, hitch.RideRef{RideID: id, RiderID: ann.ID})
		e.waitStatus(ann, id, "no_driver")
		e.expect(e.do(&ann, "POST", "/v1/rides/"+id+"/cancel", ""), 409, "ride_state_conflict")
		waitFor(t, "ride.no_driver published", func() bool { return e.out.find(id, hitch.KindRideNoDriver) != nil })
		// A late match for a ride that found no driver releases the seat.
		e.match(id, ann, dan, "late-"+id)
		waitFor(t, "seat released", func() bool { return e.out.find(id, hitch.KindRideCancelled) != nil })
		if e.status(ann, id) != "no_driver" {
			t.Fatal("a late match changed a no_driver ride")
		}
		e.request(ann) // free to ask again
	})
}

func TestCancel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		t.Run("by rider while searching, then a late match", func(t *testing.T) {
			id := e.request(ann)
			e.expect(e.do(&bob, "POST", "/v1/rides/"+id+"/cancel", ""), 404, "ride_not_found")
			r := e.do(&ann, "POST", "/v1/rides/"+id+"/cancel", "")
			e.expect(r, 200, "")
			if r.body["status"] != "cancelled" || r.body["cancelled_by"] != "rider" {
				t.Fatalf("%v", r.body)
			}
			e.expect(e.do(&ann, "POST", "/v1/rides/"+id+"/cancel", ""), 200, "") // retry
			e.match(id, ann, dan, "m1-"+id)
			waitFor(t, "release of the late match", func() bool {
				return len(e.out.kinds(id)) == 3 // requested, cancelled, cancelled (release)
			})
			var rel hitch.RideCancelled
			e.out.mu.Lock()
			last := e.out.msgs[len(e.out.msgs)-1]
			e.out.mu.Unlock()
			hitch.Decode(hitch.KindRideCancelled, last.Body, &rel)
			if last.Headers["kind"] != hitch.KindRideCancelled || rel.DriverID != dan.ID || rel.By != "rider" {
				t.Fatalf("release %s %+v", last.Headers["kind"], rel)
			}
			if e.status(ann, id) != "cancelled" {
				t.Fatal("late match revived a cancelled ride")
			}
			if got := e.streamKinds(id); !eq(got, []string{hitch.KindRideRequested, hitch.KindRideCancelled}) {
				t.Fatalf("stream %v", got)
			}
		})
		t.Run("by driver after the match", func(t *testing.T) {
			id := e.request(ann)
			e.match(id, ann, dan, "m2-"+id)
			e.waitStatus(ann, id, "matched")
			e.expect(e.do(&dora, "POST", "/v1/rides/"+id+"/cancel", ""), 404, "ride_not_found")
			r := e.do(&dan, "POST", "/v1/rides/"+id+"/cancel", "")
			e.expect(r, 200, "")
			if r.body["cancelled_by"] != "driver" {
				t.Fatalf("%v", r.body)
			}
			e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/start", ""), 409, "ride_state_conflict")
		})
		t.Run("after start refused", func(t *testing.T) {
			id := e.request(ann)
			e.match(id, ann, dan, "m3-"+id)
			e.waitStatus(ann, id, "matched")
			e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/start", ""), 200, "")
			e.expect(e.do(&ann, "POST", "/v1/rides/"+id+"/cancel", ""), 409, "ride_state_conflict")
			e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/cancel", ""), 409, "ride_state_conflict")
			if e.status(ann, id) != "started" {
				t.Fatal("not started")
			}
		})
	})
}

func TestPaymentFailed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		id := e.request(ann)
		e.match(id, ann, dan, "m-"+id)
		e.waitStatus(ann, id, "matched")
		e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/start", ""), 200, "")
		e.expect(e.do(&dan, "POST", "/v1/rides/"+id+"/finish", ""), 200, "")
		e.publish(hitch.QueueRidesPayments, hitch.KindPaymentFailed, "f-"+id, id, hitch.PaymentFailed{
			RideRef: hitch.RideRef{RideID: id, RiderID: ann.ID, DriverID: dan.ID}, Reason: "card declined"})
		e.waitStatus(ann, id, "payment_failed")
		waitFor(t, "ride.payment_failed published", func() bool { return e.out.find(id, hitch.KindRidePayFailed) != nil })
		// A charge that arrives after the failure changes nothing.
		e.publish(hitch.QueueRidesPayments, hitch.KindPaymentCharged, "c-"+id, id, hitch.PaymentCharged{
			RideRef: hitch.RideRef{RideID: id, RiderID: ann.ID, DriverID: dan.ID}, AmountCents: 1})
		waitFor(t, "the charge ignored", func() bool { return e.svc.Stats().Ignored >= 1 })
		if e.status(ann, id) != "payment_failed" {
			t.Fatal("status moved")
		}
	})
}

// The attacker's cases: no identity, wrong role, someone else's ride,
// bad JSON, huge bodies, unknown paths, idempotency keys.
func TestRequestsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		body := rideBody(pickup, dropoff)
		e.expect(e.do(nil, "POST", "/v1/rides", body), 401, "unauthenticated")
		e.expect(e.do(&hitch.Caller{ID: "x", Role: "admin"}, "POST", "/v1/rides", body), 401, "unauthenticated")
		e.expect(e.do(&dan, "POST", "/v1/rides", body), 403, "wrong_role")
		for _, c := range []struct{ body, field string }{
			{`{`, "body"},
			{`[]`, "body"},
			{`{"from": {"lat": 1, "lon": 2}}`, "to: missing"},
			{`{"to": {"lat": 1, "lon": 2}}`, "from: missing"},
			{`{"from": {"lat": 91, "lon": 2}, "to": {"lat": 1, "lon": 2}}`, "from:"},
			{`{"from": {"lat": 1, "lon": 2}, "to": {"lat": 1, "lon": 200}}`, "to:"},
			{`{"from": {"lat": "x", "lon": 2}, "to": {"lat": 1, "lon": 2}}`, "body"},
			{`{"from": {"lat": 1, "lon": 2}, "to": {"lat": 1, "lon": 2}, "fare": 0}`, "unknown field"},
			{`{"from": {"lat": 1, "lon": 2}, "to": {"lat": 1, "lon": 2}} {}`, "trailing"},
			{``, "body"},
			{`{"from": {"lat": 40.63, "lon": -74.08}, "to": {"lat": 40.63, "lon": -74.08}}`, "want a ride of at least 0.1 mi"},
		} {
			r := e.do(&ann, "POST", "/v1/rides", c.body)
			e.expect(r, 400, "bad_request")
			if !strings.Contains(r.body["error"].(string), c.field) {
				t.Errorf("body %q: error %q does not name %q", c.body, r.body["error"], c.field)
			}
		}
		huge := `{"from": {"lat": 1, "lon": 2}, "to": {"lat": 1, "lon": 2}, "x": "` + strings.Repeat("a", 70<<10) + `"}`
		e.expect(e.do(&ann, "POST", "/v1/rides", huge), 413, "body_too_large")
		e.expect(e.do(&ann, "GET", "/v1/rides/nope", ""), 404, "ride_not_found")
		for _, bad := range []string{"%00", "%ff", "a%00b", strings.Repeat("x", 300)} {
			e.expect(e.do(&ann, "GET", "/v1/rides/"+bad, ""), 404, "ride_not_found")
			e.expect(e.do(&dan, "POST", "/v1/rides/"+bad+"/start", ""), 404, "ride_not_found")
			e.expect(e.do(&ann, "POST", "/v1/rides/"+bad+"/cancel", ""), 404, "ride_not_found")
		}
		e.expect(e.do(&ann, "GET", "/v1/nothing", ""), 404, "not_found")

		id := e.request(ann)
		e.expect(e.do(&bob, "GET", "/v1/rides/"+id, ""), 404, "ride_not_found")
		e.expect(e.do(&ann, "POST", "/v1/rides/"+id+"/start", ""), 403, "wrong_role")
		e.expect(e.do(&ann, "POST", "/v1/rides/"+id+"/finish", ""), 403, "wrong_role")
		e.expect(e.do(&ann, "POST", "/v1/rides/"+id+"/cancel", `{"x": 1}`), 400, "bad_request")
		e.expect(e.do(nil, "GET", "/v1/rides/"+id, ""), 401, "unauthenticated")

		// Idempotency keys: same key, same rider -> same ride.
		r1 := e.do(&bob, "POST", "/v1/rides", body, "Idempotency-Key", "k-1")
		e.expect(r1, 202, "")
		r2 := e.do(&bob, "POST", "/v1/rides", body, "Idempotency-Key", "k-1")
		e.expect(r2, 202, "")
		if r1.body["ride_id"] != r2.body["ride_id"] || r2.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay gave %v (%v), first %v", r2.body, r2.header, r1.body)
		}
		e.expect(e.do(&bob, "POST", "/v1/rides", rideBody(dropoff, pickup), "Idempotency-Key", "k-1"), 422, "idempotency_key_reused")
		e.expect(e.do(&bob, "POST", "/v1/rides", body, "Idempotency-Key", "bad key"), 400, "bad_idempotency_key")
		e.expect(e.do(&bob, "POST", "/v1/rides", body, "Idempotency-Key", ""), 400, "bad_idempotency_key")
		// Another rider's key of the same name is another request.
		e.expect(e.do(&ann, "POST", "/v1/rides", body, "Idempotency-Key", "k-1"), 409, "active_ride_exists")
		bid := r1.body["ride_id"].(string)
		if got := e.streamKinds(bid); len(got) != 1 {
			t.Fatalf("stream of the idempotent ride %v", got)
		}

		// Concurrent requests of one rider: exactly one ride.
		carl := hitch.Caller{ID: "rider-carl", Role: hitch.RoleRider}
		var wg sync.WaitGroup
		codes := make([]int, 8)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", e.srv.URL+"/v1/rides", bytes.NewReader([]byte(body)))
				req.Header.Set(hitch.HeaderUser, carl.ID)
				req.Header.Set(hitch.HeaderScopes, carl.Role)
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					codes[i] = res.StatusCode
					res.Body.Close()
				}
			}()
		}
		wg.Wait()
		n := 0
		for _, c := range codes {
			if c == 202 {
				n++
			} else if c != 409 {
				t.Errorf("concurrent request: status %d", c)
			}
		}
		if n != 1 {
			t.Fatalf("%d concurrent requests created %d rides, want 1 (%v)", len(codes), n, codes)
		}
		e.expect(e.do(&ann, "GET", "/healthz", ""), 200, "")
	})
}

// A message delivered again (same id) or an event sent twice (a new id,
// as a producer bug or a re-publish after the inbox forgot it) changes
// a ride once; unknown kinds and garbage are acked and ignored.
func TestReplayedEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		id := e.request(ann)
		for range 3 {
			e.match(id, ann, dan, "same-id") // the queue's dedup window drops these
		}
		e.match(id, ann, dan, "another-id") // applies to a matched ride: ignored
		e.publish(hitch.QueueRidesMatching, "match.weird", "w-1", id, map[string]int{"x": 1})
		if err := e.bus.Publish(context.Background(), "queue:"+hitch.QueueRidesMatching,
			broker.Message{ID: "garbage", Key: id, Body: []byte("{not json"), Headers: map[string]string{"kind": hitch.KindMatchFound}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "everything consumed", func() bool {
			st := e.svc.Stats()
			return st.Applied == 1 && st.Ignored == 2 && st.Malformed == 1
		})
		if got := e.streamKinds(id); !eq(got, []string{hitch.KindRideRequested, hitch.KindRideMatched}) {
			t.Fatalf("stream %v", got)
		}
	})
}

// Two replicas of rides on one database consume the same queues while
// every match is delivered twice under different ids and twice under
// the same id: each ride's stream holds each event once.
func TestTwoReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		b := hitchtest.StartBroker(t)
		svc1, srv1 := start(t, db, b, rides.Config{})
		svc2, _ := start(t, db, b, rides.Config{})
		e := &env{t: t, svc: svc1, srv: srv1, bus: b.Open(t)}
		e.out = collect(t, e.bus, hitch.QueueMatchingRides)
		const n = 20
		ids := make([]string, n)
		for i := range ids {
			ids[i] = e.request(hitch.Caller{ID: fmt.Sprintf("rider-%d", i), Role: hitch.RoleRider})
		}
		for round := range 2 {
			for i, id := range ids {
				rider := hitch.Caller{ID: fmt.Sprintf("rider-%d", i)}
				e.match(id, rider, dan, fmt.Sprintf("m-%d-%d", i, round))
				e.match(id, rider, dan, fmt.Sprintf("m-%d-%d", i, round))
			}
		}
		for i, id := range ids {
			e.waitStatus(hitch.Caller{ID: fmt.Sprintf("rider-%d", i), Role: hitch.RoleRider}, id, "matched")
		}
		waitFor(t, "all matches consumed", func() bool {
			a, b := svc1.Stats(), svc2.Stats()
			return a.Applied+b.Applied == n && a.Ignored+b.Ignored >= n
		})
		for _, id := range ids {
			if got := e.streamKinds(id); !eq(got, []string{hitch.KindRideRequested, hitch.KindRideMatched}) {
				t.Fatalf("ride %s stream %v", id, got)
			}
		}
		waitFor(t, "every event published", func() bool {
			for _, id := range ids {
				if len(e.out.kinds(id)) < 2 {
					return false
				}
			}
			return true
		})
		for _, id := range ids {
			if got := e.out.kinds(id); !eq(got, []string{hitch.KindRideRequested, hitch.KindRideMatched}) {
				t.Fatalf("ride %s published %v", id, got)
			}
		}
		t.Logf("replica 1 %+v, replica 2 %+v", svc1.Stats(), svc2.Stats())
	})
}

func TestConfigValidate(t *testing.T) {
	err := rides.Config{Fares: hitch.Fares{BaseCents: -1, FeePercent: 120}, Consumers: -1, RelayLeaseTTL: time.Millisecond}.Validate()
	for _, key := range []string{"fares.base_cents", "fares.fee_percent", "consumers", "relay_lease_ttl"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
	if err := (rides.Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}
