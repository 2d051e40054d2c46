package cardprocessor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Faults are what the processor does wrong on purpose (see the package doc).
// The zero value injects nothing; the default rules (DefaultDeclinePrefixes,
// DefaultClosedPrefixes) apply when the prefix lists are nil.
type Faults struct {
	// DeclineRate is the share of new charges declined at random (0 to 1).
	DeclineRate float64 `json:"decline_rate" yaml:"decline_rate"`
	// FailRate is the share of money-moving calls answered 500.
	FailRate float64 `json:"fail_rate" yaml:"fail_rate"`
	// TimeoutRate is the share of calls held until the client gives up
	// (at most MaxHang). FailRate + TimeoutRate is at most 1.
	TimeoutRate float64 `json:"timeout_rate" yaml:"timeout_rate"`
	// Latency is added to every money-moving call; at most a minute.
	Latency Duration `json:"latency" yaml:"latency"`
	// MaxHang bounds a hang. Default 30s.
	MaxHang Duration `json:"max_hang" yaml:"max_hang"`
	// Phase is when a failure or hang strikes: "before" the work, "after"
	// it (committed, but the caller hears an error) or "random" (default).
	Phase string `json:"phase" yaml:"phase"`
	// DeclinePrefixes: a card or customer starting with one always
	// declines. Default ["decline"].
	DeclinePrefixes []string `json:"decline_prefixes" yaml:"decline_prefixes"`
	// ClosedPrefixes: a payout to a driver starting with one fails with
	// account_closed. Default ["closed"].
	ClosedPrefixes []string `json:"closed_prefixes" yaml:"closed_prefixes"`
	// Seed, if not 0, seeds the random draws.
	Seed uint64 `json:"seed,omitempty" yaml:"seed"`
}

// Default rules: cards or customers starting with "decline" are declined,
// drivers starting with "closed" cannot be paid.
var (
	DefaultDeclinePrefixes = []string{"decline"}
	DefaultClosedPrefixes  = []string{"closed"}
)

// DefaultMaxHang bounds a hang when Faults.MaxHang is 0.
const DefaultMaxHang = 30 * time.Second

// maxPrefixes bounds the prefix lists and maxLatency the injected latency,
// so a faults request cannot make the processor hold a request forever.
const (
	maxPrefixes = 100
	maxLatency  = time.Minute
)

// Duration is a time.Duration written as a Go duration string ("200ms").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("200ms") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration %s: want a string such as \"200ms\"", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a duration string ("200ms").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: %w", n.Line, n.Value, err)
	}
	*d = Duration(v)
	return nil
}

// ParseFaults decodes and validates a faults document; unknown fields are
// errors. Problems are joined and name their field.
func ParseFaults(body []byte) (Faults, error) {
	// The durations are read as raw values first so that an error names
	// its field.
	type wire Faults
	var w struct {
		wire
		Latency json.RawMessage `json:"latency"`
		MaxHang json.RawMessage `json:"max_hang"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Faults{}, fmt.Errorf("faults: %w", err)
	}
	if dec.More() {
		return Faults{}, errors.New("faults: trailing data after the JSON object")
	}
	f := Faults(w.wire)
	var errs []error
	for name, raw := range map[string]json.RawMessage{"latency": w.Latency, "max_hang": w.MaxHang} {
		var d Duration
		if len(raw) > 0 {
			if err := d.UnmarshalJSON(raw); err != nil {
				errs = append(errs, fmt.Errorf("faults: %s: %w", name, err))
			}
		}
		if name == "latency" {
			f.Latency = d
		} else {
			f.MaxHang = d
		}
	}
	if len(errs) > 0 {
		return Faults{}, errors.Join(errs...)
	}
	return f, f.Validate()
}

// Validate reports every problem at once.
func (f Faults) Validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("faults: %s %v: want 0 to 1", name, v))
		}
	}
	rate("decline_rate", f.DeclineRate)
	rate("fail_rate", f.FailRate)
	rate("timeout_rate", f.TimeoutRate)
	if f.FailRate+f.TimeoutRate > 1 {
		errs = append(errs, fmt.Errorf("faults: fail_rate + timeout_rate = %v: want at most 1", f.FailRate+f.TimeoutRate))
	}
	if f.Latency < 0 || time.Duration(f.Latency) > maxLatency {
		errs = append(errs, fmt.Errorf("faults: latency %v: want 0 to %v", time.Duration(f.Latency), maxLatency))
	}
	if f.MaxHang < 0 || time.Duration(f.MaxHang) > 10*maxLatency {
		errs = append(errs, fmt.Errorf("faults: max_hang %v: want 0 to %v", time.Duration(f.MaxHang), 10*maxLatency))
	}
	switch f.Phase {
	case "", "before", "after", "random":
	default:
		errs = append(errs, fmt.Errorf("faults: phase %q: want before, after or random", f.Phase))
	}
	for name, l := range map[string][]string{"decline_prefixes": f.DeclinePrefixes, "closed_prefixes": f.ClosedPrefixes} {
		if len(l) > maxPrefixes {
			errs = append(errs, fmt.Errorf("faults: %s has %d entries: want at most %d", name, len(l), maxPrefixes))
		}
		for i, p := range l {
			if p == "" || len(p) > maxRefLen {
				errs = append(errs, fmt.Errorf("faults: %s[%d] %q: want 1 to %d bytes", name, i, p, maxRefLen))
			}
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills the rules and bounds that are unset.
func (f Faults) withDefaults() Faults {
	if f.DeclinePrefixes == nil {
		f.DeclinePrefixes = DefaultDeclinePrefixes
	}
	if f.ClosedPrefixes == nil {
		f.ClosedPrefixes = DefaultClosedPrefixes
	}
	if f.MaxHang == 0 {
		f.MaxHang = Duration(DefaultMaxHang)
	}
	if f.Phase == "" {
		f.Phase = "random"
	}
	return f
}

// injector holds the current faults and their random source.
type injector struct {
	mu  sync.Mutex
	f   Faults
	rnd *rand.Rand
}

func newInjector() *injector {
	return &injector{f: Faults{}.withDefaults(), rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

func (in *injector) set(f Faults) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.f = f.withDefaults()
	if f.Seed != 0 {
		in.rnd = rand.New(rand.NewPCG(f.Seed, f.Seed))
	}
}

func (in *injector) get() Faults {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.f
}

// fault is what happens to one call.
type fault int

const (
	faultNone fault = iota
	faultFail
	faultHang
)

// plan draws a call's fault and whether it strikes after the work.
func (in *injector) plan() (f Faults, what fault, after bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f = in.f
	x := in.rnd.Float64()
	switch {
	case x < f.FailRate:
		what = faultFail
	case x < f.FailRate+f.TimeoutRate:
		what = faultHang
	}
	switch f.Phase {
	case "after":
		after = true
	case "random":
		after = in.rnd.IntN(2) == 1
	}
	return f, what, after
}

// declineDraw reports whether a new charge is declined at random.
func (in *injector) declineDraw() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.f.DeclineRate > 0 && in.rnd.Float64() < in.f.DeclineRate
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
