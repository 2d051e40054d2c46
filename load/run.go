package load

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// keptUpShare is the share of planned requests that may leave late (or not
// at all) before a run is reported as one the generator did not keep up with.
const keptUpShare = 0.001

// confirmSteps is how many consecutive degraded ramp steps confirm the
// degradation point and stop the ramp early.
const confirmSteps = 2

// Run executes the load described by cfg and returns its result. If ctx is
// cancelled, Run stops sending, aborts requests in flight, and returns the
// partial result (Interrupted set) together with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating config: %w", err)
	}
	c := cfg.withDefaults()
	reqs, eps, err := prepare(c.Targets, c.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	schedule := weightedSchedule(c.Targets)

	p := newPool(eps, c.Connections, c.Timeout)
	defer p.close()
	p.warm(ctx)

	runStart := time.Now()
	tk := &ticker{runStart: runStart, interval: c.Interval, progress: c.Progress, cum: newHist(), win: newHist()}
	env := &runEnv{cfg: &c, pool: p, reqs: reqs, schedule: schedule, ticker: tk}
	res := &Result{Connections: c.Connections, SLO: c.SLO.String()}
	for _, t := range c.Targets {
		res.Targets = append(res.Targets, t.URL)
	}
	total := &phaseStats{corrected: newHist(), uncorrected: newHist(), lag: newHist(), doneAt: newHist(), statuses: map[int]int64{}}

	if c.Ramp == nil {
		st := runPhase(ctx, env, c.Rate, c.Duration)
		total.add(st)
		res.OfferedRate = c.Rate
	} else {
		r := c.Ramp
		for _, rate := range r.Rates() {
			st := runPhase(ctx, env, rate, r.StepDuration)
			total.add(st)
			res.OfferedRate = rate
			if st.interrupted {
				break
			}
			res.Steps = append(res.Steps, newStep(st, c.SLO))
			assessStep(res.Steps, len(res.Steps)-1, r, c.SLO)
			if consecutiveDegraded(res.Steps) >= confirmSteps {
				res.StoppedEarly = len(res.Steps) < len(r.Rates())
				break
			}
		}
		res.findPoints(c.SLO, r, ctx.Err() != nil)
	}
	res.fill(total, c.MaxLag)
	res.Timeline = tk.timeline
	if len(c.SLO.Terms) > 0 {
		met, failures := c.SLO.evaluate(total.corrected, total.ok, total.failed)
		res.SLOMet = &met
		res.SLOFailures = failures
	}
	res.Duration = time.Since(runStart).Seconds()
	if ctx.Err() != nil {
		res.Interrupted = true
		return res, ctx.Err()
	}
	return res, nil
}

// add merges a phase into the running total.
func (ps *phaseStats) add(o *phaseStats) {
	ps.planned += o.planned
	ps.elapsed += o.elapsed
	ps.window += o.window
	ps.windowCount += o.windowCount
	ps.corrected.Merge(o.corrected)
	ps.uncorrected.Merge(o.uncorrected)
	ps.lag.Merge(o.lag)
	ps.ok += o.ok
	ps.failed += o.failed
	ps.unsent += o.unsent
	ps.lateConn += o.lateConn
	ps.lateCPU += o.lateCPU
	ps.maxInflight = max(ps.maxInflight, o.maxInflight)
	for k, v := range o.statuses {
		ps.statuses[k] += v
	}
	for k, v := range o.kinds {
		ps.kinds[k] += v
		if ps.samples[k] == "" {
			ps.samples[k] = o.samples[k]
		}
	}
	ps.interrupted = ps.interrupted || o.interrupted
}

