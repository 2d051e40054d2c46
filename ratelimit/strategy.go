package ratelimit

import (
	"fmt"
	"strconv"
)

// Strategy is what a route does with a request over its limit.
type Strategy int

const (
	// StrategyDrop (the default) answers 429 Too Many Requests with
	// Retry-After and the RateLimit headers (Decision.SetHeaders).
	StrategyDrop Strategy = iota
	// StrategyQueue holds the request in FIFO order until it conforms, up to
	// a max wait and queue length (Queue), then drops it.
	StrategyQueue
	// StrategyDegrade forwards the request with HeaderDegraded: 1, so the
	// backend can serve a cheaper answer.
	StrategyDegrade
)

// ParseStrategy parses "drop", "queue" or "degrade".
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "drop":
		return StrategyDrop, nil
	case "queue":
		return StrategyQueue, nil
	case "degrade":
		return StrategyDegrade, nil
	}
	return 0, fmt.Errorf("parsing rate limit strategy %q: expected drop, queue or degrade", s)
}

// String returns "drop", "queue" or "degrade".
func (s Strategy) String() string {
	switch s {
	case StrategyDrop:
		return "drop"
	case StrategyQueue:
		return "queue"
	case StrategyDegrade:
		return "degrade"
	}
	return "strategy(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (s Strategy) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseStrategy.
func (s *Strategy) UnmarshalText(b []byte) error {
	v, err := ParseStrategy(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
