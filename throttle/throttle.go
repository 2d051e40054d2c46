// Package throttle is a route's rate limiting at the gateway: one or more
// rate limits (token buckets) and quotas (fixed windows), each counted by
// route, consumer, tier, client IP or a header, kept in a ratelimit.Store,
// and what happens to requests over them (drop, queue or degrade).
//
// YAML shape (a route's rate_limit section), defaults in comments:
//
//	rate_limit:
//	  on_limit: drop            # drop (default) | queue | degrade
//	  queue:                    # only with on_limit: queue
//	    max_length: 100         # requests waiting at once; default 100
//	    max_wait: 1s            # longest wait for a turn; default 1s
//	  limits:                   # at least one; all checked, the first refusal decides
//	    - key: route            # route (default) | consumer | tier | ip | header:NAME
//	      rate: 100/s           # token-bucket rate, or
//	      burst: 100            # bucket size; default the rate's count
//	      # quota: 10000/day    # fixed-window quota (exactly one of rate and quota)
//	      tiers: [free]         # only for consumers of these tiers; default all
package throttle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/ratelimit"
)

// Config is a route's throttling: one or more limits and what happens
// to requests over them.
type Config struct {
	// OnLimit is the strategy for requests over a limit: drop (default:
	// 429 with Retry-After and RateLimit-* headers), queue (wait in FIFO
	// order up to queue.max_wait, then drop), degrade (forward with
	// X-Degraded: 1 so the backend can answer more cheaply).
	OnLimit string `yaml:"on_limit"`
	// Queue bounds the queue strategy.
	Queue *Queue `yaml:"queue"`
	// Limits are all checked, in order; the first refusal decides.
	Limits []Limit `yaml:"limits"`
}

// Queue bounds the wait of the queue strategy.
type Queue struct {
	// MaxLength is how many requests may wait at once. Default 100.
	MaxLength int `yaml:"max_length"`
	// MaxWait is the longest a request waits for its turn. Default 1s.
	MaxWait time.Duration `yaml:"max_wait"`
}

// Limit is one rate limit or quota.
type Limit struct {
	// Key is what the limit counts by: route (default: all requests of
	// the route), consumer (each authenticated consumer; anonymous
	// requests count by client IP), tier (all consumers of a tier
	// together), ip (client address), or header:NAME.
	Key string `yaml:"key"`
	// Rate is a token-bucket refill rate such as "100/s" or "6000/min".
	Rate string `yaml:"rate"`
	// Burst is the bucket size for Rate. Default: the rate's count.
	Burst int `yaml:"burst"`
	// Quota is a fixed-window quota such as "10000/day" (UTC days).
	// Exactly one of rate and quota is required.
	Quota string `yaml:"quota"`
	// Tiers restricts the limit to consumers of these tiers; empty
	// applies it to every request.
	Tiers []string `yaml:"tiers"`
}

// Validate reports every problem of c at once (errors.Join), each a
// *config.FieldError relative to the rate_limit section. It does not
// modify c.
func (c Config) Validate() error {
	_, err := compile(c, "")
	return err
}

// Throttle applies a route's limits with its strategy.
type Throttle struct {
	rules    []rule
	store    ratelimit.Store
	queue    *ratelimit.Queue
	strategy ratelimit.Strategy
	log      *slog.Logger
}

// rule is one compiled Limit.
type rule struct {
	prefix string // store key prefix: route name and rule index
	key    string // route | consumer | tier | ip | header:NAME
	header string // canonical header name for header:NAME
	tiers  []string
	limit  ratelimit.Limit
}

// New compiles a route's rate_limit section. routeName scopes the keys in
// store (which outlives the route, so limits survive config reloads); log
// receives store failures. Every problem is reported (errors.Join), each a
// *config.FieldError relative to the section ("limits[0].rate").
func New(cfg Config, routeName string, store ratelimit.Store, log *slog.Logger) (*Throttle, error) {
	t, err := compile(cfg, routeName)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t.store, t.log = store, log
	return t, nil
}

// fieldErrs locates err at the key path, one FieldError per joined error.
func fieldErrs(path string, err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrs(path, e)...)
		}
		return out
	}
	return []error{&config.FieldError{Path: path, Err: err}}
}

