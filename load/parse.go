package load

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxRampSteps bounds the number of steps a ramp may have.
const maxRampSteps = 1000

// SLO is a set of terms that must all hold for a run (or ramp step) to be
// acceptable, e.g. "p99<100ms,errors<1%". The zero SLO has no terms and is
// always met.
type SLO struct {
	Terms []SLOTerm
}

// SLOMetric names what an SLO term bounds.
type SLOMetric string

// The metrics an SLO term can bound.
const (
	// MetricLatency bounds the corrected latency at Percentile ("p99",
	// "p99.9", "max" = p100).
	MetricLatency SLOMetric = "latency"
	// MetricErrors bounds the share of failed requests, in percent.
	MetricErrors SLOMetric = "errors"
	// MetricAvailability bounds the share of successful requests from
	// below, in percent.
	MetricAvailability SLOMetric = "availability"
)

// SLOTerm is one bound, e.g. p99<100ms.
type SLOTerm struct {
	Metric SLOMetric
	// Percentile in (0, 100] for MetricLatency (100 means max).
	Percentile float64
	// Op is one of "<", "<=" (latency, errors) or ">", ">=" (availability).
	Op string
	// Latency is the bound for MetricLatency.
	Latency time.Duration
	// Percent is the bound for MetricErrors and MetricAvailability, 0..100.
	Percent float64
}

// boundsErrors reports whether the SLO has an errors or availability term.
func (s SLO) boundsErrors() bool {
	for _, t := range s.Terms {
		if t.Metric == MetricErrors || t.Metric == MetricAvailability {
			return true
		}
	}
	return false
}

// String formats the SLO in the syntax ParseSLO reads.
func (s SLO) String() string {
	parts := make([]string, len(s.Terms))
	for i, t := range s.Terms {
		parts[i] = t.String()
	}
	return strings.Join(parts, ",")
}

// String formats the term in the syntax ParseSLO reads.
func (t SLOTerm) String() string {
	switch t.Metric {
	case MetricLatency:
		name := "max"
		if t.Percentile < 100 {
			name = "p" + strconv.FormatFloat(t.Percentile, 'f', -1, 64)
		}
		return name + t.Op + t.Latency.String()
	default:
		return string(t.Metric) + t.Op + strconv.FormatFloat(t.Percent, 'f', -1, 64) + "%"
	}
}

func (t SLOTerm) validate() error {
	switch t.Metric {
	case MetricLatency:
		if !(t.Percentile > 0 && t.Percentile <= 100) {
			return fmt.Errorf("slo term '%s': percentile must be in (0, 100]", t)
		}
		if t.Op != "<" && t.Op != "<=" {
			return fmt.Errorf("slo term '%s': latency bounds take < or <=", t)
		}
		if t.Latency <= 0 {
			return fmt.Errorf("slo term '%s': latency bound must be positive", t)
		}
	case MetricErrors, MetricAvailability:
		want := "<"
		if t.Metric == MetricAvailability {
			want = ">"
		}
		if t.Op != want && t.Op != want+"=" {
			return fmt.Errorf("slo term '%s': %s bounds take %s or %s=", t, t.Metric, want, want)
		}
		if !(t.Percent >= 0 && t.Percent <= 100) {
			return fmt.Errorf("slo term '%s': percentage must be in [0, 100]", t)
		}
	default:
		return fmt.Errorf("slo term: unknown metric '%s'", t.Metric)
	}
	return nil
}

// ParseSLO parses a comma-separated list of terms:
//
//	pNN<DUR  pNN<=DUR  max<DUR      corrected latency at percentile NN (e.g. p99, p99.9)
//	errors<X%  errors<=X%           share of failed requests
//	availability>X%  availability>=X%
//
// DUR is a Go duration ("100ms", "1.5s"). Spaces around terms are allowed.
// The empty string yields the empty SLO.
func ParseSLO(s string) (SLO, error) {
	var slo SLO
	if strings.TrimSpace(s) == "" {
		return slo, nil
	}
	for _, raw := range strings.Split(s, ",") {
		term, err := parseSLOTerm(strings.TrimSpace(raw))
		if err != nil {
			return SLO{}, err
		}
		slo.Terms = append(slo.Terms, term)
	}
	return slo, nil
}

func parseSLOTerm(s string) (SLOTerm, error) {
	i := strings.IndexAny(s, "<>")
	if i <= 0 {
		return SLOTerm{}, fmt.Errorf("parsing slo term '%s': want NAME<VALUE, e.g. p99<100ms or errors<1%%", s)
	}
	name := strings.ToLower(strings.TrimSpace(s[:i]))
	op, rest := s[i:i+1], s[i+1:]
	if strings.HasPrefix(rest, "=") {
		op, rest = op+"=", rest[1:]
	}
	rest = strings.TrimSpace(rest)
	var t SLOTerm
	t.Op = op
	switch {
	case name == "errors" || name == "availability":
		t.Metric = SLOMetric(name)
		num, ok := strings.CutSuffix(rest, "%")
		if !ok {
			return SLOTerm{}, fmt.Errorf("parsing slo term '%s': %s bound must be a percentage like 1%%", s, name)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil {
			return SLOTerm{}, fmt.Errorf("parsing slo term '%s': percentage '%s': %w", s, num, err)
		}
		t.Percent = v
	case name == "max" || strings.HasPrefix(name, "p"):
		t.Metric = MetricLatency
		t.Percentile = 100
		if name != "max" {
			v, err := strconv.ParseFloat(name[1:], 64)
			if err != nil {
				return SLOTerm{}, fmt.Errorf("parsing slo term '%s': percentile '%s': %w", s, name, err)
			}
			t.Percentile = v
		}
		d, err := ParseDuration(rest, "ms")
		if err != nil {
			return SLOTerm{}, fmt.Errorf("parsing slo term '%s': latency: %w", s, err)
		}
		t.Latency = d
	default:
		return SLOTerm{}, fmt.Errorf("parsing slo term '%s': unknown metric '%s' (want pNN, max, errors or availability)", s, name)
	}
	if err := t.validate(); err != nil {
		return SLOTerm{}, fmt.Errorf("parsing %w", err)
	}
	return t, nil
}

// ParseRamp parses "START:END:STEP" (rates in requests per second, e.g.
// "100:5000:250") into a Ramp with default step duration and thresholds.
func ParseRamp(s string) (*Ramp, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("parsing ramp '%s': want START:END:STEP, e.g. 100:5000:250", s)
	}
	var v [3]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing ramp '%s': rate '%s': %w", s, p, err)
		}
		v[i] = f
	}
	if err := checkRamp(v[0], v[1], v[2]); err != nil {
		return nil, fmt.Errorf("parsing %w", err)
	}
	return &Ramp{Start: v[0], End: v[1], Step: v[2]}, nil
}

