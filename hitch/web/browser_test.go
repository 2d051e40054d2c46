package web_test

// The browser test: headless Chromium (Debian's chromium) drives the app
// through register -> login -> availability (driver) -> request a ride
// (rider, picking on the map) -> driver_found / passenger_found -> start
// -> finish -> receipt and payout, in two tabs.
//
// By default it serves the app behind fakeAPI, which implements just
// enough of Hitch's public API (and pushes events through the real
// notifications service). HITCH_WEB_URL=http://127.0.0.1:8080 points it
// at a running `switchyard hitch up` instead; HITCH_CHROMIUM names the
// browser binary (default: chromium, chromium-browser, google-chrome on
// PATH). Without a browser the test is skipped, saying so.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/notifications"
	"github.com/switchyard/switchyard/hitch/web"
	"github.com/switchyard/switchyard/hitch/web/webtest"
)

func TestBrowserRideFlow(t *testing.T) {
	base := os.Getenv("HITCH_WEB_URL")
	if base == "" {
		base = startFakeAPI(t)
	}
	webtest.RideFlow(t, base)
}

// ---- a fake of Hitch's public API, just enough for the flow ----

type fakeUser struct{ id, role, email, password string }

type fakeRide struct {
	id, rider, driver, status string
	from, to                  hitch.Point
	fare, fee                 int64
}

type fakeAPI struct {
	notes *notifications.Service
	mu    sync.Mutex
	users map[string]*fakeUser // by email
	byID  map[string]*fakeUser
	avail map[string]bool        // drivers ready
	pos   map[string]hitch.Point // driver positions
	rides map[string]*fakeRide
	paid  map[string]int64 // driver -> net paid
	seq   int
}

func startFakeAPI(t *testing.T) string {
	t.Helper()
	app, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	notes, err := notifications.New(context.Background(), nil, nil, notifications.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAPI{notes: notes, users: map[string]*fakeUser{}, byID: map[string]*fakeUser{}, avail: map[string]bool{},
		pos: map[string]hitch.Point{}, rides: map[string]*fakeRide{}, paid: map[string]int64{}}
	mux := http.NewServeMux()
	mux.Handle("/", app)
	mux.HandleFunc("POST /v1/auth/register", f.register)
	mux.HandleFunc("POST /v1/auth/login", f.login)
	// The rest needs a token, turned into the gateway's identity headers.
	authed := http.NewServeMux()
	authed.HandleFunc("PUT /v1/drivers/me/location", f.location)
	authed.HandleFunc("GET /v1/drivers/nearby", f.nearby)
	authed.HandleFunc("POST /v1/drivers/me/availability", f.availability)
	authed.HandleFunc("GET /v1/drivers/me/earnings", f.earnings)
	authed.HandleFunc("POST /v1/rides", f.request)
	authed.HandleFunc("GET /v1/rides/{id}", f.ride)
	authed.HandleFunc("POST /v1/rides/{id}/{action}", f.action)
	authed.HandleFunc("GET /v1/rides/{id}/receipt", f.receipt)
	authed.Handle("GET /v1/events", notes.Handler())
	mux.Handle("/v1/", f.auth(authed))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(hitch.HeaderUser)
		r.Header.Del(hitch.HeaderScopes)
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		u := f.byID[strings.TrimPrefix(tok, "tok-")]
		f.mu.Unlock()
		if u == nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or bad token", "code": "unauthenticated"})
			return
		}
		r.Header.Set(hitch.HeaderUser, u.id)
		r.Header.Set(hitch.HeaderScopes, u.role)
		next.ServeHTTP(w, r)
	})
}

func (f *fakeAPI) register(w http.ResponseWriter, r *http.Request) {
	var in struct{ Role, Name, Email, Password string }
	if json.NewDecoder(r.Body).Decode(&in) != nil || in.Email == "" || len(in.Password) < 8 || (in.Role != hitch.RoleRider && in.Role != hitch.RoleDriver) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "role, email and password (8+) required", "code": "bad_request"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users[in.Email] != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "email taken", "code": "email_taken"})
		return
	}
	f.seq++
	u := &fakeUser{id: fmt.Sprintf("u%d", f.seq), role: in.Role, email: in.Email, password: in.Password}
	f.users[in.Email], f.byID[u.id] = u, u
	writeJSON(w, http.StatusCreated, map[string]string{"id": u.id})
}

func (f *fakeAPI) login(w http.ResponseWriter, r *http.Request) {
	var in struct{ Email, Password string }
	_ = json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	u := f.users[in.Email]
	f.mu.Unlock()
	if u == nil || u.password != in.Password {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "wrong email or password", "code": "bad_credentials"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": "tok-" + u.id})
}

func (f *fakeAPI) location(w http.ResponseWriter, r *http.Request) {
	c, _ := hitch.CallerOf(r)
	var p hitch.Point
	if json.NewDecoder(r.Body).Decode(&p) != nil || p.Validate() != nil || c.Role != hitch.RoleDriver {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad position", "code": "bad_request"})
		return
	}
	f.mu.Lock()
	f.pos[c.ID] = p
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeAPI) nearby(w http.ResponseWriter, r *http.Request) {
	type d struct {
		ID       string  `json:"id"`
		Lat      float64 `json:"lat"`
		Lon      float64 `json:"lon"`
		Distance float64 `json:"distance_mi"`
	}
	out := []d{}
	f.mu.Lock()
	for id, p := range f.pos {
		out = append(out, d{ID: id, Lat: p.Lat, Lon: p.Lon, Distance: 1})
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"drivers": out})
}

