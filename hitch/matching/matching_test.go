package matching

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/geo"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

const mi = 1 / geo.MilesPerDegree // a mile of latitude (and of longitude on the equator) in degrees

// pt is a point x miles east and y miles north of (0, 0): near the equator
// degrees and miles convert without distortion worth a test's worry.
func pt(x, y float64) hitch.Point { return hitch.Point{Lat: y * mi, Lon: x * mi} }

type env struct {
	t    *testing.T
	b    *hitchtest.Broker
	bus  message.Backend
	db   *store.DB
	mu   sync.Mutex
	evs  map[string]map[string]int // ride -> kind -> count of distinct event ids
	seen map[string]bool
	got  map[string]hitch.MatchFound
}

func newEnv(t *testing.T, db *store.DB) *env {
	e := &env{t: t, b: hitchtest.StartBroker(t), db: db, evs: map[string]map[string]int{}, seen: map[string]bool{}, got: map[string]hitch.MatchFound{}}
	e.bus = e.b.Open(t)
	// Read what matching emits, as the rides service would.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.b.Open(t).Subscribe(ctx, "queue:"+hitch.QueueRidesMatching, message.SubscribeOptions{}, func(d *message.Delivery) {
			e.mu.Lock()
			if !e.seen[d.ID] {
				e.seen[d.ID] = true
				if e.evs[d.Key] == nil {
					e.evs[d.Key] = map[string]int{}
				}
				e.evs[d.Key][d.Headers["kind"]]++
				if d.Headers["kind"] == hitch.KindMatchFound {
					var m hitch.MatchFound
					json.Unmarshal(d.Body, &m)
					e.got[d.Key] = m
				}
			}
			e.mu.Unlock()
			d.Ack(context.Background())
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *env) service(cfg Config) *Service {
	e.t.Helper()
	if cfg.RecheckEvery == 0 {
		cfg.RecheckEvery = 100 * time.Millisecond
	}
	if cfg.RelayPollInterval == 0 {
		cfg.RelayPollInterval = 100 * time.Millisecond
	}
	s, err := New(context.Background(), e.db, e.b.Open(e.t), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) run(s *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
}

func (e *env) publish(kind, id, ride string, payload any) {
	e.t.Helper()
	m, err := hitch.Event(kind, id, ride, payload)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.bus.Publish(context.Background(), "topic:"+hitch.TopicRides, m); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) request(ride string, from, to hitch.Point) {
	e.publish(hitch.KindRideRequested, "req-"+ride, ride, hitch.RideRequested{
		RideRef: hitch.RideRef{RideID: ride, RiderID: "rider-" + ride, At: time.Now()}, From: from, To: to})
}

// outcome waits for the ride's match.found or match.none and returns the
// kind and the driver.
func (e *env) outcome(ride string, within time.Duration) (string, string) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		k := e.evs[ride]
		m := e.got[ride]
		e.mu.Unlock()
		switch {
		case k[hitch.KindMatchFound] > 0:
			return hitch.KindMatchFound, m.DriverID
		case k[hitch.KindMatchNone] > 0:
			return hitch.KindMatchNone, ""
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("ride %s: no outcome within %s", ride, within)
	return "", ""
}

type resp struct {
	Status int
	Body   string
}

func (r resp) code() string {
	var v struct{ Code string }
	json.Unmarshal([]byte(r.Body), &v)
	return v.Code
}

func post(h http.Handler, user, role, body string) resp {
	req := httptest.NewRequest("POST", "/v1/drivers/me/availability", strings.NewReader(body))
	if user != "" {
		req.Header.Set(hitch.HeaderUser, user)
		req.Header.Set(hitch.HeaderScopes, role)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return resp{w.Code, w.Body.String()}
}

func ready(t *testing.T, h http.Handler, driver string, from, to hitch.Point, seats int) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"ready": true, "from": from, "to": to, "seats": seats})
	if r := post(h, driver, hitch.RoleDriver, string(b)); r.Status != 200 {
		t.Fatalf("%s ready: %d %s", driver, r.Status, r.Body)
	}
}

