package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StateFileName is the file, in the gateway's state_dir, that keeps the
// faults set at runtime across restarts.
const StateFileName = "faults.json"

// RouteFaultsOptions configure RouteFaults.
type RouteFaultsOptions struct {
	// StateDir is where faults set at runtime are kept (faults.json),
	// replaced atomically on every change and read by NewRouteFaults.
	// Empty: they are kept in memory only.
	StateDir string
	// Logger receives changes and state-file problems. Default: discard.
	Logger *slog.Logger
	// Rand returns numbers in [0, 1) to decide percentages (tests).
	// Default math/rand/v2.
	Rand func() float64
}

// RouteFaults holds the fault of every route of a gateway: the configured
// ones, those set at runtime, and their counters. The request path reads
// one atomic pointer per route; changes (config loads, the admin API) are
// serialised by mu, which is never taken by a request. Safe for concurrent
// use.
type RouteFaults struct {
	log   *slog.Logger
	rand  func() float64
	state string // the state file's path; "" without state_dir

	// mu guards the slots' sources and serialises the state file's
	// writes (held across them: admin changes only, never requests).
	mu    sync.Mutex
	slots map[string]*routeSlot
	// pending are runtime faults read from the state file for routes the
	// first SetRoutes has not confirmed yet.
	pending map[string]runtimeFault
}

// NewRouteFaults returns the route faults of a gateway and restores the
// faults set at runtime from opts.StateDir. A state file that cannot be
// read is logged and ignored (the gateway starts without runtime faults;
// the next change replaces the file).
func NewRouteFaults(opts RouteFaultsOptions) (*RouteFaults, error) {
	rf := &RouteFaults{log: opts.Logger, rand: opts.Rand, slots: map[string]*routeSlot{}}
	if rf.log == nil {
		rf.log = slog.New(slog.DiscardHandler)
	}
	if opts.StateDir != "" {
		rf.state = filepath.Join(opts.StateDir, StateFileName)
		p, err := readState(rf.state)
		if err != nil {
			// Refuse rather than start without it: an operator's runtime
			// change (a config fault switched off) would silently come
			// back, and the next change would overwrite the file.
			return nil, fmt.Errorf("route faults: state file %s: %w (fix or remove the file; it holds the runtime fault changes made through /admin/faults)", rf.state, err)
		}
		rf.pending = p
	}
	return rf, nil
}

// slot returns route's slot, creating it.
func (rf *RouteFaults) slot(route string) *routeSlot {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	s, ok := rf.slots[route]
	if !ok {
		s = &routeSlot{name: route}
		rf.slots[route] = s
	}
	return s
}

// SetRoutes installs the faults of a (re)loaded config: routes maps every
// route name of the config to its fault block (nil without). Runtime
// faults of routes still present stay; those of routes gone are dropped
// (and the state file rewritten). Call it once the config serves.
func (rf *RouteFaults) SetRoutes(routes map[string]*RouteFault) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	dropped := false
	for name, f := range routes {
		s, ok := rf.slots[name]
		if !ok {
			s = &routeSlot{name: name}
			rf.slots[name] = s
		}
		s.known, s.config = true, f
		if p, ok := rf.pending[name]; ok {
			s.override = &p
			rf.log.Info("route faults: restored a runtime fault", "route", name, "active", p.Active)
		}
	}
	for name, p := range rf.pending {
		if _, ok := routes[name]; !ok {
			rf.log.Warn("route faults: dropping a saved runtime fault of a route the config does not have", "route", name, "active", p.Active)
			dropped = true
		}
	}
	rf.pending = nil
	for name, s := range rf.slots {
		if _, ok := routes[name]; !ok {
			if s.override != nil {
				rf.log.Warn("route faults: dropping the runtime fault of a route the config no longer has", "route", name)
				dropped = true
			}
			s.known, s.config, s.override = false, nil, nil
		}
		s.applyLocked()
	}
	if dropped {
		if err := rf.saveLocked(); err != nil {
			rf.log.Error("route faults: writing the state file", "file", rf.state, "error", err.Error())
		}
	}
}

// ErrUnknownRoute is returned (wrapped) for a route the config lacks.
var ErrUnknownRoute = errors.New("unknown route")

// Set sets route's runtime fault (it replaces the config's while set);
// active false switches the route's faults off (f may then be empty). f
// must be valid. The state file is written first: when that fails,
// nothing changes.
func (rf *RouteFaults) Set(route string, f RouteFault, active bool) error {
	if active || f != (RouteFault{}) {
		if err := f.Validate(); err != nil {
			return err
		}
	}
	rf.mu.Lock()
	defer rf.mu.Unlock()
	s, ok := rf.slots[route]
	if !ok || !s.known {
		return fmt.Errorf("route %q: %w", route, ErrUnknownRoute)
	}
	prev := s.override
	s.override = &runtimeFault{Fault: f, Active: active}
	if err := rf.saveLocked(); err != nil {
		s.override = prev
		return err
	}
	s.applyLocked()
	rf.log.Info("route faults: runtime fault set", "route", route, "active", active)
	return nil
}

