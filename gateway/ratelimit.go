package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/httpx"
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

// limitRule is one compiled Limit.
type limitRule struct {
	prefix string // store key prefix: route name and rule index
	key    string // route | consumer | tier | ip | header:NAME
	header string // canonical header name for header:NAME
	tiers  []string
	limit  ratelimit.Limit
}

// buildRateLimit compiles a route's rate_limit section into middleware.
func buildRateLimit(cfg *Config, path string, r Route, store ratelimit.Store, log *slog.Logger) (httpx.Middleware, error) {
	rl := r.RateLimit
	var errs []error
	strategy := ratelimit.StrategyDrop
	if rl.OnLimit != "" {
		s, err := ratelimit.ParseStrategy(rl.OnLimit)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".on_limit", err))
		}
		strategy = s
	}
	var queue *ratelimit.Queue
	if strategy == ratelimit.StrategyQueue {
		qc := ratelimit.QueueConfig{}
		if rl.Queue != nil {
			qc.MaxLen, qc.MaxWait = rl.Queue.MaxLength, time.Duration(rl.Queue.MaxWait)
		}
		q, err := ratelimit.NewQueue(qc)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".queue", err))
		}
		queue = q
	} else if rl.Queue != nil {
		errs = append(errs, cfg.Errorf(path+".queue", "queue settings need on_limit: queue"))
	}
	if len(rl.Limits) == 0 {
		errs = append(errs, cfg.Errorf(path+".limits", "missing: expected at least one limit such as { rate: 100/s }"))
	}
	rules := make([]limitRule, 0, len(rl.Limits))
	for i, l := range rl.Limits {
		lp := fmt.Sprintf("%s.limits[%d]", path, i)
		rule := limitRule{prefix: fmt.Sprintf("%s#%d:", r.Name, i), key: l.Key, tiers: l.Tiers}
		switch {
		case l.Key == "" || l.Key == "route":
			rule.key = "route"
		case l.Key == "consumer", l.Key == "tier", l.Key == "ip":
		case strings.HasPrefix(l.Key, "header:") && len(l.Key) > len("header:"):
			rule.header = http.CanonicalHeaderKey(strings.TrimPrefix(l.Key, "header:"))
		default:
			errs = append(errs, cfg.Errorf(lp+".key", "unknown key %q: expected route, consumer, tier, ip or header:NAME", l.Key))
		}
		switch {
		case (l.Rate == "") == (l.Quota == ""):
			errs = append(errs, cfg.Errorf(lp, "expected exactly one of rate (e.g. 100/s) and quota (e.g. 10000/day)"))
		case l.Rate != "":
			rate, err := ratelimit.ParseRate(l.Rate)
			if err != nil {
				errs = append(errs, cfg.Wrap(lp+".rate", err))
			}
			rule.limit = ratelimit.Limit{Kind: ratelimit.KindRate, Rate: rate, Burst: l.Burst}
		default:
			q, err := ratelimit.ParseQuota(l.Quota)
			if err != nil {
				errs = append(errs, cfg.Wrap(lp+".quota", err))
			}
			if l.Burst != 0 {
				errs = append(errs, cfg.Errorf(lp+".burst", "burst applies to rate limits, not quotas"))
			}
			rule.limit = ratelimit.Limit{Kind: ratelimit.KindQuota, Rate: q}
		}
		if len(errs) == 0 {
			if err := rule.limit.Validate(); err != nil {
				errs = append(errs, cfg.Wrap(lp, err))
			}
		}
		rules = append(rules, rule)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	lim := &limiter{rules: rules, store: store, queue: queue, strategy: strategy, log: log}
	return lim.middleware, nil
}

// limiter applies a route's limits with its strategy.
type limiter struct {
	rules    []limitRule
	store    ratelimit.Store
	queue    *ratelimit.Queue
	strategy ratelimit.Strategy
	log      *slog.Logger
}

// decide checks every applicable rule, reserving a slot up to maxWait
// (queue strategy); the first refusal stops the check.
func (l *limiter) decide(ctx context.Context, r *http.Request, maxWait time.Duration) (ratelimit.Decision, error) {
	var merged ratelimit.Decision
	merged.Allowed = true
	first := true
	now := time.Now()
	tier := r.Header.Get(auth.HeaderTier) // set by the identity middleware; client copies are stripped
	for i := range l.rules {
		rule := &l.rules[i]
		if len(rule.tiers) > 0 && !contains(rule.tiers, tier) {
			continue
		}
		lim := rule.limit
		if lim.Kind == ratelimit.KindRate {
			lim.MaxWait = maxWait
		}
		d, err := l.store.Allow(ctx, rule.prefix+subject(rule, r), lim, now)
		if err != nil {
			return d, err
		}
		if first {
			merged, first = d, false
		} else {
			merged = merged.Merge(d)
		}
		if !d.Allowed {
			return merged, nil
		}
	}
	return merged, nil
}

// subject is the value a rule counts by.
func subject(rule *limitRule, r *http.Request) string {
	switch rule.key {
	case "route":
		return ""
	case "consumer":
		if c := r.Header.Get(auth.HeaderConsumer); c != "" {
			return "c:" + c
		}
		return "ip:" + clientIP(r)
	case "tier":
		return "t:" + r.Header.Get(auth.HeaderTier)
	case "ip":
		return clientIP(r)
	}
	return r.Header.Get(rule.header)
}

// clientIP is the TCP peer's address (X-Forwarded-For is not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func (l *limiter) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var d ratelimit.Decision
		var err error
		if l.strategy == ratelimit.StrategyQueue {
			d, err = l.queue.Wait(ctx, func(maxWait time.Duration) (ratelimit.Decision, error) {
				return l.decide(ctx, r, maxWait)
			})
		} else {
			d, err = l.decide(ctx, r, 0)
		}
		switch {
		case errors.Is(err, ratelimit.ErrUnavailable):
			l.log.Warn("rate limit store unavailable", "error", err.Error(), "fail_open", d.Allowed)
			if !d.Allowed {
				httpx.WriteError(w, r, &httpx.Error{Status: http.StatusServiceUnavailable, Code: "rate_limit_unavailable",
					Msg: "rate limit store unavailable", RetryAfter: time.Second, Err: err})
				return
			}
		case errors.Is(err, ratelimit.ErrQueueFull), errors.Is(err, ratelimit.ErrWaitTooLong):
			d.SetHeaders(w.Header())
			httpx.WriteError(w, r, &httpx.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
				Msg: "rate limit exceeded: " + err.Error(), Err: err})
			return
		case err != nil && ctx.Err() != nil:
			httpx.RecordStatus(r, 499) // the client gave up while queued
			return
		case err != nil:
			httpx.WriteError(w, r, &httpx.Error{Status: http.StatusInternalServerError, Code: "rate_limit_error",
				Msg: "rate limit check failed", Err: err})
			return
		}
		if d.Limit > 0 { // some rule applied
			d.SetHeaders(w.Header())
		}
		if !d.Allowed {
			if l.strategy == ratelimit.StrategyDegrade {
				r.Header.Set(ratelimit.HeaderDegraded, "1")
				next.ServeHTTP(w, r)
				return
			}
			httpx.WriteError(w, r, &httpx.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
				Msg: "rate limit exceeded", RetryAfter: d.RetryAfter})
			return
		}
		r.Header.Del(ratelimit.HeaderDegraded) // only the gateway may set it
		next.ServeHTTP(w, r)
	})
}
