package cli

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// durationValue is a duration flag whose errors say what was expected:
// flag.Duration answers "--wait 10" with "parse error".
type durationValue struct{ p *time.Duration }

func (d durationValue) String() string {
	if d.p == nil {
		return "0s"
	}
	return d.p.String()
}

func (d durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err == nil {
		*d.p = v
		return nil
	}
	if t := strings.TrimSpace(s); t != "" {
		if _, nerr := strconv.ParseFloat(t, 64); nerr == nil {
			return fmt.Errorf("no unit: did you mean %ss?", t)
		}
	}
	return errors.New("want a duration like 500ms, 30s or 2m (units ns, us, ms, s, m, h)")
}

// durationVar defines a duration flag (usage names its `placeholder`, as
// flag.DurationVar's does) with durationValue's errors.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(durationValue{p}, name, usage)
}