func reserved(t *testing.T, db *store.DB, driver string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT reserved FROM hm_drivers WHERE driver_id = ?", driver).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAvailability(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		h := e.service(Config{}).Handler()
		good := `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":3}`
		for _, tc := range []struct {
			name, user, role, body string
			status                 int
			code                   string
		}{
			{"no identity", "", "", good, 401, "unauthenticated"},
			{"rider", "r1", "rider", good, 403, "forbidden"},
			{"not JSON", "d1", "driver", `ready`, 400, "bad_json"},
			{"unknown field", "d1", "driver", `{"ready":true,"price":3}`, 400, "bad_json"},
			{"two objects", "d1", "driver", good + good, 400, "bad_json"},
			{"ready missing", "d1", "driver", `{"seats":2}`, 400, "missing_field"},
			{"ready a string", "d1", "driver", `{"ready":"yes"}`, 400, "bad_json"},
			{"from missing", "d1", "driver", `{"ready":true,"to":{"lat":0,"lon":0.1},"seats":1}`, 400, "missing_field"},
			{"seats missing", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1}}`, 400, "missing_field"},
			{"lat 91", "d1", "driver", `{"ready":true,"from":{"lat":91,"lon":0},"to":{"lat":0,"lon":0.1},"seats":1}`, 400, "invalid_from"},
			{"lon 200", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":200},"seats":1}`, 400, "invalid_to"},
			{"overflowing number", "d1", "driver", `{"ready":true,"from":{"lat":1e999,"lon":0},"to":{"lat":0,"lon":0.1},"seats":1}`, 400, "bad_json"},
			{"seats 0", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":0}`, 400, "invalid_seats"},
			{"seats 1000", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":1000}`, 400, "invalid_seats"},
			{"seats -1", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":-1}`, 400, "invalid_seats"},
			{"seats 1.5", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":1.5}`, 400, "bad_json"},
			{"route of zero length", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0},"seats":1}`, 400, "invalid_to"},
			{"route around the world", "d1", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":90},"seats":1}`, 400, "invalid_to"},
			{"huge body", "d1", "driver", `{"ready":true,` + strings.Repeat(" ", 5000) + `"seats":1}`, 413, "body_too_large"},
		} {
			if r := post(h, tc.user, tc.role, tc.body); r.Status != tc.status || r.code() != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
		r := post(h, "d1", "driver", good)
		var a Availability
		json.Unmarshal([]byte(r.Body), &a)
		if r.Status != 200 || !a.Ready || a.Seats != 3 || a.Reserved != 0 || a.To == nil || a.To.Lon != 0.1 {
			t.Fatalf("offer: %d %s", r.Status, r.Body)
		}
		r = post(h, "d1", "driver", `{"ready":false}`)
		json.Unmarshal([]byte(r.Body), &a)
		if r.Status != 200 || a.Ready || a.Seats != 3 {
			t.Fatalf("withdraw: %d %s", r.Status, r.Body)
		}
		if r := post(h, "d-new", "driver", `{"ready":false}`); r.Status != 200 {
			t.Fatalf("withdraw without an offer: %d %s", r.Status, r.Body)
		}
		if r := httptest.NewRecorder(); true {
			h.ServeHTTP(r, httptest.NewRequest("GET", "/healthz", nil))
			if r.Code != 200 {
				t.Fatalf("healthz: %d", r.Code)
			}
		}
	})
}