// Clear removes route's runtime fault: its config's fault (if any)
// applies again. Clearing a route without one is not an error.
func (rf *RouteFaults) Clear(route string) error {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	s, ok := rf.slots[route]
	if !ok || !s.known {
		return fmt.Errorf("route %q: %w", route, ErrUnknownRoute)
	}
	if s.override == nil {
		return nil
	}
	prev := s.override
	s.override = nil
	if err := rf.saveLocked(); err != nil {
		s.override = prev
		return err
	}
	s.applyLocked()
	rf.log.Info("route faults: runtime fault cleared", "route", route)
	return nil
}

// FaultStatus is one route's fault as GET /admin/faults shows it.
type FaultStatus struct {
	Route  string `json:"route"`
	Active bool   `json:"active"`
	// Source is where the fault comes from: "config" or "runtime".
	Source       string  `json:"source"`
	Delay        string  `json:"delay"`
	DelayPercent float64 `json:"delay_percent"`
	AbortStatus  int     `json:"abort_status"`
	AbortPercent float64 `json:"abort_percent"`
	Header       string  `json:"header"`
	MaxDelay     string  `json:"max_delay"`
	// InjectedDelays counts delays begun, InjectedAborts aborts answered,
	// CancelledDelays delays the client ended by going away.
	InjectedDelays  int64 `json:"injected_delays"`
	InjectedAborts  int64 `json:"injected_aborts"`
	CancelledDelays int64 `json:"cancelled_delays"`
}

