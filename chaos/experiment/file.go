// Package experiment runs chaos experiments written as files (`switchyard
// chaos run FILE`), in the manner of the Chaos Toolkit: a steady-state
// hypothesis (probes with tolerances: an HTTP probe expecting a status,
// SLIs measured on the experiment's own load, a value read from a
// Prometheus /metrics URL), a method (faults injected and removed at
// offsets in time: route faults through a gateway's admin API, toxics on a
// `switchyard chaos proxy`, process kills and pauses through `hitch up`'s
// admin API) and rollbacks, always run at the end. The hypothesis is
// checked before the method, every second during it and after it; the
// report says whether it held, with the SLI timeline and a chart.
package experiment

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/switchyard/switchyard/chaos"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/load"
)

// Defaults of the fields left out.
const (
	DefaultProbeTimeout     = 2 * time.Second
	DefaultWindow           = 5 * time.Second
	DefaultLoadConnections  = 32
	DefaultLoadTimeout      = 5 * time.Second
	DefaultActionTimeout    = 10 * time.Second
	DefaultHTTPProbeStatus  = 200
	DefaultSLIPercentile    = 99.0
	maxExperimentDuration   = 24 * time.Hour
	maxProbes, maxActions   = 64, 256
	maxBodyBytes            = 1 << 20
	DefaultMinWindowRequest = 1
)

// Experiment is an experiment file.
//
//	title: The API survives a slow upstream
//	admin: http://127.0.0.1:9901          # default admin API of actions
//	load: {rate: 50, duration: 30s, url: http://127.0.0.1:8080/api/}
//	steady_state:
//	  probes:
//	    - {name: api-up, http: {url: http://127.0.0.1:8080/healthz, status: 200}}
//	    - {name: few-errors, sli: {max_error_rate: 1%, window: 5s}}
//	method:
//	  - {at: 5s, route_fault: {route: api, set: {abort_status: 503, abort_percent: 50}}}
//	  - {at: 15s, route_fault: {route: api, clear: true}}
//	rollbacks:
//	  - {route_fault: {route: api, clear: true}}
type Experiment struct {
	// Title names the experiment in the report. Required.
	Title string `yaml:"title"`
	// Description says what it tries to show.
	Description string `yaml:"description"`
	// Admin is the default admin API URL (a gateway's, or `hitch up`'s) of
	// route_fault and process actions that do not name theirs.
	Admin string `yaml:"admin"`
	// ChaosAPI is the default `switchyard chaos proxy` API URL of toxic
	// actions that do not name theirs.
	ChaosAPI string `yaml:"chaos_api"`
	// Duration is the shortest time the method phase lasts (the hypothesis
	// checked every second); it lasts at least as long as the load and the
	// method. Default: as long as those.
	Duration time.Duration `yaml:"duration"`
	// Load is the experiment's own traffic, whose SLIs sli probes measure.
	Load *Load `yaml:"load"`
	// SteadyState is the hypothesis. Required, with at least one probe.
	SteadyState SteadyState `yaml:"steady_state"`
	// Method is the faults over time, run in order.
	Method []Action `yaml:"method"`
	// Rollbacks run at the end, always: after the method, after a failed
	// check or action, after Ctrl-C.
	Rollbacks []Action `yaml:"rollbacks"`

	src  *config.Source
	file string
}

// Load is the experiment's traffic, sent by package load at a constant
// rate (open model: latencies count from the intended send time).
type Load struct {
	// Rate is requests per second. Required, above 0.
	Rate float64 `yaml:"rate"`
	// Duration of the load. Required.
	Duration time.Duration `yaml:"duration"`
	// URL is one GET request; exclusive with Requests.
	URL string `yaml:"url"`
	// Requests are several request templates, weighted.
	Requests []Request `yaml:"requests"`
	// Connections is the number of keep-alive connections. Default 32.
	Connections int `yaml:"connections"`
	// Timeout bounds one request. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
}

// Request is one request template of the load.
type Request struct {
	URL     string            `yaml:"url"`
	Method  string            `yaml:"method"` // default GET
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	Weight  int               `yaml:"weight"` // default 1
}

// SteadyState is the hypothesis: every probe within its tolerance.
type SteadyState struct {
	Probes []Probe `yaml:"probes"`
}

// Probe is one measurement with its tolerance; exactly one of HTTP, SLI
// and Metric.
type Probe struct {
	// Name identifies the probe in the report. Required, unique.
	Name   string       `yaml:"name"`
	HTTP   *HTTPProbe   `yaml:"http"`
	SLI    *SLIProbe    `yaml:"sli"`
	Metric *MetricProbe `yaml:"metric"`
}