// The matching rule, end to end through the broker: corridor, direction,
// smallest detour, seats, retries until the timeout, then match.none;
// cancel and finish free the seat.
func TestMatching(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.service(Config{MatchTimeout: 2 * time.Second})
		e.run(s)
		h := s.Handler()
		// Two drivers eastward along the equator for 10 miles; "wide" sits
		// 0.3 mi north, so a rider on the line is a longer detour for it.
		ready(t, h, "d-line", pt(0, 0), pt(10, 0), 1)
		ready(t, h, "d-wide", pt(0, 0.3), pt(10, 0.3), 1)

		e.request("r1", pt(2, 0), pt(8, 0))
		if k, d := e.outcome("r1", 10*time.Second); k != hitch.KindMatchFound || d != "d-line" {
			t.Fatalf("r1 on the line: %s %s, want d-line (smallest detour)", k, d)
		}
		e.request("r2", pt(2, 0), pt(8, 0))
		if k, d := e.outcome("r2", 10*time.Second); k != hitch.KindMatchFound || d != "d-wide" {
			t.Fatalf("r2: %s %s, want d-wide (d-line is full)", k, d)
		}
		e.mu.Lock()
		if m := e.got["r2"]; m.RiderID != "rider-r2" || !(m.DetourMi > 0.01) {
			t.Errorf("match.found payload: %+v", m)
		}
		e.mu.Unlock()
		// Full: r3 waits, then gets match.none after the timeout.
		start := time.Now()
		e.request("r3", pt(2, 0), pt(8, 0))
		if k, _ := e.outcome("r3", 10*time.Second); k != hitch.KindMatchNone {
			t.Fatalf("r3 with every seat taken: %s", k)
		}
		if el := time.Since(start); el < 1500*time.Millisecond {
			t.Errorf("match.none after %s, before the 2s timeout", el)
		}
		// Against the direction of travel, and off the corridor: none.
		ready(t, h, "d-free", pt(0, -0.3), pt(10, -0.3), 4)
		e.request("r-back", pt(8, 0), pt(2, 0))
		e.request("r-off", pt(2, 0), pt(8, 0.7))
		for _, r := range []string{"r-back", "r-off"} {
			if k, d := e.outcome(r, 10*time.Second); k != hitch.KindMatchNone {
				t.Errorf("%s: %s %s, want match.none", r, k, d)
			}
		}
		// A ride waiting is matched when a driver turns up within the time.
		e.request("r-late", pt(20, 0), pt(25, 0))
		time.Sleep(300 * time.Millisecond) // the first attempt found nobody
		ready(t, h, "d-late", pt(19, 0), pt(30, 0), 1)
		if k, d := e.outcome("r-late", 10*time.Second); k != hitch.KindMatchFound || d != "d-late" {
			t.Fatalf("r-late: %s %s", k, d)
		}
		// Cancel frees d-line's seat; finish frees d-wide's; twice is once.
		e.publish(hitch.KindRideCancelled, "cancel-r1", "r1", hitch.RideCancelled{RideRef: hitch.RideRef{RideID: "r1", RiderID: "rider-r1"}, By: "rider"})
		e.publish(hitch.KindRideCancelled, "cancel-r1-again", "r1", hitch.RideCancelled{RideRef: hitch.RideRef{RideID: "r1", RiderID: "rider-r1"}, By: "rider"})
		e.publish(hitch.KindRideFinished, "finish-r2", "r2", hitch.RideFinished{RideRef: hitch.RideRef{RideID: "r2", RiderID: "rider-r2", DriverID: "d-wide"}})
		waitFor(t, func() bool { return reserved(t, db, "d-line") == 0 && reserved(t, db, "d-wide") == 0 })
		e.request("r4", pt(2, 0), pt(8, 0))
		if k, d := e.outcome("r4", 10*time.Second); k != hitch.KindMatchFound || d != "d-line" {
			t.Fatalf("r4 after the cancel: %s %s", k, d)
		}
		// Seats cannot drop below what is reserved.
		if r := post(h, "d-line", "driver", `{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":1}`); r.Status != 200 {
			t.Fatalf("same seats, new route: %d %s", r.Status, r.Body)
		}
		// A withdrawn driver gets no riders.
		post(h, "d-free", "driver", `{"ready":false}`)
		e.request("r5", pt(2, -0.35), pt(8, -0.35)) // d-line is full, d-wide 0.65 mi away
		if k, d := e.outcome("r5", 10*time.Second); k != hitch.KindMatchNone {
			t.Fatalf("r5 with d-free withdrawn: %s %s", k, d)
		}
		// A cancel before the request (another order on a backend without
		// key order) keeps the request from being matched.
		e.publish(hitch.KindRideCancelled, "cancel-r6", "r6", hitch.RideCancelled{RideRef: hitch.RideRef{RideID: "r6"}})
		waitFor(t, func() bool { return rideState(t, db, "r6") == stateCancelled })
		ready(t, h, "d-6", pt(0, 5), pt(10, 5), 2)
		e.request("r6", pt(2, 5), pt(8, 5))
		e.request("r7", pt(2, 5), pt(8, 5)) // behind r6 on the queue
		if k, d := e.outcome("r7", 10*time.Second); k != hitch.KindMatchFound || d != "d-6" {
			t.Fatalf("r7: %s %s", k, d)
		}
		if st := rideState(t, db, "r6"); st != stateCancelled || reserved(t, db, "d-6") != 1 {
			t.Fatalf("r6 requested after its cancel: state %s, d-6 reserved %d", st, reserved(t, db, "d-6"))
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for ride, kinds := range e.evs {
			if kinds[hitch.KindMatchFound]+kinds[hitch.KindMatchNone] != 1 {
				t.Errorf("ride %s: outcomes %v, want exactly one", ride, kinds)
			}
		}
	})
}

