// Package slo computes service level objectives live: availability and
// latency SLIs over a window counted in time buckets, the error budget
// left, burn rates, and the multi-window multi-burn-rate alerts of the
// Google SRE workbook, delivered to webhooks, exported as Prometheus
// metrics and rules, and persisted so that a restart keeps the budget.
package slo

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
)

// Kinds of SLO.
const (
	// Availability is the share of good requests: those whose status is
	// not one of Config.Errors.
	Availability = "availability"
	// Latency is the share of requests answered within Config.Threshold.
	Latency = "latency"
)

// Config is one SLO, as written in the gateway's `slos:` list.
type Config struct {
	// Name identifies the SLO in metrics, alerts and the admin API:
	// letters, digits, '.', '_' and '-'. Required, unique.
	Name string `yaml:"name"`
	// Route is the name of the gateway route whose requests the SLO
	// measures. Exactly one of Route and Upstream is required.
	Route string `yaml:"route"`
	// Upstream is the name of the upstream whose requests (from every
	// route forwarding to it) the SLO measures.
	Upstream string `yaml:"upstream"`
	// Kind is "availability" (default) or "latency".
	Kind string `yaml:"kind"`
	// Objective is the target share of good requests, written "99.9%" or
	// 0.999; above 0 and below 100%. Required.
	Objective Ratio `yaml:"objective"`
	// Window is the SLO's rolling window, written as a Go duration or with
	// days and weeks ("28d", "4w", "1d12h"); 1m to 400d. Default 28d.
	Window Duration `yaml:"window"`
	// Threshold is a latency SLO's bound: a request answered (all
	// attempts, from the gateway's point of view) within it is good.
	// Required for latency SLOs, refused for availability ones.
	Threshold time.Duration `yaml:"threshold"`
	// Errors are the statuses an availability SLO counts as bad: codes
	// ("429"), classes ("5xx") or ranges ("500-503"). Default ["5xx"].
	Errors []string `yaml:"errors"`
	// Alerts are the burn-rate alerts. Default: DefaultAlerts, the SRE
	// workbook's (page at 14.4x over 1h and 5m, page at 6x over 6h and
	// 30m, ticket at 1x over 3d and 6h). When written, they replace the
	// defaults; an empty list turns alerting off.
	Alerts *[]Alert `yaml:"alerts"`
	// Webhooks are URLs that get a JSON POST when an alert fires and when
	// it resolves (retried with backoff; see Event).
	Webhooks []string `yaml:"webhooks"`
}

// Alert is a multi-window burn-rate alert: it fires when the error budget
// burns at least BurnRate times the sustainable rate over both windows,
// and resolves when either window falls below it (the short window makes
// it resolve soon after the errors stop).
type Alert struct {
	// Name identifies the alert within its SLO. Required, unique.
	Name string `yaml:"name"`
	// Severity is passed on to webhooks and metrics: "page" (default) or
	// "ticket" (or another lower-case word).
	Severity string `yaml:"severity"`
	// BurnRate is the factor of the sustainable error rate (1 - objective)
	// at which the alert fires; 1x spends the whole budget in one window.
	// Required, above 0, and BurnRate*(1-objective) at most 1.
	BurnRate float64 `yaml:"burn_rate"`
	// LongWindow is the window the burn rate is measured over. Required;
	// at most the SLO window.
	LongWindow Duration `yaml:"long_window"`
	// ShortWindow is the second, shorter window that must burn as fast,
	// so the alert resolves soon after the burn stops. Required; shorter
	// than LongWindow, at least 1s.
	ShortWindow Duration `yaml:"short_window"`
}

// DefaultWindow is Config.Window's default.
const DefaultWindow = Duration(28 * 24 * time.Hour)

// Bounds of windows.
const (
	MinWindow      = Duration(time.Minute)
	MaxWindow      = Duration(400 * 24 * time.Hour)
	MinAlertWindow = Duration(time.Second)
)

// MaxBuckets bounds the time buckets of one SLO (both rings): at 24
// bytes a bucket, 64 KiB of counters at most (the fine ring widens
// rather than pass maxFine); the defaults use 1,394.
const MaxBuckets = 2730

