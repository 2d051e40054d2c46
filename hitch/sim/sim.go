// Package sim drives realistic traffic through Hitch's public API, as
// `switchyard hitch sim` does: drivers who announce a route, move along it
// reporting their position every few seconds and take the passengers they are
// matched with; riders who ask for rides along the same streets, wait for a
// driver and pay. It talks to the gateway only, like any client, and counts
// what happened (rides by outcome, requests by endpoint and status, latency
// percentiles), so a run shows whether the system works under load and where
// it does not.
//
// The city is a box of latitude and longitude with a few avenues; drivers'
// routes and riders' trips follow the avenues, so riders find drivers going
// their way (the matching rule needs both ends within half a mile of the
// driver's route).
package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/hitch"
)

// Config configures a simulation run.
type Config struct {
	// BaseURL is the gateway, e.g. "http://127.0.0.1:8080". Required.
	BaseURL string
	// Drivers and Riders are how many of each take part. Default 50 and 200.
	Drivers, Riders int
	// Duration bounds the run. Default 1m.
	Duration time.Duration
	// PositionEvery is how often a moving driver reports its position.
	// Default 3s.
	PositionEvery time.Duration
	// RideEvery is the mean time between a rider's rides (exponential,
	// so riders arrive as a Poisson process). Default 30s.
	RideEvery time.Duration
	// Speed is how fast the city moves: simulated seconds per real second
	// for driving (a 2-mile ride at 30 mph takes 4 simulated minutes).
	// Default 60.
	Speed float64
	// CancelShare is the share of riders who cancel while searching.
	// Default 0.05.
	CancelShare float64
	// Concurrency bounds registrations and logins in flight at start.
	// Default 16.
	Concurrency int
	// Seed makes a run repeatable (its accounts too: a second run with
	// the same seed finds its emails taken). Default: the clock.
	Seed uint64
	// HTTPClient is the client; default one with 10 s timeouts and enough
	// idle connections for every simulated user.
	HTTPClient *http.Client
	// Report, when set, receives a snapshot every ReportEvery.
	Report      func(Snapshot)
	ReportEvery time.Duration // default 5s
}

func (c Config) withDefaults() Config {
	if c.Drivers == 0 {
		c.Drivers = 50
	}
	if c.Riders == 0 {
		c.Riders = 200
	}
	if c.Duration == 0 {
		c.Duration = time.Minute
	}
	if c.PositionEvery == 0 {
		c.PositionEvery = 3 * time.Second
	}
	if c.RideEvery == 0 {
		c.RideEvery = 30 * time.Second
	}
	if c.Speed == 0 {
		c.Speed = 60
	}
	if c.CancelShare == 0 {
		c.CancelShare = 0.05
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano()) // new accounts on every run
	}
	if c.ReportEvery == 0 {
		c.ReportEvery = 5 * time.Second
	}
	if c.HTTPClient == nil {
		n := c.Drivers + c.Riders + 16
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: 90 * time.Second,
		}}
	}
	return c
}

// Validate reports settings that cannot run.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL == "" || !(strings.HasPrefix(c.BaseURL, "http://") || strings.HasPrefix(c.BaseURL, "https://")) {
		errs = append(errs, fmt.Errorf("base URL %q: want http://HOST:PORT or https://...", c.BaseURL))
	}
	if c.Drivers < 0 || c.Drivers > 100000 {
		errs = append(errs, fmt.Errorf("drivers %d: want 0..100000", c.Drivers))
	}
	if c.Riders < 0 || c.Riders > 100000 {
		errs = append(errs, fmt.Errorf("riders %d: want 0..100000", c.Riders))
	}
	if c.Duration < 0 || c.PositionEvery < 0 || c.RideEvery < 0 || c.ReportEvery < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.Speed < 0 || math.IsNaN(c.Speed) || math.IsInf(c.Speed, 0) {
		errs = append(errs, fmt.Errorf("speed %v: want a positive number", c.Speed))
	}
	if c.CancelShare < 0 || c.CancelShare > 1 {
		errs = append(errs, fmt.Errorf("cancel share %v: want 0..1", c.CancelShare))
	}
	return errors.Join(errs...)
}

