package location

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/geo"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/kit/message"
)

// redisURL is the test Redis (SWITCHYARD_TEST_REDIS; "off" skips the Redis
// half of each test, saying so).
func redisURL() string {
	if u := os.Getenv("SWITCHYARD_TEST_REDIS"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// eachMode runs fn with the in-memory index and with Redis (keys of its own,
// deleted afterwards).
func eachMode(t *testing.T, fn func(t *testing.T, cfg Config)) {
	t.Run("memory", func(t *testing.T) { fn(t, Config{}) })
	t.Run("redis", func(t *testing.T) {
		if redisURL() == "off" {
			t.Skip("SWITCHYARD_TEST_REDIS=off: Redis half skipped")
		}
		key := "test:hitch:location:" + message.NewID()
		opts, err := redis.ParseURL(redisURL())
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Del(context.Background(), key+":geo", key+":seen"); c.Close() })
		fn(t, Config{Redis: redisURL(), RedisKey: key})
	})
}

func newService(t *testing.T, bus message.Backend, cfg Config) *Service {
	t.Helper()
	s, err := New(context.Background(), nil, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run starts s.Run until the test ends.
func run(t *testing.T, s *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

type resp struct {
	Status int
	Body   []byte
}

func (r resp) code() string {
	var e struct{ Code string }
	json.Unmarshal(r.Body, &e)
	return e.Code
}

func call(h http.Handler, method, target, user, role, body string) resp {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if user != "" {
		req.Header.Set(hitch.HeaderUser, user)
		req.Header.Set(hitch.HeaderScopes, role)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return resp{w.Code, w.Body.Bytes()}
}

type nearbyJSON struct {
	Drivers []struct {
		ID         string  `json:"id"`
		Lat        float64 `json:"lat"`
		Lon        float64 `json:"lon"`
		DistanceMi float64 `json:"distance_mi"`
	} `json:"drivers"`
}

func nearby(t *testing.T, h http.Handler, query string) nearbyJSON {
	t.Helper()
	r := call(h, "GET", "/v1/drivers/nearby?"+query, "rider-1", hitch.RoleRider, "")
	if r.Status != 200 {
		t.Fatalf("nearby %s: %d %s", query, r.Status, r.Body)
	}
	var n nearbyJSON
	if err := json.Unmarshal(r.Body, &n); err != nil {
		t.Fatalf("nearby %s: %v in %s", query, err, r.Body)
	}
	return n
}

func put(t *testing.T, h http.Handler, driver string, lat, lon float64) {
	t.Helper()
	r := call(h, "PUT", "/v1/drivers/me/location", driver, hitch.RoleDriver, fmt.Sprintf(`{"lat":%v,"lon":%v}`, lat, lon))
	if r.Status != http.StatusAccepted {
		t.Fatalf("PUT location of %s: %d %s", driver, r.Status, r.Body)
	}
}

const mi = 1 / geo.MilesPerDegree // one mile of latitude in degrees

// Drivers report, a rider searches: those within the radius, nearest first,
// with great-circle distances; the limit keeps the nearest.
func TestNearby(t *testing.T) {
	eachMode(t, func(t *testing.T, cfg Config) {
		b := hitchtest.StartBroker(t)
		h := newService(t, b.Open(t), cfg).Handler()
		put(t, h, "d-far", 37.0+6*mi, -122)
		put(t, h, "d-2mi", 37.0+2*mi, -122)
		put(t, h, "d-1mi", 37.0-1*mi, -122)
		put(t, h, "d-3mi", 37.0+3*mi, -122)
		put(t, h, "d-3mi", 37.0+0.5*mi, -122) // moved: only the last position counts
		n := nearby(t, h, "lat=37&lon=-122")
		var ids []string
		for _, d := range n.Drivers {
			ids = append(ids, d.ID)
		}
		if got := strings.Join(ids, ","); got != "d-3mi,d-1mi,d-2mi" {
			t.Fatalf("default 5 mi: %s (%+v)", got, n)
		}
		if d := n.Drivers[1].DistanceMi; d < 0.999 || d > 1.001 {
			t.Errorf("d-1mi at %v mi", d)
		}
		if n := nearby(t, h, "lat=37&lon=-122&radius_mi=1.5&limit=1"); len(n.Drivers) != 1 || n.Drivers[0].ID != "d-3mi" {
			t.Errorf("radius 1.5, limit 1: %+v", n)
		}
		if n := nearby(t, h, "lat=10&lon=10"); n.Drivers == nil || len(n.Drivers) != 0 {
			t.Errorf("nobody near: %+v", n)
		}
		// Across the antimeridian.
		put(t, h, "d-east", 0, 179.995)
		if n := nearby(t, h, "lat=0&lon=-179.995&radius_mi=1"); len(n.Drivers) != 1 || n.Drivers[0].ID != "d-east" {
			t.Errorf("across the antimeridian: %+v", n)
		}
	})
}

// The attacker's cases: no identity, the wrong role, bad bodies and
// queries, huge bodies.
func TestRefusals(t *testing.T) {
	eachMode(t, func(t *testing.T, cfg Config) {
		b := hitchtest.StartBroker(t)
		h := newService(t, b.Open(t), cfg).Handler()
		for _, tc := range []struct {
			name, method, target, user, role, body string
			status                                 int
			code                                   string
		}{
			{"no identity, update", "PUT", "/v1/drivers/me/location", "", "", `{"lat":1,"lon":1}`, 401, "unauthenticated"},
			{"no identity, search", "GET", "/v1/drivers/nearby?lat=1&lon=1", "", "", "", 401, "unauthenticated"},
			{"rider reports a location", "PUT", "/v1/drivers/me/location", "r1", "rider", `{"lat":1,"lon":1}`, 403, "forbidden"},
			{"unknown role", "PUT", "/v1/drivers/me/location", "r1", "admin", `{"lat":1,"lon":1}`, 401, "unauthenticated"},
			{"not JSON", "PUT", "/v1/drivers/me/location", "d1", "driver", `lat=1`, 400, "bad_json"},
			{"NaN literal", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":NaN,"lon":1}`, 400, "bad_json"},
			{"overflow", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":1e999,"lon":1}`, 400, "bad_json"},
			{"string coordinate", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":"1","lon":1}`, 400, "bad_json"},
			{"unknown field", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":1,"lon":1,"x":2}`, 400, "bad_json"},
			{"two objects", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":1,"lon":1}{"lat":2,"lon":2}`, 400, "bad_json"},
			{"missing lon", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":1}`, 400, "missing_field"},
			{"lat 91", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":91,"lon":1}`, 400, "invalid_lat"},
			{"lon -180.5", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":1,"lon":-180.5}`, 400, "invalid_lon"},
			{"huge body", "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":1,"lon":1` + strings.Repeat(" ", 10000) + `}`, 413, "body_too_large"},
			{"no lat", "GET", "/v1/drivers/nearby?lon=1", "r1", "rider", "", 400, "missing_field"},
			{"lat not a number", "GET", "/v1/drivers/nearby?lat=x&lon=1", "r1", "rider", "", 400, "invalid_lat"},
			{"lat NaN", "GET", "/v1/drivers/nearby?lat=NaN&lon=1", "r1", "rider", "", 400, "invalid_lat"},
			{"lon Inf", "GET", "/v1/drivers/nearby?lat=1&lon=%2BInf", "r1", "rider", "", 400, "invalid_lon"},
			{"radius above 5", "GET", "/v1/drivers/nearby?lat=1&lon=1&radius_mi=10", "r1", "rider", "", 400, "invalid_radius_mi"},
			{"radius 0", "GET", "/v1/drivers/nearby?lat=1&lon=1&radius_mi=0", "r1", "rider", "", 400, "invalid_radius_mi"},
			{"radius negative", "GET", "/v1/drivers/nearby?lat=1&lon=1&radius_mi=-1", "r1", "rider", "", 400, "invalid_radius_mi"},
			{"radius NaN", "GET", "/v1/drivers/nearby?lat=1&lon=1&radius_mi=NaN", "r1", "rider", "", 400, "invalid_radius_mi"},
			{"limit 0", "GET", "/v1/drivers/nearby?lat=1&lon=1&limit=0", "r1", "rider", "", 400, "invalid_limit"},
			{"limit 1000", "GET", "/v1/drivers/nearby?lat=1&lon=1&limit=1000", "r1", "rider", "", 400, "invalid_limit"},
			{"wrong method", "POST", "/v1/drivers/nearby?lat=1&lon=1", "r1", "rider", "", 404, "not_found"},
		} {
			r := call(h, tc.method, tc.target, tc.user, tc.role, tc.body)
			if r.Status != tc.status || (tc.code != "" && r.code() != tc.code) {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
		if cfg.Redis != "" {
			r := call(h, "PUT", "/v1/drivers/me/location", "d1", "driver", `{"lat":89,"lon":1}`)
			if r.Status != 400 || r.code() != "invalid_lat" {
				t.Errorf("polar position on Redis: %d %s", r.Status, r.Body)
			}
		}
		if n := nearby(t, h, "lat=1&lon=1"); len(n.Drivers) != 0 {
			t.Errorf("a refused update was stored: %+v", n)
		}
	})
}

// A position older than MaxAge is not shown, and is forgotten by Run.
func TestStale(t *testing.T) {
	eachMode(t, func(t *testing.T, cfg Config) {
		b := hitchtest.StartBroker(t)
		cfg.MaxAge = 1500 * time.Millisecond
		s := newService(t, b.Open(t), cfg)
		run(t, s)
		h := s.Handler()
		put(t, h, "d-old", 37, -122)
		if n := nearby(t, h, "lat=37&lon=-122"); len(n.Drivers) != 1 {
			t.Fatalf("fresh: %+v", n)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(nearby(t, h, "lat=37&lon=-122").Drivers) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("a position older than max_age is still shown")
			}
			time.Sleep(50 * time.Millisecond)
		}
		put(t, h, "d-new", 37, -122)
		if n := nearby(t, h, "lat=37&lon=-122"); len(n.Drivers) != 1 || n.Drivers[0].ID != "d-new" {
			t.Fatalf("after a new report: %+v", n)
		}
	})
}

// Two replicas on one broker: an update to either is seen by a search on
// the other within a moment, and a late (older) update does not move a
// driver back.
func TestReplicasShareUpdates(t *testing.T) {
	eachMode(t, func(t *testing.T, cfg Config) {
		b := hitchtest.StartBroker(t)
		a, c := newService(t, b.Open(t), cfg), newService(t, b.Open(t), cfg)
		run(t, a)
		run(t, c)
		ha, hc := a.Handler(), c.Handler()
		// The live subscriptions start in Run: keep reporting until seen.
		waitSeen := func(h, other http.Handler, driver string, lat float64) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				put(t, other, driver, lat, -122)
				n := nearby(t, h, fmt.Sprintf("lat=%v&lon=-122&radius_mi=0.1", lat))
				if len(n.Drivers) == 1 && n.Drivers[0].ID == driver {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s's update never reached the other replica: %+v", driver, n)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitSeen(hc, ha, "d-a", 37)
		waitSeen(ha, hc, "d-c", 38)
		// A stale update from the topic is ignored (memory mode applies
		// the topic; Redis is shared and ignores it).
		ev, _ := hitch.Event(hitch.KindLocation, "late-1", "d-a",
			hitch.DriverLocation{DriverID: "d-a", Point: hitch.Point{Lat: 40, Lon: -122}, At: time.Now().Add(-time.Minute)})
		ev.Headers["origin"] = "someone-else"
		if err := b.Open(t).Publish(context.Background(), topic, ev); err != nil {
			t.Fatal(err)
		}
		// And a fresh one from an unknown origin is applied (memory).
		ev2, _ := hitch.Event(hitch.KindLocation, "new-1", "d-x",
			hitch.DriverLocation{DriverID: "d-x", Point: hitch.Point{Lat: 41, Lon: -122}, At: time.Now()})
		ev2.Headers["origin"] = "someone-else"
		b.Open(t).Publish(context.Background(), topic, ev2)
		if cfg.Redis == "" {
			deadline := time.Now().Add(10 * time.Second)
			for len(nearby(t, hc, "lat=41&lon=-122").Drivers) != 1 {
				if time.Now().After(deadline) {
					t.Fatal("an update published by another replica was not applied")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if n := nearby(t, hc, "lat=40&lon=-122"); len(n.Drivers) != 0 {
			t.Fatalf("a late update moved d-a back: %+v", n)
		}
		if st := a.Stats(); st.Published == 0 {
			t.Errorf("stats: %+v", st)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := Config{DefaultRadiusMi: 10, MaxRadiusMi: 5, MaxResults: -1, CellMi: -1}.WithDefaults().Validate()
	for _, key := range []string{"default_radius_mi", "max_results", "cell_mi"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate does not name %s: %v", key, err)
		}
	}
	if _, err := New(context.Background(), nil, nil, Config{}); err == nil {
		t.Error("New without a bus succeeded")
	}
	if _, err := New(context.Background(), nil, nil, Config{Redis: "redis://127.0.0.1:1/0"}); err == nil {
		t.Error("New with an unreachable Redis succeeded")
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"plain", `quo"te\back`, "ctl\x00\n\x1f", "ünï😀", "bad\xffutf8"} {
		var got string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want {
			t.Fatalf("%q came back as %q", s, got)
		}
	}
}

// Fuzz the search's query parsing: any query is answered 200 with valid
// JSON or 400 with an error code, never a panic.
func FuzzNearbyQuery(f *testing.F) {
	f.Add("lat=37&lon=-122&radius_mi=5&limit=3")
	f.Add("lat=NaN&lon=Inf&radius_mi=-0")
	f.Add("lat=%2B90&lon=-180&radius_mi=5e-324&&&=")
	f.Add("lat=-90&lon=180&lat=0")
	s, err := New(context.Background(), nil, nopBus{}, Config{})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		s.pos.update(context.Background(), fmt.Sprintf("d%d\"\\%d", i, i), geo.Point{Lat: -90 + float64(i)*0.9, Lon: -180 + float64(i)*1.8}, time.Now())
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, q string) {
		req := httptest.NewRequest("GET", "/v1/drivers/nearby", nil)
		req.URL.RawQuery = q
		req.Header.Set(hitch.HeaderUser, "r")
		req.Header.Set(hitch.HeaderScopes, "rider")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("%q: status %d", q, w.Code)
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("%q: %v in %s", q, err, w.Body.Bytes())
		}
	})
}

// nopBus is a message.Backend that drops everything: for benchmarks and
// fuzzing of the handler alone.
type nopBus struct{}

func (nopBus) Publish(context.Context, string, ...broker.Message) error { return nil }
func (nopBus) Subscribe(ctx context.Context, _ string, _ message.SubscribeOptions, _ func(*message.Delivery)) error {
	<-ctx.Done()
	return ctx.Err()
}
func (nopBus) Close() error { return nil }

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// The headline path: GET /v1/drivers/nearby through the handler, 100k
// drivers in a 20-mile city, the nearest 50 within 5 miles.
func BenchmarkNearbyHandler(b *testing.B) {
	s, err := New(context.Background(), nil, nopBus{}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	now := time.Now()
	for i := 0; i < 100_000; i++ {
		s.pos.update(context.Background(), fmt.Sprintf("driver-%06d", i), geo.Point{Lat: 37.7 + rng.Float64()*0.29, Lon: -122.55 + rng.Float64()*0.37}, now)
	}
	h := s.Handler()
	queries := make([]*http.Request, 64)
	for i := range queries {
		queries[i] = httptest.NewRequest("GET", fmt.Sprintf("/v1/drivers/nearby?lat=%.5f&lon=%.5f&radius_mi=5", 37.7+rng.Float64()*0.29, -122.55+rng.Float64()*0.37), nil)
		queries[i].Header.Set(hitch.HeaderUser, "rider-1")
		queries[i].Header.Set(hitch.HeaderScopes, "rider")
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(w, queries[i%len(queries)])
	}
}

// Stale positions nearer than the fresh ones neither show nor crowd the
// fresh ones out of a limited answer (Redis: GEOSEARCH's COUNT is widened
// when stale entries took its slots); Run's pruning forgets them.
func TestStaleDoNotCrowdOut(t *testing.T) {
	eachMode(t, func(t *testing.T, cfg Config) {
		b := hitchtest.StartBroker(t)
		cfg.MaxAge = time.Minute
		s := newService(t, b.Open(t), cfg)
		ctx := context.Background()
		old := time.Now().Add(-10 * time.Minute)
		for i := 0; i < 12; i++ {
			s.pos.update(ctx, fmt.Sprintf("stale-%02d", i), geo.Point{Lat: 37 + float64(i)*0.001*mi, Lon: -122}, old)
		}
		put(t, s.Handler(), "fresh-1", 37+1*mi, -122)
		put(t, s.Handler(), "fresh-2", 37+2*mi, -122)
		n := nearby(t, s.Handler(), "lat=37&lon=-122&limit=2")
		if len(n.Drivers) != 2 || n.Drivers[0].ID != "fresh-1" || n.Drivers[1].ID != "fresh-2" {
			t.Fatalf("limit 2 behind 12 stale positions: %+v", n)
		}
		if removed, err := s.pos.prune(ctx, time.Now().Add(-cfg.MaxAge)); err != nil || removed != 12 {
			t.Fatalf("prune removed %d, %v; want the 12 stale", removed, err)
		}
	})
}