// DefaultAlerts are the SRE workbook's multi-window multi-burn-rate
// alerts (chapter 5, "Alerting on SLOs", for a 30-day window).
func DefaultAlerts() []Alert {
	return []Alert{
		{Name: "fast-burn", Severity: "page", BurnRate: 14.4, LongWindow: Duration(time.Hour), ShortWindow: Duration(5 * time.Minute)},
		{Name: "medium-burn", Severity: "page", BurnRate: 6, LongWindow: Duration(6 * time.Hour), ShortWindow: Duration(30 * time.Minute)},
		{Name: "slow-burn", Severity: "ticket", BurnRate: 1, LongWindow: Duration(3 * 24 * time.Hour), ShortWindow: Duration(6 * time.Hour)},
	}
}

// EffectiveKind returns Kind or its default.
func (c *Config) EffectiveKind() string {
	if c.Kind == "" {
		return Availability
	}
	return c.Kind
}

// EffectiveWindow returns Window or its default.
func (c *Config) EffectiveWindow() time.Duration {
	if c.Window == 0 {
		return time.Duration(DefaultWindow)
	}
	return time.Duration(c.Window)
}

// EffectiveAlerts returns Alerts with defaults applied.
func (c *Config) EffectiveAlerts() []Alert {
	if c.Alerts == nil {
		return DefaultAlerts()
	}
	out := make([]Alert, len(*c.Alerts))
	copy(out, *c.Alerts)
	for i := range out {
		if out[i].Severity == "" {
			out[i].Severity = "page"
		}
	}
	return out
}