// HTTPProbe sends one request and expects a status.
type HTTPProbe struct {
	URL     string            `yaml:"url"`
	Method  string            `yaml:"method"` // default GET
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	// Status is the expected status. Default 200.
	Status int `yaml:"status"`
	// Timeout bounds the request. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
}

// SLIProbe measures the experiment's load over the last Window of
// traffic: the share of failed requests (transport errors and statuses
// >= 400) and/or a latency percentile.
type SLIProbe struct {
	// MaxErrorRate is the largest tolerated share of failed requests,
	// written "1%" or 0.01.
	MaxErrorRate *config.Percent `yaml:"max_error_rate"`
	// MaxLatency is the largest tolerated latency at Percentile.
	MaxLatency time.Duration `yaml:"max_latency"`
	// Percentile of MaxLatency, 0 to 100 (99.9 allowed). Default 99.
	Percentile float64 `yaml:"percentile"`
	// Window is how much of the latest traffic is measured. Default 5s;
	// 1s to 1h.
	Window time.Duration `yaml:"window"`
	// MinRequests is the fewest responses the window must have once the
	// load has run a whole window (fewer fail the probe: a stalled system
	// answers nothing). Default 1; 0 accepts an empty window.
	MinRequests *int `yaml:"min_requests"`
}

// MetricProbe reads one value from a Prometheus text exposition (the sum
// of the series of Name matching Labels) and bounds it.
type MetricProbe struct {
	URL string `yaml:"url"`
	// Name is the metric (a counter, gauge or untyped; NAME_count and
	// NAME_sum of a histogram or summary).
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
	// Min and Max bound the value (either or both).
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
	// Increase bounds the increase since the check before the method
	// instead of the value (for counters).
	Increase bool `yaml:"increase"`
	// Timeout bounds the scrape. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
}

// Action is one step of the method or the rollbacks: exactly one of
// RouteFault, Toxic, Process and Wait.
type Action struct {
	// Name labels the action in the report and chart. Default: what it does.
	Name string `yaml:"name"`
	// At is when the action runs, from the start of the method phase
	// (never before the previous action has finished). Not in rollbacks.
	At         *time.Duration    `yaml:"at"`
	RouteFault *RouteFaultAction `yaml:"route_fault"`
	Toxic      *ToxicAction      `yaml:"toxic"`
	Process    *ProcessAction    `yaml:"process"`
	// Wait pauses the sequence.
	Wait time.Duration `yaml:"wait"`
	// Timeout bounds the action's API call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// RouteFaultAction sets or clears a route fault through a gateway's
// admin API (PUT or DELETE /admin/faults/{route}).
type RouteFaultAction struct {
	// Admin is the gateway's admin URL. Default: the experiment's admin.
	Admin string `yaml:"admin"`
	// Route is the route's name. Required.
	Route string `yaml:"route"`
	// Set is the fault to set (see chaos.RouteFault); exclusive with Clear.
	Set *chaos.RouteFault `yaml:"set"`
	// Off switches the route's faults off (a configured one too) instead.
	Off bool `yaml:"off"`
	// Clear removes the runtime fault (the config's applies again).
	Clear bool `yaml:"clear"`
}

// ToxicAction adds or removes a fault ("toxic") on a `switchyard chaos
// proxy` through its API.
type ToxicAction struct {
	// API is the chaos proxy's API URL. Default: the experiment's chaos_api.
	API string `yaml:"api"`
	// Proxy is the proxy's name. Required.
	Proxy string `yaml:"proxy"`
	// Add is the fault to add (or replace, by name); exclusive with Remove.
	Add *Toxic `yaml:"add"`
	// Remove is the name of the fault to remove (a missing one is fine).
	Remove string `yaml:"remove"`
}

// Toxic is a chaos proxy fault (see chaos.Fault and docs/chaos.md).
type Toxic struct {
	Name     string        `yaml:"name"`
	Type     string        `yaml:"type"`
	Stream   string        `yaml:"stream"`
	Toxicity float64       `yaml:"toxicity"`
	Latency  time.Duration `yaml:"latency"`
	Jitter   time.Duration `yaml:"jitter"`
	Rate     int64         `yaml:"rate"`
	Delay    time.Duration `yaml:"delay"`
	Bytes    int64         `yaml:"bytes"`
}

func (t Toxic) fault() chaos.Fault {
	f := chaos.Fault{Name: t.Name, Kind: chaos.Kind(t.Type), Direction: chaos.Direction(t.Stream), Toxicity: t.Toxicity,
		Latency: t.Latency, Jitter: t.Jitter, Rate: t.Rate, Delay: t.Delay, Bytes: t.Bytes}
	if f.Direction == "" {
		f.Direction = chaos.Downstream
	}
	return f
}

// ProcessAction kills, pauses or resumes a process of `hitch up` through
// its admin API (POST /admin/hitch/processes/{name}/{action}).
type ProcessAction struct {
	// Admin is hitch up's admin URL. Default: the experiment's admin.
	Admin string `yaml:"admin"`
	// Name is NAME-REPLICA ("matching-1") or a service NAME (its lowest
	// running replica). Required.
	Name string `yaml:"name"`
	// Action is kill, pause or resume. Required.
	Action string `yaml:"action"`
}

// File returns the name of the file the experiment was read from.
func (e *Experiment) File() string { return e.file }

// Load reads, decodes and validates an experiment file. ${NAME} in the
// file is replaced by the environment variable NAME (an unset one is an
// error). Every problem is reported, each naming the file, line and key.
func LoadFile(path string) (*Experiment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading experiment: %w", err)
	}
	return Parse(data, path, os.LookupEnv)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${NAME} references line by line, so that lines keep
// their numbers; an unset or multi-line variable is an error at its line.
func expand(data []byte, name string, lookup func(string) (string, bool)) ([]byte, error) {
	if lookup == nil || !strings.Contains(string(data), "${") {
		return data, nil
	}
	lines := strings.Split(string(data), "\n")
	var errs []error
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		lines[i] = envRef.ReplaceAllStringFunc(l, func(ref string) string {
			v, ok := lookup(ref[2 : len(ref)-1])
			switch {
			case !ok:
				errs = append(errs, &config.Error{File: name, Line: i + 1, Msg: fmt.Sprintf("%s: environment variable %s is not set", ref, ref[2:len(ref)-1])})
			case strings.ContainsAny(v, "\r\n"):
				errs = append(errs, &config.Error{File: name, Line: i + 1, Msg: fmt.Sprintf("%s: the value spans several lines", ref)})
			}
			return v
		})
	}
	return []byte(strings.Join(lines, "\n")), errors.Join(errs...)
}

