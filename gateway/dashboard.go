package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/switchyard/switchyard/dashboard"
)

// newDashboard builds the live dashboard over the admin handler h, which
// it calls in process for the gateway's status, traces and the operations
// endpoints (SLOs, rollouts, faults: "not available" until served).
func (g *Gateway) newDashboard(h http.Handler) (*dashboard.Server, error) {
	cfg := g.current.Load().cfg
	var dc dashboard.Config
	if cfg.Dashboard != nil {
		dc = *cfg.Dashboard
	}
	if p := g.opts.DashboardProcesses; p != "" && !strings.HasPrefix(p, "/admin/") {
		return nil, fmt.Errorf("dashboard processes path %q: expected a path under /admin/", p)
	}
	src := dashboard.FromAdmin(h, g.opts.DashboardProcesses)
	src.Metrics = g.reg.Gather
	src.MetricLabels = g.opts.MetricLabels
	src.Brokers = func() []string { return dashboardBrokers(g.current.Load().cfg) }
	src.Client = g.opts.DashboardClient
	return dashboard.New(dashboard.Options{Config: dc, Sources: src})
}

// dashboardBrokers are the brokers the dashboard shows: dashboard.brokers,
// else the broker publish routes use, else none.
func dashboardBrokers(cfg *Config) []string {
	if cfg.Dashboard != nil && len(cfg.Dashboard.Brokers) > 0 {
		return cfg.Dashboard.Brokers
	}
	if cfg.Broker != nil && cfg.Broker.URL != "" {
		return []string{cfg.Broker.URL}
	}
	return nil
}