// The city: a box around 40.70..40.80 N, 74.02..73.92 W with avenues.
var (
	cityMin = hitch.Point{Lat: 40.70, Lon: -74.02}
	cityMax = hitch.Point{Lat: 40.80, Lon: -73.92}
)

// avenues are straight streets across the city, as fractions of the box.
var avenues = [][2][2]float64{
	{{0.05, 0.2}, {0.95, 0.25}}, // south-north
	{{0.05, 0.5}, {0.95, 0.55}},
	{{0.05, 0.8}, {0.95, 0.75}},
	{{0.3, 0.05}, {0.35, 0.95}}, // west-east
	{{0.7, 0.05}, {0.65, 0.95}},
	{{0.1, 0.1}, {0.9, 0.9}}, // the diagonal
}

func cityPoint(fLat, fLon float64) hitch.Point {
	return hitch.Point{
		Lat: cityMin.Lat + fLat*(cityMax.Lat-cityMin.Lat),
		Lon: cityMin.Lon + fLon*(cityMax.Lon-cityMin.Lon),
	}
}

// along is the point at fraction f of the way from a to b.
func along(a, b hitch.Point, f float64) hitch.Point {
	return hitch.Point{Lat: a.Lat + f*(b.Lat-a.Lat), Lon: a.Lon + f*(b.Lon-a.Lon)}
}

// miles is the great-circle distance.
func miles(a, b hitch.Point) float64 {
	const r = 3958.8
	la1, la2 := a.Lat*math.Pi/180, b.Lat*math.Pi/180
	dla, dlo := la2-la1, (b.Lon-a.Lon)*math.Pi/180
	h := math.Sin(dla/2)*math.Sin(dla/2) + math.Cos(la1)*math.Cos(la2)*math.Sin(dlo/2)*math.Sin(dlo/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(h)))
}

// trip picks a stretch of an avenue in one direction: from fraction f0 to
// f1 of it. Drivers take long stretches, riders short ones inside them.
func trip(rng *rand.Rand, minLen, maxLen float64) (from, to hitch.Point) {
	av := avenues[rng.IntN(len(avenues))]
	a, b := cityPoint(av[0][0], av[0][1]), cityPoint(av[1][0], av[1][1])
	l := minLen + rng.Float64()*(maxLen-minLen)
	f0 := rng.Float64() * (1 - l)
	f1 := f0 + l
	if rng.IntN(2) == 0 {
		f0, f1 = 1-f0, 1-f1
	}
	return along(a, b, f0), along(a, b, f1)
}

// Snapshot is the state of a run.
type Snapshot struct {
	Elapsed  time.Duration
	Rides    map[string]int64 // by final status, plus "requested"
	Requests map[string]EndpointStats
	Events   int64    // notifications received by drivers
	Failures []string // the latest distinct unexpected failures (bounded)
}

// EndpointStats are one endpoint's counts and latency.
type EndpointStats struct {
	Count    int64
	ByStatus map[int]int64
	Errors   int64 // transport errors (no status)
	P50, P99 time.Duration
}

// String is a human summary.
func (s Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "after %s: rides", s.Elapsed.Round(time.Second))
	for _, k := range sortedKeys(s.Rides) {
		fmt.Fprintf(&b, " %s=%d", k, s.Rides[k])
	}
	fmt.Fprintf(&b, "; driver notifications %d\n", s.Events)
	for _, k := range sortedKeys(s.Requests) {
		e := s.Requests[k]
		fmt.Fprintf(&b, "  %-28s n=%-7d p50=%-8s p99=%-8s", k, e.Count, e.P50.Round(10*time.Microsecond), e.P99.Round(10*time.Microsecond))
		codes := make([]int, 0, len(e.ByStatus))
		for c := range e.ByStatus {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			fmt.Fprintf(&b, " %d=%d", c, e.ByStatus[c])
		}
		if e.Errors > 0 {
			fmt.Fprintf(&b, " transport_errors=%d", e.Errors)
		}
		b.WriteByte('\n')
	}
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "  failure: %s\n", f)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// stats collects counts and latencies.
type stats struct {
	mu       sync.Mutex
	rides    map[string]int64
	eps      map[string]*endpoint
	events   atomic.Int64
	failures []string
}