func checkRamp(start, end, step float64) error {
	switch {
	case !(start > 0) || !(end > 0) || start > maxRate || end > maxRate:
		return fmt.Errorf("ramp '%g:%g:%g': rates must be > 0 and <= %d", start, end, step, maxRate)
	case start > end:
		return fmt.Errorf("ramp '%g:%g:%g': start is above end", start, end, step)
	case !(step > 0) || math.IsInf(step, 0):
		return fmt.Errorf("ramp '%g:%g:%g': step must be > 0", start, end, step)
	case (end-start)/step+1 > maxRampSteps:
		return fmt.Errorf("ramp '%g:%g:%g': more than %d steps", start, end, step, maxRampSteps)
	}
	return nil
}

// ParseHeader parses a "Name: value" header line.
func ParseHeader(s string) (HeaderField, error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return HeaderField{}, fmt.Errorf("parsing header '%s': want 'Name: value'", s)
	}
	h := HeaderField{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)}
	if err := h.validate(); err != nil {
		return HeaderField{}, fmt.Errorf("parsing %w", err)
	}
	return h, nil
}

// ErrNoTargets is returned by ParseTargets for input without any target.
var ErrNoTargets = errors.New("no targets")

// ParseTargets reads a targets file: one target per line as "URL [WEIGHT]",
// blank lines and lines starting with '#' ignored. The returned targets
// carry only URL and Weight; callers fill in method, headers and body.
func ParseTargets(r io.Reader) ([]Target, error) {
	var out []Target
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) > 2 {
			return nil, fmt.Errorf("parsing targets line %d: '%s': want 'URL [WEIGHT]'", n, line)
		}
		t := Target{URL: f[0], Weight: 1}
		if len(f) == 2 {
			w, err := strconv.Atoi(f[1])
			if err != nil || w < 1 || w > maxWeight {
				return nil, fmt.Errorf("parsing targets line %d: weight '%s': want an integer from 1 to %d", n, f[1], maxWeight)
			}
			t.Weight = w
		}
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("parsing targets line %d: %w", n, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading targets: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parsing targets: %w", ErrNoTargets)
	}
	return out, nil
}

// durationUnitWords maps spelled-out units people type to Go's units.
var durationUnitWords = map[string]string{
	"sec": "s", "secs": "s", "second": "s", "seconds": "s",
	"min": "m", "mins": "m", "minute": "m", "minutes": "m",
	"msec": "ms", "msecs": "ms", "millis": "ms", "millisecond": "ms", "milliseconds": "ms",
	"hr": "h", "hrs": "h", "hour": "h", "hours": "h",
	"usec": "us", "µsec": "us", "microsecond": "us", "microseconds": "us",
}

// ParseDuration parses a Go duration such as "500ms", "30s", "2m" or
// "1m30s". When s is not one, the error suggests what was probably meant:
// a bare number gets defaultUnit ("10" with "s": did you mean 10s?), and
// spaces or spelled-out units are fixed ("1 sec": did you mean 1s?).
func ParseDuration(s, defaultUnit string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil {
		return d, nil
	}
	const want = "want a Go duration like 500ms, 30s or 2m (units ns, us, ms, s, m, h)"
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration: %s", want)
	}
	if defaultUnit != "" && isDecimal(t) {
		if _, gerr := time.ParseDuration(t + defaultUnit); gerr == nil {
			return 0, fmt.Errorf("duration '%s' has no unit: did you mean %s%s?", s, t, defaultUnit)
		}
	}
	// "1 s", "10 sec", "2 minutes": number, optional spaces, a unit word.
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || t[i] == '-' || t[i] == '+') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if w, ok := durationUnitWords[unit]; ok {
		unit = w
	}
	if guess := num + unit; num != "" && guess != s {
		if _, gerr := time.ParseDuration(guess); gerr == nil {
			return 0, fmt.Errorf("invalid duration '%s': did you mean %s?", s, guess)
		}
	}
	return 0, fmt.Errorf("invalid duration '%s': %s", s, want)
}

// isDecimal reports whether s is a plain decimal number like "10" or "2.5".
func isDecimal(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' || (i == 0 && (c == '-' || c == '+')):
		default:
			return false
		}
	}
	return digits > 0 && strings.Count(s, ".") <= 1
}
