package gateway

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/upstream"
)

var _ admin.Backend = (*Gateway)(nil)

// Snapshot implements admin.Backend.
func (g *Gateway) Snapshot() admin.Snapshot {
	rt := g.current.Load()
	now := time.Now()
	s := admin.Snapshot{ConfigFile: rt.cfg.File(), LoadedAt: rt.loadedAt, InFlight: g.handler.InFlight()}
	for _, r := range rt.cfg.Routes {
		s.Routes = append(s.Routes, admin.Route{Name: r.Name, Host: r.Match.Host, Path: r.Match.Path,
			PathPrefix: r.Match.PathPrefix, PathPattern: r.Match.PathPattern, Methods: r.Match.Methods, Headers: r.Match.Headers,
			Upstream: r.Upstream, StripPrefix: r.StripPrefix})
	}
	for _, name := range rt.names {
		p := rt.pools[name]
		policy := rt.cfg.Upstreams[name].Policy
		if policy == "" {
			policy = "round_robin"
		}
		targets, poolState, targetStates := p.BreakerState()
		// targets is [] when there are none (a discovered service with no
		// instance yet), never null: scripts iterate over it.
		u := admin.Upstream{Name: name, Balance: policy, Circuit: poolState, Targets: make([]admin.Target, 0, len(targets))}
		for i, t := range targets {
			at := admin.Target{
				Address: t.Address, Weight: t.Weight(), Healthy: t.Healthy(), Draining: t.Draining(),
				Ejected: t.Ejected(now), Ejections: t.Ejections(), Available: t.Available(now),
				InFlight: t.InFlight(), Requests: t.Requests(), Failures: t.Failures(),
				LatencyEWMAms: float64(t.LatencyEWMA().Microseconds()) / 1000,
			}
			_, at.WeightOverride = g.overrides.get(name, t.Address)
			if at.Ejected {
				until := t.EjectedUntil()
				at.EjectedUntil = &until
			}
			if targetStates != nil {
				at.Circuit = targetStates[i]
			}
			u.Targets = append(u.Targets, at)
		}
		s.Upstreams = append(s.Upstreams, u)
	}
	return s
}

func (g *Gateway) target(upstreamName, address string) (*upstream.Target, error) {
	p, ok := g.current.Load().pools[upstreamName]
	if !ok {
		return nil, admin.NotFound("unknown upstream %q", upstreamName)
	}
	for _, t := range p.Targets() {
		if t.Address == address {
			return t, nil
		}
	}
	return nil, admin.NotFound("unknown target %q in upstream %q", address, upstreamName)
}

// SetDraining implements admin.Backend. A drained target gets no new
// requests; requests in flight finish. The state survives reloads.
func (g *Gateway) SetDraining(upstreamName, address string, draining bool) error {
	t, err := g.target(upstreamName, address)
	if err != nil {
		return err
	}
	t.SetDraining(draining)
	g.log.Info("target drain changed", "upstream", upstreamName, "target", address, "draining", draining)
	return nil
}

// SetWeight implements admin.Backend. The weight overrides the config's
// and survives reloads as long as the target stays in the upstream; a
// reload without the target forgets it.
func (g *Gateway) SetWeight(upstreamName, address string, weight int) error {
	if weight < 1 || weight > MaxWeight {
		return fmt.Errorf("invalid weight %d: expected 1 to %d", weight, MaxWeight)
	}
	g.reloadMu.Lock() // a reload reads the overrides as it builds
	defer g.reloadMu.Unlock()
	t, err := g.target(upstreamName, address)
	if err != nil {
		return err
	}
	t.SetWeight(weight)
	g.overrides.set(upstreamName, address, weight)
	g.log.Info("target weight changed", "upstream", upstreamName, "target", address, "weight", weight)
	return nil
}

