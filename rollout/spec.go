// Package rollout runs deployments on an upstream's targets inside the
// gateway: canary (steps of traffic share, each judged by comparing the new
// version's SLIs with the stable version's, as Argo Rollouts' analysis
// does), blue-green (all traffic at once, instant rollback) and A/B (sticky
// cohorts by a header or cookie).
//
// The traffic split is a balance.Policy over two cohorts of one pool
// (Split), so every request to the upstream — through any route, a route's
// split, an aggregate call or an L4 listener — sees the rollout, and each
// cohort keeps the upstream's own balancing, breakers, outlier ejection and
// health checks. The state machine (Rollout) is plain data driven by a
// clock; the gateway owns the pools and persists the state (Save, Load).
package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Strategy names.
const (
	Canary    = "canary"
	BlueGreen = "blue-green"
	AB        = "ab"
	Rolling   = "rolling"
	Shadow    = "shadow"
)

// Bounds of a Spec.
const (
	MaxSpecBytes    = 64 << 10
	MaxTargets      = 256
	MaxSteps        = 20
	MaxSelectorKeys = 16
	MinPause        = 10 * time.Millisecond
	MaxPause        = 7 * 24 * time.Hour
)

// Defaults of a Spec.
const (
	DefaultPause                = time.Minute
	DefaultMinRequests          = 20
	DefaultMaxErrorRateIncrease = 0.01
	DefaultMaxP99Ratio          = 1.5
	DefaultMinP99Increase       = 50 * time.Millisecond
	DefaultABPercent            = 50
	DefaultHealthTimeout        = time.Minute
	DefaultDrainTimeout         = 30 * time.Second
)

// DefaultSteps are the canary's traffic shares (percent) when none are given.
var DefaultSteps = []float64{5, 25, 50, 100}

// Spec is what starting a rollout asks for: the body of POST
// /admin/rollouts. It is decoded strictly (unknown fields refused) by
// ParseSpec, which also applies the defaults.
type Spec struct {
	// Upstream is the upstream whose targets are rolled out. Required.
	Upstream string `json:"upstream"`
	// Strategy is canary (default), blue-green, ab, rolling or shadow.
	Strategy string `json:"strategy"`
	// Targets are the new version's addresses (host:port), added to an
	// upstream with static targets. Exclusive with Selector.
	Targets []string `json:"targets,omitempty"`
	// Selector picks the new version among a discovered upstream's
	// instances: an instance matches when, for every key, its metadata has
	// that value or it carries the tag "key=value". Exclusive with Targets.
	Selector map[string]string `json:"selector,omitempty"`
	// Steps are the canary's traffic shares in percent (0 < s <= 100,
	// increasing); reaching the end promotes. Default 5, 25, 50, 100.
	Steps []float64 `json:"steps,omitempty"`
	// Pause is how long each canary step lasts before it is judged, as a
	// Go duration. Default 1m; 10ms to 168h.
	Pause Duration `json:"pause,omitempty"`
	// Analysis sets the thresholds the canary is judged by.
	Analysis Analysis `json:"analysis"`
	// Header (A/B) is the request header whose value picks the cohort.
	// Exclusive with Cookie; one of them is required for ab.
	Header string `json:"header,omitempty"`
	// Cookie (A/B) is the cookie whose value picks the cohort.
	Cookie string `json:"cookie,omitempty"`
	// Percent (A/B) is the share of header or cookie values (hashed) that
	// go to the new version. Default 50.
	Percent float64 `json:"percent,omitempty"`
	// HealthTimeout (rolling) is how long a new target may take to pass
	// the upstream's health checks; one that does not stops the rollout
	// and rolls it back. Default 1m.
	HealthTimeout Duration `json:"health_timeout,omitempty"`
	// DrainTimeout (rolling) bounds the wait for a drained old target's
	// requests in flight before it is removed. Default 30s.
	DrainTimeout Duration `json:"drain_timeout,omitempty"`
	// Concurrency (shadow) bounds the copies in flight at once; requests
	// beyond it are not copied (counted as dropped). Default 32.
	Concurrency int `json:"concurrency,omitempty"`
}

