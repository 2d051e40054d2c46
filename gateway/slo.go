package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/slo"
)

// SLOStateFile is the file in state_dir that keeps the SLOs' counts and
// alert states across restarts.
const SLOStateFile = "slo.json"

// validateSLOs checks the slos section: each SLO on its own (package
// slo), unique names, and that the route or upstream it measures exists.
// It runs after the routes' names are defaulted.
func (c *Config) validateSLOs() []error {
	var errs []error
	routes := map[string]bool{}
	var routeNames []string
	for _, r := range c.Routes {
		routes[r.Name] = true
		routeNames = append(routeNames, r.Name)
	}
	sort.Strings(routeNames)
	names := map[string]bool{}
	for i := range c.SLOs {
		s := &c.SLOs[i]
		p := fmt.Sprintf("slos[%d]", i)
		if err := s.Validate(); err != nil {
			errs = append(errs, c.Wrap(p, err))
		}
		if s.Name != "" && names[s.Name] {
			errs = append(errs, c.Errorf(p+".name", "duplicate slo name %q", s.Name))
		}
		names[s.Name] = true
		if s.Route != "" && !routes[s.Route] {
			expect := "no routes are defined"
			if len(routeNames) > 0 {
				expect = "expected one of " + strings.Join(routeNames, ", ")
			}
			errs = append(errs, c.Errorf(p+".route", "unknown route %q: %s", s.Route, expect))
		}
		if _, ok := c.Upstreams[s.Upstream]; s.Upstream != "" && !ok {
			errs = append(errs, c.Errorf(p+".upstream", "unknown upstream %q: %s", s.Upstream, c.upstreamChoices()))
		}
	}
	return errs
}

// SLOMetricNames are the gateway's request metrics, as Prometheus rules
// for its SLOs read them.
func SLOMetricNames() slo.MetricNames {
	return slo.MetricNames{Requests: proxy.RequestsMetric, Duration: proxy.DurationMetric,
		RouteLabel: proxy.RouteLabel, UpstreamLabel: proxy.UpstreamLabel, CodeLabel: proxy.CodeLabel,
		Buckets: proxy.DurationBuckets()}
}

// SLORules returns the Prometheus recording and alerting rules equivalent
// to the config's SLOs, over the gateway's own request metrics (what
// `switchyard slo rules` writes). A latency SLO's threshold must be a
// bucket bound of the duration histogram.
func (c *Config) SLORules() (*slo.RuleFile, error) {
	if len(c.SLOs) == 0 {
		return nil, c.Errorf("slos", "no slos in the config: nothing to write (add a slos: list; see docs/operations.md)")
	}
	m := SLOMetricNames()
	var errs []error
	for i, s := range c.SLOs {
		if s.EffectiveKind() == slo.Latency && !m.HasBucket(s.Threshold) {
			errs = append(errs, c.Errorf(fmt.Sprintf("slos[%d].threshold", i),
				"%s is not a bucket bound of %s, so Prometheus cannot count it exactly: expected one of %s (the gateway's own /admin/slos measures any threshold)",
				s.Threshold, m.Duration, m.BucketList()))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return slo.Rules(c.SLOs, m)
}

// setupSLOs creates the SLO engine for cfg, restores its state from
// state_dir, and registers its metrics.
func (g *Gateway) setupSLOs(cfg *Config, reg prometheus.Registerer) error {
	opts := slo.Options{Log: g.log.With("component", "slo")}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
			return cfg.Errorf("state_dir", "creating the state directory: %v", err)
		}
		opts.StatePath = filepath.Join(cfg.StateDir, SLOStateFile)
	}
	g.slos = slo.New(opts)
	g.slos.Set(cfg.SLOs)
	if err := g.slos.Load(); err != nil {
		// A corrupt or unreadable state file costs the history, not the
		// gateway: report it and start counting afresh.
		g.log.Error("slo state not restored", "error", err.Error())
	}
	if err := reg.Register(g.slos.Collector()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}

// runSLOs runs the SLO engine (alert evaluation, webhooks, state saves)
// until the returned stop is called, which saves the state and returns.
func (g *Gateway) runSLOs() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.slos.Run(ctx); err != nil {
			g.log.Error("slo engine", "error", err.Error())
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// SLOs returns the SLOs' state now (what GET /admin/slos serves).
func (g *Gateway) SLOs() []slo.Status { return g.slos.Status() }
