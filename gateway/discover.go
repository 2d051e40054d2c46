package gateway

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/upstream"
)

// discoveredPool is an upstream whose targets come from the registry
// (upstreams.NAME.discover): it watches the service and, when the set of
// addresses changes, rebuilds the pool's balancer, outlier detection and
// health checks over the new targets (target state and breakers carry over
// by address) and swaps them into the running pool. Drain changes apply in
// place.
type discoveredPool struct {
	name, service string
	u             *Upstream
	pool          *proxy.Pool
	check         *health.CheckConfig // validated, with defaults; nil without checks
	log           *slog.Logger
	overrides     *weightOverrides
	synced        chan struct{} // closed once the first instance set is applied
	syncOnce      sync.Once

	mu      sync.Mutex // guards tracker (read by the next generation's build) and snap
	tracker *discovery.Tracker
	snap    discovery.ServiceSnapshot // the last instance set applied

	rollouts *rolloutManager // nil when only checking the config
}

// run follows the registry until ctx ends, running the pool's health
// checks over the current targets.
func (dp *discoveredPool) run(ctx context.Context, c *discovery.Client, wait time.Duration) {
	var stopChecks func()
	// paths is the health path (health_url's path and query) of each
	// address whose instances have one: its HTTP checks ask for it.
	var paths map[string]string
	restartChecks := func(targets []*upstream.Target) {
		if stopChecks != nil {
			stopChecks()
			stopChecks = nil
		}
		if dp.check == nil {
			return
		}
		checkPaths := paths
		checker, err := health.NewChecker(*dp.check, targets, health.CheckerOptions{
			Logger: dp.log,
			Path:   func(t *upstream.Target) string { return checkPaths[t.Address] },
			OnChange: func(t *upstream.Target, healthy bool) {
				dp.log.Warn("target health changed", "upstream", dp.name, "target", t.Address, "healthy", healthy)
				dp.pool.TargetHealthChanged(t, healthy)
			},
		})
		if err != nil { // validated when built
			dp.log.Error("starting health checks", "upstream", dp.name, "error", err.Error())
			return
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); checker.Run(cctx) }()
		stopChecks = func() { cancel(); <-done }
	}
	dp.mu.Lock()
	paths = healthPaths(dp.snap)
	dp.mu.Unlock()
	restartChecks(dp.pool.Targets())
	defer func() {
		if stopChecks != nil {
			stopChecks()
		}
	}()
	w, err := c.Watch(ctx, dp.service, discovery.WatchOptions{Wait: wait})
	if err != nil { // the name was validated
		dp.log.Error("watching the registry", "upstream", dp.name, "service", dp.service, "error", err.Error())
		return
	}
	defer w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-w.Updates():
			targets, changed := dp.apply(snap)
			if next := healthPaths(snap); changed || !maps.Equal(next, paths) {
				paths = next
				restartChecks(targets)
			}
			dp.syncOnce.Do(func() { close(dp.synced) })
		}
	}
}

// healthPaths maps each address of snap to the health path of its
// instances' health_url (discovery.Registration.HealthPath: the path and
// query only, never the host, so a registration cannot aim the gateway's
// checks at another host): the first instance by id at the address that
// has one. An address without one is checked at the upstream's
// health_check.path.
func healthPaths(snap discovery.ServiceSnapshot) map[string]string {
	var out map[string]string
	for _, in := range snap.Instances { // sorted by id
		if p := in.HealthPath(); p != "" {
			if _, ok := out[in.Address]; !ok {
				if out == nil {
					out = map[string]string{}
				}
				out[in.Address] = p
			}
		}
	}
	return out
}

// apply applies one instance set to the pool and reports whether the
// targets changed (so the health checks restart over them). Under a
// rollout with a selector the policy is rebuilt on every instance set,
// since an instance's metadata decides its cohort.
func (dp *discoveredPool) apply(snap discovery.ServiceSnapshot) ([]*upstream.Target, bool) {
	if dp.rollouts != nil { // the rollout's record must not change while the policy is built over it
		dp.rollouts.mu.Lock()
		defer dp.rollouts.mu.Unlock()
	}
	dp.mu.Lock()
	targets, changed := dp.tracker.Apply(snap)
	dp.snap = snap
	dp.mu.Unlock()
	if !changed && !dp.rollouts.selectsLocked(dp.name) {
		return targets, false
	}
	if !dp.setPolicyLocked(targets, snap) {
		return targets, false
	}
	if changed {
		addrs := make([]string, len(targets))
		for i, t := range targets {
			addrs[i] = t.Address
		}
		dp.log.Info("discovered targets changed", "upstream", dp.name, "service", dp.service, "index", snap.Index, "targets", addrs)
	}
	return targets, changed
}

// rebuild builds the pool's policy again over its current instances (a
// rollout started or moved). The caller holds dp.rollouts.mu.
func (dp *discoveredPool) rebuild() {
	dp.mu.Lock()
	targets, snap := dp.tracker.Targets(), dp.snap
	dp.mu.Unlock()
	dp.setPolicyLocked(targets, snap)
}

// setPolicyLocked swaps targets into the pool with their balancer (a
// rollout's split when one applies) and outlier detection. The caller
// holds dp.rollouts.mu when there is a rollout manager.
func (dp *discoveredPool) setPolicyLocked(targets []*upstream.Target, snap discovery.ServiceSnapshot) bool {
	for _, t := range targets {
		if w, ok := dp.overrides.get(dp.name, t.Address); ok {
			t.SetWeight(w)
		}
	}
	policy, ok, err := dp.rollouts.discoveredPolicyLocked(dp.name, dp.u, targets, snap)
	if !ok && err == nil {
		policy, err = balance.New(dp.u.Config, targets)
	}
	if err != nil { // validated when built
		dp.log.Error("rebuilding the balancer", "upstream", dp.name, "error", err.Error())
		return false
	}
	var out *health.Outlier
	if dp.u.Outlier != nil {
		if out, err = health.NewOutlier(*dp.u.Outlier, targets); err != nil {
			dp.log.Error("rebuilding outlier detection", "upstream", dp.name, "error", err.Error())
			return false
		}
	}
	if err := dp.pool.SetTargets(targets, policy, out); err != nil {
		dp.log.Error("replacing targets", "upstream", dp.name, "error", err.Error())
		return false
	}
	return true
}

// registryClient returns the HTTP client of a runtime's registry watches.
func registryClient() (*http.Client, *http.Transport) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{Transport: tr}, tr
}