// EffectiveErrors returns the bad statuses of an availability SLO.
func (c *Config) EffectiveErrors() []string {
	if len(c.Errors) == 0 {
		return []string{"5xx"}
	}
	return c.Errors
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
var severityRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// Validate checks the SLO on its own (the gateway checks that its route or
// upstream exists); every problem is a config.FieldError naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, config.Fieldf(path, format, args...)) }
	if c.Name == "" {
		add("name", "missing: expected a name such as api-availability")
	} else if !nameRE.MatchString(c.Name) {
		add("name", "invalid name %q: expected letters, digits, '.', '_' and '-' (up to 128)", c.Name)
	}
	switch {
	case c.Route == "" && c.Upstream == "":
		add("route", "missing: expected route: NAME or upstream: NAME (what the SLO measures)")
	case c.Route != "" && c.Upstream != "":
		add("upstream", "an SLO measures a route or an upstream, not both")
	}
	if c.Objective == 0 {
		add("objective", "missing: expected the target share of good requests, e.g. \"99.9%%\"")
	} else if c.Objective <= 0 || c.Objective >= 1 {
		add("objective", "%s out of range: expected above 0%% and below 100%% (100%% leaves no error budget)", c.Objective)
	}
	w := c.EffectiveWindow()
	if c.Window != 0 && (c.Window < MinWindow || c.Window > MaxWindow) {
		add("window", "%s out of range: expected %s to %s (default 28d)", c.Window, MinWindow, MaxWindow)
	}
	switch c.EffectiveKind() {
	case Availability:
		if c.Threshold != 0 {
			add("threshold", "an availability SLO has no threshold (it is for kind: latency)")
		}
		for i, s := range c.Errors {
			if _, err := ParseStatuses([]string{s}); err != nil {
				add(fmt.Sprintf("errors[%d]", i), "%v", err)
			}
		}
	case Latency:
		if c.Threshold <= 0 {
			add("threshold", "missing: a latency SLO needs the bound of a good request, e.g. 300ms")
		} else if c.Threshold > time.Hour {
			add("threshold", "%s out of range: expected up to 1h", c.Threshold)
		}
		if len(c.Errors) > 0 {
			add("errors", "a latency SLO counts requests by duration only: errors is for kind: availability")
		}
	default:
		add("kind", "unknown kind %q: expected availability or latency", c.Kind)
	}
	alerts := c.EffectiveAlerts()
	seen := map[string]bool{}
	for i, a := range alerts {
		p := fmt.Sprintf("alerts[%d]", i)
		if a.Name == "" {
			add(p+".name", "missing: expected a name such as fast-burn")
		} else if !nameRE.MatchString(a.Name) {
			add(p+".name", "invalid name %q: expected letters, digits, '.', '_' and '-'", a.Name)
		} else if seen[a.Name] {
			add(p+".name", "duplicate alert name %q", a.Name)
		}
		seen[a.Name] = true
		if !severityRE.MatchString(a.Severity) {
			add(p+".severity", "invalid severity %q: expected a lower-case word such as page or ticket", a.Severity)
		}
		if !(a.BurnRate > 0) || math.IsInf(a.BurnRate, 0) {
			add(p+".burn_rate", "missing or not positive (%v): expected a factor such as 14.4", a.BurnRate)
		} else if c.Objective > 0 && c.Objective < 1 && a.BurnRate*(1-float64(c.Objective)) > 1 {
			add(p+".burn_rate", "%v can never fire with objective %s: the error ratio would have to exceed 100%% (at most %v)",
				a.BurnRate, c.Objective, math.Floor(1/(1-float64(c.Objective))*1000)/1000)
		}
		switch {
		case a.LongWindow == 0:
			add(p+".long_window", "missing: expected a duration such as 1h")
		case time.Duration(a.LongWindow) > w && c.Alerts == nil:
			add("window", "%s is shorter than the default %s alert's long window (%s): lengthen the window or write alerts: of your own",
				Duration(w), a.Name, a.LongWindow)
		case a.LongWindow < MinAlertWindow || time.Duration(a.LongWindow) > w:
			add(p+".long_window", "%s out of range: expected %s up to the SLO window (%s)", a.LongWindow, MinAlertWindow, Duration(w))
		}
		switch {
		case a.ShortWindow == 0:
			add(p+".short_window", "missing: expected a duration such as 5m")
		case a.ShortWindow < MinAlertWindow:
			add(p+".short_window", "%s too short: expected at least %s", a.ShortWindow, MinAlertWindow)
		case a.LongWindow != 0 && a.ShortWindow >= a.LongWindow:
			add(p+".short_window", "%s is not shorter than long_window (%s)", a.ShortWindow, a.LongWindow)
		}
	}
	if len(errs) == 0 {
		if n := c.layout().buckets(); n > MaxBuckets {
			key := "window"
			if c.Alerts != nil {
				key = "alerts"
			}
			add(key, "the window (%s) and the shortest alert window need %d time buckets, more than %d: lengthen the short windows or shorten the window",
				Duration(w), n, MaxBuckets)
		}
	}
	for i, u := range c.Webhooks {
		if err := checkWebhook(u); err != nil {
			add(fmt.Sprintf("webhooks[%d]", i), "%v", err)
		}
	}
	return errors.Join(errs...)
}

func checkWebhook(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid webhook URL %q: expected http:// or https:// and a host", s)
	}
	if u.User != nil {
		return fmt.Errorf("invalid webhook URL %q: user info in the URL is refused; put a token in the query (logs show webhook URLs without it)", s)
	}
	return nil
}

// Ratio is a share from 0 to 1, written "99.9%" or 0.999. It is rounded
// to 12 significant digits, so "99.9%" is exactly the float 0.999.
type Ratio float64

