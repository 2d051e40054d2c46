package ratelimit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
	}{
		{"100/s", Rate{100, time.Second}},
		{"100/sec", Rate{100, time.Second}},
		{"100/second", Rate{100, time.Second}},
		{" 6000 / min ", Rate{6000, time.Minute}},
		{"60/m", Rate{60, time.Minute}},
		{"60/minute", Rate{60, time.Minute}},
		{"1000/h", Rate{1000, time.Hour}},
		{"1000/hour", Rate{1000, time.Hour}},
		{"10000/d", Rate{10000, Day}},
		{"10000/day", Rate{10000, Day}},
		{"5/250ms", Rate{5, 250 * time.Millisecond}},
		{"3/2d", Rate{3, 2 * Day}},
		{"3/10s", Rate{3, 10 * time.Second}},
		{"1/1m30s", Rate{1, 90 * time.Second}},
		{"1/ms", Rate{1, time.Millisecond}},
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseRateErrors(t *testing.T) {
	tests := []struct{ in, why string }{
		{"", `missing "/"`},
		{"100", `missing "/"`},
		{"/s", `count "" is not`},
		{"x/s", `count "x" is not`},
		{"-1/s", `count "-1" is not`},
		{"+1/s", `count "+1" is not`},
		{"1.5/s", `count "1.5" is not`},
		{"0/s", "count 0 out of range"},
		{"100/", `period ""`},
		{"100/fortnight", `period "fortnight"`},
		{"100/-1s", "period -1s out of range"},
		{"1/100us", "period 100µs out of range"},
		{"1/400d", `period "400d" is too long`},
		{"1/9000h1m", "period 9000h1m0s out of range"},
		{"1/99999999999999999999d", "too long"},
		{"2000000/1ms", "more than one per nanosecond"},
		{"1/1500500ns", "whole number of microseconds"},
		{"100/s/s", `period "s/s"`},
	}
	for _, tc := range tests {
		_, err := ParseRate(tc.in)
		if err == nil {
			t.Errorf("ParseRate(%q) succeeded", tc.in)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ErrInvalidRate) || !strings.Contains(msg, tc.why) ||
			!strings.HasPrefix(msg, "parsing rate "+quote(tc.in)) || !strings.Contains(msg, "expected N/UNIT") {
			t.Errorf("ParseRate(%q) error %q; want it to wrap ErrInvalidRate, quote the input, say %q and the form",
				tc.in, msg, tc.why)
		}
	}
	if _, err := ParseQuota("lots/day"); err == nil || !strings.HasPrefix(err.Error(), `parsing quota "lots/day"`) {
		t.Errorf("ParseQuota error %v", err)
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func TestRateString(t *testing.T) {
	for _, tc := range []struct {
		r    Rate
		want string
	}{
		{Rate{100, time.Second}, "100/s"},
		{Rate{6, time.Minute}, "6/m"},
		{Rate{6, time.Hour}, "6/h"},
		{Rate{10000, Day}, "10000/d"},
		{Rate{3, 7 * Day}, "3/7d"},
		{Rate{5, 250 * time.Millisecond}, "5/250ms"},
		{Rate{1, 90 * time.Second}, "1/1m30s"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestRateText(t *testing.T) {
	var r Rate
	if err := r.UnmarshalText([]byte("100/s")); err != nil || r != (Rate{100, time.Second}) {
		t.Errorf("UnmarshalText: %v, %v", r, err)
	}
	if err := r.UnmarshalText([]byte("100")); err == nil {
		t.Error("UnmarshalText accepted 100")
	}
	if b, _ := r.MarshalText(); string(b) != "100/s" {
		t.Errorf("MarshalText %q", b)
	}
}

func TestLimitValidate(t *testing.T) {
	ok := []Limit{
		{Rate: Rate{100, time.Second}, Burst: 200},
		{Rate: Rate{100, time.Second}},
		{Kind: KindQuota, Rate: Rate{10000, Day}},
		{Rate: Rate{1, time.Second}, MaxWait: time.Second},
	}
	for _, l := range ok {
		if err := l.Validate(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
	err := Limit{Kind: 5, Rate: Rate{0, time.Second}, Burst: -1, MaxWait: -1}.Validate()
	for _, want := range []string{"kind 5", "count 0", "burst -1", "max wait -1ns"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v; want it to mention %q", err, want)
		}
	}
	if err := (Limit{Rate: Rate{1, MaxPer}, Burst: 2}).Validate(); err == nil {
		t.Error("a bucket taking two years to fill was accepted")
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/s", "10000/day", "5/250ms", "3/2d", "1/1m30s", "0/s", "x", "1/", "9/9999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRate) {
				t.Fatalf("ParseRate(%q) error %v does not wrap ErrInvalidRate", s, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRate(%q) = %v, which fails Validate: %v", s, r, err)
		}
		if r.Interval() <= 0 {
			t.Fatalf("ParseRate(%q) = %v with interval %v", s, r, r.Interval())
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %v; its String %q parses to %v, %v", s, r, r.String(), back, err)
		}
	})
}