// ResetWeight implements admin.Backend: the config's weight applies again.
func (g *Gateway) ResetWeight(upstreamName, address string) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	t, err := g.target(upstreamName, address)
	if err != nil {
		return err
	}
	g.overrides.drop(upstreamName, address)
	w := 1
	for _, tc := range g.current.Load().cfg.Upstreams[upstreamName].Targets {
		if tc.Address == address && tc.Weight > 0 {
			w = tc.Weight
		}
	}
	t.SetWeight(w)
	g.log.Info("target weight reset to the config's", "upstream", upstreamName, "target", address, "weight", w)
	return nil
}

// weightOverrides are the weights set through the admin API, by upstream
// and target address. Guarded by Gateway.reloadMu for writes; read under
// its own lock by snapshots.
type weightOverrides struct {
	mu sync.Mutex
	m  map[[2]string]int
}

func (o *weightOverrides) set(up, addr string, w int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[[2]string]int{}
	}
	o.m[[2]string{up, addr}] = w
}

func (o *weightOverrides) drop(up, addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, [2]string{up, addr})
}

func (o *weightOverrides) get(up, addr string) (int, bool) {
	if o == nil {
		return 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.m[[2]string{up, addr}]
	return w, ok
}

// keepOnly forgets the overrides of targets cfg no longer has.
func (o *weightOverrides) keepOnly(cfg *Config) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.m {
		u := cfg.Upstreams[k[0]]
		found := u != nil && u.Discover != "" // targets come and go with the registry
		if u != nil {
			for _, t := range u.Targets {
				found = found || t.Address == k[1]
			}
		}
		if !found {
			delete(o.m, k)
		}
	}
}

// targetCollector exports live target state on each scrape.
type targetCollector struct{ g *Gateway }

var (
	descInflight  = prometheus.NewDesc("switchyard_target_inflight_requests", "Requests in flight to a target.", []string{"upstream", "target"}, nil)
	descHealthy   = prometheus.NewDesc("switchyard_target_healthy", "1 when active health checks pass (or none are configured).", []string{"upstream", "target"}, nil)
	descAvailable = prometheus.NewDesc("switchyard_target_available", "1 when the target can be chosen: healthy, not draining, not ejected.", []string{"upstream", "target"}, nil)
	descEjected   = prometheus.NewDesc("switchyard_target_ejected", "1 while passive outlier detection ejects the target.", []string{"upstream", "target"}, nil)
	descDraining  = prometheus.NewDesc("switchyard_target_draining", "1 while an operator drains the target.", []string{"upstream", "target"}, nil)
	descWeight    = prometheus.NewDesc("switchyard_target_weight", "Current target weight.", []string{"upstream", "target"}, nil)
	descCircuit   = prometheus.NewDesc("switchyard_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open (target \"\" is the upstream-wide breaker).", []string{"upstream", "target"}, nil)
)

func (c targetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInflight, descHealthy, descAvailable, descEjected, descDraining, descWeight, descCircuit} {
		ch <- d
	}
}

func (c targetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Snapshot()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, u := range s.Upstreams {
		if u.Circuit != "" {
			ch <- prometheus.MustNewConstMetric(descCircuit, prometheus.GaugeValue, circuitValue(u.Circuit), u.Name, "")
		}
		for _, t := range u.Targets {
			ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(t.InFlight), u.Name, t.Address)
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, b(t.Healthy), u.Name, t.Address)
			ch <- prometheus.MustNewConstMetric(descAvailable, prometheus.GaugeValue, b(t.Available), u.Name, t.Address)
			ch <- prometheus.MustNewConstMetric(descEjected, prometheus.GaugeValue, b(t.Ejected), u.Name, t.Address)
			ch <- prometheus.MustNewConstMetric(descDraining, prometheus.GaugeValue, b(t.Draining), u.Name, t.Address)
			ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(t.Weight), u.Name, t.Address)
			if t.Circuit != "" {
				ch <- prometheus.MustNewConstMetric(descCircuit, prometheus.GaugeValue, circuitValue(t.Circuit), u.Name, t.Address)
			}
		}
	}
}

func circuitValue(s string) float64 {
	switch s {
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return 0
}