// Analysis are the thresholds of a canary step. The canary fails when,
// over the step and with at least MinRequests canary attempts, its error
// rate exceeds the stable's plus MaxErrorRateIncrease (or MaxErrorRate
// when set), or its p99 latency exceeds both the stable's times
// MaxP99Ratio and the stable's plus MinP99Increase.
type Analysis struct {
	// MinRequests is the fewest canary attempts a step is judged on; a
	// step that ends with fewer waits for them. Default 20.
	MinRequests int `json:"min_requests,omitempty"`
	// MaxErrorRateIncrease is how far (0..1) the canary's error rate may
	// exceed the stable's. Default 0.01.
	MaxErrorRateIncrease *float64 `json:"max_error_rate_increase,omitempty"`
	// MaxErrorRate, when set (0..1), is an absolute bound of the canary's
	// error rate, used also when the stable had no traffic to compare.
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	// MaxP99Ratio bounds the canary's p99 relative to the stable's.
	// Default 1.5; at least 1.
	MaxP99Ratio float64 `json:"max_p99_ratio,omitempty"`
	// MinP99Increase is the latency increase always tolerated (noise on
	// fast backends). Default 50ms.
	MinP99Increase Duration `json:"min_p99_increase,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string. Its error is a
// *json.UnmarshalTypeError, which the decoder completes with the field.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(clipBytes(b)), Type: reflect.TypeFor[Duration]()}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: strconv.Quote(clip(s)), Type: reflect.TypeFor[Duration]()}
	}
	*d = Duration(v)
	return nil
}

func clipBytes(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// FieldError is a problem with one field of a Spec.
type FieldError struct {
	Field string // JSON path, e.g. "steps[2]"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseSpec decodes a start request strictly (unknown fields, trailing
// data and bodies over MaxSpecBytes are refused), applies defaults and
// validates it, reporting every problem (errors.Join of *FieldError).
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	if len(data) > MaxSpecBytes {
		return s, fieldErr("body", "%d bytes: expected at most %d", len(data), MaxSpecBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Spec{}, fieldErr("body", "trailing data after the JSON object")
	}
	s = s.WithDefaults()
	return s, s.Validate()
}

// decodeError names the field a JSON decoding error is about.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := te.Field
		if f == "" {
			f = "body"
		}
		if te.Type == reflect.TypeFor[Duration]() {
			return fieldErr(f, "invalid duration %s: expected a Go duration string such as \"30s\"", te.Value)
		}
		return fieldErr(f, "expected %s, got JSON %s", te.Type, te.Value)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fieldErr(strings.Trim(msg, `"`), "unknown field: expected upstream, strategy, targets, selector, steps, pause, analysis, header, cookie, percent, health_timeout, drain_timeout, concurrency")
	}
	if errors.Is(err, io.EOF) {
		return fieldErr("body", "empty: expected a JSON object such as {\"upstream\": \"api\", \"targets\": [\"127.0.0.1:9002\"]}")
	}
	// A Duration's own error arrives wrapped without its field; say what
	// was expected all the same.
	return fieldErr("body", "invalid JSON: %v", err)
}

// WithDefaults returns s with its zero fields defaulted.
func (s Spec) WithDefaults() Spec {
	if s.Strategy == "" {
		s.Strategy = Canary
	}
	if s.Strategy == Canary && len(s.Steps) == 0 {
		s.Steps = append([]float64(nil), DefaultSteps...)
	}
	if s.Pause == 0 {
		s.Pause = Duration(DefaultPause)
	}
	if s.Strategy == AB && s.Percent == 0 {
		s.Percent = DefaultABPercent
	}
	if s.Strategy == Rolling {
		if s.HealthTimeout == 0 {
			s.HealthTimeout = Duration(DefaultHealthTimeout)
		}
		if s.DrainTimeout == 0 {
			s.DrainTimeout = Duration(DefaultDrainTimeout)
		}
	}
	a := &s.Analysis
	if a.MinRequests == 0 {
		a.MinRequests = DefaultMinRequests
	}
	if a.MaxErrorRateIncrease == nil {
		v := DefaultMaxErrorRateIncrease
		a.MaxErrorRateIncrease = &v
	}
	if a.MaxP99Ratio == 0 {
		a.MaxP99Ratio = DefaultMaxP99Ratio
	}
	if a.MinP99Increase == 0 {
		a.MinP99Increase = Duration(DefaultMinP99Increase)
	}
	return s
}

