package load

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what a run measured. Latencies are in milliseconds; rates in
// requests per second; shares (availability, error_rate) in percent.
type Result struct {
	Targets     []string `json:"targets"`
	Connections int      `json:"connections"`
	// OfferedRate is the constant rate, or for a ramp the last step's rate.
	OfferedRate float64 `json:"offered_rate"`
	// Duration is the wall time of the whole run in seconds.
	Duration float64 `json:"duration_s"`
	// Throughput is successful responses per second: completions inside a
	// window as long as the run (each ramp step), shifted by the median
	// latency, per second, times the share of successes.
	Throughput float64 `json:"throughput"`
	// Planned is how many requests the schedule called for.
	Planned int64 `json:"planned"`
	// Requests is how many were sent and finished, successfully or not.
	Requests  int64 `json:"requests"`
	Successes int64 `json:"successes"`
	// Errors counts failed requests: transport failures and statuses >= 400.
	Errors int64 `json:"errors"`
	// Availability is the share of successful requests, in percent.
	Availability float64 `json:"availability"`
	ErrorRate    float64 `json:"error_rate"`
	// Latency is the corrected latency: from the intended send time to the
	// end of the response, over every complete response.
	Latency Percentiles `json:"latency_ms"`
	// Uncorrected is the service time: from the actual send to the end of
	// the response (what a closed-loop tool reports).
	Uncorrected Percentiles `json:"uncorrected_latency_ms"`
	// SendLag is how late requests left compared with their intended time:
	// the generator's own timing error.
	SendLag        Percentiles      `json:"send_lag_ms"`
	StatusCodes    map[string]int64 `json:"status_codes"`
	ErrorsByStatus map[string]int64 `json:"errors_by_status"`
	ErrorsByKind   map[string]int64 `json:"errors_by_kind"`
	// ErrorSamples holds, for each kind in ErrorsByKind, the message of
	// one failed request of that kind.
	ErrorSamples map[string]string `json:"error_samples"`
	Generator    GeneratorHealth   `json:"generator"`

	SLO         string   `json:"slo,omitempty"`
	SLOMet      *bool    `json:"slo_met,omitempty"`
	SLOFailures []string `json:"slo_failures,omitempty"`

	// Steps, MaxRateWithinSLO and DegradationRate are set by a ramp; the two
	// rates are null when not found.
	Steps            []Step   `json:"steps,omitempty"`
	MaxRateWithinSLO *float64 `json:"max_rate_within_slo"`
	// MaxRateWithinSLOIsLowerBound is set when no step above
	// MaxRateWithinSLO was run to the end and seen to fail: the ramp
	// reached its end rate, or was interrupted, with the SLO still met. The
	// service may meet its SLO at higher rates; LowerBoundReason says why.
	MaxRateWithinSLOIsLowerBound bool     `json:"max_rate_within_slo_is_lower_bound,omitempty"`
	LowerBoundReason             string   `json:"lower_bound_reason,omitempty"`
	DegradationRate              *float64 `json:"degradation_rate"`
	DegradationReason            string   `json:"degradation_reason,omitempty"`
	StoppedEarly                 bool     `json:"stopped_early,omitempty"`

	// Timeline has one entry per Config.Interval.
	Timeline    []Interval `json:"timeline"`
	Interrupted bool       `json:"interrupted"`

	// CorrectedHistogram and UncorrectedHistogram hold every latency in
	// microseconds, for charts and percentile files.
	CorrectedHistogram   *hdrhistogram.Histogram `json:"-"`
	UncorrectedHistogram *hdrhistogram.Histogram `json:"-"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	P9999 float64 `json:"p9999"`
	Max   float64 `json:"max"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	return Percentiles{
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		P9999: ms(h.ValueAtQuantile(99.99)),
		Max:   ms(maxOf(h)),
	}
}

// GeneratorHealth says whether the generator itself kept the schedule.
type GeneratorHealth struct {
	// KeptUp is false when more than 0.1% of the planned requests left more
	// than MaxLagMs late or were never sent: the offered rate was not
	// really offered.
	KeptUp bool `json:"kept_up"`
	// LateSends counts requests that left more than MaxLagMs late.
	LateSends int64 `json:"late_sends"`
	// LateNoConnection: late because every connection was busy.
	LateNoConnection int64 `json:"late_no_connection"`
	// LateCPU: a connection was free but the generator ran late (CPU).
	LateCPU int64 `json:"late_cpu"`
	// Unsent counts slots dropped because the run's end plus the timeout
	// passed before a connection was free for them.
	Unsent      int64   `json:"unsent"`
	MaxLagMs    float64 `json:"max_lag_ms"`
	MaxInFlight int64   `json:"max_in_flight"`
}