type endpoint struct {
	count    int64
	byStatus map[int]int64
	errors   int64
	lat      []time.Duration // a bounded reservoir
	seen     int64
}

const reservoir = 20000

func newStats() *stats {
	return &stats{rides: map[string]int64{}, eps: map[string]*endpoint{}}
}

func (s *stats) ride(status string) {
	s.mu.Lock()
	s.rides[status]++
	s.mu.Unlock()
}

func (s *stats) fail(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.failures {
		if f == msg {
			return
		}
	}
	if len(s.failures) >= 10 {
		s.failures = s.failures[1:]
	}
	s.failures = append(s.failures, msg)
}

func (s *stats) observe(name string, status int, d time.Duration, rng *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.eps[name]
	if e == nil {
		e = &endpoint{byStatus: map[int]int64{}}
		s.eps[name] = e
	}
	e.count++
	if status == 0 {
		e.errors++
		return
	}
	e.byStatus[status]++
	e.seen++
	if len(e.lat) < reservoir {
		e.lat = append(e.lat, d)
	} else if i := rng.Int64N(e.seen); i < reservoir {
		e.lat[i] = d
	}
}

func (s *stats) snapshot(elapsed time.Duration) Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Elapsed: elapsed, Rides: map[string]int64{}, Requests: map[string]EndpointStats{}, Events: s.events.Load()}
	for k, v := range s.rides {
		snap.Rides[k] = v
	}
	for k, e := range s.eps {
		lat := append([]time.Duration(nil), e.lat...)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		es := EndpointStats{Count: e.count, Errors: e.errors, ByStatus: map[int]int64{}}
		for c, n := range e.byStatus {
			es.ByStatus[c] = n
		}
		if len(lat) > 0 {
			es.P50 = lat[len(lat)*50/100]
			es.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		}
		snap.Requests[k] = es
	}
	snap.Failures = append([]string(nil), s.failures...)
	return snap
}

// client is one simulated user's API access.
type client struct {
	cfg   *Config
	st    *stats
	rng   *rand.Rand
	token string
	id    string
}

// call sends a JSON request and decodes a JSON answer into out (if not
// nil). It records the endpoint's status and latency under name.
func (c *client) call(ctx context.Context, name, method, path string, in, out any) (int, error) {
	return c.callKey(ctx, name, method, path, "", in, out)
}