// Parse decodes and validates an experiment document; name is used in
// errors, lookup resolves ${NAME} (nil leaves them as written).
func Parse(data []byte, name string, lookup func(string) (string, bool)) (*Experiment, error) {
	data, err := expand(data, name, lookup)
	if err != nil {
		return nil, err
	}
	var e Experiment
	src, err := config.DecodeYAML(data, name, &e)
	if err != nil {
		return nil, err
	}
	e.src, e.file = src, name
	if err := e.validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func validURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: expected http://HOST:PORT/...", s)
	}
	return nil
}

func (e *Experiment) validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, e.src.Errorf(path, format, args...)) }
	urlAt := func(path, s string, required bool) {
		if s == "" {
			if required {
				add(path, "missing: expected an http:// URL")
			}
			return
		}
		if err := validURL(s); err != nil {
			add(path, "%v", err)
		}
	}
	if strings.TrimSpace(e.Title) == "" {
		add("title", "missing: expected a title naming the experiment")
	}
	urlAt("admin", e.Admin, false)
	urlAt("chaos_api", e.ChaosAPI, false)
	if e.Duration < 0 || e.Duration > maxExperimentDuration {
		add("duration", "%s out of range: expected 0 to %s", e.Duration, maxExperimentDuration)
	}
	if l := e.Load; l != nil {
		if _, err := l.config(); err != nil {
			for _, le := range unjoin(err) {
				add("load", "%v", le)
			}
		}
		if l.Duration <= 0 || l.Duration > maxExperimentDuration {
			add("load.duration", "%s: expected a duration from 1s to %s", l.Duration, maxExperimentDuration)
		}
		if l.Rate <= 0 || l.Rate > 100_000 {
			add("load.rate", "%v: expected requests per second above 0 (at most 100000)", l.Rate)
		}
		switch {
		case l.URL != "" && len(l.Requests) > 0:
			add("load.url", "url and requests are exclusive")
		case l.URL == "" && len(l.Requests) == 0:
			add("load", "missing: expected url or requests")
		case l.URL != "":
			urlAt("load.url", l.URL, true)
		}
		for i, r := range l.Requests {
			p := fmt.Sprintf("load.requests[%d]", i)
			urlAt(p+".url", r.URL, true)
			if r.Method != "" && !validMethod(r.Method) {
				add(p+".method", "invalid method %q: expected an upper-case HTTP method such as POST", r.Method)
			}
			for k, v := range r.Headers {
				if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
					add(p+".headers."+k, "invalid header %q: %q", k, v)
				}
			}
			if r.Weight < 0 || r.Weight > 1000 {
				add(p+".weight", "%d out of range: expected 1 to 1000 (default 1)", r.Weight)
			}
			if len(r.Body) > maxBodyBytes {
				add(p+".body", "%d bytes: at most %d", len(r.Body), maxBodyBytes)
			}
		}
		if l.Connections < 0 || l.Connections > 10_000 {
			add("load.connections", "%d out of range: expected 1 to 10000 (default %d)", l.Connections, DefaultLoadConnections)
		}
		if l.Timeout < 0 || l.Timeout > time.Hour {
			add("load.timeout", "%s out of range: expected up to 1h (default %s)", l.Timeout, DefaultLoadTimeout)
		}
	}
	probes := e.SteadyState.Probes
	if len(probes) == 0 {
		add("steady_state.probes", "missing: expected at least one probe (http, sli or metric)")
	}
	if len(probes) > maxProbes {
		add("steady_state.probes", "%d probes: at most %d", len(probes), maxProbes)
	}
	names := map[string]bool{}
	for i, pr := range probes {
		p := fmt.Sprintf("steady_state.probes[%d]", i)
		if pr.Name == "" {
			add(p+".name", "missing: expected a name for the report")
		} else if names[pr.Name] {
			add(p+".name", "duplicate probe name %q", pr.Name)
		}
		names[pr.Name] = true
		n := 0
		if pr.HTTP != nil {
			n++
			h := pr.HTTP
			urlAt(p+".http.url", h.URL, true)
			if h.Method != "" && !validMethod(h.Method) {
				add(p+".http.method", "invalid method %q: expected an upper-case HTTP method such as GET", h.Method)
			}
			if h.Status != 0 && (h.Status < 100 || h.Status > 599) {
				add(p+".http.status", "%d: expected an HTTP status from 100 to 599 (default 200)", h.Status)
			}
			for k, v := range h.Headers {
				if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
					add(p+".http.headers."+k, "invalid header %q: %q", k, v)
				}
			}
			if h.Timeout < 0 || h.Timeout > time.Minute {
				add(p+".http.timeout", "%s out of range: expected up to 1m (default %s)", h.Timeout, DefaultProbeTimeout)
			}
		}
		if pr.SLI != nil {
			n++
			s := pr.SLI
			if e.Load == nil {
				add(p+".sli", "an sli probe measures the experiment's own traffic: add a load section")
			}
			if s.MaxErrorRate == nil && s.MaxLatency == 0 {
				add(p+".sli", "nothing to measure: expected max_error_rate and/or max_latency")
			}
			if s.MaxLatency < 0 {
				add(p+".sli.max_latency", "negative duration %s", s.MaxLatency)
			}
			if s.Percentile != 0 && (s.Percentile <= 0 || s.Percentile > 100) || s.Percentile != s.Percentile {
				add(p+".sli.percentile", "%v out of range: expected above 0, at most 100 (default 99)", s.Percentile)
			}
			if s.Window != 0 && (s.Window < time.Second || s.Window > time.Hour) {
				add(p+".sli.window", "%s out of range: expected 1s to 1h (default %s)", s.Window, DefaultWindow)
			}
			if s.MinRequests != nil && *s.MinRequests < 0 {
				add(p+".sli.min_requests", "%d: expected 0 or more (default 1)", *s.MinRequests)
			}
		}
		if pr.Metric != nil {
			n++
			m := pr.Metric
			urlAt(p+".metric.url", m.URL, true)
			if m.Name == "" {
				add(p+".metric.name", "missing: expected a metric name such as switchyard_requests_total")
			}
			if m.Min == nil && m.Max == nil {
				add(p+".metric", "no tolerance: expected min and/or max")
			}
			if m.Min != nil && m.Max != nil && *m.Min > *m.Max {
				add(p+".metric.min", "%v is above max %v", *m.Min, *m.Max)
			}
			if m.Timeout < 0 || m.Timeout > time.Minute {
				add(p+".metric.timeout", "%s out of range: expected up to 1m (default %s)", m.Timeout, DefaultProbeTimeout)
			}
		}
		if n != 1 {
			add(p, "expected exactly one of http, sli and metric, got %d", n)
		}
	}
	if len(e.Method) > maxActions || len(e.Rollbacks) > maxActions {
		add("method", "at most %d actions in method and in rollbacks", maxActions)
	}
	var last time.Duration
	for i, a := range e.Method {
		p := fmt.Sprintf("method[%d]", i)
		errs = append(errs, e.validateAction(p, a)...)
		if a.At != nil {
			if *a.At < 0 || *a.At > maxExperimentDuration {
				add(p+".at", "%s out of range: expected 0 to %s from the start of the method", *a.At, maxExperimentDuration)
			} else if *a.At < last {
				add(p+".at", "%s is before the previous action's %s: actions run in order", *a.At, last)
			} else {
				last = *a.At
			}
		}
	}
	for i, a := range e.Rollbacks {
		p := fmt.Sprintf("rollbacks[%d]", i)
		errs = append(errs, e.validateAction(p, a)...)
		if a.At != nil {
			add(p+".at", "rollbacks run at the end, in order: at is for the method (use wait)")
		}
	}
	return errors.Join(errs...)
}

