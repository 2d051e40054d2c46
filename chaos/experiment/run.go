package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchyard/switchyard/chaos"
	"github.com/switchyard/switchyard/load"
)

// Options configure a run.
type Options struct {
	// Client makes the probes' and actions' requests (each bounded by its
	// own timeout). Default: a client of its own that ignores proxies.
	Client *http.Client
	// Progress receives a line per check and action as the run goes; nil
	// discards them.
	Progress io.Writer
	// Interval is how often the hypothesis is checked during the method.
	// Default 1s.
	Interval time.Duration
}

// Report is what a run found.
type Report struct {
	Title string `json:"title"`
	File  string `json:"file"`
	// Held is true when every check of the hypothesis passed (before,
	// during and after the method), every action (method and rollbacks)
	// succeeded and the run was not interrupted.
	Held bool `json:"held"`
	// Reason says why it did not hold, in one line.
	Reason      string    `json:"reason,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	Started     time.Time `json:"started"`
	DurationS   float64   `json:"duration_s"`
	// FailedProbes names the probes that failed at least once.
	FailedProbes []string       `json:"failed_probes"`
	Before       *Check         `json:"before"`
	During       []Check        `json:"during"`
	After        *Check         `json:"after,omitempty"`
	Method       []ActionResult `json:"method"`
	Rollbacks    []ActionResult `json:"rollbacks"`
	// Load sums the experiment's traffic; Timeline has it per interval.
	Load     *LoadSummary    `json:"load,omitempty"`
	Timeline []TimelinePoint `json:"timeline"`

	probes []Probe
}

// Check is one check of the hypothesis.
type Check struct {
	Phase  string        `json:"phase"` // before, during, after
	T      float64       `json:"t_s"`   // seconds since the method phase began (negative before)
	Held   bool          `json:"held"`
	Probes []ProbeResult `json:"probes"`
}

// ProbeResult is one probe's outcome in a check.
type ProbeResult struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // http, sli, metric
	OK   bool   `json:"ok"`
	// Skipped is set when the probe could not be measured yet (an SLI
	// before the load's first interval); it counts as passed.
	Skipped bool `json:"skipped,omitempty"`
	// Value is the measurement: status, error rate (0..1), latency (ms)
	// or the metric's value.
	Value  *float64 `json:"value,omitempty"`
	Detail string   `json:"detail"`
}

// ActionResult is one action as it ran.
type ActionResult struct {
	Name   string  `json:"name"`
	T      float64 `json:"t_s"` // when it ran, seconds since the method phase began
	OK     bool    `json:"ok"`
	Detail string  `json:"detail"`
}

// LoadSummary is the experiment's traffic over the whole run.
type LoadSummary struct {
	Rate      float64 `json:"rate"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

// TimelinePoint is one interval of the load.
type TimelinePoint struct {
	T         float64 `json:"t_s"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// runner is one run's state.
type runner struct {
	e        *Experiment
	client   *http.Client
	progress io.Writer
	start    time.Time // the method phase's start
	traffic  *traffic
	baseline map[string]float64 // metric probes' values before the method

	mu sync.Mutex // guards progress writes
}

func (r *runner) logf(format string, args ...any) {
	if r.progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.progress, format+"\n", args...)
}

func (r *runner) since() float64 { return round3(time.Since(r.start).Seconds()) }

// Run runs the experiment: the hypothesis is checked before the method
// (if it does not hold, the method is not run), every Interval during the
// method and the load, and after them; the rollbacks run at the end
// whatever happened, also when ctx ends (Ctrl-C), each with its own
// timeout. It returns the report; its Held says whether the hypothesis
// held.
func Run(ctx context.Context, e *Experiment, opts Options) *Report {
	r := &runner{e: e, client: opts.Client, progress: opts.Progress, baseline: map[string]float64{}}
	if r.client == nil {
		r.client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}}
	}
	interval := opts.Interval
	if interval <= 0 {
		interval = time.Second
	}
	rep := &Report{Title: e.Title, File: e.file, Started: time.Now(), During: []Check{}, Method: []ActionResult{},
		Rollbacks: []ActionResult{}, Timeline: []TimelinePoint{}, FailedProbes: []string{}, probes: e.SteadyState.Probes}
	r.start = time.Now()
	r.traffic = newTraffic(r.start, maxWindow(e))
	defer func() {
		// Always: the rollbacks, with a context of their own.
		rep.Rollbacks = r.runActions(context.WithoutCancel(ctx), e.Rollbacks, "rollback", false)
		rep.DurationS = round3(time.Since(rep.Started).Seconds())
		rep.finish()
	}()

	before := r.check(ctx, "before")
	rep.Before = &before
	if !before.Held {
		rep.Reason = "the steady state did not hold before the method: " + failedList(before)
		r.logf("before: the hypothesis does not hold (%s): the method is not run", failedList(before))
		return rep
	}
	if ctx.Err() != nil {
		rep.Interrupted = true
		return rep
	}

	// The method phase: load, actions and checks together.
	r.start = time.Now()
	r.traffic = newTraffic(r.start, maxWindow(e))
	phaseCtx, stopPhase := context.WithCancel(ctx)
	defer stopPhase()
	var loadDone, methodDone = make(chan struct{}), make(chan struct{})
	var loadRes *load.Result
	var loadErr error
	if e.Load != nil {
		cfg, _ := e.Load.config() // validated
		cfg.Progress = r.traffic.record
		go func() {
			defer close(loadDone)
			r.traffic.begin(time.Now())
			loadRes, loadErr = load.Run(phaseCtx, cfg)
			r.traffic.end()
		}()
	} else {
		close(loadDone)
	}
	var methodRes []ActionResult
	go func() {
		defer close(methodDone)
		methodRes = r.runActions(phaseCtx, e.Method, "method", true)
	}()
	minEnd := r.start.Add(e.Duration)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	loadOver, methodOver := false, false
	for !(loadOver && methodOver && !time.Now().Before(minEnd)) {
		select {
		case <-ctx.Done():
			rep.Interrupted = true
		case <-loadDone:
			loadOver, loadDone = true, nil
			continue
		case <-methodDone:
			methodOver, methodDone = true, nil
			continue
		case <-tick.C:
			rep.During = append(rep.During, r.check(ctx, "during"))
			continue
		}
		break
	}
	stopPhase()
	if loadDone != nil {
		<-loadDone
	}
	if methodDone != nil {
		<-methodDone
	}
	rep.Method = methodRes
	if loadErr != nil {
		rep.Reason = "the load could not run: " + loadErr.Error()
	}
	if loadRes != nil {
		rep.Load = &LoadSummary{Rate: e.Load.Rate, Requests: loadRes.Requests, Errors: loadRes.Errors,
			ErrorRate: round3(loadRes.ErrorRate / 100), P50: loadRes.Latency.P50, P99: loadRes.Latency.P99, Max: loadRes.Latency.Max}
	}
	rep.Timeline = r.traffic.timeline()
	if rep.Interrupted {
		r.logf("interrupted: running the rollbacks")
		return rep
	}
	after := r.check(ctx, "after")
	rep.After = &after
	return rep
}

// finish sets Held, Reason and FailedProbes from the checks and actions.
func (rep *Report) finish() {
	failed := map[string]bool{}
	var first *Check
	checks := append([]Check{}, rep.During...)
	if rep.Before != nil {
		checks = append([]Check{*rep.Before}, checks...)
	}
	if rep.After != nil {
		checks = append(checks, *rep.After)
	}
	for i := range checks {
		for _, p := range checks[i].Probes {
			if !p.OK {
				failed[p.Name] = true
			}
		}
		if !checks[i].Held && first == nil {
			first = &checks[i]
		}
	}
	for _, p := range rep.probes {
		if failed[p.Name] {
			rep.FailedProbes = append(rep.FailedProbes, p.Name)
		}
	}
	var badAction *ActionResult
	for i := range rep.Method {
		if !rep.Method[i].OK && badAction == nil {
			badAction = &rep.Method[i]
		}
	}
	var badRollback *ActionResult
	for i := range rep.Rollbacks {
		if !rep.Rollbacks[i].OK && badRollback == nil {
			badRollback = &rep.Rollbacks[i]
		}
	}
	rep.Held = first == nil && badAction == nil && badRollback == nil && rep.Reason == "" && !rep.Interrupted && rep.After != nil
	if rep.Reason != "" {
		return
	}
	switch {
	case badRollback != nil && first == nil && badAction == nil:
		rep.Reason = fmt.Sprintf("rollback %q failed: %s", badRollback.Name, badRollback.Detail)
	case first != nil:
		rep.Reason = fmt.Sprintf("%s check at t=%.0fs: %s", first.Phase, first.T, failedList(*first))
	case badAction != nil:
		rep.Reason = fmt.Sprintf("method action %q failed: %s", badAction.Name, badAction.Detail)
	case rep.Interrupted:
		rep.Reason = "interrupted before the end"
	}
}

func failedList(c Check) string {
	var parts []string
	for _, p := range c.Probes {
		if !p.OK {
			parts = append(parts, p.Name+": "+p.Detail)
		}
	}
	return strings.Join(parts, "; ")
}

func maxWindow(e *Experiment) time.Duration {
	w := DefaultWindow
	for _, p := range e.SteadyState.Probes {
		if p.SLI != nil && p.SLI.Window > w {
			w = p.SLI.Window
		}
	}
	return w
}

// check runs every probe once, concurrently.
func (r *runner) check(ctx context.Context, phase string) Check {
	c := Check{Phase: phase, T: r.since(), Probes: make([]ProbeResult, len(r.e.SteadyState.Probes))}
	if phase == "before" {
		c.T = 0
	}
	var wg sync.WaitGroup
	for i, p := range r.e.SteadyState.Probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Probes[i] = r.probe(ctx, phase, p)
		}()
	}
	wg.Wait()
	c.Held = true
	for _, p := range c.Probes {
		c.Held = c.Held && p.OK
	}
	if !c.Held {
		r.logf("t=%5.1fs %-6s NOT HELD: %s", c.T, phase, failedList(c))
	} else {
		r.logf("t=%5.1fs %-6s held", c.T, phase)
	}
	return c
}

func (r *runner) probe(ctx context.Context, phase string, p Probe) ProbeResult {
	switch {
	case p.HTTP != nil:
		return r.httpProbe(ctx, p.Name, p.HTTP)
	case p.SLI != nil:
		return r.sliProbe(phase, p.Name, p.SLI)
	default:
		return r.metricProbe(ctx, phase, p.Name, p.Metric)
	}
}

func ptr(v float64) *float64 { return &v }

func (r *runner) httpProbe(ctx context.Context, name string, h *HTTPProbe) ProbeResult {
	res := ProbeResult{Name: name, Kind: "http"}
	want := h.Status
	if want == 0 {
		want = DefaultHTTPProbeStatus
	}
	ctx, cancel := context.WithTimeout(ctx, orDur(h.Timeout, DefaultProbeTimeout))
	defer cancel()
	method := h.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if h.Body != "" {
		body = strings.NewReader(h.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL, body)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		res.Detail = fmt.Sprintf("%s %s: %v (expected status %d)", method, h.URL, err, want)
		return res
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	res.Value = ptr(float64(resp.StatusCode))
	res.OK = resp.StatusCode == want
	if res.OK {
		res.Detail = fmt.Sprintf("status %d", resp.StatusCode)
	} else {
		res.Detail = fmt.Sprintf("status %d, expected %d", resp.StatusCode, want)
	}
	return res
}

func (r *runner) sliProbe(phase, name string, s *SLIProbe) ProbeResult {
	res := ProbeResult{Name: name, Kind: "sli"}
	if phase == "before" {
		res.OK, res.Skipped, res.Detail = true, true, "no traffic yet (the load runs with the method)"
		return res
	}
	w := orDur(s.Window, DefaultWindow)
	pct := s.Percentile
	if pct == 0 {
		pct = DefaultSLIPercentile
	}
	ws := r.traffic.window(w, pct)
	if !ws.measured {
		res.OK, res.Skipped, res.Detail = true, true, "no traffic measured yet"
		return res
	}
	minReq := int64(DefaultMinWindowRequest)
	if s.MinRequests != nil {
		minReq = int64(*s.MinRequests)
	}
	if ws.requests < minReq {
		if !ws.covered {
			res.OK, res.Skipped, res.Detail = true, true, fmt.Sprintf("%d responses so far (the load has not run %s yet)", ws.requests, w)
			return res
		}
		res.Detail = fmt.Sprintf("%d responses in the last %s, expected at least %d", ws.requests, w, minReq)
		return res
	}
	res.OK = true
	var parts []string
	if s.MaxErrorRate != nil {
		rate := 0.0
		if ws.requests > 0 {
			rate = float64(ws.errors) / float64(ws.requests)
		}
		res.Value = ptr(rate)
		ok := rate <= float64(*s.MaxErrorRate)
		res.OK = res.OK && ok
		op := "<="
		if !ok {
			op = ">"
		}
		parts = append(parts, fmt.Sprintf("error rate %s %s %s (%d of %d)", pctString(rate), op, s.MaxErrorRate.String(), ws.errors, ws.requests))
	}
	if s.MaxLatency > 0 && ws.requests > 0 {
		lat := ws.latencyMs
		if res.Value == nil {
			res.Value = ptr(lat)
		}
		limit := float64(s.MaxLatency) / float64(time.Millisecond)
		ok := !math.IsNaN(lat) && lat <= limit
		res.OK = res.OK && ok
		op := "<="
		if !ok {
			op = ">"
		}
		parts = append(parts, fmt.Sprintf("p%s %.1fms %s %s", trimFloat(pct), lat, op, s.MaxLatency))
	}
	res.Detail = strings.Join(parts, ", ") + " over the last " + w.String()
	return res
}

func pctString(v float64) string {
	return trimFloat(math.Round(v*10000)/100) + "%"
}

func trimFloat(v float64) string { return fmt.Sprintf("%g", v) }

func (r *runner) metricProbe(ctx context.Context, phase, name string, m *MetricProbe) ProbeResult {
	res := ProbeResult{Name: name, Kind: "metric"}
	v, err := r.scrape(ctx, m)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	what := "value"
	if m.Increase {
		if phase == "before" {
			r.mu.Lock()
			r.baseline[name] = v
			r.mu.Unlock()
		}
		r.mu.Lock()
		base := r.baseline[name]
		r.mu.Unlock()
		v -= base
		what = "increase"
	}
	res.Value = ptr(v)
	res.OK = (m.Min == nil || v >= *m.Min) && (m.Max == nil || v <= *m.Max)
	var bounds []string
	if m.Min != nil {
		bounds = append(bounds, fmt.Sprintf("min %g", *m.Min))
	}
	if m.Max != nil {
		bounds = append(bounds, fmt.Sprintf("max %g", *m.Max))
	}
	verdict := "within"
	if !res.OK {
		verdict = "outside"
	}
	res.Detail = fmt.Sprintf("%s %s %g %s %s", m.Name, what, v, verdict, strings.Join(bounds, ", "))
	return res
}

// scrape reads m's value: the sum of the matching series.
func (r *runner) scrape(ctx context.Context, m *MetricProbe) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, orDur(m.Timeout, DefaultProbeTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %v", m.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping %s: status %d", m.URL, resp.StatusCode)
	}
	return metricValue(io.LimitReader(resp.Body, 32<<20), m.Name, m.Labels)
}

// metricValue sums the series of name matching labels in a Prometheus
// text exposition.
func metricValue(in io.Reader, name string, labels map[string]string) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(in)
	if err != nil {
		return 0, fmt.Errorf("reading metrics: %v", err)
	}
	family, part := name, ""
	if _, ok := fams[name]; !ok {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if _, ok := fams[base]; ok {
					family, part = base, suffix
				}
			}
		}
	}
	fam, ok := fams[family]
	if !ok {
		return 0, fmt.Errorf("no metric %q in the exposition", name)
	}
	sum, matched := 0.0, 0
	for _, mt := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range mt.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		matched++
		switch {
		case mt.Counter != nil:
			sum += mt.Counter.GetValue()
		case mt.Gauge != nil:
			sum += mt.Gauge.GetValue()
		case mt.Untyped != nil:
			sum += mt.Untyped.GetValue()
		case mt.Histogram != nil && part == "_count":
			sum += float64(mt.Histogram.GetSampleCount())
		case mt.Histogram != nil && part == "_sum":
			sum += mt.Histogram.GetSampleSum()
		case mt.Summary != nil && part == "_count":
			sum += float64(mt.Summary.GetSampleCount())
		case mt.Summary != nil && part == "_sum":
			sum += mt.Summary.GetSampleSum()
		default:
			return 0, fmt.Errorf("metric %q is a histogram or summary: name its %s_count or %s_sum", name, name, name)
		}
	}
	if matched == 0 {
		return 0, fmt.Errorf("no series of %q with labels %s", name, labelString(labels))
	}
	return sum, nil
}

func labelString(l map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(l) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, l[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func orDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// runActions runs actions in order; in the method (timed) they wait for
// their offsets and the sequence stops at the first failure; rollbacks
// all run.
func (r *runner) runActions(ctx context.Context, actions []Action, what string, timed bool) []ActionResult {
	out := []ActionResult{}
	for _, a := range actions {
		if timed && a.At != nil {
			due := time.Until(r.start.Add(*a.At))
			if due > 0 {
				t := time.NewTimer(due)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return out
				}
			}
		}
		if ctx.Err() != nil {
			return out
		}
		res := ActionResult{Name: a.label(r.e), T: r.since()}
		err := r.do(ctx, a)
		res.OK = err == nil
		if err != nil {
			res.Detail = err.Error()
			r.logf("t=%5.1fs %-6s %s: FAILED: %v", res.T, what, res.Name, err)
		} else {
			res.Detail = "ok"
			r.logf("t=%5.1fs %-6s %s", res.T, what, res.Name)
		}
		out = append(out, res)
		if err != nil && timed {
			return out
		}
	}
	return out
}

// label is what an action does, for the report.
func (a Action) label(e *Experiment) string {
	if a.Name != "" {
		return a.Name
	}
	switch {
	case a.RouteFault != nil:
		f := a.RouteFault
		switch {
		case f.Clear:
			return "clear route fault " + f.Route
		case f.Off:
			return "switch route faults off " + f.Route
		}
		var parts []string
		if f.Set.Delay > 0 {
			parts = append(parts, "delay "+f.Set.Delay.String()+pctOf(f.Set.DelayPercent))
		}
		if f.Set.AbortStatus > 0 {
			parts = append(parts, fmt.Sprintf("abort %d%s", f.Set.AbortStatus, pctOf(f.Set.AbortPercent)))
		}
		if f.Set.Header != "" {
			parts = append(parts, "header "+f.Set.Header)
		}
		return "route fault " + f.Route + ": " + strings.Join(parts, ", ")
	case a.Toxic != nil:
		if a.Toxic.Add != nil {
			return fmt.Sprintf("toxic %s on %s: %s", a.Toxic.Add.Name, a.Toxic.Proxy, a.Toxic.Add.Type)
		}
		return fmt.Sprintf("remove toxic %s from %s", a.Toxic.Remove, a.Toxic.Proxy)
	case a.Process != nil:
		return a.Process.Action + " " + a.Process.Name
	}
	return "wait " + a.Wait.String()
}

func pctOf(p *float64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf(" at %g%%", *p)
}

// do performs one action.
func (r *runner) do(ctx context.Context, a Action) error {
	if a.Wait > 0 {
		t := time.NewTimer(a.Wait)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, orDur(a.Timeout, DefaultActionTimeout))
	defer cancel()
	switch {
	case a.RouteFault != nil:
		f := a.RouteFault
		u := strings.TrimRight(or(f.Admin, r.e.Admin), "/") + "/admin/faults/" + url.PathEscape(f.Route)
		switch {
		case f.Clear:
			return r.call(ctx, http.MethodDelete, u, nil, http.StatusNoContent)
		case f.Off:
			return r.call(ctx, http.MethodPut, u, map[string]any{"active": false}, http.StatusOK)
		}
		s := f.Set
		return r.call(ctx, http.MethodPut, u, chaos.FaultJSON{Delay: durStr(s.Delay), DelayPercent: s.DelayPercent,
			AbortStatus: s.AbortStatus, AbortPercent: s.AbortPercent, Header: s.Header, MaxDelay: durStr(s.MaxDelay)}, http.StatusOK)
	case a.Toxic != nil:
		t := a.Toxic
		base := strings.TrimRight(or(t.API, r.e.ChaosAPI), "/") + "/proxies/" + url.PathEscape(t.Proxy) + "/faults"
		if t.Add == nil {
			return r.call(ctx, http.MethodDelete, base+"/"+url.PathEscape(t.Remove), nil, http.StatusNoContent, http.StatusNotFound)
		}
		x := t.Add
		return r.call(ctx, http.MethodPost, base, map[string]any{"name": x.Name, "type": x.Type, "stream": string(x.fault().Direction),
			"toxicity": x.Toxicity, "latency": durStr(x.Latency), "jitter": durStr(x.Jitter), "rate": x.Rate,
			"delay": durStr(x.Delay), "bytes": x.Bytes}, http.StatusCreated)
	case a.Process != nil:
		p := a.Process
		u := strings.TrimRight(or(p.Admin, r.e.Admin), "/") + "/admin/hitch/processes/" + url.PathEscape(p.Name) + "/" + p.Action
		return r.call(ctx, http.MethodPost, u, nil, http.StatusOK)
	}
	return errors.New("empty action")
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func durStr(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// call makes an API request with a JSON body and expects one of want.
func (r *runner) call(ctx context.Context, method, u string, body any, want ...int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	return fmt.Errorf("%s %s: status %d: %s", method, u, resp.StatusCode, strings.TrimSpace(string(msg)))
}
