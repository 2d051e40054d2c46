package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/rollout"
	"github.com/switchyard/switchyard/upstream"
)

// DefaultRolloutTick is how often running rollouts are judged.
const DefaultRolloutTick = time.Second

// rolloutManager runs the rollouts of a gateway's upstreams (package
// rollout): it keeps one record per upstream (the latest rollout, active
// or final), applies it to the upstream's pool of the current runtime —
// the target set and a rollout.Split policy over the two cohorts — judges
// active canaries every tick, and persists every change to
// STATE_DIR/rollouts.json. A reload re-applies the records to the new
// runtime (attach), so a reload never loses a rollout. Safe for
// concurrent use.
type rolloutManager struct {
	log       *slog.Logger
	overrides *weightOverrides
	path      string // the state file; "" keeps rollouts in memory only
	now       func() time.Time
	tick      time.Duration

	mu      sync.Mutex
	entries map[string]*rolloutEntry // by upstream
	rt      *runtime                 // the runtime the records are applied to
	ctx     context.Context          // where extra health checks run; nil before Run
}

type rolloutEntry struct {
	r     *rollout.Rollout
	share *rollout.Share
	// extra are the targets the rollout added to a static upstream (not
	// the runtime's config targets), kept across runtimes by address so
	// their state carries over; stopChecks ends their health checks.
	extra      map[string]*upstream.Target
	stopChecks func()
	// shadow copies requests to the new version while a shadow rollout
	// is active (nil otherwise).
	shadow *rollout.Shadower
	// seen (rolling on a discovered upstream) is when each instance was
	// first seen; drained are the instances whose drain the rollout set.
	seen    map[string]time.Time
	drained map[string]bool
}

func newRolloutManager(log *slog.Logger, overrides *weightOverrides, stateDir string) (*rolloutManager, error) {
	m := &rolloutManager{log: log, overrides: overrides, now: time.Now, tick: DefaultRolloutTick, entries: map[string]*rolloutEntry{}}
	if stateDir == "" {
		return m, nil
	}
	m.path = filepath.Join(stateDir, rollout.FileName)
	rs, err := rollout.Load(m.path)
	if err != nil {
		return nil, err
	}
	now := m.now()
	for _, r := range rs {
		if r.Active() {
			// The step's window was in memory: it starts again.
			r.StepStarted = now
			log.Info("rollout resumed after a restart", "upstream", r.Spec.Upstream, "strategy", r.Spec.Strategy,
				"state", string(r.State), "step", r.Step, "canary_weight", r.Percent())
		}
		m.entries[r.Spec.Upstream] = newEntry(r)
	}
	return m, nil
}

func newEntry(r *rollout.Rollout) *rolloutEntry {
	e := &rolloutEntry{r: r, share: newShare(r), extra: map[string]*upstream.Target{}, drained: map[string]bool{}}
	if r.Active() && r.Spec.Strategy == rollout.Shadow {
		e.shadow = rollout.NewShadower(r.Canary, r.Spec.Concurrency)
	}
	return e
}

func newShare(r *rollout.Rollout) *rollout.Share {
	return rollout.NewShare(r.Percent(), r.Spec.Header, r.Spec.Cookie)
}

// attach applies the records to rt, which becomes the runtime they follow
// (a new generation at start or on reload). Records of upstreams rt does
// not have stay, applied again when a config brings the upstream back.
func (m *rolloutManager) attach(rt *runtime) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rt = rt
	for name := range m.entries {
		m.applyLocked(name)
	}
}

// start runs the judging loop until ctx ends; the returned channel is
// closed when it has.
func (m *rolloutManager) start(ctx context.Context) <-chan struct{} {
	m.mu.Lock()
	m.ctx = ctx
	for name := range m.entries {
		m.applyLocked(name) // starts the extra targets' health checks
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(m.interval())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				m.mu.Lock()
				for _, e := range m.entries {
					if e.stopChecks != nil {
						e.stopChecks()
						e.stopChecks = nil
					}
					if e.shadow != nil {
						e.shadow.Close()
					}
				}
				m.mu.Unlock()
				return
			case <-t.C:
				m.evaluate()
				t.Reset(m.interval())
			}
		}
	}()
	return done
}

