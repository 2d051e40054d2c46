package slo

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/httpx"
)

// Options configure an Engine.
type Options struct {
	// Now is the clock (tests move it by hand). Default time.Now.
	Now func() time.Time
	// Log receives alert transitions, webhook failures and state file
	// problems. Default: discarded.
	Log *slog.Logger
	// StatePath is the file the alert state and bucket counts are kept in
	// (STATE_DIR/slo.json); empty keeps them in memory only.
	StatePath string
	// EvalEvery is how often Run evaluates the alerts. Default: a tenth of
	// the shortest alert window, between 10ms and 15s.
	EvalEvery time.Duration
	// SaveEvery is how often Run writes the state file (it is also written
	// on every alert transition and when Run ends). Default 1m.
	SaveEvery time.Duration
	// Webhook configures delivery of alert events.
	Webhook WebhookOptions
}

// DefaultSaveEvery is Options.SaveEvery's default.
const DefaultSaveEvery = time.Minute

// Engine tracks a set of SLOs: requests are counted by Observe, alerts
// evaluated by Evaluate (or Run), and the set replaced by Set on a
// config reload. Safe for concurrent use; create it with New.
type Engine struct {
	opts  Options
	now   func() time.Time
	log   *slog.Logger
	table atomic.Pointer[table]

	mu       sync.Mutex // Set, Evaluate, Save, restore, notifiers
	hooks    map[string]*notifier
	running  bool
	stop     chan struct{}
	workers  sync.WaitGroup
	restored map[string]*savedSLO // from the state file, for SLOs not (yet) configured
	dirty    bool                 // an alert changed since the last save
}

// table is one configuration's trackers, swapped whole by Set so that
// Observe reads it without a lock.
type table struct {
	list       []*tracker
	byRoute    map[string][]*tracker
	byUpstream map[string][]*tracker
	minWindow  time.Duration
}

// tracker is one SLO's counts and alert state.
type tracker struct {
	cfg       Config
	kind      string
	objective float64
	window    time.Duration
	bad       *Statuses // availability
	threshold time.Duration
	lay       layout
	coarse    *ring
	fine      *ring // nil when the layout has none
	key       string
	alerts    []*alertState
}

type alertState struct {
	Alert
	key    string
	firing bool
	since  time.Time // of the last transition; zero before the first
}

// New returns an engine with no SLOs.
func New(opts Options) *Engine {
	e := &Engine{opts: opts, now: opts.Now, log: opts.Log, hooks: map[string]*notifier{}}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.table.Store(&table{})
	return e
}

// measureKey identifies what a tracker counts and how it buckets it: a
// reload that keeps it keeps the counts.
func measureKey(c *Config, bad *Statuses, l layout) string {
	target := "route=" + c.Route
	if c.Upstream != "" {
		target = "upstream=" + c.Upstream
	}
	what := "errors=" + bad.Regexp()
	if c.EffectiveKind() == Latency {
		what = "threshold=" + c.Threshold.String()
	}
	return fmt.Sprintf("%s|kind=%s|%s|window=%s|%s", target, c.EffectiveKind(), what, c.EffectiveWindow(), l)
}

func alertKey(a Alert, objective float64) string {
	return fmt.Sprintf("%s|%s|%g|%s|%s|objective=%g", a.Name, a.Severity, a.BurnRate, a.LongWindow, a.ShortWindow, objective)
}

func newTracker(c Config) *tracker {
	t := &tracker{cfg: c, kind: c.EffectiveKind(), objective: float64(c.Objective), window: c.EffectiveWindow(),
		threshold: c.Threshold, lay: c.layout()}
	t.bad, _ = ParseStatuses(c.EffectiveErrors())
	if t.kind == Latency {
		t.bad = &Statuses{}
	}
	t.key = measureKey(&c, t.bad, t.lay)
	t.coarse = newRing(t.lay.coarse)
	if t.lay.fine.n > 0 {
		t.fine = newRing(t.lay.fine)
	}
	for _, a := range c.EffectiveAlerts() {
		t.alerts = append(t.alerts, &alertState{Alert: a, key: alertKey(a, t.objective)})
	}
	return t
}

