package health

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/upstream"
)

// Defaults applied by OutlierConfig.WithDefaults to zero fields.
const (
	DefaultConsecutiveFailures = 5
	DefaultEjection            = 30 * time.Second
	DefaultMaxEjection         = 5 * time.Minute
	DefaultMaxEjected          = config.Percent(0.5)
)

// OutlierConfig configures passive outlier detection of a pool. The zero
// value of every field means its default.
type OutlierConfig struct {
	// ConsecutiveFailures is the number of failed responses in a row
	// (connect errors, timeouts, 5xx: the caller decides) that eject a
	// target. At least 1. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// Ejection is the base ejection time. A target is ejected for Ejection
	// times its ejection multiplier (30s, 60s, 90s... like Envoy), up to
	// MaxEjection. The multiplier grows by one with each ejection and
	// shrinks by one for every Ejection the target then stays in service,
	// so a target that recovered for good is soon treated as new again.
	// Positive. Default 30s.
	Ejection time.Duration `yaml:"ejection"`
	// MaxEjection caps the ejection time. At least Ejection. Default 5m.
	MaxEjection time.Duration `yaml:"max_ejection"`
	// MaxEjected is the largest share of the pool ejected at once, more
	// than 0 and at most 1 (written "50%"); further outliers stay in. It is rounded
	// down, but in a pool of two or more targets one target may always be
	// ejected. A pool of one target is only ejected at 100. Default 50.
	MaxEjected config.Percent `yaml:"max_ejected"`
}

// WithDefaults returns c with every zero field set to its default.
func (c OutlierConfig) WithDefaults() OutlierConfig {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.Ejection == 0 {
		c.Ejection = DefaultEjection
	}
	if c.MaxEjection == 0 {
		c.MaxEjection = max(DefaultMaxEjection, c.Ejection)
	}
	if c.MaxEjected == 0 {
		c.MaxEjected = DefaultMaxEjected
	}
	return c
}

// Validate reports every problem of c (after defaults) at once, joined with
// errors.Join. It does not modify c.
func (c OutlierConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.ConsecutiveFailures < 1 {
		errs = append(errs, config.Fieldf("consecutive_failures", "%d: expected at least 1", c.ConsecutiveFailures))
	}
	if c.Ejection <= 0 {
		errs = append(errs, config.Fieldf("ejection", "%v: expected a positive duration", c.Ejection))
	}
	if c.MaxEjection < c.Ejection {
		errs = append(errs, config.Fieldf("max_ejection", "%v: expected at least the ejection %v", c.MaxEjection, c.Ejection))
	}
	if !(c.MaxEjected > 0 && c.MaxEjected <= 1) {
		errs = append(errs, config.Fieldf("max_ejected", "%s: expected more than 0%% and at most 100%%", c.MaxEjected))
	}
	return errors.Join(errs...)
}

// Outlier ejects targets that fail several responses in a row, using
// Target.Eject; an ejection ends by itself when its time passes. Create it
// with NewOutlier. Safe for concurrent use; Observe is cheap enough for
// every response: an atomic operation, and a mutex only when ejecting.
//
// The ejection time grows with each ejection of a target and decays while
// the target stays in service (see OutlierConfig.Ejection).
type Outlier struct {
	cfg      OutlierConfig
	targets  []*upstream.Target
	failures []atomic.Int32 // consecutive failures, parallel to targets
	maxOut   int            // most targets ejected at once

	mu     sync.Mutex  // serialises ejections so the percent limit holds
	levels []int64     // ejection multipliers, parallel to targets; under mu
	ends   []time.Time // when each target's last ejection ended; under mu
}

// NewOutlier applies defaults to cfg, validates it and returns an Outlier
// of the pool targets. The slice is not copied; the caller must not modify
// it.
func NewOutlier(cfg OutlierConfig, targets []*upstream.Target) (*Outlier, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := len(targets)
	maxOut := int(float64(n) * float64(cfg.MaxEjected) * (1 + 1e-9)) // rounded down
	if maxOut == 0 && n > 1 {
		maxOut = 1
	}
	o := &Outlier{
		cfg:      cfg,
		targets:  targets,
		failures: make([]atomic.Int32, n),
		maxOut:   maxOut,
		levels:   make([]int64, n),
		ends:     make([]time.Time, n),
	}
	for i, t := range targets {
		// A target still ejected when the pool was rebuilt (config reload)
		// keeps a multiplier of one: its next ejection is the second.
		if until := t.EjectedUntil(); !until.IsZero() {
			o.levels[i], o.ends[i] = 1, until
		}
	}
	return o, nil
}

// Observe records the outcome of a response from t at now and reports
// whether this failure ejected t. A success resets t's count of consecutive
// failures. A target that is not in the pool is ignored. Observe does not
// allocate.
func (o *Outlier) Observe(t *upstream.Target, failed bool, now time.Time) (ejected bool) {
	i := o.slot(t)
	if i < 0 {
		return false
	}
	f := &o.failures[i]
	if !failed {
		if f.Load() != 0 { // avoid writing a shared cache line on every success
			f.Store(0)
		}
		return false
	}
	if f.Add(1) < int32(o.cfg.ConsecutiveFailures) {
		return false
	}
	return o.eject(i, now)
}

// eject ejects targets[i] at now unless it already is or the pool has as
// many ejected targets as allowed. The failure count restarts either way,
// so a target kept in by the limit is considered again after another run of
// failures rather than on every one.
func (o *Outlier) eject(i int, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures[i].Store(0)
	t := o.targets[i]
	if t.Ejected(now) || o.ejectedLocked(now) >= o.maxOut {
		return false
	}
	level := o.levels[i]
	if end := o.ends[i]; level > 0 && now.After(end) {
		level = max(0, level-int64(now.Sub(end)/o.cfg.Ejection)) // decay while in service
	}
	level++
	d := o.cfg.MaxEjection
	if level <= int64(o.cfg.MaxEjection/o.cfg.Ejection) {
		d = o.cfg.Ejection * time.Duration(level)
	}
	o.levels[i], o.ends[i] = level, now.Add(d)
	t.Eject(now.Add(d))
	return true
}

// ejectedLocked counts the targets ejected at now.
func (o *Outlier) ejectedLocked(now time.Time) int {
	n := 0
	for _, t := range o.targets {
		if t.Ejected(now) {
			n++
		}
	}
	return n
}

// slot returns t's position in the pool: t.Index when it matches, else a
// search; -1 when t is not in the pool.
func (o *Outlier) slot(t *upstream.Target) int {
	if i := t.Index; i >= 0 && i < len(o.targets) && o.targets[i] == t {
		return i
	}
	for i, u := range o.targets {
		if u == t {
			return i
		}
	}
	return -1
}