// interval is the time to the next judgement: the tick, or a fifth of the
// shortest pause of a progressing canary (of a rolling rollout's health or
// drain timeout), at least 10ms, so a step ends close to its pause.
func (m *rolloutManager) interval() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.tick
	for _, e := range m.entries {
		if e.r.State != rollout.Progressing {
			continue
		}
		step := time.Duration(e.r.Spec.Pause)
		if e.r.Spec.Strategy == rollout.Rolling {
			step = min(time.Duration(e.r.Spec.HealthTimeout), time.Duration(e.r.Spec.DrainTimeout))
		}
		d = min(d, max(step/5, 10*time.Millisecond))
	}
	return d
}

// evaluate judges every progressing rollout once.
func (m *rolloutManager) evaluate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	moved := false
	for name, e := range m.entries {
		if e.r.State != rollout.Progressing {
			continue
		}
		if e.r.Spec.Strategy == rollout.Rolling && len(e.r.Spec.Selector) > 0 {
			if m.advanceInstancesLocked(name, e, now) {
				moved = true
			}
			continue
		}
		if e.r.Spec.Strategy == rollout.Rolling {
			if m.advanceRollingLocked(name, e, now) {
				moved = true
			}
			continue
		}
		st, ca := e.share.Windows()
		if !e.r.Evaluate(now, st.SLI(), ca.SLI()) {
			continue
		}
		moved = true
		e.share.ResetWindows()
		e.share.SetPercent(e.r.Percent())
		m.log.Info("rollout moved", "upstream", name, "state", string(e.r.State), "step", e.r.Step,
			"canary_weight", e.r.Percent(), "message", e.r.Message)
		if !e.r.Active() {
			m.applyLocked(name)
		}
	}
	if moved {
		m.saveLocked()
	}
}

// advanceRollingLocked moves a rolling rollout on from its targets' live
// state: the step's new target's health and the draining old target's
// requests in flight.
func (m *rolloutManager) advanceRollingLocked(name string, e *rolloutEntry, now time.Time) bool {
	pool, ok := m.rt.pools[name]
	if !ok {
		return false
	}
	newHealthy, inflight := false, int64(0)
	_, drain := e.r.RollingTargets()
	n := e.r.RollingNew()
	for _, t := range pool.Targets() {
		switch t.Address {
		case n:
			newHealthy = t.Healthy()
		case drain:
			inflight = t.InFlight()
		}
	}
	if !e.r.AdvanceRolling(now, newHealthy, inflight) {
		return false
	}
	m.log.Info("rollout moved", "upstream", name, "strategy", rollout.Rolling, "state", string(e.r.State), "step", e.r.Step,
		"phase", e.r.Phase, "message", e.r.Message)
	m.applyLocked(name)
	return true
}

// saveLocked persists the records; a failure is logged (the rollout goes
// on in memory; the next change tries again).
func (m *rolloutManager) saveLocked() {
	if m.path == "" {
		return
	}
	rs := make([]*rollout.Rollout, 0, len(m.entries))
	for _, name := range m.sortedLocked() {
		rs = append(rs, m.entries[name].r)
	}
	if err := rollout.Save(m.path, rs); err != nil {
		m.log.Error("saving rollouts: a restart would not see the latest change", "file", m.path, "error", err.Error())
	}
}