// Set replaces the SLOs with cfgs, which must be valid (Config.Validate).
// An SLO whose name and measurement (target, kind, statuses or
// threshold, window, alert windows) are unchanged keeps its counts, and
// each of its alerts whose definition and objective are unchanged keeps
// its state; the rest start afresh.
func (e *Engine) Set(cfgs []Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := map[string]*tracker{}
	for _, t := range e.table.Load().list {
		old[t.cfg.Name] = t
	}
	nt := &table{byRoute: map[string][]*tracker{}, byUpstream: map[string][]*tracker{}}
	urls := map[string]bool{}
	for _, c := range cfgs {
		t := newTracker(c)
		if prev, ok := old[c.Name]; ok && prev.key == t.key {
			t.coarse, t.fine = prev.coarse, prev.fine
			prevAlerts := map[string]*alertState{}
			for _, a := range prev.alerts {
				prevAlerts[a.key] = a
			}
			for i, a := range t.alerts {
				if p, ok := prevAlerts[a.key]; ok {
					t.alerts[i] = p
				}
			}
		} else if s, ok := e.restored[c.Name]; ok {
			e.restoreLocked(t, s)
		}
		nt.list = append(nt.list, t)
		if c.Route != "" {
			nt.byRoute[c.Route] = append(nt.byRoute[c.Route], t)
		} else {
			nt.byUpstream[c.Upstream] = append(nt.byUpstream[c.Upstream], t)
		}
		for _, a := range t.alerts {
			if w := time.Duration(a.ShortWindow); nt.minWindow == 0 || w < nt.minWindow {
				nt.minWindow = w
			}
		}
		for _, u := range c.Webhooks {
			urls[u] = true
		}
	}
	e.table.Store(nt)
	e.resolveDroppedLocked(old, nt)
	for u := range urls {
		if _, ok := e.hooks[u]; !ok {
			n := newNotifier(u, e.opts.Webhook, e.log)
			e.hooks[u] = n
			if e.running {
				e.startNotifierLocked(n)
			}
		}
	}
	for u, n := range e.hooks {
		if !urls[u] {
			delete(e.hooks, u)
			n.retire()
		}
	}
}

// resolveDroppedLocked tells the webhooks that the firing alerts a Set
// dropped (their SLO removed, its measurement or the alert changed) are
// resolved, so that no receiver keeps an alert open that will never
// resolve by itself.
func (e *Engine) resolveDroppedLocked(old map[string]*tracker, nt *table) {
	kept := map[*alertState]bool{}
	for _, t := range nt.list {
		for _, a := range t.alerts {
			kept[a] = true
		}
	}
	now := e.now()
	for _, t := range old {
		var st *Status
		for i, a := range t.alerts {
			if !a.firing || kept[a] {
				continue
			}
			if st == nil {
				s := t.status(now.UnixNano())
				st = &s
			}
			as := st.Alerts[i]
			as.Firing = false
			ev := newEvent(*st, as, now)
			ev.Summary = fmt.Sprintf("SLO %s: alert %s resolved because a reload removed or changed it", t.cfg.Name, a.Name)
			e.log.Info("slo alert resolved by a reload", "slo", t.cfg.Name, "alert", a.Name)
			for _, u := range t.cfg.Webhooks {
				if n := e.hooks[u]; n != nil {
					n.enqueue(ev)
				}
			}
		}
	}
}

// Observe counts one completed request of a route (and of the upstream
// that served it; "" for none) with its status and duration. It
// allocates nothing and takes no lock.
func (e *Engine) Observe(route, upstream string, status int, d time.Duration) {
	t := e.table.Load()
	rs, us := t.byRoute[route], t.byUpstream[upstream]
	if len(rs) == 0 && len(us) == 0 {
		return
	}
	now := e.now().UnixNano()
	for _, tr := range rs {
		tr.observe(now, status, d)
	}
	if upstream != "" {
		for _, tr := range us {
			tr.observe(now, status, d)
		}
	}
}

