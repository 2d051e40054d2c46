package load

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSLO(t *testing.T) {
	cases := []struct {
		in      string
		want    string // String() of the result
		wantErr string
	}{
		{"", "", ""},
		{"p99<100ms,errors<1%", "p99<100ms,errors<1%", ""},
		{" p99.9 <= 250ms , max<2s, availability>=99.9% ", "p99.9<=250ms,max<2s,availability>=99.9%", ""},
		{"P50<1.5ms", "p50<1.5ms", ""},
		{"errors<=0%", "errors<=0%", ""},
		{"p99>100ms", "", "latency bounds take"},
		{"availability<99%", "", "availability bounds take"},
		{"errors<1", "", "percentage"},
		{"p0<1ms", "", "percentile must be"},
		{"p101<1ms", "", "percentile must be"},
		{"p99<fast", "", "latency"},
		{"p99<-1ms", "", "must be positive"},
		{"errors<101%", "", "percentage must be"},
		{"rps>100", "", "unknown metric"},
		{"p99", "", "want NAME<VALUE"},
		{"p99<1ms,", "", "want NAME<VALUE"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			slo, err := ParseSLO(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := slo.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSLOEvaluate(t *testing.T) {
	h := newHist()
	for i := int64(1); i <= 1000; i++ {
		h.RecordValue(i * 100) // 0.1ms .. 100ms; p99 = 99ms
	}
	cases := []struct {
		slo     string
		ok, bad int64
		met     bool
	}{
		{"p99<100ms", 1000, 0, true},
		{"p99<99ms", 1000, 0, false},
		{"max<=101ms", 1000, 0, true}, // max is reported at the top of its bucket (0.1%)
		{"max<100ms", 1000, 0, false},
		{"errors<1%", 995, 5, true},
		{"errors<1%", 990, 10, false},
		{"availability>=99%", 990, 10, true},
		{"availability>99%", 990, 10, false},
	}
	for _, tc := range cases {
		slo, err := ParseSLO(tc.slo)
		if err != nil {
			t.Fatal(err)
		}
		met, failures := slo.evaluate(h, tc.ok, tc.bad)
		if met != tc.met {
			t.Errorf("%s with %d/%d: met=%v (%v), want %v", tc.slo, tc.ok, tc.bad, met, failures, tc.met)
		}
	}
}

func TestParseRamp(t *testing.T) {
	r, err := ParseRamp("100:5000:250")
	if err != nil {
		t.Fatal(err)
	}
	rates := r.Rates()
	if len(rates) != 20 || rates[0] != 100 || rates[19] != 4850 {
		t.Errorf("rates %v", rates)
	}
	if r, err := ParseRamp("100:200:50"); err != nil || len(r.Rates()) != 3 {
		t.Errorf("100:200:50 -> %v, %v: want 3 steps ending at 200", r, err)
	}
	for _, bad := range []string{"", "100", "100:200", "a:200:10", "0:100:10", "200:100:10", "100:200:0", "100:200:-5", "1:100000:1", "1:2:3:4", "NaN:1:1", "1:Inf:1"} {
		if _, err := ParseRamp(bad); err == nil {
			t.Errorf("ParseRamp(%q) accepted", bad)
		}
	}
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader("Authorization:  Bearer x:y ")
	if err != nil || h.Name != "Authorization" || h.Value != "Bearer x:y" {
		t.Errorf("got %+v, %v", h, err)
	}
	for _, bad := range []string{"NoColon", ": v", "Bad Name: v", "Content-Length: 5", "connection: close"} {
		if _, err := ParseHeader(bad); err == nil {
			t.Errorf("ParseHeader(%q) accepted", bad)
		}
	}
}

func TestParseTargets(t *testing.T) {
	in := "# comment\n\nhttp://a.test/x 3\n  https://b.test:8443/y  \n"
	ts, err := ParseTargets(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].URL != "http://a.test/x" || ts[0].Weight != 3 || ts[1].Weight != 1 {
		t.Errorf("got %+v", ts)
	}
	if _, err := ParseTargets(strings.NewReader("# nothing\n")); !errors.Is(err, ErrNoTargets) {
		t.Errorf("empty file: err = %v, want ErrNoTargets", err)
	}
	for _, bad := range []string{"ftp://x/ 1", "http://x/ zero", "http://x/ 0", "http://x/ 1 2", "http://x/ 5000"} {
		if _, err := ParseTargets(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseTargets(%q) accepted", bad)
		}
	}
}

// TestValidateReportsEveryProblem: Validate joins all problems.
func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{
		Targets:     []Target{{URL: "ftp://x/"}, {URL: "http://ok/", Method: "GE T", Weight: -1}},
		Rate:        -5,
		Connections: -1,
		Timeout:     -time.Second,
		SLO:         SLO{Terms: []SLOTerm{{Metric: "rps"}}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"scheme must be http", "method", "weight", "rate", "connections", "timeout", "unknown metric"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if err := (&Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "at least one URL") {
		t.Errorf("empty config: %v", err)
	}
	good := Config{Targets: []Target{{URL: "http://127.0.0.1:1/"}}, Rate: 10}
	if err := good.Validate(); err != nil {
		t.Errorf("minimal config rejected: %v", err)
	}
	ramp := Config{Targets: good.Targets, Ramp: &Ramp{Start: 10, End: 5, Step: 1}}
	if err := ramp.Validate(); err == nil || !strings.Contains(err.Error(), "start is above end") {
		t.Errorf("bad ramp: %v", err)
	}
}

func FuzzParseSLO(f *testing.F) {
	for _, s := range []string{"p99<100ms,errors<1%", "max<=2s", "availability>99.9%", "p99.99<1us", "", ",", "p<", "errors<%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		slo, err := ParseSLO(s)
		if err != nil {
			return
		}
		for _, term := range slo.Terms {
			if err := term.validate(); err != nil {
				t.Fatalf("ParseSLO(%q) returned an invalid term: %v", s, err)
			}
		}
		// What ParseSLO accepts, String prints back in a form it accepts
		// with the same meaning.
		again, err := ParseSLO(slo.String())
		if err != nil {
			t.Fatalf("ParseSLO(%q).String() = %q does not parse: %v", s, slo.String(), err)
		}
		if again.String() != slo.String() {
			t.Fatalf("round trip of %q: %q then %q", s, slo.String(), again.String())
		}
	})
}

func FuzzParseRamp(f *testing.F) {
	for _, s := range []string{"100:5000:250", "1:1:1", "0.5:2.5:0.5", "1e3:1e4:1e3", "::", "5:1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRamp(s)
		if err != nil {
			return
		}
		rates := r.Rates()
		if len(rates) == 0 || len(rates) > maxRampSteps+1 {
			t.Fatalf("ParseRamp(%q): %d steps", s, len(rates))
		}
		for i, v := range rates {
			if !(v > 0) || v > r.End*(1+1e-9) || (i > 0 && v <= rates[i-1]) {
				t.Fatalf("ParseRamp(%q): bad rates %v", s, rates)
			}
		}
		if err := r.validate(); err != nil {
			t.Fatalf("ParseRamp(%q) returned an invalid ramp: %v", s, err)
		}
	})
}

func TestParseDurationHints(t *testing.T) {
	for _, tc := range []struct{ in, unit, want string }{
		{"10", "s", "did you mean 10s?"},
		{"2.5", "ms", "did you mean 2.5ms?"},
		{"1 s", "s", "did you mean 1s?"},
		{"10 sec", "s", "did you mean 10s?"},
		{"2minutes", "s", "did you mean 2m?"},
		{"fast", "s", "like 500ms, 30s or 2m"},
		{"", "s", "empty duration"},
	} {
		_, err := ParseDuration(tc.in, tc.unit)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseDuration(%q): %v, want ~%q", tc.in, err, tc.want)
		}
	}
	if d, err := ParseDuration("1m30s", "s"); err != nil || d != 90*time.Second {
		t.Errorf("1m30s: %v %v", d, err)
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10", "1 s", "10 sec", "fast", "1m30s", "-5", ".", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s, "s")
		if want, werr := time.ParseDuration(s); (err == nil) != (werr == nil) || d != want {
			t.Fatalf("%q: %v %v; time.ParseDuration says %v %v", s, d, err, want, werr)
		}
		if err == nil {
			return
		}
		if _, guess, ok := strings.Cut(err.Error(), "did you mean "); ok {
			guess = strings.TrimSuffix(guess, "?")
			if _, gerr := time.ParseDuration(guess); gerr != nil {
				t.Fatalf("%q: suggests %q, which does not parse: %v", s, guess, gerr)
			}
		}
	})
}
