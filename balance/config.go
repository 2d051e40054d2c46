package balance

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/upstream"
	"golang.org/x/net/http/httpguts"
)

// Policy names accepted in Config.Policy.
const (
	RoundRobinPolicy         = "round_robin"
	WeightedRoundRobinPolicy = "weighted_round_robin"
	LeastConnectionsPolicy   = "least_connections"
	LeastResponseTimePolicy  = "least_response_time"
	RandomPolicy             = "random"
	IPHashPolicy             = "ip_hash"
	ConsistentHashPolicy     = "consistent_hash"
	CookiePolicy             = "cookie"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultPolicy       = RoundRobinPolicy
	DefaultHashOn       = "client_ip"
	DefaultCookie       = "sy_sticky"
	DefaultVirtualNodes = 100
	DefaultLoadFactor   = 1.25
	DefaultFallback     = RoundRobinPolicy

	// MaxVirtualNodes bounds Config.VirtualNodes.
	MaxVirtualNodes = 10000
	// maxRingSize bounds the consistent-hash ring (8+4 bytes per entry).
	// When VirtualNodes × total weight exceeds it, every target gets
	// proportionally fewer points (at least one per target).
	maxRingSize = 1 << 20
)

// policyNames lists every policy in the order error messages show them.
var policyNames = []string{
	RoundRobinPolicy, WeightedRoundRobinPolicy, LeastConnectionsPolicy,
	LeastResponseTimePolicy, RandomPolicy, IPHashPolicy, ConsistentHashPolicy,
	CookiePolicy,
}

// fallbackNames lists the policies usable as Config.Fallback: those that
// need no request key, so a fallback can never need a fallback itself.
var fallbackNames = []string{
	RoundRobinPolicy, WeightedRoundRobinPolicy, LeastConnectionsPolicy,
	LeastResponseTimePolicy, RandomPolicy,
}

// CookieConfig is the sticky-session cookie of the cookie policy.
type CookieConfig struct {
	// Name of the cookie. Default "sy_sticky". Must be a valid cookie name
	// (an RFC 7230 token).
	Name string `yaml:"name"`
	// TTL is the cookie's Max-Age, rounded up to whole seconds. 0
	// (default) makes a session cookie; negative is invalid.
	TTL time.Duration `yaml:"ttl"`
}

// Config selects and tunes a load-balancing policy. In the gateway's
// config file its keys sit in the upstream's mapping (balance, hash_on,
// cookie, virtual_nodes, load_factor, balance_fallback). The zero value is valid
// and means round_robin. Fields a policy does not use are ignored by it but
// still validated.
type Config struct {
	// Policy is the algorithm: round_robin, weighted_round_robin,
	// least_connections, least_response_time, random, ip_hash,
	// consistent_hash or cookie. Empty means round_robin.
	Policy string `yaml:"balance"`
	// HashOn is the request key hashed by ip_hash and consistent_hash:
	// "client_ip" (default; the host part of the connection's RemoteAddr,
	// which is the previous hop, not X-Forwarded-For), "header:NAME",
	// "cookie:NAME", "query:NAME" or "path" (URL path, without the query).
	// A request without the key (header, cookie or parameter absent or
	// empty) is balanced by Fallback instead of all landing on one target.
	HashOn string `yaml:"hash_on"`
	// Cookie is the sticky-session cookie of the cookie policy.
	Cookie CookieConfig `yaml:"cookie"`
	// VirtualNodes is how many points consistent_hash puts on its ring per
	// unit of target weight. Default 100, which keeps each target's share of
	// keys within about ±10% of its fair share; more points smooth the
	// distribution at the cost of memory (12 bytes each) and build time.
	// Range 1 to 10000; the ring is capped at about a million points.
	VirtualNodes int `yaml:"virtual_nodes"`
	// LoadFactor is the bounded-load factor c of consistent_hash: a target
	// takes at most ceil(c × (in-flight requests + 1) × weight share)
	// requests at once before keys spill clockwise to the next target.
	// Default 1.25; must be greater than 1. Lower values balance better but
	// move more keys off their home target under load; a large value (say
	// 100) practically disables the bound.
	LoadFactor float64 `yaml:"load_factor"`
	// Fallback is the policy used by ip_hash and consistent_hash for
	// requests without a hash key, and by cookie for requests without a
	// valid sticky cookie. One of round_robin (default),
	// weighted_round_robin, least_connections, least_response_time, random.
	Fallback string `yaml:"balance_fallback"`
}