// ParseRatio reads a share written "99.9%" or 0.999.
func ParseRatio(s string) (Ratio, error) {
	t := strings.TrimSpace(s)
	bad := fmt.Errorf("invalid ratio %q: expected a percentage such as \"99.9%%\" or a fraction such as 0.999", s)
	if t == "" || len(t) > 32 {
		return 0, bad
	}
	num, pct := strings.CutSuffix(t, "%")
	num = strings.TrimSpace(num)
	for _, r := range num { // decimal digits and one point only: no "inf", "0x1p-2", "1e3"
		if (r < '0' || r > '9') && r != '.' {
			return 0, bad
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, bad
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("invalid ratio %q: out of range: expected 0%% to 100%%", s)
	}
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
	return Ratio(v), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Ratio) UnmarshalText(b []byte) error {
	v, err := ParseRatio(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText writes the share as a percentage.
func (r Ratio) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String writes the share as a percentage ("99.9%").
func (r Ratio) String() string {
	return strconv.FormatFloat(math.Round(float64(r)*1e12)/1e10, 'f', -1, 64) + "%"
}

// Duration is a span of time written as a Go duration ("90m", "1h30m")
// or with whole days and weeks in front ("28d", "4w", "1d12h").
type Duration time.Duration

// ParseDuration reads a duration: an optional number of weeks ("w") and
// days ("d"), then an optional Go duration. It must be positive.
func ParseDuration(s string) (Duration, error) {
	bad := fmt.Errorf("invalid duration %q: expected e.g. \"28d\", \"4w\", \"6h\", \"5m\" or \"1d12h\"", s)
	t := strings.TrimSpace(s)
	if t == "" || len(t) > 64 {
		return 0, bad
	}
	var total time.Duration
	for _, unit := range []struct {
		suffix byte
		d      time.Duration
	}{{'w', 7 * 24 * time.Hour}, {'d', 24 * time.Hour}} {
		i := strings.IndexByte(t, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(t[:i], 10, 32)
		if err != nil || i == 0 || t[0] == '+' {
			return 0, bad
		}
		if n > uint64(MaxWindow)/uint64(unit.d)*4 {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total += time.Duration(n) * unit.d
		t = t[i+1:]
	}
	if t != "" {
		if t[0] == '-' || t[0] == '+' {
			return 0, bad
		}
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, bad
		}
		if d > math.MaxInt64-total {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("invalid duration %q: expected a positive duration", s)
	}
	return Duration(total), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String writes the duration with days when it is a whole number of them
// ("28d"), else as Go does ("1h30m0s").
func (d Duration) String() string {
	day := Duration(24 * time.Hour)
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return time.Duration(d).String()
}

// Statuses is a set of HTTP status codes (100 to 599).
type Statuses [600]bool

// ParseStatuses reads codes ("429"), classes ("5xx") and ranges
// ("500-503") into a set.
func ParseStatuses(specs []string) (*Statuses, error) {
	var set Statuses
	for _, spec := range specs {
		s := strings.TrimSpace(strings.ToLower(spec))
		bad := fmt.Errorf("invalid status %q: expected a code (429), a class (5xx) or a range (500-503) within 100-599", spec)
		switch {
		case len(s) == 3 && s[1:] == "xx":
			c := int(s[0] - '0')
			if c < 1 || c > 5 {
				return nil, bad
			}
			for i := c * 100; i < c*100+100; i++ {
				set[i] = true
			}
		case strings.Contains(s, "-"):
			lo, hi, _ := strings.Cut(s, "-")
			a, err1 := statusCode(lo)
			b, err2 := statusCode(hi)
			if err1 != nil || err2 != nil || a > b {
				return nil, bad
			}
			for i := a; i <= b; i++ {
				set[i] = true
			}
		default:
			c, err := statusCode(s)
			if err != nil {
				return nil, bad
			}
			set[c] = true
		}
	}
	return &set, nil
}

func statusCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	if len(s) != 3 {
		return 0, errors.New("not three digits")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// Bad reports whether status is in the set.
func (s *Statuses) Bad(status int) bool { return status >= 0 && status < len(s) && s[status] }

// Regexp returns a Prometheus regular expression (fully anchored by
// PromQL) matching the set's codes as the gateway labels them: "5.."
// for whole classes, alternatives for the rest.
func (s *Statuses) Regexp() string {
	var parts []string
	for class := 1; class <= 5; class++ {
		full := true
		for i := class * 100; i < class*100+100; i++ {
			if !s[i] {
				full = false
				break
			}
		}
		if full {
			parts = append(parts, strconv.Itoa(class)+"..")
			continue
		}
		for i := class * 100; i < class*100+100; i++ {
			if s[i] {
				parts = append(parts, strconv.Itoa(i))
			}
		}
	}
	return strings.Join(parts, "|")
}