// ObserveRequest is Observe under the name the proxy's Observer uses.
func (e *Engine) ObserveRequest(route, upstream string, status int, d time.Duration) {
	e.Observe(route, upstream, status, d)
}

func (t *tracker) observe(now int64, status int, d time.Duration) {
	good := !t.bad.Bad(status)
	if t.kind == Latency {
		good = d <= t.threshold
	}
	t.coarse.add(now, good)
	if t.fine != nil {
		t.fine.add(now, good)
	}
}

// counts returns good and total over the window w ending at now.
func (t *tracker) counts(now int64, w time.Duration) (good, total uint64) {
	if t.fine != nil && t.lay.onFine(w) {
		return t.fine.sum(now, w)
	}
	return t.coarse.sum(now, w)
}

// burn is the error budget's burn rate over w: the error ratio divided
// by the allowed one (1 - objective); 0 without requests.
func (t *tracker) burn(now int64, w time.Duration) float64 {
	good, total := t.counts(now, w)
	if total == 0 {
		return 0
	}
	return float64(total-good) / float64(total) / (1 - t.objective)
}

// Status is one SLO as GET /admin/slos shows it.
type Status struct {
	Name      string  `json:"name"`
	Kind      string  `json:"kind"`
	Route     string  `json:"route"`
	Upstream  string  `json:"upstream"`
	Objective float64 `json:"objective"`
	Window    string  `json:"window"`
	// Threshold is a latency SLO's bound ("300ms"); "" otherwise.
	Threshold string `json:"threshold"`
	// Errors are the statuses an availability SLO counts as bad, as a
	// Prometheus regular expression ("5.."); "" for latency SLOs.
	Errors string `json:"errors,omitempty"`
	Good   uint64 `json:"good"`
	Total  uint64 `json:"total"`
	// SLI is good/total over the window; 1 without requests.
	SLI float64 `json:"sli"`
	// BudgetRemaining is the share of the error budget left: 1 untouched,
	// 0 spent, below 0 overspent.
	BudgetRemaining float64       `json:"budget_remaining"`
	Alerts          []AlertStatus `json:"alerts"`
}

// AlertStatus is one burn-rate alert's state.
type AlertStatus struct {
	Name        string  `json:"name"`
	Severity    string  `json:"severity"`
	BurnRate    float64 `json:"burn_rate"`
	LongWindow  string  `json:"long_window"`
	ShortWindow string  `json:"short_window"`
	LongBurn    float64 `json:"long_burn"`
	ShortBurn   float64 `json:"short_burn"`
	Firing      bool    `json:"firing"`
	// Since is when the alert last fired (while firing) or resolved;
	// absent before its first transition.
	Since *time.Time `json:"since,omitempty"`
}

func (t *tracker) status(now int64) Status {
	s := Status{Name: t.cfg.Name, Kind: t.kind, Route: t.cfg.Route, Upstream: t.cfg.Upstream, Objective: t.objective,
		Window: t.window.String(), Alerts: []AlertStatus{}}
	if t.kind == Latency {
		s.Threshold = t.threshold.String()
	} else {
		s.Errors = t.bad.Regexp()
	}
	s.Good, s.Total = t.coarse.sum(now, t.window)
	s.SLI, s.BudgetRemaining = 1, 1
	if s.Total > 0 {
		bad := float64(s.Total - s.Good)
		s.SLI = float64(s.Good) / float64(s.Total)
		s.BudgetRemaining = 1 - bad/((1-t.objective)*float64(s.Total))
	}
	for _, a := range t.alerts {
		as := AlertStatus{Name: a.Name, Severity: a.Severity, BurnRate: a.BurnRate,
			LongWindow: time.Duration(a.LongWindow).String(), ShortWindow: time.Duration(a.ShortWindow).String(),
			LongBurn: t.burn(now, time.Duration(a.LongWindow)), ShortBurn: t.burn(now, time.Duration(a.ShortWindow)),
			Firing: a.firing}
		if !a.since.IsZero() {
			since := a.since.UTC()
			as.Since = &since
		}
		s.Alerts = append(s.Alerts, as)
	}
	return s
}