func (f *fakeAPI) availability(w http.ResponseWriter, r *http.Request) {
	c, _ := hitch.CallerOf(r)
	var in struct {
		Ready    bool
		From, To hitch.Point
		Seats    int
	}
	if c.Role != hitch.RoleDriver || json.NewDecoder(r.Body).Decode(&in) != nil || in.Seats < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad availability", "code": "bad_request"})
		return
	}
	f.mu.Lock()
	f.avail[c.ID] = in.Ready
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]bool{"ready": in.Ready})
}

func (f *fakeAPI) push(kind, rideID string, payload any) {
	b, _ := json.Marshal(payload)
	f.mu.Lock()
	f.seq++
	id := fmt.Sprintf("ev-%d", f.seq)
	f.mu.Unlock()
	f.notes.Push(kind, id, b)
}

func (f *fakeAPI) request(w http.ResponseWriter, r *http.Request) {
	c, _ := hitch.CallerOf(r)
	var in struct{ From, To hitch.Point }
	if c.Role != hitch.RoleRider || json.NewDecoder(r.Body).Decode(&in) != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad ride", "code": "bad_request"})
		return
	}
	f.mu.Lock()
	f.seq++
	ride := &fakeRide{id: fmt.Sprintf("ride-%d", f.seq), rider: c.ID, status: "searching", from: in.From, to: in.To}
	f.rides[ride.id] = ride
	for id, ok := range f.avail {
		if ok {
			ride.driver, ride.status = id, "matched"
			f.avail[id] = false
			break
		}
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]string{"ride_id": ride.id, "status": "searching"})
	if ride.driver != "" {
		go func() { // matching takes a moment, after the answer
			time.Sleep(100 * time.Millisecond)
			f.push(hitch.KindRideMatched, ride.id, hitch.RideMatched{RideRef: hitch.RideRef{RideID: ride.id, RiderID: ride.rider, DriverID: ride.driver, At: time.Now()}, From: ride.from, To: ride.to})
		}()
	}
}

func (f *fakeAPI) mine(w http.ResponseWriter, r *http.Request) (*fakeRide, hitch.Caller, bool) {
	c, _ := hitch.CallerOf(r)
	f.mu.Lock()
	ride := f.rides[r.PathValue("id")]
	f.mu.Unlock()
	if ride == nil || (ride.rider != c.ID && ride.driver != c.ID) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such ride", "code": "not_found"})
		return nil, c, false
	}
	return ride, c, true
}

func (f *fakeAPI) ride(w http.ResponseWriter, r *http.Request) {
	ride, _, ok := f.mine(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"id": ride.id, "status": ride.status, "rider_id": ride.rider, "driver_id": ride.driver, "fare": ride.fare})
}

func (f *fakeAPI) action(w http.ResponseWriter, r *http.Request) {
	ride, c, ok := f.mine(w, r)
	if !ok {
		return
	}
	ref := hitch.RideRef{RideID: ride.id, RiderID: ride.rider, DriverID: ride.driver, At: time.Now()}
	f.mu.Lock()
	var next, kind string
	switch r.PathValue("action") {
	case "start":
		next, kind = "started", hitch.KindRideStarted
	case "finish":
		next, kind = "finished", hitch.KindRideFinished
	}
	if c.ID != ride.driver || next == "" || (next == "started" && ride.status != "matched") || (next == "finished" && ride.status != "started") {
		f.mu.Unlock()
		writeJSON(w, http.StatusConflict, map[string]string{"error": "not now", "code": "conflict"})
		return
	}
	ride.status = next
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": next})
	if kind == hitch.KindRideStarted {
		f.push(kind, ride.id, ref)
		return
	}
	fare, fee := hitch.DefaultFares.Fare(2.8)
	f.mu.Lock()
	ride.fare, ride.fee = fare, fee
	f.mu.Unlock()
	f.push(kind, ride.id, hitch.RideFinished{RideRef: ref, DistanceMi: 2.8, FareCents: fare, FeeCents: fee})
	go func() { // payments, then the payout
		time.Sleep(100 * time.Millisecond)
		f.mu.Lock()
		ride.status = "paid"
		f.paid[ride.driver] += fare - fee
		f.mu.Unlock()
		f.push(hitch.KindPaymentCharged, ride.id, hitch.PaymentCharged{RideRef: ref, AmountCents: fare, FeeCents: fee, ChargeID: "ch-" + ride.id})
		f.push(hitch.KindPayoutPaid, ride.id, hitch.PayoutPaid{RideRef: ref, AmountCents: fare - fee})
	}()
}

func (f *fakeAPI) receipt(w http.ResponseWriter, r *http.Request) {
	ride, c, ok := f.mine(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.ID != ride.rider || ride.status != "paid" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no receipt yet", "code": "not_found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ride_id": ride.id, "fare": ride.fare, "fee": ride.fee, "total_charged": ride.fare, "payment": "charged"})
}

func (f *fakeAPI) earnings(w http.ResponseWriter, r *http.Request) {
	c, _ := hitch.CallerOf(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, ride := range f.rides {
		if ride.driver == c.ID && ride.status == "paid" {
			n++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rides": n, "net_paid": f.paid[c.ID]})
}