func rideState(t *testing.T, db *store.DB, ride string) string {
	var s string
	db.QueryRow(context.Background(), "SELECT state FROM hm_rides WHERE ride_id = ?", ride).Scan(&s)
	return s
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replays: the same event delivered again (its id known to the inbox), a
// copy of a request under a new id, a second cancel under a new id, bad
// payloads and unknown kinds change nothing.
func TestReplays(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.service(Config{})
		ready(t, s.Handler(), "d1", pt(0, 0), pt(10, 0), 2)
		ctx := context.Background()
		deliver := func(kind, id, ride string, payload any) {
			t.Helper()
			m, _ := hitch.Event(kind, id, ride, payload)
			if err := s.handle(ctx, message.NewDelivery(message.Dest{}, m, 1, time.Now(), nil)); err != nil {
				t.Fatalf("%s %s: %v", kind, id, err)
			}
		}
		req := hitch.RideRequested{RideRef: hitch.RideRef{RideID: "r1", RiderID: "u1", At: time.Now()}, From: pt(1, 0), To: pt(3, 0)}
		deliver(hitch.KindRideRequested, "ev-1", "r1", req)
		deliver(hitch.KindRideRequested, "ev-1", "r1", req)     // redelivered
		deliver(hitch.KindRideRequested, "ev-1-bis", "r1", req) // re-sent under a new id
		if n := reserved(t, db, "d1"); n != 1 {
			t.Fatalf("after a request and two replays d1 has %d seats reserved, want 1", n)
		}
		deliver(hitch.KindRideCancelled, "c-1", "r1", hitch.RideRef{RideID: "r1"})
		deliver(hitch.KindRideCancelled, "c-1", "r1", hitch.RideRef{RideID: "r1"})
		deliver(hitch.KindRideCancelled, "c-2", "r1", hitch.RideRef{RideID: "r1"})
		deliver(hitch.KindRideFinished, "f-1", "r1", hitch.RideRef{RideID: "r1"})
		if n := reserved(t, db, "d1"); n != 0 {
			t.Fatalf("after cancels and a finish d1 has %d reserved, want 0", n)
		}
		// Garbage is acknowledged and ignored.
		for _, m := range []broker.Message{
			{ID: "bad-1", Key: "x", Body: []byte("{"), Headers: map[string]string{"kind": hitch.KindRideRequested}},
			{ID: "bad-2", Key: "x", Body: []byte(`{"ride_id":"x","rider_id":"u","from":{"lat":99,"lon":0},"to":{"lat":0,"lon":0}}`), Headers: map[string]string{"kind": hitch.KindRideRequested}},
			{ID: "bad-3", Key: "x", Body: []byte(`{"ride_id":"","rider_id":"u"}`), Headers: map[string]string{"kind": hitch.KindRideRequested}},
			{ID: "other", Key: "x", Body: []byte(`{}`), Headers: map[string]string{"kind": hitch.KindRideStarted}},
			{ID: "", Key: "x", Body: []byte(`{}`), Headers: map[string]string{"kind": "surprise"}},
		} {
			if err := s.handle(ctx, message.NewDelivery(message.Dest{}, m, 1, time.Now(), nil)); err != nil {
				t.Fatalf("%s: %v", m.ID, err)
			}
		}
		var n int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM hm_rides WHERE ride_id = 'x'").Scan(&n)
		if n != 0 {
			t.Fatal("an invalid request was recorded")
		}
		if p, _ := pendingOutbox(db); p != 1 {
			t.Fatalf("outbox holds %d messages, want the one match.found", p)
		}
	})
}

func pendingOutbox(db *store.DB) (int, error) {
	var n int
	err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM sy_outbox").Scan(&n)
	return n, err
}

