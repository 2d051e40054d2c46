package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/load"
	"github.com/switchyard/switchyard/load/chart"
)

// BenchConfig configures `switchyard hitch bench`: the open-model load
// generator (package load) against Hitch's hottest endpoints through the
// gateway, at rising rates, to find each one's degradation point and the
// highest rate within its SLO; then the whole ride flow by simulation.
type BenchConfig struct {
	// BaseURL is the gateway. Required.
	BaseURL string
	// Scenarios to run, in order: "nearby", "location", "rides". Default
	// all three.
	Scenarios []string
	// Ramp is the rates of the load-generator scenarios. Default 500 to
	// 8000 by 500, 5s a step.
	Ramp *load.Ramp
	// SLO a step must meet. Default "p99<100ms,errors<0.1%".
	SLO string
	// Drivers is how many drivers report positions (nearby searches find
	// them; location updates come from them). Default 200.
	Drivers int
	// Connections for the load generator. Default 256.
	Connections int
	// RideDuration is how long the ride-flow simulation runs. Default 30s.
	RideDuration time.Duration
	// Out, when set, is a directory for each scenario's JSON result and
	// chart (NAME.json, NAME.png).
	Out string
	// Log receives progress lines. Default discard.
	Log io.Writer
}

// BenchResult is what a bench run measured.
type BenchResult struct {
	Scenarios map[string]*load.Result `json:"scenarios"`
	Rides     *Snapshot               `json:"rides,omitempty"`
}

// Bench runs the configured scenarios and returns their results. A scenario
// that cannot start (no user could sign up) fails the run.
func Bench(ctx context.Context, cfg BenchConfig) (*BenchResult, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("hitch bench: the gateway's base URL is required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if len(cfg.Scenarios) == 0 {
		cfg.Scenarios = []string{"nearby", "location", "rides"}
	}
	for _, s := range cfg.Scenarios {
		if s != "nearby" && s != "location" && s != "rides" {
			return nil, fmt.Errorf("hitch bench: unknown scenario %q: want nearby, location or rides", s)
		}
	}
	if cfg.Ramp == nil {
		cfg.Ramp = &load.Ramp{Start: 500, End: 8000, Step: 500, StepDuration: 5 * time.Second}
	}
	if cfg.SLO == "" {
		cfg.SLO = "p99<100ms,errors<0.1%"
	}
	slo, err := load.ParseSLO(cfg.SLO)
	if err != nil {
		return nil, fmt.Errorf("hitch bench: --slo: %w", err)
	}
	if cfg.Drivers <= 0 {
		cfg.Drivers = 200
	}
	if cfg.RideDuration <= 0 {
		cfg.RideDuration = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Out != "" {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return nil, fmt.Errorf("hitch bench: --out: %w", err)
		}
	}
	out := &BenchResult{Scenarios: map[string]*load.Result{}}
	scfg := Config{BaseURL: cfg.BaseURL, Drivers: cfg.Drivers, Riders: 1}.withDefaults()
	st := newStats()
	run := uint64(time.Now().UnixNano()) // new accounts on every run
	rng := rand.New(rand.NewPCG(42, 42))
	var drivers []*client
	var rider *client
	needUsers := false
	for _, s := range cfg.Scenarios {
		needUsers = needUsers || s != "rides"
	}
	if needUsers {
		fmt.Fprintf(cfg.Log, "signing up %d drivers and a rider\n", cfg.Drivers)
		rider = &client{cfg: &scfg, st: st, rng: rand.New(rand.NewPCG(run, 1))}
		if err := rider.signUp(ctx, hitch.RoleRider, "bench-rider"); err != nil {
			return nil, fmt.Errorf("hitch bench: signing up a rider at %s: %w", cfg.BaseURL, err)
		}
		drivers = make([]*client, cfg.Drivers)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		errs := make([]error, cfg.Drivers)
		for i := range drivers {
			d := &client{cfg: &scfg, st: st, rng: rand.New(rand.NewPCG(run+2, uint64(i)))}
			drivers[i] = d
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if errs[i] = d.signUp(ctx, hitch.RoleDriver, fmt.Sprintf("bench-driver%d", i)); errs[i] != nil {
					return
				}
				from, _ := trip(d.rng, 0.1, 0.2)
				_, errs[i] = d.call(ctx, "PUT /v1/drivers/me/location", "PUT", "/v1/drivers/me/location", from, nil)
			}(i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("hitch bench: preparing drivers: %w", err)
		}
	}
	for _, s := range cfg.Scenarios {
		var targets []load.Target
		switch s {
		case "nearby":
			for i := 0; i < 64; i++ {
				p, _ := trip(rng, 0.1, 0.2)
				targets = append(targets, load.Target{
					URL:    fmt.Sprintf("%s/v1/drivers/nearby?lat=%.6f&lon=%.6f&radius_mi=2", cfg.BaseURL, p.Lat, p.Lon),
					Header: []load.HeaderField{{Name: "Authorization", Value: "Bearer " + rider.token}},
				})
			}
		case "location":
			for _, d := range drivers {
				p, _ := trip(d.rng, 0.1, 0.2)
				targets = append(targets, load.Target{
					URL: cfg.BaseURL + "/v1/drivers/me/location", Method: "PUT",
					Header: []load.HeaderField{{Name: "Authorization", Value: "Bearer " + d.token},
						{Name: "Content-Type", Value: "application/json"}},
					Body: []byte(fmt.Sprintf(`{"lat":%.6f,"lon":%.6f}`, p.Lat, p.Lon)),
				})
			}
		case "rides":
			fmt.Fprintf(cfg.Log, "== rides: simulating %s of riders and drivers\n", cfg.RideDuration)
			snap, err := Run(ctx, Config{BaseURL: cfg.BaseURL, Drivers: 100, Riders: 400, Duration: cfg.RideDuration,
				RideEvery: 10 * time.Second, Speed: 120})
			if err != nil {
				return out, fmt.Errorf("hitch bench: rides: %w", err)
			}
			out.Rides = &snap
			fmt.Fprint(cfg.Log, snap.String())
			continue
		}
		fmt.Fprintf(cfg.Log, "== %s: ramp %.0f..%.0f req/s by %.0f, SLO %s\n", s, cfg.Ramp.Start, cfg.Ramp.End, cfg.Ramp.Step, slo)
		res, err := load.Run(ctx, load.Config{Targets: targets, Ramp: cfg.Ramp, SLO: slo, Connections: cfg.Connections})
		if err != nil {
			return out, fmt.Errorf("hitch bench: %s: %w", s, err)
		}
		out.Scenarios[s] = res
		res.WriteSummary(cfg.Log)
		if cfg.Out != "" {
			f, err := os.Create(filepath.Join(cfg.Out, s+".json"))
			if err != nil {
				return out, err
			}
			err = errors.Join(res.WriteJSON(f), f.Close())
			if err != nil {
				return out, err
			}
			if err := chart.WriteFile(filepath.Join(cfg.Out, s+".png"), res); err != nil {
				return out, err
			}
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}