func (e *Experiment) validateAction(p string, a Action) []error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, e.src.Errorf(path, format, args...)) }
	adminOf := func(path, own, def, what string) {
		switch {
		case own != "":
			if err := validURL(own); err != nil {
				add(path, "%v", err)
			}
		case def == "":
			add(path, "missing: expected %s's URL here or at the top level", what)
		}
	}
	n := 0
	if f := a.RouteFault; f != nil {
		n++
		adminOf(p+".route_fault.admin", f.Admin, e.Admin, "the gateway admin API")
		if f.Route == "" {
			add(p+".route_fault.route", "missing: expected the route's name")
		}
		k := 0
		if f.Set != nil {
			k++
			if err := f.Set.Validate(); err != nil {
				errs = append(errs, e.src.Wrap(p+".route_fault.set", err))
			}
		}
		if f.Off {
			k++
		}
		if f.Clear {
			k++
		}
		if k != 1 {
			add(p+".route_fault", "expected exactly one of set, off: true and clear: true")
		}
	}
	if t := a.Toxic; t != nil {
		n++
		adminOf(p+".toxic.api", t.API, e.ChaosAPI, "the chaos proxy API (chaos_api)")
		if t.Proxy == "" {
			add(p+".toxic.proxy", "missing: expected the proxy's name")
		}
		switch {
		case t.Add != nil && t.Remove != "", t.Add == nil && t.Remove == "":
			add(p+".toxic", "expected exactly one of add and remove")
		case t.Add != nil:
			if err := t.Add.fault().Validate(); err != nil {
				for _, fe := range unjoin(err) {
					add(p+".toxic.add", "%v", fe)
				}
			}
		}
	}
	if pa := a.Process; pa != nil {
		n++
		adminOf(p+".process.admin", pa.Admin, e.Admin, "hitch up's admin API")
		if pa.Name == "" || strings.ContainsAny(pa.Name, "/?# ") {
			add(p+".process.name", "%q: expected a process NAME or NAME-REPLICA such as matching-1", pa.Name)
		}
		switch pa.Action {
		case "kill", "pause", "resume":
		default:
			add(p+".process.action", "%q: expected kill, pause or resume", pa.Action)
		}
	}
	if a.Wait != 0 {
		n++
		if a.Wait < 0 || a.Wait > maxExperimentDuration {
			add(p+".wait", "%s out of range: expected up to %s", a.Wait, maxExperimentDuration)
		}
	}
	if a.Timeout < 0 || a.Timeout > 5*time.Minute {
		add(p+".timeout", "%s out of range: expected up to 5m (default %s)", a.Timeout, DefaultActionTimeout)
	}
	if n != 1 {
		add(p, "expected exactly one of route_fault, toxic, process and wait, got %d", n)
	}
	return errs
}

func validMethod(m string) bool {
	return m != "" && strings.ToUpper(m) == m && httpguts.ValidHeaderFieldName(m)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// config is the load as package load takes it.
func (l *Load) config() (load.Config, error) {
	c := load.Config{Rate: l.Rate, Duration: l.Duration, Connections: l.Connections, Timeout: l.Timeout}
	if c.Connections == 0 {
		c.Connections = DefaultLoadConnections
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultLoadTimeout
	}
	if l.URL != "" {
		c.Targets = []load.Target{{URL: l.URL}}
	}
	for _, r := range l.Requests {
		t := load.Target{URL: r.URL, Method: r.Method, Body: []byte(r.Body), Weight: r.Weight}
		for _, k := range sortedKeys(r.Headers) {
			t.Header = append(t.Header, load.HeaderField{Name: k, Value: r.Headers[k]})
		}
		c.Targets = append(c.Targets, t)
	}
	if len(c.Targets) == 0 || c.Rate <= 0 || c.Duration <= 0 {
		return c, nil // reported by validate with their keys
	}
	return c, c.Validate()
}