// Two replicas consuming the same queue and re-checking the same table:
// never one seat to two riders, never a ride matched twice.
func TestTwoReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		// Rides left without a seat end at MatchTimeout, which is then the
		// test's length; 3s let a loaded CI machine (race detector, four
		// busy loops here) time rides out before the drivers' seats were
		// offered (2-6 of 10 seats taken).
		const matchTimeout = 10 * time.Second
		a := e.service(Config{MatchTimeout: matchTimeout, RecheckEvery: 50 * time.Millisecond})
		b := e.service(Config{MatchTimeout: matchTimeout, RecheckEvery: 50 * time.Millisecond})
		e.run(a)
		e.run(b)
		const drivers, seats, rides = 5, 2, 24
		// Rides first, then the drivers, half through each replica, so both
		// replicas' re-checks race for the same waiting rides.
		var wg sync.WaitGroup
		for i := 0; i < rides; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				e.request(fmt.Sprintf("ride-%02d", i), pt(1+float64(i%3)*0.1, 0), pt(8, 0.1))
			}(i)
		}
		wg.Wait()
		for d := 0; d < drivers; d++ {
			h := a.Handler()
			if d%2 == 1 {
				h = b.Handler()
			}
			ready(t, h, fmt.Sprintf("driver-%d", d), pt(0, 0), pt(10, 0), seats)
		}
		found := map[string]int{}
		for i := 0; i < rides; i++ {
			k, d := e.outcome(fmt.Sprintf("ride-%02d", i), matchTimeout+20*time.Second)
			if k == hitch.KindMatchFound {
				found[d]++
			}
		}
		total := 0
		for d, n := range found {
			total += n
			if n > seats {
				t.Errorf("%s got %d riders for %d seats", d, n, seats)
			}
			if r := reserved(t, db, d); r != n {
				t.Errorf("%s: %d reserved in the table, %d match.found", d, r, n)
			}
		}
		if total != drivers*seats {
			t.Errorf("%d rides matched, want every one of the %d seats taken", total, drivers*seats)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for ride, kinds := range e.evs {
			if kinds[hitch.KindMatchFound]+kinds[hitch.KindMatchNone] != 1 {
				t.Errorf("ride %s: outcomes %v, want exactly one", ride, kinds)
			}
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := Config{CorridorMi: -1, MaxSeats: 1000, MinRouteMi: 5, MaxRouteMi: 1}.WithDefaults().Validate()
	for _, key := range []string{"corridor_mi", "max_seats", "min_route_mi"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate does not name %s: %v", key, err)
		}
	}
}

// A seat freed by a cancel (or a finish) goes at once, in the same
// transaction, to the oldest waiting ride that fits; an offer of seats
// does the same. No Run: nothing waits for a re-check.
func TestFreedSeatGoesToWaitingRide(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.service(Config{MatchTimeout: time.Hour, RecheckEvery: time.Hour})
		ctx := context.Background()
		deliver := func(kind, id, ride string, payload any) {
			t.Helper()
			m, _ := hitch.Event(kind, id, ride, payload)
			if err := s.handle(ctx, message.NewDelivery(message.Dest{}, m, 1, time.Now(), nil)); err != nil {
				t.Fatalf("%s %s: %v", kind, id, err)
			}
		}
		reqst := func(ride string, from, to hitch.Point) {
			deliver(hitch.KindRideRequested, "req-"+ride, ride, hitch.RideRequested{RideRef: hitch.RideRef{RideID: ride, RiderID: "u-" + ride, At: time.Now()}, From: from, To: to})
		}
		reqst("w1", pt(1, 0), pt(4, 0)) // waits: nobody offers seats yet
		if st := rideState(t, db, "w1"); st != stateSearching {
			t.Fatalf("w1: %s", st)
		}
		ready(t, s.Handler(), "d1", pt(0, 0), pt(10, 0), 1) // the offer matches w1
		if st := rideState(t, db, "w1"); st != stateMatched || reserved(t, db, "d1") != 1 {
			t.Fatalf("after the offer w1 is %s, d1 reserved %d", st, reserved(t, db, "d1"))
		}
		reqst("w2", pt(2, 0), pt(5, 0))
		reqst("w3", pt(2, 0), pt(5, 0))
		reqst("w-back", pt(5, 0), pt(2, 0)) // never fits d1's direction
		deliver(hitch.KindRideCancelled, "c-w1", "w1", hitch.RideRef{RideID: "w1"})
		if a, b := rideState(t, db, "w2"), rideState(t, db, "w3"); a != stateMatched || b != stateSearching || reserved(t, db, "d1") != 1 {
			t.Fatalf("after w1's cancel: w2 %s, w3 %s, d1 reserved %d", a, b, reserved(t, db, "d1"))
		}
		deliver(hitch.KindRideFinished, "f-w2", "w2", hitch.RideRef{RideID: "w2"})
		if b, c := rideState(t, db, "w3"), rideState(t, db, "w-back"); b != stateMatched || c != stateSearching {
			t.Fatalf("after w2's finish: w3 %s, w-back %s", b, c)
		}
		if p, _ := pendingOutbox(db); p != 3 {
			t.Fatalf("outbox holds %d, want three match.found", p)
		}
	})
}

