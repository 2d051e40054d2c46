// Package load is an open-model HTTP load generator: it sends requests at a
// fixed arrival rate whatever the service does, times every request from its
// intended send time (no coordinated omission), and finds the degradation
// point of a service by stepping the rate.
package load

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults applied by Config.setDefaults (and documented on each field).
const (
	DefaultDuration         = 10 * time.Second
	DefaultConnections      = 256
	DefaultTimeout          = 10 * time.Second
	DefaultMaxLag           = 10 * time.Millisecond
	DefaultInterval         = time.Second
	DefaultLatencyFactor    = 2.0
	DefaultMinLatencyRise   = 2 * time.Millisecond
	DefaultThroughputFactor = 0.9
	DefaultMaxErrorRate     = 1.0 // percent
	DefaultStepDuration     = 10 * time.Second

	// maxRate bounds the offered rate to something one process can schedule.
	maxRate = 10_000_000
	// maxConnections bounds the number of connections (one goroutine each).
	maxConnections = 100_000
	// maxWeight bounds a target's weight so the weighted schedule stays small.
	maxWeight = 1000
)

// Config describes one load run. The zero value of every optional field
// selects its documented default. A Config is read, never modified, by Run.
type Config struct {
	// Targets are the requests to send; at least one. With several, slot i of
	// the schedule goes to the targets in smooth weighted round-robin order.
	Targets []Target

	// Rate is the offered arrival rate in requests per second for a
	// constant-rate run. Required (> 0) unless Ramp is set, when it is ignored.
	Rate float64

	// Duration of a constant-rate run. Default 10s. Ignored with Ramp.
	Duration time.Duration

	// Ramp, when non-nil, steps the offered rate instead of holding Rate and
	// searches for the degradation point.
	Ramp *Ramp

	// SLO, when non-empty, is evaluated on the run (and on every ramp step).
	SLO SLO

	// Connections is the number of keep-alive connections (per target host),
	// each carrying one request at a time. Requests whose slot arrives while
	// every connection is busy wait for one and are counted as late: their
	// latency still runs from the intended send time. Default 256.
	Connections int

	// Timeout bounds one request: connecting, writing and reading the whole
	// response. Default 10s. A run stops issuing requests Timeout after its
	// scheduled end; slots still unsent then are counted as Unsent.
	Timeout time.Duration

	// MaxLag is how far behind its intended send time a request may leave
	// before the generator counts it as late (it could not keep the rate).
	// Default 10ms.
	MaxLag time.Duration

	// Interval is the resolution of the timeline and of Progress reports.
	// Default 1s.
	Interval time.Duration

	// InsecureSkipVerify disables TLS certificate checks for https targets.
	InsecureSkipVerify bool

	// Progress, when non-nil, is called once per Interval from a single
	// goroutine with the latest window's numbers. It must return quickly.
	Progress func(Progress)
}

// Target is one request template.
type Target struct {
	// URL is an absolute http:// or https:// URL.
	URL string
	// Method is the HTTP method; default GET.
	Method string
	// Header holds extra request header lines as name/value pairs in order.
	// A Host field replaces the URL's host in the Host header; Content-Length,
	// Transfer-Encoding and Connection are managed by the generator and
	// rejected.
	Header []HeaderField
	// Body is sent with every request (Content-Length set accordingly).
	Body []byte
	// Weight is the target's share of the schedule relative to the others;
	// 0 means 1, at most 1000.
	Weight int
}

// HeaderField is one request header line.
type HeaderField struct {
	Name, Value string
}

// Ramp steps the offered rate from Start to End (inclusive) by Step, holding
// each rate for StepDuration.
type Ramp struct {
	// Start, End and Step are rates in requests per second; 0 < Start <= End,
	// Step > 0.
	Start, End, Step float64
	// StepDuration is how long each rate is held. Default 10s.
	StepDuration time.Duration
	// LatencyFactor: without an SLO, a step is degraded when its p99
	// exceeds LatencyFactor times the median p99 of the earlier steps (and
	// by at least MinLatencyRise). With an SLO, the SLO decides instead.
	// Default 2.
	LatencyFactor float64
	// MinLatencyRise is the smallest p99 rise that counts as degradation, so
	// that sub-millisecond noise does not. Default 2ms.
	MinLatencyRise time.Duration
	// ThroughputFactor: a step is degraded when its throughput is below
	// ThroughputFactor times the offered rate. Default 0.9.
	ThroughputFactor float64
	// MaxErrorRate: a step is degraded when more than this percentage of
	// its requests failed, unless the SLO has an errors or availability
	// term (which then decides). Default 1 (%).
	MaxErrorRate float64
}