func compile(rl Config, routeName string) (*Throttle, error) {
	var errs []error
	strategy := ratelimit.StrategyDrop
	if rl.OnLimit != "" {
		s, err := ratelimit.ParseStrategy(rl.OnLimit)
		if err != nil {
			errs = append(errs, fieldErrs("on_limit", err)...)
		}
		strategy = s
	}
	var queue *ratelimit.Queue
	if strategy == ratelimit.StrategyQueue {
		qc := ratelimit.QueueConfig{}
		if rl.Queue != nil {
			qc.MaxLen, qc.MaxWait = rl.Queue.MaxLength, rl.Queue.MaxWait
		}
		q, err := ratelimit.NewQueue(qc)
		if err != nil {
			errs = append(errs, fieldErrs("queue", err)...)
		}
		queue = q
	} else if rl.Queue != nil {
		errs = append(errs, config.Fieldf("queue", "queue settings need on_limit: queue"))
	}
	if len(rl.Limits) == 0 {
		errs = append(errs, config.Fieldf("limits", "missing: expected at least one limit such as { rate: 100/s }"))
	}
	rules := make([]rule, 0, len(rl.Limits))
	for i, l := range rl.Limits {
		lp := fmt.Sprintf("limits[%d]", i)
		ru := rule{prefix: fmt.Sprintf("%s#%d:", routeName, i), key: l.Key, tiers: l.Tiers}
		switch {
		case l.Key == "" || l.Key == "route":
			ru.key = "route"
		case l.Key == "consumer", l.Key == "tier", l.Key == "ip":
		case strings.HasPrefix(l.Key, "header:") && len(l.Key) > len("header:"):
			ru.header = http.CanonicalHeaderKey(strings.TrimPrefix(l.Key, "header:"))
		default:
			errs = append(errs, config.Fieldf(lp+".key", "unknown key %q: expected route, consumer, tier, ip or header:NAME", l.Key))
		}
		switch {
		case (l.Rate == "") == (l.Quota == ""):
			errs = append(errs, config.Fieldf(lp, "expected exactly one of rate (e.g. 100/s) and quota (e.g. 10000/day)"))
		case l.Rate != "":
			rate, err := ratelimit.ParseRate(l.Rate)
			if err != nil {
				errs = append(errs, fieldErrs(lp+".rate", err)...)
			}
			ru.limit = ratelimit.Limit{Kind: ratelimit.KindRate, Rate: rate, Burst: l.Burst}
		default:
			q, err := ratelimit.ParseQuota(l.Quota)
			if err != nil {
				errs = append(errs, fieldErrs(lp+".quota", err)...)
			}
			if l.Burst != 0 {
				errs = append(errs, config.Fieldf(lp+".burst", "burst applies to rate limits, not quotas"))
			}
			ru.limit = ratelimit.Limit{Kind: ratelimit.KindQuota, Rate: q}
		}
		if len(errs) == 0 {
			if err := ru.limit.Validate(); err != nil {
				errs = append(errs, fieldErrs(lp, err)...)
			}
		}
		rules = append(rules, ru)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Throttle{rules: rules, queue: queue, strategy: strategy}, nil
}

// decide checks every applicable rule, reserving a slot up to maxWait
// (queue strategy); the first refusal stops the check.
func (t *Throttle) decide(ctx context.Context, r *http.Request, maxWait time.Duration) (ratelimit.Decision, error) {
	var merged ratelimit.Decision
	merged.Allowed = true
	first := true
	now := time.Now()
	tier := r.Header.Get(auth.HeaderTier) // set by the identity middleware; client copies are stripped
	for i := range t.rules {
		ru := &t.rules[i]
		if len(ru.tiers) > 0 && !slices.Contains(ru.tiers, tier) {
			continue
		}
		lim := ru.limit
		if lim.Kind == ratelimit.KindRate {
			lim.MaxWait = maxWait
		}
		d, err := t.store.Allow(ctx, ru.prefix+subject(ru, r), lim, now)
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
func subject(ru *rule, r *http.Request) string {
	switch ru.key {
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
	return r.Header.Get(ru.header)
}

// clientIP is the TCP peer's address (X-Forwarded-For is not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Middleware returns the middleware applying the limits: requests over a
// limit are answered 429 rate_limited (drop, or queue past its bounds) or
// forwarded with X-Degraded: 1 (degrade); a store that cannot be reached
// answers 503 rate_limit_unavailable unless it fails open. The
// RateLimit-* headers are set whenever a limit applied.
func (t *Throttle) Middleware() httpx.Middleware { return t.middleware }

func (t *Throttle) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var d ratelimit.Decision
		var err error
		if t.strategy == ratelimit.StrategyQueue {
			d, err = t.queue.Wait(ctx, func(maxWait time.Duration) (ratelimit.Decision, error) {
				return t.decide(ctx, r, maxWait)
			})
		} else {
			d, err = t.decide(ctx, r, 0)
		}
		switch {
		case errors.Is(err, ratelimit.ErrUnavailable):
			t.log.Warn("rate limit store unavailable", "error", err.Error(), "fail_open", d.Allowed)
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
			if t.strategy == ratelimit.StrategyDegrade {
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