func (r *Result) fill(t *phaseStats, maxLag time.Duration) {
	r.Planned = t.planned
	r.Requests = t.completed()
	r.Successes = t.ok
	r.Errors = t.failed
	r.Throughput = round(t.throughput(), 2)
	if r.Requests > 0 {
		r.Availability = round(100*float64(t.ok)/float64(r.Requests), 4)
		r.ErrorRate = round(100*float64(t.failed)/float64(r.Requests), 4)
	}
	r.Latency = percentiles(t.corrected)
	r.Uncorrected = percentiles(t.uncorrected)
	r.SendLag = percentiles(t.lag)
	r.StatusCodes = map[string]int64{}
	r.ErrorsByStatus = map[string]int64{}
	r.ErrorsByKind = map[string]int64{}
	r.ErrorSamples = map[string]string{}
	for code, n := range t.statuses {
		r.StatusCodes[strconv.Itoa(code)] = n
		if code >= 400 {
			r.ErrorsByStatus[strconv.Itoa(code)] = n
		}
	}
	for k, n := range t.kinds {
		if n > 0 {
			r.ErrorsByKind[ErrorKind(k).String()] = n
			r.ErrorSamples[ErrorKind(k).String()] = t.samples[k]
		}
	}
	g := &r.Generator
	g.LateNoConnection = t.lateConn
	g.LateCPU = t.lateCPU
	g.LateSends = t.lateConn + t.lateCPU
	g.Unsent = t.unsent
	g.MaxLagMs = ms(maxLag.Microseconds())
	g.MaxInFlight = t.maxInflight
	g.KeptUp = float64(g.LateSends+g.Unsent) <= keptUpShare*float64(t.planned)
	r.CorrectedHistogram = t.corrected
	r.UncorrectedHistogram = t.uncorrected
}

func newStep(st *phaseStats, slo SLO) Step {
	s := Step{
		OfferedRate: st.rate,
		Throughput:  round(st.throughput(), 2),
		Requests:    st.completed(),
		Errors:      st.failed,
		P50:         ms(st.corrected.ValueAtQuantile(50)),
		P90:         ms(st.corrected.ValueAtQuantile(90)),
		P99:         ms(st.corrected.ValueAtQuantile(99)),
		Max:         ms(maxOf(st.corrected)),
		Late:        st.lateConn + st.lateCPU + st.unsent,
	}
	if s.Requests > 0 {
		s.ErrorRate = round(100*float64(st.failed)/float64(s.Requests), 4)
	}
	if len(slo.Terms) > 0 {
		met, failures := slo.evaluate(st.corrected, st.ok, st.failed)
		s.SLOMet = &met
		s.SLOFailures = failures
	}
	return s
}

// assessStep decides whether step i is degraded. A step is degraded when
// its throughput falls below ThroughputFactor of the offered rate (the
// service stopped following the load), when it violates the SLO, or when
// its error rate exceeds MaxErrorRate (unless the SLO bounds errors
// itself). Only without an SLO does a latency rise count: a p99 more than
// LatencyFactor times the median p99 of the earlier steps. With an SLO a
// p99 that jumps but stays inside it is noise, not degradation.
func assessStep(steps []Step, i int, r *Ramp, slo SLO) {
	s := &steps[i]
	var reasons []string
	if s.Throughput < r.ThroughputFactor*s.OfferedRate {
		reasons = append(reasons, fmt.Sprintf("throughput %.0f/s is below %.0f%% of the offered %.0f/s", s.Throughput, 100*r.ThroughputFactor, s.OfferedRate))
	}
	if s.SLOMet != nil && !*s.SLOMet {
		reasons = append(reasons, "SLO violated: "+strings.Join(s.SLOFailures, "; "))
	}
	if !slo.boundsErrors() && s.ErrorRate > r.MaxErrorRate {
		reasons = append(reasons, fmt.Sprintf("errors %.3g%% are above %.3g%%", s.ErrorRate, r.MaxErrorRate))
	}
	if len(slo.Terms) == 0 && i > 0 {
		earlier := make([]float64, i)
		for j, p := range steps[:i] {
			earlier[j] = p.P99
		}
		base := median(earlier)
		rise := ms(r.MinLatencyRise.Microseconds())
		if s.P99 > r.LatencyFactor*base && s.P99-base >= rise {
			reasons = append(reasons, fmt.Sprintf("p99 %.3gms is over %.3gx the median earlier p99 %.3gms", s.P99, r.LatencyFactor, base))
		}
	}
	s.Degraded = len(reasons) > 0
	s.Reason = strings.Join(reasons, "; ")
	if s.Degraded && float64(s.Late) > keptUpShare*float64(max(s.Requests, 1)) {
		s.Reason += fmt.Sprintf("; but %d requests of this step left late, so the generator may be the bottleneck", s.Late)
	}
}

// median returns the median of vs (which it sorts); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// consecutiveDegraded counts the degraded steps at the end of steps.
func consecutiveDegraded(steps []Step) int {
	n := 0
	for i := len(steps) - 1; i >= 0 && steps[i].Degraded; i-- {
		n++
	}
	return n
}