func (m *rolloutManager) sortedLocked() []string {
	names := make([]string, 0, len(m.entries))
	for n := range m.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// applyLocked applies upstream name's record to the current runtime's
// pool. A discovered upstream rebuilds its policy over its current
// instances (discoveredPool.policy consults the record); a static one
// gets its target set and policy here.
func (m *rolloutManager) applyLocked(name string) {
	rt := m.rt
	if rt == nil {
		return
	}
	e := m.entries[name]
	u, ok := rt.cfg.Upstreams[name]
	if !ok || e == nil {
		return
	}
	if u.Discover != "" {
		if e.shadow != nil && !e.r.Active() {
			rep := e.shadow.Report()
			e.r.Shadow = &rep
			e.shadow.Close()
			e.shadow = nil
		}
		if dp := rt.discoveredPool(name, u.Discover); dp != nil {
			dp.rebuild()
		}
		return
	}
	pool := rt.pools[name]
	cfgAddrs := make([]string, len(u.Targets))
	for i, t := range u.Targets {
		cfgAddrs[i] = t.Address
	}
	var addrs []string
	var isCanary []bool
	split := false
	drain := ""
	rolling := e.r.Spec.Strategy == rollout.Rolling
	switch e.r.State {
	case rollout.Progressing, rollout.Paused:
		if rolling {
			addrs, drain = e.r.RollingTargets()
			break
		}
		if e.shadow != nil {
			addrs = e.r.Stable // the copies go outside the pool
			break
		}
		split = true
		addrs = append(append(addrs, e.r.Stable...), e.r.Canary...)
		for i := range addrs {
			isCanary = append(isCanary, i >= len(e.r.Stable))
		}
	case rollout.Promoted, rollout.Completed:
		addrs = e.r.Canary
	default:
		addrs = e.r.Stable
	}
	if !e.r.Active() && !slices.Equal(sortedCopy(cfgAddrs), sortedCopy(e.r.ConfigTargets)) {
		// The config's targets changed since the rollout: the config is
		// the truth again.
		addrs, split, isCanary = cfgAddrs, false, nil
	}
	byAddr := map[string]*upstream.Target{}
	for _, t := range pool.Targets() {
		byAddr[t.Address] = t
	}
	// The config's own targets are health-checked by the runtime: reuse
	// them where their index fits, and take their state otherwise.
	cfgByAddr := map[string]*upstream.Target{}
	for _, t := range rt.configTargets[name] {
		cfgByAddr[t.Address] = t
	}
	targets := make([]*upstream.Target, len(addrs))
	var extra []*upstream.Target
	weightOf := map[string]int{}
	for _, t := range u.Targets {
		weightOf[t.Address] = t.Weight
	}
	nextExtra := map[string]*upstream.Target{}
	for i, a := range addrs {
		if t, ok := cfgByAddr[a]; ok && t.Index == i {
			targets[i] = t
			continue
		}
		w := weightOf[a]
		if ow, ok := m.overrides.get(name, a); ok {
			w = ow
		}
		t := upstream.NewTarget(a, i, w)
		switch {
		case cfgByAddr[a] != nil:
			t.CarryStateFrom(cfgByAddr[a])
		case e.extra[a] != nil:
			t.CarryStateFrom(e.extra[a])
		case byAddr[a] != nil:
			t.CarryStateFrom(byAddr[a])
		case u.HealthCheck != nil:
			// A new target is not served until its checks pass.
			t.SetHealthy(false)
		}
		targets[i] = t
		extra = append(extra, t)
		nextExtra[a] = t
	}
	e.extra = nextExtra
	if rolling {
		// The rollout owns the drain of the targets it replaces: the
		// current step's old target drains, the others serve (a rollback
		// undrains them all).
		for _, t := range targets {
			t.SetDraining(t.Address == drain)
		}
	}
	build := func(ts []*upstream.Target) (balance.Policy, error) { return balance.New(u.Config, ts) }
	var policy balance.Policy
	var err error
	if split {
		policy, err = rollout.NewSplit(targets, isCanary, e.share, build)
	} else {
		policy, err = build(targets)
	}
	if e.shadow != nil && err == nil {
		if e.r.Active() {
			policy = rollout.NewShadowPolicy(policy, e.shadow)
		} else {
			rep := e.shadow.Report()
			e.r.Shadow = &rep
			e.shadow.Close()
			e.shadow = nil
		}
	}
	if err != nil { // the config was validated
		m.log.Error("rollout: building the balancer", "upstream", name, "error", err.Error())
		return
	}
	var out *health.Outlier
	if u.Outlier != nil {
		if out, err = health.NewOutlier(*u.Outlier, targets); err != nil {
			m.log.Error("rollout: building outlier detection", "upstream", name, "error", err.Error())
			return
		}
	}
	if err := pool.SetTargets(targets, policy, out); err != nil {
		m.log.Error("rollout: replacing targets", "upstream", name, "error", err.Error())
		return
	}
	m.restartChecksLocked(e, name, u, extra)
}

// restartChecksLocked runs active health checks over the targets a rollout
// added (the runtime's checkers know only the config's).
func (m *rolloutManager) restartChecksLocked(e *rolloutEntry, name string, u *Upstream, extra []*upstream.Target) {
	if e.stopChecks != nil {
		e.stopChecks()
		e.stopChecks = nil
	}
	if u.HealthCheck == nil || len(extra) == 0 || m.ctx == nil {
		return
	}
	pool := m.rt.pools[name]
	c, err := health.NewChecker(u.HealthCheck.WithDefaults(), extra, health.CheckerOptions{
		Logger: m.log,
		OnChange: func(t *upstream.Target, healthy bool) {
			m.log.Warn("target health changed", "upstream", name, "target", t.Address, "healthy", healthy, "rollout", true)
			pool.TargetHealthChanged(t, healthy)
		},
	})
	if err != nil { // validated when built
		m.log.Error("rollout: starting health checks", "upstream", name, "error", err.Error())
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	e.stopChecks = func() { cancel(); <-done }
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// discoveredPolicy is the policy of a discovered upstream over targets,
// given the instance set they came from: under a rollout, a
// rollout.Split whose canary cohort is the instances the selector
// matches (after a final state: all traffic to the promoted cohort, or
// none to the rolled-back one, unless the other has no available target).
// Without a rollout (or m nil) it returns nil, false.
// The caller holds m.mu.
func (m *rolloutManager) discoveredPolicyLocked(name string, u *Upstream, targets []*upstream.Target, snap discovery.ServiceSnapshot) (balance.Policy, bool, error) {
	if m == nil {
		return nil, false, nil
	}
	e := m.entries[name]
	if e == nil || len(e.r.Spec.Selector) == 0 {
		return nil, false, nil
	}
	matched := map[string]bool{}
	for _, in := range snap.Instances {
		if selects(e.r.Spec.Selector, in) {
			matched[in.Address] = true
		}
	}
	isCanary := make([]bool, len(targets))
	var stable, canary []string
	var stableTargets []*upstream.Target
	for i, t := range targets {
		isCanary[i] = matched[t.Address]
		if isCanary[i] {
			canary = append(canary, t.Address)
		} else {
			stable = append(stable, t.Address)
			stableTargets = append(stableTargets, t)
		}
	}
	if e.r.Active() {
		e.r.Stable, e.r.Canary = stable, canary
	}
	build := func(ts []*upstream.Target) (balance.Policy, error) { return balance.New(u.Config, ts) }
	if e.r.Spec.Strategy == rollout.Rolling {
		m.rollingInstancesLocked(e, u, targets, matched)
	}
	if e.shadow != nil && e.r.Active() {
		// Only the old instances serve; the matched ones get the copies.
		e.shadow.SetTargets(canary)
		p, err := build(stableTargets)
		if err != nil {
			return nil, true, err
		}
		return rollout.NewShadowPolicy(p, e.shadow), true, nil
	}
	p, err := rollout.NewSplit(targets, isCanary, e.share, build)
	return p, true, err
}

// rollingInstancesLocked prepares a discovered upstream's targets for a
// rolling rollout: a new instance (matching the selector) first seen
// during it takes no traffic until its health checks pass, and the old
// instances the rollout drained are drained (its drains are undone once
// it has ended). The caller holds m.mu.
func (m *rolloutManager) rollingInstancesLocked(e *rolloutEntry, u *Upstream, targets []*upstream.Target, matched map[string]bool) {
	now := m.now()
	if e.seen == nil {
		// Instances registered before the start (or before a restart)
		// keep the health they have.
		e.seen = map[string]time.Time{}
		for _, t := range targets {
			e.seen[t.Address] = now
		}
	}
	for _, t := range targets {
		if _, ok := e.seen[t.Address]; !ok {
			e.seen[t.Address] = now
			if matched[t.Address] && u.HealthCheck != nil && e.r.Active() {
				t.SetHealthy(false)
			}
		}
	}
	drain := map[string]bool{}
	if e.r.Active() {
		for _, a := range e.r.Drained {
			drain[a] = true
		}
	}
	for _, t := range targets {
		if drain[t.Address] {
			t.SetDraining(true)
			e.drained[t.Address] = true
		} else if e.drained[t.Address] {
			t.SetDraining(false)
			delete(e.drained, t.Address)
		}
	}
}

// advanceInstancesLocked moves a rolling rollout of a discovered upstream
// on from its instances' live state (rollout.Rollout.AdvanceInstances).
func (m *rolloutManager) advanceInstancesLocked(name string, e *rolloutEntry, now time.Time) bool {
	u := m.rt.cfg.Upstreams[name]
	if u == nil || u.Discover == "" {
		return false
	}
	dp := m.rt.discoveredPool(name, u.Discover)
	if dp == nil {
		return false
	}
	canary := map[string]bool{}
	for _, a := range e.r.Canary {
		canary[a] = true
	}
	var old, new []rollout.Instance
	for _, t := range dp.pool.Targets() {
		in := rollout.Instance{Address: t.Address, Healthy: t.Healthy(), InFlight: t.InFlight(), Since: e.seen[t.Address]}
		if canary[t.Address] {
			new = append(new, in)
		} else {
			old = append(old, in)
		}
	}
	st, ca := e.share.Windows()
	step := e.r.Step
	if !e.r.AdvanceInstances(now, old, new, st.SLI(), ca.SLI()) {
		return false
	}
	if e.r.Active() && e.r.Step != step {
		if s := st.SLI(); s.Requests >= uint64(e.r.Spec.Analysis.MinRequests) {
			e.r.Baseline = &s
		}
		e.share.ResetWindows()
	}
	e.share.SetPercent(e.r.Percent())
	m.log.Info("rollout moved", "upstream", name, "strategy", rollout.Rolling, "state", string(e.r.State), "step", e.r.Step,
		"canary_weight", e.r.Percent(), "drained", e.r.Drained, "message", e.r.Message)
	m.applyLocked(name)
	return true
}

// selectsLocked reports whether upstream name has a rollout by selector
// (m may be nil). The caller holds m.mu.
func (m *rolloutManager) selectsLocked(name string) bool {
	if m == nil {
		return false
	}
	e := m.entries[name]
	return e != nil && len(e.r.Spec.Selector) > 0
}

// selects reports whether an instance matches a selector: for every key,
// its metadata has the value or it carries the tag "key=value".
func selects(sel map[string]string, in discovery.Instance) bool {
	for k, v := range sel {
		if in.Meta[k] == v {
			continue
		}
		if !slices.Contains(in.Tags, k+"="+v) {
			return false
		}
	}
	return true
}

// conflictError is a rollout operation refused in the current state (409).
type conflictError string

func (e conflictError) Error() string        { return string(e) }
func (e conflictError) Is(target error) bool { return target == admin.ErrConflict }

// Rollouts implements admin.RolloutBackend.
func (g *Gateway) Rollouts() []rollout.Status {
	m := g.rollouts
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []rollout.Status{}
	for _, name := range m.sortedLocked() {
		out = append(out, m.statusLocked(name))
	}
	return out
}

func (m *rolloutManager) statusLocked(name string) rollout.Status {
	e := m.entries[name]
	var live *rollout.Result
	if e.r.Active() && e.r.Spec.Strategy == rollout.Canary {
		st, ca := e.share.Windows()
		res := e.r.Spec.Analysis.Judge(st.SLI(), e.r.Baseline, ca.SLI())
		live = &res
	}
	s := e.r.Status(live)
	if e.shadow != nil {
		rep := e.shadow.Report()
		s.Shadow = &rep
	}
	return s
}

// Rollout implements admin.RolloutBackend.
func (g *Gateway) Rollout(name string) (rollout.Status, error) {
	m := g.rollouts
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[name]; !ok {
		if _, known := m.rt.cfg.Upstreams[name]; !known {
			return rollout.Status{}, admin.NotFound("unknown upstream %q", name)
		}
		return rollout.Status{}, admin.NotFound("no rollout of upstream %q", name)
	}
	return m.statusLocked(name), nil
}

// StartRollout implements admin.RolloutBackend.
func (g *Gateway) StartRollout(spec rollout.Spec) (rollout.Status, error) {
	g.reloadMu.Lock() // the upstream's config must not change under the start
	defer g.reloadMu.Unlock()
	m := g.rollouts
	m.mu.Lock()
	defer m.mu.Unlock()
	rt := m.rt
	u, ok := rt.cfg.Upstreams[spec.Upstream]
	if !ok {
		return rollout.Status{}, admin.NotFound("unknown upstream %q: %s", spec.Upstream, rt.cfg.upstreamChoices())
	}
	if e := m.entries[spec.Upstream]; e != nil && e.r.Active() {
		return rollout.Status{}, conflictError(fmt.Sprintf("upstream %q already has a %s rollout %s (step %d of %d): promote, roll back or abort it first",
			spec.Upstream, e.r.Spec.Strategy, e.r.State, e.r.Step, e.r.Steps()))
	}
	var stable []string
	for _, t := range rt.pools[spec.Upstream].Targets() {
		stable = append(stable, t.Address)
	}
	cfgAddrs := make([]string, len(u.Targets))
	for i, t := range u.Targets {
		cfgAddrs[i] = t.Address
	}
	switch {
	case u.Discover != "" && len(spec.Targets) > 0:
		return rollout.Status{}, &rollout.FieldError{Field: "targets", Msg: fmt.Sprintf("upstream %q discovers service %q: name the new version with a selector on its instances' metadata or tags, e.g. {\"version\": \"v2\"}", spec.Upstream, u.Discover)}
	case u.Discover == "" && len(spec.Selector) > 0:
		return rollout.Status{}, &rollout.FieldError{Field: "selector", Msg: fmt.Sprintf("upstream %q has static targets: name the new version's addresses in targets", spec.Upstream)}
	}
	if spec.Strategy == rollout.Rolling && u.HealthCheck == nil {
		return rollout.Status{}, &rollout.FieldError{Field: "strategy", Msg: fmt.Sprintf("a rolling rollout gates each new target on the upstream's health checks: upstream %q has none (add upstreams.%s.health_check to the config)", spec.Upstream, spec.Upstream)}
	}
	for i, a := range spec.Targets {
		if slices.Contains(stable, a) {
			return rollout.Status{}, &rollout.FieldError{Field: fmt.Sprintf("targets[%d]", i), Msg: fmt.Sprintf("%q already serves upstream %q: the new version needs its own addresses", a, spec.Upstream)}
		}
	}
	now := m.now()
	r := rollout.New(spec, stable, slices.Clone(spec.Targets), now)
	r.ConfigTargets = cfgAddrs
	e := newEntry(r)
	if old := m.entries[spec.Upstream]; old != nil {
		e.extra, e.stopChecks = old.extra, old.stopChecks
	}
	m.entries[spec.Upstream] = e
	m.applyLocked(spec.Upstream)
	if spec.Strategy == rollout.Rolling && u.Discover != "" {
		r.Replace = len(r.Stable) // the old instances (applyLocked split them off)
	}
	m.saveLocked()
	m.log.Info("rollout started", "upstream", spec.Upstream, "strategy", spec.Strategy, "stable", stable,
		"canary", spec.Targets, "selector", spec.Selector, "canary_weight", r.Percent())
	return m.statusLocked(spec.Upstream), nil
}

// RolloutAction implements admin.RolloutBackend: promote (a canary to its
// next step, others to the end), promote-full (to the end), rollback,
// pause, resume or abort.
func (g *Gateway) RolloutAction(name, action string) (rollout.Status, error) {
	m := g.rollouts
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		if _, known := m.rt.cfg.Upstreams[name]; !known {
			return rollout.Status{}, admin.NotFound("unknown upstream %q", name)
		}
		return rollout.Status{}, admin.NotFound("no rollout of upstream %q", name)
	}
	now := m.now()
	var err error
	switch action {
	case "promote", "promote-full":
		step := e.r.Step
		if e.r.Spec.Strategy == rollout.Canary {
			// The stable's window of the step ending is the reference when
			// the stable gets no traffic any more (at 100%).
			if st, _ := e.share.Windows(); st.SLI().Requests >= uint64(e.r.Spec.Analysis.MinRequests) {
				b := st.SLI()
				e.r.Baseline = &b
			}
		}
		if err = e.r.Promote(now, action == "promote-full"); err == nil && e.r.Active() && e.r.Step != step {
			e.share.ResetWindows()
		}
	case "rollback":
		err = e.r.Rollback(now)
	case "abort":
		err = e.r.Abort(now)
	case "pause":
		err = e.r.Pause(now)
	case "resume":
		if err = e.r.Resume(now); err == nil {
			e.share.ResetWindows()
		}
	default:
		return rollout.Status{}, fmt.Errorf("unknown action %q: expected promote, promote-full, rollback, pause, resume or abort", action)
	}
	if err != nil {
		return rollout.Status{}, conflictError(fmt.Sprintf("upstream %q: %v", name, err))
	}
	e.share.SetPercent(e.r.Percent())
	m.applyLocked(name)
	m.saveLocked()
	m.log.Info("rollout "+action, "upstream", name, "state", string(e.r.State), "canary_weight", e.r.Percent())
	return m.statusLocked(name), nil
}

// rolloutCollector exports rollout state on each scrape.
type rolloutCollector struct{ g *Gateway }

var (
	descRolloutWeight = prometheus.NewDesc("switchyard_rollout_canary_weight_percent", "Share of an upstream's traffic sent to the new version by its rollout (0-100).", []string{"upstream", "strategy"}, nil)
	descRolloutState  = prometheus.NewDesc("switchyard_rollout_state", "1 for the rollout's current state (progressing, paused, promoted, rolled_back, aborted, completed).", []string{"upstream", "state"}, nil)
	descRolloutStep   = prometheus.NewDesc("switchyard_rollout_step", "Current step of the rollout (1-based).", []string{"upstream"}, nil)
	descRolloutReqs   = prometheus.NewDesc("switchyard_rollout_window_requests", "Attempts in the current step's window, by cohort.", []string{"upstream", "cohort"}, nil)
	descRolloutErrs   = prometheus.NewDesc("switchyard_rollout_window_error_ratio", "Error rate (0-1) in the current step's window, by cohort.", []string{"upstream", "cohort"}, nil)
	descRolloutP99    = prometheus.NewDesc("switchyard_rollout_window_p99_seconds", "p99 attempt latency in the current step's window, by cohort.", []string{"upstream", "cohort"}, nil)
)

func (c rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRolloutWeight, descRolloutState, descRolloutStep, descRolloutReqs, descRolloutErrs, descRolloutP99} {
		ch <- d
	}
}

func (c rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.g.rollouts
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, e := range m.entries {
		ch <- prometheus.MustNewConstMetric(descRolloutWeight, prometheus.GaugeValue, e.r.Percent(), name, e.r.Spec.Strategy)
		for _, s := range []rollout.State{rollout.Progressing, rollout.Paused, rollout.Promoted, rollout.RolledBack, rollout.Aborted, rollout.Completed} {
			v := 0.0
			if e.r.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descRolloutState, prometheus.GaugeValue, v, name, string(s))
		}
		ch <- prometheus.MustNewConstMetric(descRolloutStep, prometheus.GaugeValue, float64(e.r.Step), name)
		st, ca := e.share.Windows()
		for _, w := range []struct {
			cohort string
			sli    rollout.SLI
		}{{"stable", st.SLI()}, {"canary", ca.SLI()}} {
			ch <- prometheus.MustNewConstMetric(descRolloutReqs, prometheus.GaugeValue, float64(w.sli.Requests), name, w.cohort)
			ch <- prometheus.MustNewConstMetric(descRolloutErrs, prometheus.GaugeValue, w.sli.ErrorRate, name, w.cohort)
			ch <- prometheus.MustNewConstMetric(descRolloutP99, prometheus.GaugeValue, w.sli.P99ms/1000, name, w.cohort)
		}
	}
}
