package gateway

import (
	"strings"

	"github.com/switchyard/switchyard/ratelimit"
)

// newLimitStore opens the rate-limit store the config names. It lives as
// long as the gateway, so limits survive config reloads.
func newLimitStore(cfg *Config) (ratelimit.Store, func() error, error) {
	switch s := cfg.RateLimitStore; {
	case s == "" || s == "memory":
		m, err := ratelimit.NewMemory(ratelimit.MemoryConfig{})
		return m, func() error { return nil }, err
	case strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://"):
		r, err := ratelimit.NewRedis(s, ratelimit.RedisOptions{FailOpen: cfg.RateLimitFailOpen})
		if err != nil {
			return nil, nil, cfg.Wrap("rate_limit_store", err)
		}
		return r, r.Close, nil
	default:
		return nil, nil, cfg.Errorf("rate_limit_store", "unsupported store %q: expected memory or a redis:// URL", s)
	}
}