// List returns the routes that have a fault (configured or runtime, in
// force or switched off), sorted by route.
func (rf *RouteFaults) List() []FaultStatus {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	out := []FaultStatus{}
	for _, s := range rf.slots {
		if !s.known || (s.config == nil && s.override == nil) {
			continue
		}
		f, active := s.effectiveLocked()
		src := "config"
		if s.override != nil {
			src = "runtime"
		}
		c := compile(f)
		out = append(out, FaultStatus{Route: s.name, Active: active, Source: src,
			Delay: durString(f.Delay), DelayPercent: c.delayPct, AbortStatus: f.AbortStatus, AbortPercent: c.abortPct,
			Header: f.Header, MaxDelay: c.maxDelay.String(),
			InjectedDelays: s.delays.Load(), InjectedAborts: s.aborts.Load(), CancelledDelays: s.cancelled.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out
}

func durString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// FaultJSON is a route fault on the wire (PUT /admin/faults/{route} and
// the state file): durations as Go strings.
type FaultJSON struct {
	Delay        string   `json:"delay,omitempty"`
	DelayPercent *float64 `json:"delay_percent,omitempty"`
	AbortStatus  int      `json:"abort_status,omitempty"`
	AbortPercent *float64 `json:"abort_percent,omitempty"`
	Header       string   `json:"header,omitempty"`
	MaxDelay     string   `json:"max_delay,omitempty"`
	// Active false switches the route's faults off (default true).
	Active *bool `json:"active,omitempty"`
}

// Fault returns the RouteFault j describes, validated.
func (j FaultJSON) Fault() (RouteFault, error) {
	f := RouteFault{DelayPercent: j.DelayPercent, AbortStatus: j.AbortStatus, AbortPercent: j.AbortPercent, Header: j.Header}
	var errs []error
	for _, d := range []struct {
		key, v string
		into   *time.Duration
	}{{"delay", j.Delay, &f.Delay}, {"max_delay", j.MaxDelay, &f.MaxDelay}} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: expected a duration such as 200ms", d.key, d.v))
			continue
		}
		*d.into = v
	}
	if err := errors.Join(errs...); err != nil {
		return f, err
	}
	return f, f.Validate()
}

func toFaultJSON(f RouteFault, active bool) FaultJSON {
	return FaultJSON{Delay: durString(f.Delay), DelayPercent: f.DelayPercent, AbortStatus: f.AbortStatus,
		AbortPercent: f.AbortPercent, Header: f.Header, MaxDelay: durString(f.MaxDelay), Active: &active}
}

// stateFile is the format of faults.json: the runtime faults by route.
//
//	{"version": 1, "faults": {"api": {"delay": "200ms", "delay_percent": 10, "active": true}}}
type stateFile struct {
	Version int                  `json:"version"`
	Faults  map[string]FaultJSON `json:"faults"`
}

func readState(path string) (map[string]runtimeFault, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if sf.Version != 1 {
		return nil, fmt.Errorf("version %d: expected 1", sf.Version)
	}
	out := map[string]runtimeFault{}
	var errs []error
	for route, j := range sf.Faults {
		f, err := j.Fault()
		if j.Active != nil && !*j.Active && j == (FaultJSON{Active: j.Active}) {
			f, err = RouteFault{}, nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", route, err))
			continue
		}
		out[route] = runtimeFault{Fault: f, Active: j.Active == nil || *j.Active}
	}
	return out, errors.Join(errs...)
}

// saveLocked replaces the state file with the runtime faults: a temporary
// file, fsync, rename, directory fsync. Call with rf.mu held.
func (rf *RouteFaults) saveLocked() error {
	if rf.state == "" {
		return nil
	}
	sf := stateFile{Version: 1, Faults: map[string]FaultJSON{}}
	for name, s := range rf.slots {
		if s.override != nil {
			sf.Faults[name] = toFaultJSON(s.override.Fault, s.override.Active)
		}
	}
	for name, p := range rf.pending {
		sf.Faults[name] = toFaultJSON(p.Fault, p.Active)
	}
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(rf.state, append(data, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("saving route faults: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("saving route faults to %q: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("saving route faults: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("saving route faults: fsyncing %q: %w", dir, err)
	}
	return nil
}

// Handler serves the runtime switches, for the gateway's admin listener:
//
//	GET    /admin/faults           {"faults": [FaultStatus...]}
//	PUT    /admin/faults/{route}   a FaultJSON -> 200 the route's FaultStatus
//	DELETE /admin/faults/{route}   removes the runtime fault -> 204
//
// Errors are JSON {"error", "status"}: 400 for a bad body (naming the
// field), 404 for an unknown route, 500 when the state file cannot be
// written (the change is then not made).
func (rf *RouteFaults) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"faults": rf.List()})
	})
	status := func(route string) (FaultStatus, bool) {
		for _, s := range rf.List() {
			if s.Route == route {
				return s, true
			}
		}
		return FaultStatus{}, false
	}
	fail := func(w http.ResponseWriter, err error) {
		if errors.Is(err, ErrUnknownRoute) {
			writeErr(w, http.StatusNotFound, err.Error())
			return
		}
		writeErr(w, http.StatusInternalServerError, err.Error())
	}
	mux.HandleFunc("PUT /admin/faults/{route}", func(w http.ResponseWriter, r *http.Request) {
		route := r.PathValue("route")
		var in FaultJSON
		if !decode(w, r, &in) {
			return
		}
		off := in.Active != nil && !*in.Active
		f, err := in.Fault()
		if off && in == (FaultJSON{Active: in.Active}) {
			f, err = RouteFault{}, nil // {"active": false}: everything off
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("route %q: %s", route, flatten(err)))
			return
		}
		if err := rf.Set(route, f, in.Active == nil || *in.Active); err != nil {
			fail(w, err)
			return
		}
		st, _ := status(route)
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("DELETE /admin/faults/{route}", func(w http.ResponseWriter, r *http.Request) {
		if err := rf.Clear(r.PathValue("route")); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// flatten joins errors on one line, keys first ("delay_percent: 120 out of range ...").
func flatten(err error) string {
	var parts []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		parts = append(parts, e.Error())
	}
	walk(err)
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// Collector returns the Prometheus collector of the route faults'
// counters: switchyard_fault_delays_total, switchyard_fault_aborts_total,
// switchyard_fault_delays_cancelled_total and switchyard_fault_active, by
// route.
func (rf *RouteFaults) Collector() prometheus.Collector { return faultCollector{rf} }

var (
	descFaultDelays    = prometheus.NewDesc("switchyard_fault_delays_total", "Requests delayed by a route's fault injection.", []string{"route"}, nil)
	descFaultAborts    = prometheus.NewDesc("switchyard_fault_aborts_total", "Requests aborted by a route's fault injection.", []string{"route"}, nil)
	descFaultCancelled = prometheus.NewDesc("switchyard_fault_delays_cancelled_total", "Injected delays cut short because the client went away.", []string{"route"}, nil)
	descFaultActive    = prometheus.NewDesc("switchyard_fault_active", "1 while a fault is in force on the route.", []string{"route"}, nil)
)

type faultCollector struct{ rf *RouteFaults }

func (c faultCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFaultDelays, descFaultAborts, descFaultCancelled, descFaultActive} {
		ch <- d
	}
}

func (c faultCollector) Collect(ch chan<- prometheus.Metric) {
	c.rf.mu.Lock()
	slots := make([]*routeSlot, 0, len(c.rf.slots))
	for _, s := range c.rf.slots {
		if s.known {
			slots = append(slots, s)
		}
	}
	c.rf.mu.Unlock()
	for _, s := range slots {
		active := 0.0
		if s.cur.Load() != nil {
			active = 1
		}
		ch <- prometheus.MustNewConstMetric(descFaultDelays, prometheus.CounterValue, float64(s.delays.Load()), s.name)
		ch <- prometheus.MustNewConstMetric(descFaultAborts, prometheus.CounterValue, float64(s.aborts.Load()), s.name)
		ch <- prometheus.MustNewConstMetric(descFaultCancelled, prometheus.CounterValue, float64(s.cancelled.Load()), s.name)
		ch <- prometheus.MustNewConstMetric(descFaultActive, prometheus.GaugeValue, active, s.name)
	}
}
