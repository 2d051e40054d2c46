package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a Go duration string ("30s",
// "1m30s") in JSON and YAML documents. Block configs decoded only from
// YAML use time.Duration itself (yaml reads the same strings into it);
// Duration is for settings that also travel as JSON (the broker's).
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parsing duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String returns the duration as Go writes it ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// Percent is a share from 0 to 1, written as "20%" (or as a fraction such
// as 0.2).
type Percent float64

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	bad := fmt.Errorf("invalid percentage %q: expected e.g. \"20%%\" (0%%..100%%)", n.Value)
	if n.Kind != yaml.ScalarNode {
		return bad
	}
	s := strings.TrimSpace(n.Value)
	var v float64
	var err error
	if num, ok := strings.CutSuffix(s, "%"); ok {
		v, err = strconv.ParseFloat(strings.TrimSpace(num), 64)
		v /= 100
	} else {
		v, err = strconv.ParseFloat(s, 64)
	}
	if err != nil || v < 0 || v > 1 {
		return bad
	}
	*p = Percent(v)
	return nil
}

// String writes the share as a percentage ("20%").
func (p Percent) String() string {
	return strconv.FormatFloat(float64(p)*100, 'f', -1, 64) + "%"
}