// callKey is call with an Idempotency-Key header (none when key is "").
func (c *client) callKey(ctx context.Context, name, method, path, key string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if key == "" && (method == http.MethodPost || method == http.MethodPut) && c.rng != nil {
		// As a careful client does: a key per request, so the gateway may
		// send it again to another replica when the first one died with
		// it in hand (every Hitch write is idempotent under its key).
		key = fmt.Sprintf("sim-%016x%016x", c.rng.Uint64(), c.rng.Uint64())
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.st.observe(name, 0, 0, c.rng)
			c.st.fail(fmt.Sprintf("%s: %v", name, err))
		}
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	c.st.observe(name, resp.StatusCode, time.Since(start), c.rng)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// signUp registers and logs in a new user of role.
func (c *client) signUp(ctx context.Context, role, name string) error {
	email := fmt.Sprintf("%s-%d@sim.hitch.test", name, c.rng.Uint64())
	pass := fmt.Sprintf("pw-%x", c.rng.Uint64())
	var reg struct {
		ID string `json:"id"`
	}
	if _, err := c.call(ctx, "POST /v1/auth/register", "POST", "/v1/auth/register",
		map[string]string{"role": role, "name": name, "email": email, "password": pass}, &reg); err != nil {
		return err
	}
	var login struct {
		Token string `json:"token"`
	}
	if _, err := c.call(ctx, "POST /v1/auth/login", "POST", "/v1/auth/login",
		map[string]string{"email": email, "password": pass}, &login); err != nil {
		return err
	}
	if login.Token == "" {
		return errors.New("login answered no token")
	}
	c.id, c.token = reg.ID, login.Token
	return nil
}

// Run simulates until cfg.Duration has passed or ctx ends, then returns the
// final snapshot. It fails only when the simulation cannot start (no user
// could sign up); failures during the run are counted.
func Run(ctx context.Context, cfg Config) (Snapshot, error) {
	if err := cfg.Validate(); err != nil {
		return Snapshot{}, err
	}
	cfg = cfg.withDefaults()
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	st := newStats()
	start := time.Now()

	// Sign everybody up, bounded.
	sem := make(chan struct{}, cfg.Concurrency)
	drivers := make([]*client, cfg.Drivers)
	riders := make([]*client, cfg.Riders)
	var wg sync.WaitGroup
	var signed atomic.Int64
	signUp := func(list []*client, role string, seed uint64) {
		for i := range list {
			c := &client{cfg: &cfg, st: st, rng: rand.New(rand.NewPCG(cfg.Seed, seed+uint64(i)))}
			list[i] = c
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				defer func() { <-sem }()
				if err := c.signUp(ctx, role, fmt.Sprintf("%s%d", role, i)); err != nil {
					if ctx.Err() == nil {
						st.fail("sign up: " + err.Error())
					}
					return
				}
				signed.Add(1)
			}(i)
		}
	}
	signUp(drivers, hitch.RoleDriver, 1<<32)
	signUp(riders, hitch.RoleRider, 2<<32)
	wg.Wait()
	if signed.Load() == 0 && cfg.Drivers+cfg.Riders > 0 {
		snap := st.snapshot(time.Since(start))
		return snap, fmt.Errorf("no simulated user could sign up at %s: %v", cfg.BaseURL, snap.Failures)
	}

	var reporter sync.WaitGroup
	defer reporter.Wait() // no Report call after Run returned
	defer cancel()
	if cfg.Report != nil {
		reporter.Add(1)
		go func() {
			defer reporter.Done()
			t := time.NewTicker(cfg.ReportEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					cfg.Report(st.snapshot(time.Since(start)))
				}
			}
		}()
	}
	for _, d := range drivers {
		if d.token != "" {
			wg.Add(1)
			go func() { defer wg.Done(); d.drive(ctx) }()
		}
	}
	for _, r := range riders {
		if r.token != "" {
			wg.Add(1)
			go func() { defer wg.Done(); r.ride(ctx) }()
		}
	}
	wg.Wait()
	return st.snapshot(time.Since(start)), nil
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// drive is one driver: announce a route, move along it reporting the
// position, take matched passengers (start, then finish after the ride's
// simulated time), then pick a new route.
func (c *client) drive(ctx context.Context) {
	matched := make(chan string, 16) // ride ids from passenger_found
	go c.listen(ctx, matched)
	// Spread the drivers' first reports over one period.
	if !sleep(ctx, time.Duration(c.rng.Int64N(int64(c.cfg.PositionEvery)))) {
		return
	}
	for ctx.Err() == nil {
		from, to := trip(c.rng, 0.5, 0.9)
		seats := 1 + c.rng.IntN(3)
		if _, err := c.call(ctx, "POST /v1/drivers/me/availability", "POST", "/v1/drivers/me/availability",
			map[string]any{"ready": true, "from": from, "to": to, "seats": seats}, nil); err != nil {
			if ctx.Err() == nil {
				c.st.fail("availability: " + err.Error())
			}
			if !sleep(ctx, c.cfg.PositionEvery) {
				return
			}
			continue
		}
		// Drive the route at 30 mph in simulated time.
		total := miles(from, to)
		realTrip := time.Duration(total / 30 * float64(time.Hour) / c.cfg.Speed)
		if realTrip < c.cfg.PositionEvery {
			realTrip = c.cfg.PositionEvery
		}
		began := time.Now()
		var active []string
		for ctx.Err() == nil {
			f := float64(time.Since(began)) / float64(realTrip)
			if f > 1 {
				f = 1
			}
			pos := along(from, to, f)
			c.call(ctx, "PUT /v1/drivers/me/location", "PUT", "/v1/drivers/me/location", pos, nil)
			// Take the passengers matched so far: start now, finish at
			// the end of the route.
		drain:
			for {
				select {
				case id := <-matched:
					if _, err := c.call(ctx, "POST /v1/rides/{id}/start", "POST", "/v1/rides/"+id+"/start", nil, nil); err == nil {
						active = append(active, id)
					} else if ctx.Err() == nil {
						c.st.fail("start: " + err.Error())
					}
				default:
					break drain
				}
			}
			if f >= 1 {
				break
			}
			if !sleep(ctx, c.cfg.PositionEvery) {
				return
			}
		}
		for _, id := range active {
			if _, err := c.call(ctx, "POST /v1/rides/{id}/finish", "POST", "/v1/rides/"+id+"/finish", nil, nil); err != nil && ctx.Err() == nil {
				c.st.fail("finish: " + err.Error())
			}
		}
		c.call(ctx, "POST /v1/drivers/me/availability", "POST", "/v1/drivers/me/availability",
			map[string]any{"ready": false}, nil)
	}
}