// Rates returns the offered rates of the ramp's steps.
func (r *Ramp) Rates() []float64 {
	var out []float64
	for i := 0; ; i++ {
		v := r.Start + float64(i)*r.Step
		if v > r.End*(1+1e-9) || i > maxRampSteps {
			return out
		}
		out = append(out, v)
	}
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.Duration == 0 {
		d.Duration = DefaultDuration
	}
	if d.Connections == 0 {
		d.Connections = DefaultConnections
	}
	if d.Timeout == 0 {
		d.Timeout = DefaultTimeout
	}
	if d.MaxLag == 0 {
		d.MaxLag = DefaultMaxLag
	}
	if d.Interval == 0 {
		d.Interval = DefaultInterval
	}
	if d.Ramp != nil {
		r := *d.Ramp
		if r.StepDuration == 0 {
			r.StepDuration = DefaultStepDuration
		}
		if r.LatencyFactor == 0 {
			r.LatencyFactor = DefaultLatencyFactor
		}
		if r.MinLatencyRise == 0 {
			r.MinLatencyRise = DefaultMinLatencyRise
		}
		if r.ThroughputFactor == 0 {
			r.ThroughputFactor = DefaultThroughputFactor
		}
		if r.MaxErrorRate == 0 {
			r.MaxErrorRate = DefaultMaxErrorRate
		}
		d.Ramp = &r
	}
	return d
}

// Validate reports every problem with the configuration at once (joined
// with errors.Join); zero values that have defaults are accepted. It does
// not modify c.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Targets) == 0 {
		add("targets: at least one URL is required")
	}
	for i, t := range c.Targets {
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Errorf("target %d: %w", i+1, err))
		}
	}
	if c.Ramp == nil {
		if !(c.Rate > 0) || c.Rate > maxRate {
			add("rate: '%g': must be > 0 and <= %d requests per second", c.Rate, maxRate)
		}
		if c.Duration < 0 {
			add("duration: '%s': must be positive", c.Duration)
		}
	} else if err := c.Ramp.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Connections < 0 || c.Connections > maxConnections {
		add("connections: '%d': must be between 1 and %d", c.Connections, maxConnections)
	}
	if c.Timeout < 0 {
		add("timeout: '%s': must be positive", c.Timeout)
	}
	if c.MaxLag < 0 {
		add("max lag: '%s': must be positive", c.MaxLag)
	}
	if c.Interval < 0 || (c.Interval > 0 && c.Interval < 10*time.Millisecond) {
		add("interval: '%s': must be at least 10ms", c.Interval)
	}
	for _, t := range c.SLO.Terms {
		if err := t.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Ramp) validate() error {
	var errs []error
	if err := checkRamp(r.Start, r.End, r.Step); err != nil {
		errs = append(errs, err)
	}
	if r.StepDuration < 0 {
		errs = append(errs, fmt.Errorf("ramp step duration: '%s': must be positive", r.StepDuration))
	}
	if r.LatencyFactor < 0 || (r.LatencyFactor > 0 && r.LatencyFactor <= 1) {
		errs = append(errs, fmt.Errorf("ramp latency factor: '%g': must be > 1", r.LatencyFactor))
	}
	if r.MinLatencyRise < 0 {
		errs = append(errs, fmt.Errorf("ramp minimum latency rise: '%s': must be positive", r.MinLatencyRise))
	}
	if !(r.MaxErrorRate >= 0 && r.MaxErrorRate <= 100) {
		errs = append(errs, fmt.Errorf("ramp maximum error rate: '%g': must be a percentage in [0, 100]", r.MaxErrorRate))
	}
	if r.ThroughputFactor < 0 || r.ThroughputFactor > 1 {
		errs = append(errs, fmt.Errorf("ramp throughput factor: '%g': must be in (0, 1]", r.ThroughputFactor))
	}
	return errors.Join(errs...)
}

func (t *Target) validate() error {
	var errs []error
	u, err := url.Parse(t.URL)
	switch {
	case !strings.Contains(t.URL, "://") && t.URL != "":
		// "127.0.0.1:8080/x" does not parse, "localhost:8080" parses
		// with the scheme "localhost": say what is missing.
		errs = append(errs, fmt.Errorf("URL: '%s': want an http:// or https:// URL: did you mean http://%s?", t.URL, strings.TrimPrefix(t.URL, "//")))
	case err != nil:
		errs = append(errs, fmt.Errorf("parsing URL: '%s': %w", t.URL, err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("URL: '%s': scheme must be http or https", t.URL))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("URL: '%s': no host", t.URL))
	}
	if t.Method != "" && !httpguts.ValidHeaderFieldName(t.Method) {
		errs = append(errs, fmt.Errorf("method: '%s': not a valid HTTP method token", t.Method))
	}
	for _, h := range t.Header {
		if err := h.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if t.Weight < 0 || t.Weight > maxWeight {
		errs = append(errs, fmt.Errorf("weight: '%d': must be between 1 and %d", t.Weight, maxWeight))
	}
	return errors.Join(errs...)
}

func (h HeaderField) validate() error {
	if !httpguts.ValidHeaderFieldName(h.Name) {
		return fmt.Errorf("header: '%s': invalid field name", h.Name)
	}
	switch strings.ToLower(h.Name) {
	case "content-length", "transfer-encoding", "connection":
		return fmt.Errorf("header: '%s': managed by the generator, cannot be set", h.Name)
	}
	if strings.ContainsAny(h.Value, "\r\n\x00") {
		return fmt.Errorf("header: '%s': value contains a line break or NUL", h.Name)
	}
	return nil
}