// Step is one ramp step.
type Step struct {
	OfferedRate float64 `json:"offered_rate"`
	Throughput  float64 `json:"throughput"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	ErrorRate   float64 `json:"error_rate"`
	P50         float64 `json:"p50_ms"`
	P90         float64 `json:"p90_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	// Late counts late and unsent requests of the step.
	Late        int64    `json:"late"`
	SLOMet      *bool    `json:"slo_met,omitempty"`
	SLOFailures []string `json:"slo_failures,omitempty"`
	Degraded    bool     `json:"degraded"`
	Reason      string   `json:"reason,omitempty"`
}

// Interval is one slice of the timeline.
type Interval struct {
	// Time is the end of the interval in seconds since the run started.
	Time        float64 `json:"t_s"`
	OfferedRate float64 `json:"offered_rate"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	Throughput  float64 `json:"throughput"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
}

// Progress is the live state passed to Config.Progress.
type Progress struct {
	Elapsed     time.Duration
	OfferedRate float64
	// Throughput is successful responses per second in the last interval.
	Throughput float64
	// P99 is the corrected p99 of the run so far.
	P99      time.Duration
	Requests int64
	Errors   int64
	// Late counts requests that left late or not at all so far.
	Late int64
	// Interval is the interval that just ended (as the timeline has it).
	Interval Interval
	// Latencies holds the corrected latencies (microseconds) of the
	// responses completed in that interval. It is valid only during the
	// call: merge it into a histogram of one's own to keep it.
	Latencies *hdrhistogram.Histogram
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHDR writes the corrected latency distribution in the HdrHistogram
// percentile plot format (values in milliseconds), as wrk2 prints it and
// the HdrHistogram plotter reads it.
func (r *Result) WriteHDR(w io.Writer) error {
	_, err := r.CorrectedHistogram.PercentilesPrint(w, 5, 1000)
	return err
}

// Warnings returns the loud messages a run deserves: a generator that did
// not keep up, or an interrupted run.
func (r *Result) Warnings() []string {
	var out []string
	g := r.Generator
	if !g.KeptUp {
		var why []string
		if g.LateNoConnection > 0 {
			why = append(why, fmt.Sprintf("%d waited for a free connection (all %d busy; raise --connections)", g.LateNoConnection, r.Connections))
		}
		if g.LateCPU > 0 {
			why = append(why, fmt.Sprintf("%d left late with a connection free (generator short of CPU)", g.LateCPU))
		}
		if g.Unsent > 0 {
			why = append(why, fmt.Sprintf("%d were never sent", g.Unsent))
		}
		out = append(out, fmt.Sprintf("WARNING: the generator did not keep the offered rate: %d of %d requests left more than %gms late or not at all: %s. Latencies still run from the intended send times, but the offered load was not fully applied.",
			g.LateSends+g.Unsent, r.Planned, g.MaxLagMs, strings.Join(why, "; ")))
	}
	if r.Interrupted {
		out = append(out, "WARNING: run interrupted; the numbers cover only the part that ran.")
	}
	return out
}

// WriteSummary writes a human-readable report of r.
func (r *Result) WriteSummary(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "Targets: %s\n", strings.Join(r.Targets, ", "))
	if len(r.Steps) == 0 {
		fmt.Fprintf(b, "Offered %.6g req/s for %.2fs over %d connections\n", r.OfferedRate, r.Duration, r.Connections)
	} else {
		fmt.Fprintf(b, "Ramp of %d steps over %d connections, %.2fs\n", len(r.Steps), r.Connections, r.Duration)
	}
	fmt.Fprintf(b, "\n")
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  Latency ms\tcorrected\tuncorrected\t\n")
	fmt.Fprintf(tw, "  \t(from intended send)\t(from actual send)\t\n")
	rows := []struct {
		name string
		c, u float64
	}{
		{"p50", r.Latency.P50, r.Uncorrected.P50},
		{"p90", r.Latency.P90, r.Uncorrected.P90},
		{"p99", r.Latency.P99, r.Uncorrected.P99},
		{"p99.9", r.Latency.P999, r.Uncorrected.P999},
		{"p99.99", r.Latency.P9999, r.Uncorrected.P9999},
		{"max", r.Latency.Max, r.Uncorrected.Max},
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "  %s\t%.3f\t%.3f\t\n", row.name, row.c, row.u)
	}
	tw.Flush()
	fmt.Fprintf(b, "\nRequests    %d completed of %d planned, %d ok, %d failed\n", r.Requests, r.Planned, r.Successes, r.Errors)
	fmt.Fprintf(b, "Throughput  %.1f req/s successful (offered %.6g)\n", r.Throughput, r.OfferedRate)
	fmt.Fprintf(b, "Availability %.3f%%\n", r.Availability)
	if r.Errors > 0 {
		if len(r.ErrorsByStatus) > 0 {
			fmt.Fprintf(b, "  errors by status: %s\n", formatCounts(r.ErrorsByStatus))
		}
		if len(r.ErrorsByKind) > 0 {
			fmt.Fprintf(b, "  errors by kind: %s\n", formatCounts(r.ErrorsByKind))
			for _, k := range sortedKeys(r.ErrorsByKind) {
				if msg := r.ErrorSamples[k]; msg != "" {
					fmt.Fprintf(b, "    %s: %s\n", k, msg)
				}
			}
		}
	}
	fmt.Fprintf(b, "Generator   send lag p99 %.3fms, max %.3fms; %d late, %d unsent; max %d in flight\n",
		r.SendLag.P99, r.SendLag.Max, r.Generator.LateSends, r.Generator.Unsent, r.Generator.MaxInFlight)
	if r.SLOMet != nil {
		if *r.SLOMet {
			fmt.Fprintf(b, "SLO         %s: met\n", r.SLO)
		} else {
			fmt.Fprintf(b, "SLO         %s: VIOLATED (%s)\n", r.SLO, strings.Join(r.SLOFailures, "; "))
		}
	}
	if len(r.Steps) > 0 {
		writeSteps(b, r)
	}
	for _, warn := range r.Warnings() {
		fmt.Fprintf(b, "\n%s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSteps(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "\nRamp steps\n")
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  offered/s\tthroughput/s\tp50 ms\tp99 ms\terrors %%\tlate\tSLO\t\n")
	for _, s := range r.Steps {
		slo := "-"
		if s.SLOMet != nil {
			slo = map[bool]string{true: "ok", false: "FAIL"}[*s.SLOMet]
		}
		mark := ""
		if s.Degraded {
			mark = "  degraded"
		}
		fmt.Fprintf(tw, "  %.6g\t%.1f\t%.3f\t%.3f\t%.3f\t%d\t%s\t%s\n", s.OfferedRate, s.Throughput, s.P50, s.P99, s.ErrorRate, s.Late, slo, mark)
	}
	tw.Flush()
	if r.SLO != "" {
		switch {
		case r.MaxRateWithinSLO == nil:
			fmt.Fprintf(b, "Highest rate within SLO: none of the steps met it\n")
		case r.MaxRateWithinSLOIsLowerBound:
			fmt.Fprintf(b, "Highest rate within SLO: at least %.6g req/s (a lower bound: %s)\n", *r.MaxRateWithinSLO, r.LowerBoundReason)
		default:
			fmt.Fprintf(b, "Highest rate within SLO: %.6g req/s\n", *r.MaxRateWithinSLO)
		}
	}
	switch {
	case r.DegradationRate != nil:
		fmt.Fprintf(b, "Degradation point: %.6g req/s (%s)\n", *r.DegradationRate, r.DegradationReason)
	case r.Interrupted:
		fmt.Fprintf(b, "Degradation point: not reached before the ramp was interrupted\n")
	default:
		fmt.Fprintf(b, "Degradation point: not reached up to %.6g req/s\n", r.Steps[len(r.Steps)-1].OfferedRate)
	}
	if r.StoppedEarly {
		fmt.Fprintf(b, "Stopped early: %d consecutive degraded steps\n", confirmSteps)
	}
}

// ErrorKindsSummary describes the failures in one line: the count of each
// kind and the sample message of the most frequent one.
func (r *Result) ErrorKindsSummary() string {
	if len(r.ErrorsByKind) == 0 {
		return "no errors"
	}
	top := ""
	for _, k := range sortedKeys(r.ErrorsByKind) {
		if top == "" || r.ErrorsByKind[k] > r.ErrorsByKind[top] {
			top = k
		}
	}
	s := formatCounts(r.ErrorsByKind)
	if msg := r.ErrorSamples[top]; msg != "" {
		s += "; " + top + ": " + msg
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func formatCounts(m map[string]int64) string {
	keys := sortedKeys(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