// Status returns every SLO's counts, budget and alerts now, in config
// order. Alert states are as of the last evaluation.
func (e *Engine) Status() []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.statusLocked(e.now())
}

func (e *Engine) statusLocked(now time.Time) []Status {
	out := []Status{}
	for _, t := range e.table.Load().list {
		out = append(out, t.status(now.UnixNano()))
	}
	return out
}

// Evaluate computes every alert's burn rates now, fires the alerts whose
// both windows burn at least their rate and resolves the others, sending
// an Event to the SLO's webhooks on each transition. It returns the
// statuses it computed.
func (e *Engine) Evaluate() []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	out := []Status{}
	for _, t := range e.table.Load().list {
		s := t.status(now.UnixNano())
		for i, a := range t.alerts {
			as := &s.Alerts[i]
			fire := as.LongBurn >= a.BurnRate && as.ShortBurn >= a.BurnRate
			if fire == a.firing {
				continue
			}
			a.firing, a.since = fire, now
			e.dirty = true
			as.Firing = fire
			since := now.UTC()
			as.Since = &since
			ev := newEvent(s, *as, now)
			e.log.Warn("slo alert "+ev.Status, "slo", s.Name, "alert", a.Name, "severity", a.Severity,
				"long_burn", as.LongBurn, "short_burn", as.ShortBurn, "burn_rate", a.BurnRate,
				"budget_remaining", s.BudgetRemaining)
			for _, u := range t.cfg.Webhooks {
				if n := e.hooks[u]; n != nil {
					n.enqueue(ev)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// evalEvery is the evaluation period: Options.EvalEvery, or a tenth of
// the shortest alert window within [10ms, 15s].
func (e *Engine) evalEvery() time.Duration {
	if e.opts.EvalEvery > 0 {
		return e.opts.EvalEvery
	}
	d := e.table.Load().minWindow / 10
	return min(max(d, 10*time.Millisecond), 15*time.Second)
}

// Run evaluates the alerts periodically, delivers webhooks and saves the
// state file (periodically, after alert transitions, and once more when
// ctx ends), until ctx is cancelled. Webhook events still queued then
// get one last attempt each, within 2s in all.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return fmt.Errorf("slo engine already running")
	}
	e.running = true
	e.stop = make(chan struct{})
	for _, n := range e.hooks {
		e.startNotifierLocked(n)
	}
	e.mu.Unlock()

	saveEvery := e.opts.SaveEvery
	if saveEvery <= 0 {
		saveEvery = DefaultSaveEvery
	}
	lastSave := time.Now()
	timer := time.NewTimer(e.evalEvery())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			e.Evaluate()
			err := e.Save()
			e.mu.Lock()
			close(e.stop)
			e.running = false
			e.mu.Unlock()
			e.workers.Wait()
			return err
		case <-timer.C:
		}
		e.Evaluate()
		e.mu.Lock()
		dirty := e.dirty
		e.mu.Unlock()
		if dirty || time.Since(lastSave) >= saveEvery {
			if err := e.Save(); err != nil {
				e.log.Error("saving slo state", "error", err.Error())
			}
			lastSave = time.Now()
		}
		timer.Reset(e.evalEvery())
	}
}

func (e *Engine) startNotifierLocked(n *notifier) {
	e.workers.Add(1)
	stop := e.stop
	go func() {
		defer e.workers.Done()
		n.run(stop)
	}()
}

// List is the body of GET /admin/slos.
type List struct {
	SLOs []Status `json:"slos"`
}

// Handler serves GET /admin/slos: {"slos": [Status...]}, and
// GET /admin/slos/{name} for one.
func (e *Engine) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all := e.Status()
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/admin/slos"), "/")
		if name == "" {
			writeJSON(w, http.StatusOK, List{SLOs: all})
			return
		}
		for _, s := range all {
			if s.Name == name {
				writeJSON(w, http.StatusOK, s)
				return
			}
		}
		httpx.WriteProblem(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown slo %q", name))
	})
}
