package slo

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/testclock"
)

func TestDecodeYAML(t *testing.T) {
	var doc struct {
		SLOs []Config `yaml:"slos"`
	}
	_, err := config.DecodeYAML([]byte(`slos:
  - { name: a, route: api, objective: 0.999, window: 4w }
  - { name: b, route: api, objective: "99.95%", window: 3d12h, errors: [5xx, 429] }
  - name: c
    upstream: pool
    kind: latency
    threshold: 300ms
    objective: 99%
    alerts: []
`), "t.yaml", &doc)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := doc.SLOs[0], doc.SLOs[1], doc.SLOs[2]
	if a.Objective != 0.999 || a.EffectiveWindow() != 28*24*time.Hour || len(a.EffectiveAlerts()) != 3 {
		t.Fatalf("a: %+v", a)
	}
	if b.Objective != 0.9995 || b.EffectiveWindow() != 84*time.Hour {
		t.Fatalf("b: objective %v window %v", float64(b.Objective), b.EffectiveWindow())
	}
	if c.Alerts == nil || len(c.EffectiveAlerts()) != 0 || c.Threshold != 300*time.Millisecond {
		t.Fatalf("c: %+v", c)
	}
	for _, s := range doc.SLOs {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	short := Config{Name: "d", Route: "api", Objective: 0.99, Window: Duration(24 * time.Hour)}
	if err := short.Validate(); err == nil || !strings.Contains(err.Error(),
		"window: 1d is shorter than the default slow-burn alert's long window (3d): lengthen the window or write alerts: of your own") {
		t.Fatalf("1d window with the default alerts: %v", err)
	}
}

func TestLayout(t *testing.T) {
	def := (&Config{Objective: 0.999}).layout()
	if def.coarse != (ringSpec{time.Hour, 673}) || def.fine != (ringSpec{30 * time.Second, 721}) || def.fineMax != 6*time.Hour {
		t.Fatalf("default layout %s (fine up to %s)", def, def.fineMax)
	}
	if n := def.buckets(); n != 1394 {
		t.Fatalf("default buckets %d", n)
	}
	// One-minute short windows against a 6h long one: the fine ring
	// widens instead of growing past maxFine.
	c := Config{Objective: 0.99, Alerts: &[]Alert{{Name: "x", Severity: "page", BurnRate: 2, LongWindow: Duration(6 * time.Hour), ShortWindow: Duration(time.Minute)}}}
	if err := c.Validate(); err != nil && !strings.Contains(err.Error(), "route") {
		t.Fatal(err)
	}
	if l := c.layout(); l.fine.n > maxFine+1 || l.buckets() > MaxBuckets {
		t.Fatalf("layout %s", l)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"28d": 28 * 24 * time.Hour, "4w": 28 * 24 * time.Hour, "1d12h": 36 * time.Hour,
		"90m": 90 * time.Minute, "1w2d3h": 9*24*time.Hour + 3*time.Hour, " 5m ": 5 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || time.Duration(got) != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "d", "28", "-1d", "+1d", "1d-1h", "1x", "0s", "0d", "d1", "1.5d", "99999999999999d", "1d1d", "1h1d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestParseStatuses(t *testing.T) {
	s, err := ParseStatuses([]string{"5xx", "429", "408-409"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Regexp(); got != "408|409|429|5.." {
		t.Fatalf("regexp %q", got)
	}
	for _, bad := range []string{"6xx", "0xx", "42", "4291", "500-400", "abc", "99", "600", "5x", "-", "500-"} {
		if _, err := ParseStatuses([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"28d", "4w", "1d12h", "5m", "1h30m", "-1d", "1e9d", "9223372036854775807ns", "1w1d1h1m1s1ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d <= 0 {
			t.Fatalf("%q: non-positive %d", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("%q = %d written %q reads back %d, %v", s, d, d.String(), back, err)
		}
	})
}

func FuzzParseRatio(f *testing.F) {
	for _, s := range []string{"99.9%", "0.999", "100%", "0", "1", "99.99999%", "1e-3", "NaN", "inf", "-0.5", ".5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRatio(s)
		if err != nil {
			return
		}
		if !(r >= 0 && r <= 1) {
			t.Fatalf("%q: %v out of range", s, float64(r))
		}
		back, err := ParseRatio(r.String())
		if err != nil || float64(back-r) > 1e-9 || float64(r-back) > 1e-9 {
			t.Fatalf("%q = %v written %q reads back %v, %v", s, float64(r), r.String(), float64(back), err)
		}
	})
}

// FuzzParseStatuses checks that the Prometheus regular expression of a
// set matches exactly the codes the engine counts as bad.
func FuzzParseStatuses(f *testing.F) {
	for _, s := range []string{"5xx", "429", "500-503", "1xx,2xx,3xx,4xx,5xx", "100-599", "499,5xx", "4XX"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseStatuses(strings.Split(s, ","))
		if err != nil {
			return
		}
		re, err := regexp.Compile("^(?:" + set.Regexp() + ")$")
		if err != nil {
			t.Fatalf("%q: regexp %q: %v", s, set.Regexp(), err)
		}
		for code := 100; code < 600; code++ {
			if re.MatchString(strconv.Itoa(code)) != set.Bad(code) {
				t.Fatalf("%q: regexp %q and the set disagree on %d", s, set.Regexp(), code)
			}
		}
	})
}

// FuzzLoadState feeds arbitrary state files to an engine: each is
// restored or reported, never a panic, and restored counts never have
// more good than total requests.
func FuzzLoadState(f *testing.F) {
	clk := testclock.New()
	cfg := Config{Name: "a", Route: "api", Objective: 0.99}
	e := New(Options{Now: clk.Now})
	e.Set([]Config{cfg})
	e.Observe("api", "", 500, 0)
	e.Observe("api", "", 200, 0)
	e.Evaluate()
	good, _ := e.encodeLocked(clk.Now())
	f.Add(good)
	f.Add([]byte(`{"version":1,"crc32c":0,"state":{}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(Options{Now: clk.Now})
		e.Set([]Config{cfg})
		_ = e.restore(data)
		for _, s := range e.Status() {
			if s.Good > s.Total || s.SLI < 0 || s.SLI > 1 {
				t.Fatalf("restored %+v", s)
			}
		}
		e.Evaluate()
	})
}
