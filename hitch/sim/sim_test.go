package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/load"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHitch is a small in-memory stand-in for Hitch's public API: enough
// for the simulator's own logic (sign-up, driving, riding, following
// events) to be tested without the whole system. A ride is matched with
// the first driver that announced a route when the rider first polls it.
type fakeHitch struct {
	mu      sync.Mutex
	users   map[string]string // email -> id
	roles   map[string]string // token -> role
	ids     map[string]string // token -> user id
	ready   []string          // driver ids
	rides   map[string]*fakeRide
	streams map[string]chan string // driver id -> SSE events
	next    int
	hits    map[string]int
}

type fakeRide struct {
	id, rider, driver, status string
}

func newFake() *fakeHitch {
	return &fakeHitch{users: map[string]string{}, roles: map[string]string{}, ids: map[string]string{},
		rides: map[string]*fakeRide{}, streams: map[string]chan string{}, hits: map[string]int{}}
}

func (f *fakeHitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits[r.Method+" "+r.URL.Path]++
	f.mu.Unlock()
	var in map[string]any
	if r.Body != nil {
		json.NewDecoder(r.Body).Decode(&in)
	}
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == "/v1/auth/register":
		f.mu.Lock()
		f.next++
		id := fmt.Sprintf("u%d", f.next)
		f.users[in["email"].(string)] = id
		f.roles["tok-"+id] = in["role"].(string)
		f.ids["tok-"+id] = id
		f.mu.Unlock()
		reply(201, map[string]string{"id": id})
		return
	case r.URL.Path == "/v1/auth/login":
		f.mu.Lock()
		id := f.users[in["email"].(string)]
		f.mu.Unlock()
		reply(200, map[string]string{"token": "tok-" + id})
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	role, me := f.roles[tok], f.ids[tok]
	f.mu.Unlock()
	if me == "" {
		reply(401, map[string]string{"error": "no token"})
		return
	}
	switch {
	case r.URL.Path == "/v1/events":
		f.mu.Lock()
		ch := make(chan string, 16)
		f.streams[me] = ch
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case id := <-ch:
				fmt.Fprintf(w, "event: passenger_found\ndata: {\"ride_id\":%q}\n\n", id)
				w.(http.Flusher).Flush()
			}
		}
	case r.URL.Path == "/v1/drivers/me/availability":
		if in["ready"] == true {
			f.mu.Lock()
			f.ready = append(f.ready, me)
			f.mu.Unlock()
		}
		reply(200, map[string]bool{"ready": in["ready"] == true})
	case r.URL.Path == "/v1/drivers/me/location":
		w.WriteHeader(202)
	case r.URL.Path == "/v1/drivers/nearby":
		reply(200, map[string]any{"drivers": []any{}})
	case r.URL.Path == "/v1/rides" && r.Method == "POST":
		if role != "rider" {
			reply(403, map[string]string{"error": "riders only"})
			return
		}
		f.mu.Lock()
		f.next++
		rd := &fakeRide{id: fmt.Sprintf("r%d", f.next), rider: me, status: "searching"}
		f.rides[rd.id] = rd
		f.mu.Unlock()
		reply(202, map[string]string{"ride_id": rd.id, "status": "searching"})
	case strings.HasPrefix(r.URL.Path, "/v1/rides/"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/rides/"), "/")
		f.mu.Lock()
		defer f.mu.Unlock()
		rd := f.rides[parts[0]]
		if rd == nil {
			reply(404, map[string]string{"error": "no ride"})
			return
		}
		action := ""
		if len(parts) > 1 {
			action = parts[1]
		}
		switch action {
		case "":
			if rd.status == "searching" && len(f.ready) > 0 {
				rd.driver, rd.status = f.ready[0], "matched"
				if ch := f.streams[rd.driver]; ch != nil {
					ch <- rd.id
				}
			}
			reply(200, map[string]string{"status": rd.status})
		case "start":
			rd.status = "started"
			reply(200, map[string]string{"status": rd.status})
		case "finish":
			rd.status = "paid"
			reply(200, map[string]string{"status": rd.status})
		case "cancel":
			rd.status = "cancelled"
			reply(200, map[string]string{"status": rd.status})
		case "receipt":
			reply(200, map[string]int{"fare": 700})
		}
	default:
		reply(404, map[string]string{"error": "unknown"})
	}
}

