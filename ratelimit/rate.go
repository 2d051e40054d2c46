package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is N events per Per: a sustained rate ("100/s") or a quota
// ("10000/day"). The zero Rate is invalid.
type Rate struct {
	// N is the number of events per period. At least 1, at most MaxN.
	N int
	// Per is the period. At least MinPer, at most MaxPer, and at least N
	// nanoseconds (so each event gets at least one nanosecond).
	Per time.Duration
}

// Bounds of a valid Rate.
const (
	// MaxN is the largest Rate.N.
	MaxN = 1_000_000_000
	// MinPer is the shortest Rate.Per: one millisecond. A whole number of
	// microseconds is also required, as the Redis store counts in them.
	MinPer = time.Millisecond
	// MaxPer is the longest Rate.Per: 366 days.
	MaxPer = 366 * 24 * time.Hour
)

// Day is the period of "N/d" and "N/day": 24 hours. Quota windows are
// aligned on the Unix epoch, so a daily window runs from 00:00 to 24:00 UTC.
const Day = 24 * time.Hour

// ErrInvalidRate is matched (errors.Is) by every error ParseRate,
// ParseQuota and Rate.Validate return.
var ErrInvalidRate = errors.New("invalid rate")

// unit returns the length of a unit name accepted after the slash.
func unit(name string) (time.Duration, bool) {
	switch name {
	case "ms":
		return time.Millisecond, true
	case "s", "sec", "second":
		return time.Second, true
	case "m", "min", "minute":
		return time.Minute, true
	case "h", "hour":
		return time.Hour, true
	case "d", "day":
		return Day, true
	}
	return 0, false
}

// ParseRate parses a rate written "N/UNIT" or "N/DURATION": "100/s",
// "6000/min", "5/250ms", "1/2h". UNIT is one of ms, s (sec, second),
// m (min, minute), h (hour) or d (day, 24 hours); a number may precede it
// ("3/2d"); any other period is parsed by time.ParseDuration ("1/1m30s").
// Spaces around the parts are ignored.
func ParseRate(s string) (Rate, error) { return parse("rate", s) }

// ParseQuota parses a quota, written like a rate: "10000/day", "500/h".
// The period is a fixed window aligned on the Unix epoch (see Limit).
func ParseQuota(s string) (Rate, error) { return parse("quota", s) }

func parse(what, s string) (Rate, error) {
	bad := func(reason string) (Rate, error) {
		return Rate{}, fmt.Errorf("parsing %s %q: %s: expected N/UNIT like \"100/s\", \"10000/day\" or \"5/250ms\": %w",
			what, s, reason, ErrInvalidRate)
	}
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return bad("missing \"/\"")
	}
	num, per = strings.TrimSpace(num), strings.TrimSpace(per)
	n, err := strconv.Atoi(num)
	if err != nil || num == "" || num[0] == '+' || num[0] == '-' {
		return bad(fmt.Sprintf("count %q is not a positive whole number", num))
	}
	d, err := parsePeriod(per)
	if err != nil {
		return bad(err.Error())
	}
	r := Rate{N: n, Per: d}
	if err := r.check(); err != nil {
		return bad(err.Error())
	}
	return r, nil
}

// parsePeriod parses "s", "2d", "250ms", "1m30s".
func parsePeriod(p string) (time.Duration, error) {
	if u, ok := unit(p); ok {
		return u, nil
	}
	i := 0
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	if u, ok := unit(p[i:]); ok && i > 0 {
		k, err := strconv.ParseInt(p[:i], 10, 64)
		if err != nil || k > int64(MaxPer/u) {
			return 0, fmt.Errorf("period %q is too long", p)
		}
		return time.Duration(k) * u, nil
	}
	d, err := time.ParseDuration(p)
	if err != nil {
		return 0, fmt.Errorf("period %q: expected a unit (ms, s, m, h, d) or a duration", p)
	}
	return d, nil
}

// check reports the first problem of r without wrapping.
func (r Rate) check() error {
	switch {
	case r.N < 1 || r.N > MaxN:
		return fmt.Errorf("count %d out of range [1, %d]", r.N, MaxN)
	case r.Per < MinPer || r.Per > MaxPer:
		return fmt.Errorf("period %v out of range [%v, %v]", r.Per, MinPer, MaxPer)
	case r.Per%time.Microsecond != 0:
		return fmt.Errorf("period %v is not a whole number of microseconds", r.Per)
	case r.Per < time.Duration(r.N):
		return fmt.Errorf("%d per %v is more than one per nanosecond", r.N, r.Per)
	}
	return nil
}

// Validate reports whether r is usable, with an error wrapping
// ErrInvalidRate.
func (r Rate) Validate() error {
	if err := r.check(); err != nil {
		return fmt.Errorf("rate %s: %s: %w", r, err.Error(), ErrInvalidRate)
	}
	return nil
}

// Interval is the emission interval Per/N: the time one event "costs".
func (r Rate) Interval() time.Duration {
	if r.N <= 0 {
		return 0
	}
	return r.Per / time.Duration(r.N)
}

// String formats r so that ParseRate reads it back: "100/s", "10000/d",
// "5/250ms".
func (r Rate) String() string {
	n := strconv.Itoa(r.N)
	switch r.Per {
	case time.Second:
		return n + "/s"
	case time.Minute:
		return n + "/m"
	case time.Hour:
		return n + "/h"
	case Day:
		return n + "/d"
	}
	if r.Per > 0 && r.Per%Day == 0 {
		return n + "/" + strconv.FormatInt(int64(r.Per/Day), 10) + "d"
	}
	return n + "/" + r.Per.String()
}

// MarshalText implements encoding.TextMarshaler with String.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseRate, so a
// config decoder can read `rate: 100/s` straight into a Rate.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