// listen follows the driver's notifications (SSE) and passes the ride id of
// each passenger_found on. It reconnects after a drop.
func (c *client) listen(ctx context.Context, matched chan<- string) {
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, "GET", c.cfg.BaseURL+"/v1/events", nil)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Accept", "text/event-stream")
		// The shared client's timeout would cut the stream.
		resp, err := (&http.Client{Transport: c.cfg.HTTPClient.Transport}).Do(req)
		if err == nil {
			if resp.StatusCode == 200 {
				c.readEvents(resp.Body, matched)
			} else {
				c.st.fail(fmt.Sprintf("events: status %d", resp.StatusCode))
			}
			resp.Body.Close()
		}
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

func (c *client) readEvents(r io.Reader, matched chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	var event string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event != "" || data.Len() > 0 {
				c.st.events.Add(1)
				if event == "passenger_found" {
					var p struct {
						RideID string `json:"ride_id"`
					}
					if json.Unmarshal([]byte(data.String()), &p) == nil && p.RideID != "" {
						select {
						case matched <- p.RideID:
						default:
						}
					}
				}
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(line[len("data:"):], " "))
		}
	}
}

// terminal ride statuses.
var terminal = map[string]bool{"paid": true, "payment_failed": true, "no_driver": true, "cancelled": true}

// ride is one rider: now and then ask for a ride along an avenue, follow
// it until it ends, and sometimes cancel while searching.
func (c *client) ride(ctx context.Context) {
	for ctx.Err() == nil {
		if !sleep(ctx, time.Duration(c.rng.ExpFloat64()*float64(c.cfg.RideEvery))) {
			return
		}
		from, to := trip(c.rng, 0.1, 0.3)
		// Look around first, as the app does.
		c.call(ctx, "GET /v1/drivers/nearby", "GET",
			fmt.Sprintf("/v1/drivers/nearby?lat=%.6f&lon=%.6f&radius_mi=2", from.Lat, from.Lon), nil, nil)
		var created struct {
			RideID string `json:"ride_id"`
			Status string `json:"status"`
		}
		if _, err := c.call(ctx, "POST /v1/rides", "POST", "/v1/rides",
			map[string]any{"from": from, "to": to}, &created); err != nil {
			if ctx.Err() == nil {
				c.st.fail("request ride: " + err.Error())
			}
			continue
		}
		c.st.ride("requested")
		cancel := c.rng.Float64() < c.cfg.CancelShare
		status := created.Status
		for ctx.Err() == nil && !terminal[status] {
			if !sleep(ctx, time.Second) {
				return
			}
			if cancel && status == "searching" {
				if _, err := c.call(ctx, "POST /v1/rides/{id}/cancel", "POST", "/v1/rides/"+created.RideID+"/cancel", nil, nil); err == nil {
					status = "cancelled"
					break
				}
			}
			var r struct {
				Status string `json:"status"`
			}
			if _, err := c.call(ctx, "GET /v1/rides/{id}", "GET", "/v1/rides/"+created.RideID, nil, &r); err == nil {
				status = r.Status
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.st.ride(status)
		if status == "paid" {
			c.call(ctx, "GET /v1/rides/{id}/receipt", "GET", "/v1/rides/"+created.RideID+"/receipt", nil, nil)
		}
	}
}