// Validate reports every problem in c at once (joined with errors.Join).
// It does not modify c; zero fields are valid and mean their default.
func (c Config) Validate() error {
	var errs []error
	if c.Policy != "" && !contains(policyNames, c.Policy) {
		errs = append(errs, config.Fieldf("balance", "unknown balance policy %q: expected one of %s",
			c.Policy, strings.Join(policyNames, ", ")))
	}
	if c.HashOn != "" {
		if _, err := parseHashOn(c.HashOn); err != nil {
			errs = append(errs, &config.FieldError{Path: "hash_on", Err: err})
		}
	}
	if c.Cookie.Name != "" && !httpguts.ValidHeaderFieldName(c.Cookie.Name) {
		errs = append(errs, config.Fieldf("cookie.name", "invalid cookie name %q: expected a token (letters, digits and !#$%%&'*+-.^_`|~)", c.Cookie.Name))
	}
	if c.Cookie.TTL < 0 {
		errs = append(errs, config.Fieldf("cookie.ttl", "negative cookie ttl %s: expected 0 (session cookie) or a positive duration", c.Cookie.TTL))
	}
	if c.VirtualNodes < 0 || c.VirtualNodes > MaxVirtualNodes {
		errs = append(errs, config.Fieldf("virtual_nodes", "virtual nodes %d out of range: expected 1 to %d (0 means %d)",
			c.VirtualNodes, MaxVirtualNodes, DefaultVirtualNodes))
	}
	if c.LoadFactor != 0 && (math.IsNaN(c.LoadFactor) || math.IsInf(c.LoadFactor, 0) || c.LoadFactor <= 1) {
		errs = append(errs, config.Fieldf("load_factor", "load factor %v out of range: expected a finite number greater than 1 (0 means %v)",
			c.LoadFactor, DefaultLoadFactor))
	}
	if c.Fallback != "" && !contains(fallbackNames, c.Fallback) {
		errs = append(errs, config.Fieldf("balance_fallback", "unknown fallback policy %q: expected one of %s",
			c.Fallback, strings.Join(fallbackNames, ", ")))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Policy == "" {
		c.Policy = DefaultPolicy
	}
	if c.HashOn == "" {
		c.HashOn = DefaultHashOn
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = DefaultCookie
	}
	if c.VirtualNodes == 0 {
		c.VirtualNodes = DefaultVirtualNodes
	}
	if c.LoadFactor == 0 {
		c.LoadFactor = DefaultLoadFactor
	}
	if c.Fallback == "" {
		c.Fallback = DefaultFallback
	}
	return c
}

// New validates cfg, applies defaults and returns the policy over targets.
// The slice is copied; the targets themselves are shared and read through
// their atomics on every Pick. An empty slice is allowed (Pick returns nil).
func New(cfg Config, targets []*upstream.Target) (Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring balance policy: %w", err)
	}
	for i, t := range targets {
		if t == nil {
			return nil, fmt.Errorf("configuring balance policy: target %d is nil", i)
		}
	}
	cfg = cfg.withDefaults()
	ts := append([]*upstream.Target(nil), targets...)
	if cfg.Policy == CookiePolicy || cfg.Policy == IPHashPolicy || cfg.Policy == ConsistentHashPolicy {
		fb := newSimple(cfg.Fallback, ts)
		switch cfg.Policy {
		case CookiePolicy:
			return newCookie(cfg, ts, fb), nil
		case IPHashPolicy:
			key, _ := parseHashOn(cfg.HashOn) // validated above
			return &IPHash{targets: ts, key: key, Fallback: fb}, nil
		default:
			key, _ := parseHashOn(cfg.HashOn)
			return newConsistentHash(cfg, ts, key, fb), nil
		}
	}
	return newSimple(cfg.Policy, ts), nil
}

// newSimple builds one of the policies that need no request key.
func newSimple(name string, ts []*upstream.Target) Policy {
	switch name {
	case WeightedRoundRobinPolicy:
		return &WeightedRoundRobin{targets: ts, current: make([]int64, len(ts))}
	case LeastConnectionsPolicy:
		return &LeastConnections{targets: ts}
	case LeastResponseTimePolicy:
		return &LeastResponseTime{targets: ts, rng: newRNG()}
	case RandomPolicy:
		return &Random{targets: ts, rng: newRNG()}
	default:
		return &RoundRobin{targets: ts}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
