package slo

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// MetricNames name the request metrics the Prometheus rules read: the
// gateway's own (see proxy.NewMetrics), so the rules compute from a
// scrape of the gateway what the engine computes in process.
type MetricNames struct {
	// Requests is a counter of answered requests with route, upstream and
	// status code labels (switchyard_requests_total).
	Requests string
	// Duration is a histogram of request durations in seconds with route
	// and upstream labels (switchyard_request_duration_seconds).
	Duration string
	// RouteLabel, UpstreamLabel and CodeLabel are the label names.
	RouteLabel, UpstreamLabel, CodeLabel string
	// Buckets are Duration's upper bounds in seconds: a latency SLO's
	// threshold must be one of them for the rules to count it exactly.
	Buckets []float64
}

// HasBucket reports whether d is one of the histogram's bounds.
func (m MetricNames) HasBucket(d time.Duration) bool {
	_, ok := m.bucketLabel(d)
	return ok
}

// BucketList lists the bounds as durations ("500µs, 1ms, ...").
func (m MetricNames) BucketList() string {
	var out []string
	for _, b := range m.Buckets {
		out = append(out, time.Duration(math.Round(b*1e9)).String())
	}
	return strings.Join(out, ", ")
}

// bucketLabel returns the le label value of the bound equal to d, as the
// Prometheus client writes it.
func (m MetricNames) bucketLabel(d time.Duration) (string, bool) {
	for _, b := range m.Buckets {
		if time.Duration(math.Round(b*1e9)) == d {
			return strconv.FormatFloat(b, 'g', -1, 64), true
		}
	}
	return "", false
}

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is a group of rules evaluated together.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is a recording rule (Record set) or an alerting rule (Alert set).
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// RecordPrefix begins the names of the recording rules.
const RecordPrefix = "switchyard_slo:"

// Rules returns the Prometheus recording and alerting rules equivalent to
// the SLOs (valid configs), in the manner of Sloth and Pyrra: per SLO, a
// group recording the error ratio over each alert window and the SLO
// window (switchyard_slo:sli_error:ratio_rate<window>), the objective and
// the budget remaining, and one alert per burn-rate alert that fires when
// both its windows' error ratios reach burn_rate * (1 - objective).
func Rules(cfgs []Config, m MetricNames) (*RuleFile, error) {
	f := &RuleFile{Groups: []RuleGroup{}}
	var errs []error
	for i := range cfgs {
		g, err := rulesFor(&cfgs[i], m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.Groups = append(f.Groups, g)
	}
	return f, errors.Join(errs...)
}

// Marshal writes the rule file as YAML.
func (f *RuleFile) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func rulesFor(c *Config, m MetricNames) (RuleGroup, error) {
	g := RuleGroup{Name: "switchyard-slo-" + c.Name}
	sel := m.RouteLabel + "=" + promString(c.Route)
	if c.Upstream != "" {
		sel = m.UpstreamLabel + "=" + promString(c.Upstream)
	}
	var errRatio func(w string) string
	if c.EffectiveKind() == Latency {
		le, ok := m.bucketLabel(c.Threshold)
		if !ok {
			return g, fmt.Errorf("slo %q: threshold %s is not a bucket bound of %s: expected one of %s",
				c.Name, c.Threshold, m.Duration, m.BucketList())
		}
		errRatio = func(w string) string {
			total := fmt.Sprintf("sum(rate(%s_count{%s}[%s]))", m.Duration, sel, w)
			return fmt.Sprintf("(\n  %s\n  -\n  sum(rate(%s_bucket{%s,le=%s}[%s]))\n)\n/\n%s",
				total, m.Duration, sel, promString(le), w, total)
		}
	} else {
		bad, err := ParseStatuses(c.EffectiveErrors())
		if err != nil {
			return g, fmt.Errorf("slo %q: %w", c.Name, err)
		}
		errRatio = func(w string) string {
			return fmt.Sprintf("(\n  sum(rate(%s{%s,%s=~%s}[%s]))\n  or\n  vector(0)\n)\n/\nsum(rate(%s{%s}[%s]))",
				m.Requests, sel, m.CodeLabel, promString(bad.Regexp()), w, m.Requests, sel, w)
		}
	}
	labels := map[string]string{"slo": c.Name}
	window := promDuration(c.EffectiveWindow())
	var windows []string
	seen := map[string]bool{}
	addWindow := func(d time.Duration) {
		w := promDuration(d)
		if !seen[w] {
			seen[w] = true
			windows = append(windows, w)
		}
	}
	alerts := c.EffectiveAlerts()
	for _, a := range alerts {
		addWindow(time.Duration(a.ShortWindow))
		addWindow(time.Duration(a.LongWindow))
	}
	addWindow(c.EffectiveWindow())
	for _, w := range windows {
		g.Rules = append(g.Rules, Rule{Record: RecordPrefix + "sli_error:ratio_rate" + w, Expr: errRatio(w), Labels: labels})
	}
	obj := strconv.FormatFloat(float64(c.Objective), 'g', -1, 64)
	me := promString(c.Name)
	g.Rules = append(g.Rules,
		Rule{Record: RecordPrefix + "objective:ratio", Expr: "vector(" + obj + ")", Labels: labels},
		Rule{Record: RecordPrefix + "error_budget_remaining:ratio",
			Expr:   fmt.Sprintf("1 - %ssli_error:ratio_rate%s{slo=%s} / (1 - %s)", RecordPrefix, window, me, obj),
			Labels: labels})
	target := "route " + c.Route
	if c.Upstream != "" {
		target = "upstream " + c.Upstream
	}
	for _, a := range alerts {
		lw, sw := promDuration(time.Duration(a.LongWindow)), promDuration(time.Duration(a.ShortWindow))
		factor := strconv.FormatFloat(a.BurnRate, 'g', -1, 64)
		limit := fmt.Sprintf("(%s * (1 - %s))", factor, obj)
		g.Rules = append(g.Rules, Rule{
			Alert: alertName(a.Name),
			Expr: fmt.Sprintf("(%ssli_error:ratio_rate%s{slo=%s} >= %s)\nand\n(%ssli_error:ratio_rate%s{slo=%s} >= %s)",
				RecordPrefix, lw, me, limit, RecordPrefix, sw, me, limit),
			Labels: map[string]string{"slo": c.Name, "slo_alert": a.Name, "severity": a.Severity},
			Annotations: map[string]string{
				"summary": fmt.Sprintf("SLO %s (%s of %s, objective %s over %s): error budget burning at %sx or more", c.Name,
					c.EffectiveKind(), target, c.Objective, window, factor),
				"description": fmt.Sprintf("The error ratio of %s is at least %s times the budget (1 - %s) over both %s and %s.",
					target, factor, obj, lw, sw),
			},
		})
	}
	return g, nil
}

// alertName turns "fast-burn" into "SwitchyardSLOFastBurn" (a valid
// Prometheus alert name).
func alertName(name string) string {
	var b strings.Builder
	b.WriteString("SwitchyardSLO")
	up := true
	for _, r := range name {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// promString quotes s as a PromQL string literal.
func promString(s string) string { return strconv.Quote(s) }

// promDuration writes d as a PromQL duration ("5m", "1h30m", "28d");
// below a millisecond it rounds up to one.
func promDuration(d time.Duration) string {
	if d < time.Millisecond {
		return "1ms"
	}
	var b strings.Builder
	for _, u := range []struct {
		s string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.s)
			d -= n * u.d
		}
	}
	return b.String()
}