// A short run signs everybody up, drives, rides, starts and finishes
// matched rides, and counts them.
func TestRunDrivesTheWholeFlow(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	defer srv.Close()
	var reports int
	snap, err := Run(context.Background(), Config{
		BaseURL: srv.URL, Drivers: 3, Riders: 6, Duration: 4 * time.Second,
		PositionEvery: 100 * time.Millisecond, RideEvery: 200 * time.Millisecond, Speed: 20000,
		ReportEvery: time.Second, Report: func(Snapshot) { reports++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(snap)
	if snap.Rides["requested"] == 0 || snap.Rides["paid"] == 0 {
		t.Fatalf("no ride requested or paid: %v", snap.Rides)
	}
	if snap.Requests["POST /v1/auth/login"].Count != 9 {
		t.Errorf("logins: %d, want 9", snap.Requests["POST /v1/auth/login"].Count)
	}
	for _, ep := range []string{"PUT /v1/drivers/me/location", "POST /v1/rides/{id}/start", "POST /v1/rides/{id}/finish", "GET /v1/drivers/nearby"} {
		if snap.Requests[ep].Count == 0 {
			t.Errorf("%s never called", ep)
		}
	}
	if snap.Events == 0 {
		t.Error("no driver notification counted")
	}
	if reports == 0 {
		t.Error("no progress report")
	}
}

// Nobody can sign up: Run says so instead of reporting an empty success.
func TestRunFailsWhenNobodyCanSignUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"down"}`, 503)
	}))
	defer srv.Close()
	_, err := Run(context.Background(), Config{BaseURL: srv.URL, Drivers: 1, Riders: 1, Duration: 3 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "could sign up") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	err := Config{BaseURL: "localhost:8080", Drivers: -1, CancelShare: 2}.Validate()
	for _, want := range []string{`base URL "localhost:8080"`, "drivers -1", "cancel share 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestTripsFollowAvenues(t *testing.T) {
	c := &client{rng: rand.New(rand.NewPCG(7, 7))}
	for i := 0; i < 1000; i++ {
		from, to := trip(c.rng, 0.1, 0.3)
		if from.Validate() != nil || to.Validate() != nil || miles(from, to) < 0.3 || miles(from, to) > 3 {
			t.Fatalf("trip %v -> %v (%.2f mi)", from, to, miles(from, to))
		}
	}
}

// Bench signs up its users, ramps the load generator over nearby search and
// location updates, and writes each scenario's result and chart.
func TestBenchRampsAndWritesResults(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	defer srv.Close()
	out := t.TempDir()
	res, err := Bench(context.Background(), BenchConfig{
		BaseURL: srv.URL, Scenarios: []string{"nearby", "location"}, Drivers: 5, Out: out,
		Ramp: &load.Ramp{Start: 50, End: 100, Step: 50, StepDuration: time.Second}, SLO: "p99<1s",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"nearby", "location"} {
		r := res.Scenarios[s]
		if r == nil || len(r.Steps) != 2 || r.Successes == 0 {
			t.Fatalf("%s: %+v", s, r)
		}
		for _, ext := range []string{".json", ".png"} {
			if fi, err := os.Stat(filepath.Join(out, s+ext)); err != nil || fi.Size() == 0 {
				t.Errorf("%s%s: %v", s, ext, err)
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hits["GET /v1/drivers/nearby"] < 100 || f.hits["PUT /v1/drivers/me/location"] < 100 {
		t.Errorf("hits: %v", f.hits)
	}
	if _, err := Bench(context.Background(), BenchConfig{BaseURL: srv.URL, Scenarios: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `unknown scenario "nope"`) {
		t.Errorf("unknown scenario: %v", err)
	}
}