// Fuzz the availability body: any bytes are answered 200, 400, 409 or 413
// with a JSON body, never a panic or a 5xx.
func FuzzAvailability(f *testing.F) {
	f.Add(`{"ready":true,"from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0.1},"seats":3}`)
	f.Add(`{"ready":false}`)
	f.Add(`{"ready":true,"from":{"lat":90,"lon":180},"to":{"lat":-90,"lon":-180},"seats":8}`)
	f.Add(`{"ready":true,"from":{"lat":0,"lon":179.99},"to":{"lat":0,"lon":-179.99},"seats":1}`)
	f.Add(`{"ready":true,"from":null,"to":{},"seats":null}`)
	db, err := store.Open(context.Background(), "sqlite:"+f.TempDir()+"/m.db")
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	s, err := New(context.Background(), db, nopBus{}, Config{})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		r := post(h, "d-fuzz", hitch.RoleDriver, body)
		switch r.Status {
		case 200, 400, 409, 413:
		default:
			t.Fatalf("%q: %d %s", body, r.Status, r.Body)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(r.Body), &v); err != nil {
			t.Fatalf("%q: %v in %s", body, err, r.Body)
		}
	})
}

// nopBus is a message.Backend that drops what it is given.
type nopBus struct{}

func (nopBus) Publish(context.Context, string, ...broker.Message) error { return nil }
func (nopBus) Subscribe(ctx context.Context, _ string, _ message.SubscribeOptions, _ func(*message.Delivery)) error {
	<-ctx.Done()
	return ctx.Err()
}
func (nopBus) Close() error { return nil }

// clean forgets ended rides and inbox ids older than the retention, and
// keeps the rest.
func TestClean(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.service(Config{InboxRetention: time.Hour})
		ctx := context.Background()
		m, _ := hitch.Event(hitch.KindRideCancelled, "c-old", "old", hitch.RideRef{RideID: "old"})
		if err := s.handle(ctx, message.NewDelivery(message.Dest{}, m, 1, time.Now(), nil)); err != nil {
			t.Fatal(err)
		}
		m, _ = hitch.Event(hitch.KindRideRequested, "r-new", "new", hitch.RideRequested{RideRef: hitch.RideRef{RideID: "new", RiderID: "u"}, From: pt(0, 0), To: pt(1, 0)})
		if err := s.handle(ctx, message.NewDelivery(message.Dest{}, m, 1, time.Now(), nil)); err != nil {
			t.Fatal(err)
		}
		s.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		db.Exec(ctx, "UPDATE sy_inbox SET processed_ms = ? WHERE msg_id = 'c-old'", time.Now().Add(-2*time.Hour).UnixMilli())
		if err := s.clean(ctx); err != nil {
			t.Fatal(err)
		}
		if rideState(t, db, "old") != "" || rideState(t, db, "new") != stateSearching {
			t.Fatalf("after clean: old %q, new %q", rideState(t, db, "old"), rideState(t, db, "new"))
		}
		var n int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_inbox WHERE consumer = ?", consumer).Scan(&n)
		if n != 1 {
			t.Fatalf("inbox keeps %d ids, want the recent one", n)
		}
	})
}
