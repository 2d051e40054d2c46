package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchyard/switchyard/hitch"
)

// CheckConfig configures Check.
type CheckConfig struct {
	// BaseURL is the gateway. Required.
	BaseURL string
	// Wait bounds each wait for an asynchronous outcome (a match, a
	// payment). Default 30s.
	Wait time.Duration
	// NoDriverWait bounds the wait for a no_driver outcome, which comes
	// only after matching gave up (its match timeout). Default 90s.
	NoDriverWait time.Duration
	// Decline, when set, makes the next charge fail (it is called before
	// the declined-payment case and its returned function after it), for
	// example by setting the card processor's faults. Without it that case
	// is skipped.
	Decline func(ctx context.Context) (restore func(), err error)
	// HTTPClient; default one with 10 s timeouts.
	HTTPClient *http.Client
	// Cases, when set, runs only the named cases.
	Cases []string
}

// CaseResult is one use case's outcome.
type CaseResult struct {
	Name    string
	Err     error // nil when it passed
	Skipped string
	Took    time.Duration
}

// Check runs every use case of the notes against a running Hitch through
// its gateway, as a user would: registration and login of a rider and a
// driver, the roles' limits, nearby drivers, a successful match and ride
// with payment, the receipt and the driver's earnings, a ride that finds no
// driver, cancellation, and (with Decline) a declined payment. It is
// `switchyard hitch check` and the end-to-end tests' driver.
func Check(ctx context.Context, cfg CheckConfig) []CaseResult {
	if cfg.Wait == 0 {
		cfg.Wait = 30 * time.Second
	}
	if cfg.NoDriverWait == 0 {
		cfg.NoDriverWait = 90 * time.Second
	}
	scfg := Config{BaseURL: strings.TrimRight(cfg.BaseURL, "/"), HTTPClient: cfg.HTTPClient, Drivers: 1, Riders: 1}.withDefaults()
	k := &checker{cfg: cfg, scfg: &scfg, st: newStats(), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	cases := k.cases()
	want := map[string]bool{}
	for _, c := range cfg.Cases {
		want[c] = true
	}
	var out []CaseResult
	for _, c := range cases {
		if len(want) > 0 && !want[c.name] {
			continue
		}
		start := time.Now()
		err := c.run(ctx)
		r := CaseResult{Name: c.name, Took: time.Since(start)}
		var skip skipped
		if errors.As(err, &skip) {
			r.Skipped = string(skip)
		} else {
			r.Err = err
		}
		out = append(out, r)
	}
	return out
}

type checkCase struct {
	name string
	run  func(context.Context) error
}

// cases are the use cases in the order Check runs them.
func (k *checker) cases() []checkCase {
	return []checkCase{
		{"register and login", k.registerAndLogin},
		{"roles and tokens", k.rolesAndTokens},
		{"nearby drivers", k.nearby},
		{"match, ride and payment", k.rideAndPay},
		{"receipt and earnings", k.receiptAndEarnings},
		{"cancellation", k.cancellation},
		{"declined payment", k.declined},
		{"no driver", k.noDriver},
	}
}

// CaseNames are the names CheckConfig.Cases accepts, in the order Check
// runs them.
func CaseNames() []string {
	var names []string
	for _, c := range (&checker{}).cases() {
		names = append(names, c.name)
	}
	return names
}

type skipped string

func (s skipped) Error() string { return string(s) }

type checker struct {
	cfg   CheckConfig
	scfg  *Config
	st    *stats
	rng   *rand.Rand
	rider *client
	drv   *client
	// the last paid ride, for the receipt and earnings case
	paidRide   string
	paidFare   int64
	driverBase earnings
}

// earnings is GET /v1/drivers/me/earnings (cents).
type earnings struct {
	Rides int64 `json:"rides"`
	Gross int64 `json:"gross"`
	Fees  int64 `json:"fees"`
	Net   int64 `json:"net_paid"`
}

func (k *checker) newUser(ctx context.Context, role string) (*client, error) {
	c := &client{cfg: k.scfg, st: k.st, rng: rand.New(rand.NewPCG(k.rng.Uint64(), k.rng.Uint64()))}
	if err := c.signUp(ctx, role, "check-"+role); err != nil {
		return nil, fmt.Errorf("signing up a %s: %w", role, err)
	}
	return c, nil
}

func (k *checker) users(ctx context.Context) error {
	if k.rider != nil && k.drv != nil {
		return nil
	}
	var err error
	if k.rider, err = k.newUser(ctx, hitch.RoleRider); err != nil {
		return err
	}
	k.drv, err = k.newUser(ctx, hitch.RoleDriver)
	return err
}

func (k *checker) registerAndLogin(ctx context.Context) error {
	if err := k.users(ctx); err != nil {
		return err
	}
	// A second registration with the same email is refused; a wrong
	// password is refused.
	anon := &client{cfg: k.scfg, st: k.st, rng: k.rng}
	email := fmt.Sprintf("dup-%d@check.hitch.test", k.rng.Uint64())
	body := map[string]string{"role": "rider", "name": "dup", "email": email, "password": "correct horse battery"}
	if _, err := anon.call(ctx, "register", "POST", "/v1/auth/register", body, nil); err != nil {
		return err
	}
	if code, _ := anon.call(ctx, "register", "POST", "/v1/auth/register", body, nil); code != http.StatusConflict {
		return fmt.Errorf("registering %s twice: status %d, want 409", email, code)
	}
	if code, _ := anon.call(ctx, "login", "POST", "/v1/auth/login", map[string]string{"email": email, "password": "wrong"}, nil); code != http.StatusUnauthorized {
		return fmt.Errorf("login with a wrong password: status %d, want 401", code)
	}
	return nil
}

func (k *checker) rolesAndTokens(ctx context.Context) error {
	if err := k.users(ctx); err != nil {
		return err
	}
	anon := &client{cfg: k.scfg, st: k.st, rng: k.rng}
	if code, _ := anon.call(ctx, "rides", "POST", "/v1/rides", map[string]any{"from": hitch.Point{Lat: 40.75, Lon: -73.98}, "to": hitch.Point{Lat: 40.76, Lon: -73.97}}, nil); code != http.StatusUnauthorized {
		return fmt.Errorf("requesting a ride without a token: status %d, want 401", code)
	}
	forged := &client{cfg: k.scfg, st: k.st, rng: k.rng, token: k.rider.token[:len(k.rider.token)-4] + "AAAA"}
	if code, _ := forged.call(ctx, "rides", "GET", "/v1/drivers/nearby?lat=40.75&lon=-73.98", nil, nil); code != http.StatusUnauthorized {
		return fmt.Errorf("a token with a forged signature: status %d, want 401", code)
	}
	if code, _ := k.rider.call(ctx, "location", "PUT", "/v1/drivers/me/location", hitch.Point{Lat: 40.75, Lon: -73.98}, nil); code != http.StatusForbidden {
		return fmt.Errorf("a rider reporting a driver's location: status %d, want 403", code)
	}
	if code, _ := k.drv.call(ctx, "rides", "POST", "/v1/rides", map[string]any{"from": hitch.Point{Lat: 40.75, Lon: -73.98}, "to": hitch.Point{Lat: 40.76, Lon: -73.97}}, nil); code != http.StatusForbidden {
		return fmt.Errorf("a driver requesting a ride: status %d, want 403", code)
	}
	return nil
}

// A spot for the checks' rides, away from the simulator's avenues so that
// a check run beside a simulation does not match its drivers.
func (k *checker) spot() (from, to hitch.Point) {
	lat := 40.62 + k.rng.Float64()*0.02
	lon := -74.10 + k.rng.Float64()*0.02
	return hitch.Point{Lat: lat, Lon: lon}, hitch.Point{Lat: lat + 0.03, Lon: lon + 0.01}
}

func (k *checker) nearby(ctx context.Context) error {
	if err := k.users(ctx); err != nil {
		return err
	}
	p, _ := k.spot()
	if _, err := k.drv.call(ctx, "location", "PUT", "/v1/drivers/me/location", p, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(k.cfg.Wait)
	for {
		var res struct {
			Drivers []struct {
				ID         string  `json:"id"`
				DistanceMi float64 `json:"distance_mi"`
			} `json:"drivers"`
		}
		q := url.Values{"lat": {fmt.Sprint(p.Lat + 0.01)}, "lon": {fmt.Sprint(p.Lon)}, "radius_mi": {"5"}}
		if _, err := k.rider.call(ctx, "nearby", "GET", "/v1/drivers/nearby?"+q.Encode(), nil, &res); err != nil {
			return err
		}
		for i, d := range res.Drivers {
			if i > 0 && d.DistanceMi < res.Drivers[i-1].DistanceMi {
				return fmt.Errorf("nearby drivers not nearest first: %+v", res.Drivers)
			}
			if d.ID == k.drv.id {
				if d.DistanceMi < 0.6 || d.DistanceMi > 0.75 { // 0.01 degree of latitude is 0.69 mi
					return fmt.Errorf("driver 0.69 mi away listed at %.3f mi", d.DistanceMi)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("driver %s at %v not among the nearby drivers within %s: %+v", k.drv.id, p, k.cfg.Wait, res.Drivers)
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

type rideView struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	DriverID string `json:"driver_id"`
	RiderID  string `json:"rider_id"`
	Fare     int64  `json:"fare"`
}

// waitStatus polls the ride until its status is one of want.
func (k *checker) waitStatus(ctx context.Context, c *client, id string, wait time.Duration, want ...string) (rideView, error) {
	deadline := time.Now().Add(wait)
	var r rideView
	for {
		if _, err := c.call(ctx, "ride", "GET", "/v1/rides/"+id, nil, &r); err != nil {
			return r, err
		}
		for _, w := range want {
			if r.Status == w {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("ride %s is %q after %s, want %v", id, r.Status, wait, want)
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return r, ctx.Err()
		}
	}
}

// matchedRide makes the driver available on a route and has a new rider
// request a ride along it; it returns the ride once matched.
func (k *checker) matchedRide(ctx context.Context, rider *client) (string, error) {
	from, to := k.spot()
	if _, err := k.drv.call(ctx, "availability", "POST", "/v1/drivers/me/availability",
		map[string]any{"ready": true, "from": from, "to": to, "seats": 1}, nil); err != nil {
		return "", err
	}
	var created struct {
		RideID string `json:"ride_id"`
		Status string `json:"status"`
	}
	if _, err := rider.call(ctx, "rides", "POST", "/v1/rides",
		map[string]any{"from": along(from, to, 0.2), "to": along(from, to, 0.7)}, &created); err != nil {
		return "", err
	}
	if created.Status != "searching" || created.RideID == "" {
		return "", fmt.Errorf("new ride: %+v, want a ride id and status searching", created)
	}
	r, err := k.waitStatus(ctx, rider, created.RideID, k.cfg.Wait, "matched")
	if err != nil {
		return "", err
	}
	if r.DriverID != k.drv.id {
		return "", fmt.Errorf("ride %s matched with driver %q, want %q", r.ID, r.DriverID, k.drv.id)
	}
	return created.RideID, nil
}

func (k *checker) earnings(ctx context.Context) (earnings, error) {
	var e earnings
	_, err := k.drv.call(ctx, "earnings", "GET", "/v1/drivers/me/earnings", nil, &e)
	return e, err
}

func (k *checker) rideAndPay(ctx context.Context) error {
	if err := k.users(ctx); err != nil {
		return err
	}
	base, err := k.earnings(ctx)
	if err != nil {
		return err
	}
	k.driverBase = base
	id, err := k.matchedRide(ctx, k.rider)
	if err != nil {
		return err
	}
	// Only the ride's driver may start it.
	other, err := k.newUser(ctx, hitch.RoleDriver)
	if err != nil {
		return err
	}
	if code, _ := other.call(ctx, "start", "POST", "/v1/rides/"+id+"/start", nil, nil); code != http.StatusForbidden && code != http.StatusNotFound {
		return fmt.Errorf("another driver starting ride %s: status %d, want 403 or 404", id, code)
	}
	if _, err := k.drv.call(ctx, "start", "POST", "/v1/rides/"+id+"/start", nil, nil); err != nil {
		return err
	}
	if code, _ := k.rider.call(ctx, "cancel", "POST", "/v1/rides/"+id+"/cancel", nil, nil); code != http.StatusConflict {
		return fmt.Errorf("cancelling a started ride: status %d, want 409", code)
	}
	if _, err := k.drv.call(ctx, "finish", "POST", "/v1/rides/"+id+"/finish", nil, nil); err != nil {
		return err
	}
	r, err := k.waitStatus(ctx, k.rider, id, k.cfg.Wait, "paid", "payment_failed")
	if err != nil {
		return err
	}
	if r.Status != "paid" {
		return fmt.Errorf("ride %s ended %q, want paid", id, r.Status)
	}
	if r.Fare <= 0 {
		return fmt.Errorf("paid ride %s has fare %d", id, r.Fare)
	}
	k.paidRide, k.paidFare = id, r.Fare
	return nil
}

func (k *checker) receiptAndEarnings(ctx context.Context) error {
	if k.paidRide == "" {
		return skipped("needs the paid ride of 'match, ride and payment'")
	}
	deadline := time.Now().Add(k.cfg.Wait)
	for {
		var rc struct { // GET /v1/rides/{id}/receipt (cents)
			Fare         int64  `json:"fare"`
			Fee          int64  `json:"fee"`
			Total        int64  `json:"total_charged"`
			PaymentState string `json:"payment"`
		}
		code, err := k.rider.call(ctx, "receipt", "GET", "/v1/rides/"+k.paidRide+"/receipt", nil, &rc)
		if err == nil && rc.PaymentState == "charged" {
			if rc.Fare != k.paidFare || rc.Total != rc.Fare || rc.Fee <= 0 || rc.Fee >= rc.Fare {
				return fmt.Errorf("receipt of ride %s: %+v, want fare %d = total, 0 < fee < fare", k.paidRide, rc, k.paidFare)
			}
			e, err := k.earnings(ctx)
			if err != nil {
				return err
			}
			want := earnings{Rides: k.driverBase.Rides + 1, Gross: k.driverBase.Gross + rc.Fare, Fees: k.driverBase.Fees + rc.Fee}
			want.Net = want.Gross - want.Fees
			if e == want {
				// The driver cannot read the rider's receipt.
				if code, _ := k.drv.call(ctx, "receipt", "GET", "/v1/rides/"+k.paidRide+"/receipt", nil, nil); code != http.StatusForbidden && code != http.StatusNotFound {
					return fmt.Errorf("the driver reading the rider's receipt: status %d, want 403 or 404", code)
				}
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("earnings %+v, want %+v", e, want)
			}
		} else if time.Now().After(deadline) {
			return fmt.Errorf("receipt of ride %s: status %d %+v %v", k.paidRide, code, rc, err)
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func (k *checker) cancellation(ctx context.Context) error {
	if err := k.users(ctx); err != nil {
		return err
	}
	rider, err := k.newUser(ctx, hitch.RoleRider)
	if err != nil {
		return err
	}
	id, err := k.matchedRide(ctx, rider)
	if err != nil {
		return err
	}
	if _, err := rider.call(ctx, "cancel", "POST", "/v1/rides/"+id+"/cancel", nil, nil); err != nil {
		return err
	}
	if _, err := k.waitStatus(ctx, rider, id, k.cfg.Wait, "cancelled"); err != nil {
		return err
	}
	// The seat is free again: the next rider on the route gets the driver.
	next, err := k.newUser(ctx, hitch.RoleRider)
	if err != nil {
		return err
	}
	id2, err := k.matchedRide(ctx, next)
	if err != nil {
		return fmt.Errorf("after a cancellation: %w", err)
	}
	_, err = next.call(ctx, "cancel", "POST", "/v1/rides/"+id2+"/cancel", nil, nil)
	return err
}

func (k *checker) declined(ctx context.Context) error {
	if k.cfg.Decline == nil {
		return skipped("no way to make the card processor decline (Decline not set)")
	}
	if err := k.users(ctx); err != nil {
		return err
	}
	rider, err := k.newUser(ctx, hitch.RoleRider)
	if err != nil {
		return err
	}
	id, err := k.matchedRide(ctx, rider)
	if err != nil {
		return err
	}
	if _, err := k.drv.call(ctx, "start", "POST", "/v1/rides/"+id+"/start", nil, nil); err != nil {
		return err
	}
	restore, err := k.cfg.Decline(ctx)
	if err != nil {
		return err
	}
	defer restore()
	if _, err := k.drv.call(ctx, "finish", "POST", "/v1/rides/"+id+"/finish", nil, nil); err != nil {
		return err
	}
	r, err := k.waitStatus(ctx, rider, id, k.cfg.Wait, "paid", "payment_failed")
	if err != nil {
		return err
	}
	if r.Status != "payment_failed" {
		return fmt.Errorf("ride %s with a declined card ended %q, want payment_failed", id, r.Status)
	}
	return nil
}

func (k *checker) noDriver(ctx context.Context) error {
	if err := k.users(ctx); err != nil {
		return err
	}
	rider, err := k.newUser(ctx, hitch.RoleRider)
	if err != nil {
		return err
	}
	// Nobody drives in the far south-west corner.
	var created struct {
		RideID string `json:"ride_id"`
	}
	if _, err := rider.call(ctx, "rides", "POST", "/v1/rides",
		map[string]any{"from": hitch.Point{Lat: 40.50, Lon: -74.25}, "to": hitch.Point{Lat: 40.51, Lon: -74.24}}, &created); err != nil {
		return err
	}
	_, err = k.waitStatus(ctx, rider, created.RideID, k.cfg.NoDriverWait, "no_driver")
	return err
}

// Ride is one ride RideOnce drove to its end.
type Ride struct {
	ID       string
	DriverID string
	Status   string
	Fare     int64
	Token    string // the rider's, to follow the ride
}

// RideOnce drives one complete ride through the gateway with a new driver
// and a new rider on a lane of their own (lane picks a route nobody else's
// rides cross): the driver offers the route, the rider asks for a ride
// along it, and once matched the driver starts and finishes it. Calls that
// fail for the system's reasons (transport errors, 5xx, a 409 for an
// action already done) are retried until ctx ends, so it can run while
// services are being killed. It returns once the ride is finished; the
// payment follows asynchronously (see WaitRide).
func RideOnce(ctx context.Context, baseURL string, lane int) (Ride, error) {
	scfg := Config{BaseURL: strings.TrimRight(baseURL, "/"), Drivers: 1, Riders: 1}.withDefaults()
	st := newStats()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(lane)))
	retry := func(what string, f func() (int, error)) error {
		for {
			code, err := f()
			if err == nil {
				return nil
			}
			if code != 0 && code < 500 && code != http.StatusTooManyRequests {
				return fmt.Errorf("%s: %w", what, err)
			}
			if !sleep(ctx, 200*time.Millisecond) {
				return fmt.Errorf("%s: %w (gave up: %v)", what, err, ctx.Err())
			}
		}
	}
	drv := &client{cfg: &scfg, st: st, rng: rand.New(rand.NewPCG(rng.Uint64(), 1))}
	rider := &client{cfg: &scfg, st: st, rng: rand.New(rand.NewPCG(rng.Uint64(), 2))}
	for _, u := range []struct {
		c    *client
		role string
	}{{drv, hitch.RoleDriver}, {rider, hitch.RoleRider}} {
		if err := retry("sign up", func() (int, error) {
			err := u.c.signUp(ctx, u.role, fmt.Sprintf("lane%d-%s", lane, u.role))
			if err != nil && strings.Contains(err.Error(), " 409 ") {
				return 409, err
			}
			return 0, err
		}); err != nil {
			return Ride{}, err
		}
	}
	// Lanes: east-west streets 0.02 degrees (1.4 miles) apart south of the
	// city, 40 per column.
	lat := 40.30 + float64(lane%40)*0.02
	lon := -74.60 + float64(lane/40)*0.1
	from, to := hitch.Point{Lat: lat, Lon: lon}, hitch.Point{Lat: lat, Lon: lon + 0.08}
	if err := retry("availability", func() (int, error) {
		return drv.call(ctx, "availability", "POST", "/v1/drivers/me/availability",
			map[string]any{"ready": true, "from": from, "to": to, "seats": 1}, nil)
	}); err != nil {
		return Ride{}, err
	}
	var created struct {
		RideID string `json:"ride_id"`
	}
	key := fmt.Sprintf("lane-%d-%d", lane, rng.Uint64())
	if err := retry("request", func() (int, error) {
		return rider.callKey(ctx, "rides", "POST", "/v1/rides", key,
			map[string]any{"from": along(from, to, 0.2), "to": along(from, to, 0.8)}, &created)
	}); err != nil {
		return Ride{}, err
	}
	r := Ride{ID: created.RideID, DriverID: drv.id, Token: rider.token}
	k := &checker{}
	for _, step := range []struct{ action, want string }{{"", "matched"}, {"start", "started"}, {"finish", "finished"}} {
		if step.action != "" {
			if err := retry(step.action, func() (int, error) {
				code, err := drv.call(ctx, step.action, "POST", "/v1/rides/"+r.ID+"/"+step.action, nil, nil)
				if code == http.StatusConflict {
					return 500, err // the ride has not caught up yet (an event in flight): again
				}
				return code, err
			}); err != nil {
				return r, err
			}
		}
		v, err := k.waitRetrying(ctx, rider, r.ID, step.want, "paid", "payment_failed")
		if err != nil {
			return r, err
		}
		r.Status, r.Fare = v.Status, v.Fare
		if v.Status == "no_driver" || v.Status == "cancelled" {
			return r, fmt.Errorf("ride %s ended %s", r.ID, v.Status)
		}
	}
	return r, nil
}

// WaitRide polls a ride (as its rider would, through any token) until it is
// paid or payment_failed, retrying through failures until ctx ends.
func WaitRide(ctx context.Context, baseURL, token, id string) (Ride, error) {
	scfg := Config{BaseURL: strings.TrimRight(baseURL, "/"), Drivers: 1, Riders: 1}.withDefaults()
	c := &client{cfg: &scfg, st: newStats(), rng: rand.New(rand.NewPCG(1, 1)), token: token}
	v, err := (&checker{}).waitRetrying(ctx, c, id, "paid", "payment_failed")
	return Ride{ID: id, Status: v.Status, Fare: v.Fare, DriverID: v.DriverID}, err
}

// waitRetrying polls until the ride's status is one of want (or a terminal
// one), through transient failures, until ctx ends.
func (k *checker) waitRetrying(ctx context.Context, c *client, id string, want ...string) (rideView, error) {
	var r rideView
	for {
		_, err := c.call(ctx, "ride", "GET", "/v1/rides/"+id, nil, &r)
		if err == nil {
			for _, w := range append(want, "no_driver", "cancelled") {
				if r.Status == w {
					return r, nil
				}
			}
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return r, fmt.Errorf("ride %s is %q, want %v: %v", id, r.Status, want, ctx.Err())
		}
	}
}