// findPoints sets the degradation point — the first step of the first run
// of confirmSteps degraded steps, or of a degraded run reaching the last
// step — and the highest rate whose step met the SLO. That rate is only a
// lower bound when no step above it was run and seen to fail: the ramp was
// interrupted, or its last step still met the SLO.
func (r *Result) findPoints(slo SLO, ramp *Ramp, interrupted bool) {
	run := 0
	for i, s := range r.Steps {
		if !s.Degraded {
			run = 0
			continue
		}
		run++
		if run >= confirmSteps || i == len(r.Steps)-1 {
			first := r.Steps[i-run+1]
			rate := first.OfferedRate
			r.DegradationRate = &rate
			r.DegradationReason = first.Reason
			break
		}
	}
	if len(slo.Terms) == 0 {
		return
	}
	for _, s := range r.Steps {
		if s.SLOMet != nil && *s.SLOMet && (r.MaxRateWithinSLO == nil || s.OfferedRate > *r.MaxRateWithinSLO) {
			rate := s.OfferedRate
			r.MaxRateWithinSLO = &rate
		}
	}
	if r.MaxRateWithinSLO == nil || len(r.Steps) == 0 {
		return
	}
	last := r.Steps[len(r.Steps)-1]
	lastMet := last.SLOMet != nil && *last.SLOMet
	switch {
	case interrupted:
		r.MaxRateWithinSLOIsLowerBound = true
		r.LowerBoundReason = fmt.Sprintf("the ramp was interrupted after %d steps", len(r.Steps))
	case lastMet && ramp != nil && last.OfferedRate >= ramp.End*(1-1e-9):
		r.MaxRateWithinSLOIsLowerBound = true
		r.LowerBoundReason = fmt.Sprintf("the ramp reached its end rate %.6g req/s with the SLO met; raise END to search higher", ramp.End)
	case lastMet:
		r.MaxRateWithinSLOIsLowerBound = true
		r.LowerBoundReason = fmt.Sprintf("the ramp stopped at %.6g req/s with the SLO met", last.OfferedRate)
	}
}

// evaluate checks the SLO against a corrected-latency histogram and the
// success and failure counts; failures describes each violated term.
func (s SLO) evaluate(h *hdrhistogram.Histogram, ok, failed int64) (bool, []string) {
	var failures []string
	total := ok + failed
	for _, t := range s.Terms {
		var got float64
		var bound float64
		switch t.Metric {
		case MetricLatency:
			v := h.ValueAtQuantile(t.Percentile)
			if t.Percentile >= 100 {
				v = maxOf(h)
			}
			got, bound = float64(v), float64(t.Latency.Microseconds())
			if h.TotalCount() == 0 {
				failures = append(failures, fmt.Sprintf("%s: no responses", t))
				continue
			}
		case MetricErrors:
			bound = t.Percent
			if total > 0 {
				got = 100 * float64(failed) / float64(total)
			}
		case MetricAvailability:
			bound = t.Percent
			if total > 0 {
				got = 100 * float64(ok) / float64(total)
			}
		}
		var met bool
		switch t.Op {
		case "<":
			met = got < bound
		case "<=":
			met = got <= bound
		case ">":
			met = got > bound
		case ">=":
			met = got >= bound
		}
		if !met {
			shown := strconv.FormatFloat(got, 'f', 3, 64) + "%"
			if t.Metric == MetricLatency {
				shown = strconv.FormatFloat(got/1000, 'f', 3, 64) + "ms"
			}
			failures = append(failures, fmt.Sprintf("%s: measured %s", t, shown))
		}
	}
	return len(failures) == 0, failures
}

// weightedSchedule returns target indexes in smooth weighted round-robin
// order over one period (sum of the weights divided by their gcd).
func weightedSchedule(targets []Target) []int {
	ws := make([]int, len(targets))
	g := 0
	for i, t := range targets {
		ws[i] = max(t.Weight, 1)
		g = gcd(g, ws[i])
	}
	sum := 0
	for i := range ws {
		ws[i] /= g
		sum += ws[i]
	}
	cur := make([]int, len(ws))
	out := make([]int, 0, sum)
	for range sum {
		best := 0
		for i := range ws {
			cur[i] += ws[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		out = append(out, best)
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func ms(us int64) float64 { return round(float64(us)/1000, 3) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