// Validate reports every problem of s (after defaults), joined.
func (s Spec) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }
	if s.Upstream == "" {
		add("upstream", "missing: expected the name of an upstream")
	} else if len(s.Upstream) > 128 || strings.ContainsAny(s.Upstream, "/ \t\r\n") {
		add("upstream", "invalid name %q", clip(s.Upstream))
	}
	switch s.Strategy {
	case Canary, BlueGreen, AB, Rolling, Shadow:
	default:
		add("strategy", "unknown strategy %q: expected canary, blue-green, ab, rolling or shadow", clip(s.Strategy))
	}
	if s.Strategy == Shadow {
		if s.Concurrency < 0 || s.Concurrency > MaxShadowConcurrency {
			add("concurrency", "%d out of range: expected 1 to %d (default %d)", s.Concurrency, MaxShadowConcurrency, DefaultShadowConcurrency)
		}
	} else if s.Concurrency != 0 {
		add("concurrency", "only a shadow rollout has a concurrency (strategy %q)", s.Strategy)
	}
	if s.Strategy == Rolling {
		for _, d := range []struct {
			key string
			v   Duration
		}{{"health_timeout", s.HealthTimeout}, {"drain_timeout", s.DrainTimeout}} {
			if time.Duration(d.v) < MinPause || time.Duration(d.v) > time.Hour {
				add(d.key, "%s out of range: expected %s to 1h", time.Duration(d.v), MinPause)
			}
		}
	} else if s.HealthTimeout != 0 || s.DrainTimeout != 0 {
		add("health_timeout", "only a rolling rollout has health_timeout and drain_timeout (strategy %q)", s.Strategy)
	}
	switch {
	case len(s.Targets) > 0 && len(s.Selector) > 0:
		add("targets", "targets and selector are exclusive: addresses for static upstreams, a selector for discovered ones")
	case len(s.Targets) == 0 && len(s.Selector) == 0:
		add("targets", "missing: expected the new version's addresses (or a selector such as {\"version\": \"v2\"} for a discovered upstream)")
	}
	if len(s.Targets) > MaxTargets {
		add("targets", "%d targets: expected at most %d", len(s.Targets), MaxTargets)
	}
	seen := map[string]bool{}
	for i, t := range s.Targets {
		if i >= MaxTargets {
			break
		}
		if err := checkAddr(t); err != nil {
			add(fmt.Sprintf("targets[%d]", i), "%v", err)
		} else if seen[t] {
			add(fmt.Sprintf("targets[%d]", i), "duplicate target %q", t)
		}
		seen[t] = true
	}
	if len(s.Selector) > MaxSelectorKeys {
		add("selector", "%d keys: expected at most %d", len(s.Selector), MaxSelectorKeys)
	}
	for k, v := range s.Selector {
		if k == "" || len(k) > 128 || v == "" || len(v) > 256 || strings.ContainsAny(k+v, " \t\r\n=") {
			add("selector", "invalid entry %q=%q: expected a non-empty key and value without spaces or '='", clip(k), clip(v))
		}
	}
	if s.Strategy == Canary {
		if len(s.Steps) > MaxSteps {
			add("steps", "%d steps: expected at most %d", len(s.Steps), MaxSteps)
		}
		prev := 0.0
		for i, w := range s.Steps {
			if i >= MaxSteps {
				break
			}
			if !(w > prev && w <= 100) { // also refuses NaN
				add(fmt.Sprintf("steps[%d]", i), "%v: expected a percentage above the previous step (%v) and at most 100", w, prev)
				break
			}
			prev = w
		}
	} else if len(s.Steps) > 0 {
		add("steps", "only a canary has steps (strategy %q)", s.Strategy)
	}
	if p := time.Duration(s.Pause); p < MinPause || p > MaxPause {
		add("pause", "%s out of range: expected %s to %s", p, MinPause, MaxPause)
	}
	a := s.Analysis
	if a.MinRequests < 1 || a.MinRequests > 1_000_000 {
		add("analysis.min_requests", "%d out of range: expected 1 to 1000000", a.MinRequests)
	}
	if v := a.MaxErrorRateIncrease; v != nil && !(*v >= 0 && *v <= 1) {
		add("analysis.max_error_rate_increase", "%v out of range: expected 0 to 1", *v)
	}
	if v := a.MaxErrorRate; v != nil && !(*v >= 0 && *v <= 1) {
		add("analysis.max_error_rate", "%v out of range: expected 0 to 1", *v)
	}
	if !(a.MaxP99Ratio >= 1 && a.MaxP99Ratio <= 1000) {
		add("analysis.max_p99_ratio", "%v out of range: expected 1 to 1000", a.MaxP99Ratio)
	}
	if d := time.Duration(a.MinP99Increase); d < 0 || d > time.Hour {
		add("analysis.min_p99_increase", "%s out of range: expected 0 to 1h", d)
	}
	if s.Strategy == AB {
		switch {
		case s.Header != "" && s.Cookie != "":
			add("header", "header and cookie are exclusive")
		case s.Header == "" && s.Cookie == "":
			add("header", "missing: an ab rollout needs the header or cookie whose value picks the cohort")
		}
		if s.Header != "" && !validToken(s.Header) {
			add("header", "invalid header name %q", clip(s.Header))
		}
		if s.Cookie != "" && !validToken(s.Cookie) {
			add("cookie", "invalid cookie name %q", clip(s.Cookie))
		}
		if !(s.Percent > 0 && s.Percent <= 100) {
			add("percent", "%v out of range: expected more than 0 and at most 100", s.Percent)
		}
	} else {
		if s.Header != "" || s.Cookie != "" {
			add("header", "only an ab rollout picks cohorts by header or cookie (strategy %q)", s.Strategy)
		}
		if s.Percent != 0 {
			add("percent", "only an ab rollout has a percent (strategy %q); a canary has steps", s.Strategy)
		}
	}
	return errors.Join(errs...)
}

// checkAddr checks a target address: host:port, port 1-65535.
func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " /") {
		return fmt.Errorf("invalid address %q: expected host:port", clip(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid address %q: port %q out of range: expected 1 to 65535", clip(s), port)
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token (header and cookie names).
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// clip shortens a quoted bad value for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
