package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/ratelimit"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/upstream"
)

// PoolConfig is everything a Pool needs; the gateway builds it from the
// validated configuration. Nil optional parts disable the feature.
type PoolConfig struct {
	// Name of the upstream, for errors, logs and metrics.
	Name string
	// Targets of the pool (shared with the health checker and admin API).
	Targets []*upstream.Target
	// Policy picks targets. Required.
	Policy balance.Policy
	// Breaker configures one circuit breaker per target and one for the
	// whole upstream; nil disables breakers.
	Breaker *breaker.Config
	// Outlier, when set, ejects targets after consecutive failures.
	Outlier *health.Outlier
	// Retry, when set with more than one attempt, retries safe requests.
	Retry *retry.Config
	// Timeout bounds connecting and waiting for the upstream.
	Timeout Timeouts
	// MaxIdleConns is the keep-alive pool size per target. Default 256.
	MaxIdleConns int
	// MaxInFlight caps concurrent requests to the upstream (0 = no cap);
	// requests over it are answered 503 upstream_busy at once.
	MaxInFlight int
	// TLS, when set, makes connections to the targets HTTPS with this
	// client config (CA bundle, server name, client certificate); HTTP/2
	// is negotiated by ALPN unless Protocol says otherwise.
	TLS *tls.Config
	// Protocol is ProtocolAuto (default), ProtocolHTTP1, ProtocolH2 or
	// ProtocolH2C; see ValidProtocol.
	Protocol string
	// Transport, if set, replaces the pool's own HTTP transport (tests).
	Transport http.RoundTripper
	// Hooks receive state changes for metrics and logs; may be nil.
	Hooks *Hooks
	// Metrics, if set, records the pool's attempts, retries and ejections
	// (observers resolved here, once).
	Metrics *Metrics
}

// Timeouts bound the exchange with an upstream. Zero fields take their
// defaults.
type Timeouts struct {
	// Connect bounds dialing a target. Default 5s.
	Connect time.Duration `yaml:"connect"`
	// Header bounds the wait for response headers after the request was
	// sent. Default 0: no separate bound (Response applies).
	Header time.Duration `yaml:"header"`
	// Response bounds the whole upstream exchange, including retries and
	// the response body. Default 60s; streams (SSE, WebSocket) are not
	// bounded by it once the response has started.
	Response time.Duration `yaml:"response"`
}

// Default timeouts.
const (
	DefaultConnectTimeout  = 5 * time.Second
	DefaultResponseTimeout = 60 * time.Second
)

// Validate reports negative timeouts, each at its key.
func (t Timeouts) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		v   time.Duration
	}{{"connect", t.Connect}, {"header", t.Header}, {"response", t.Response}} {
		if f.v < 0 {
			errs = append(errs, config.Fieldf(f.key, "negative duration %s", f.v))
		}
	}
	return errors.Join(errs...)
}

// AttemptObserver is implemented by a balancing policy that wants the
// outcome of every attempt it picked a target for (a rollout's split
// judges its cohorts by them). failed is a connect error, timeout or 5xx;
// d is the time to the response headers (or the error). Called on the
// request path: it must be fast and not block.
type AttemptObserver interface {
	ObserveAttempt(t *upstream.Target, failed bool, d time.Duration)
}

// Mirror is implemented by a balancing policy that wants a copy of the
// requests it balances (a rollout's shadow traffic). Mirror is called on
// the request path before the first attempt, only for a request whose
// body is entirely known: none, or read ahead (body); req must not be
// kept or changed (clone it). It returns a function the proxy calls once
// with the real request's outcome (status 0 when it failed without a
// response; d from before the first attempt to the final response
// headers), or nil to skip. Both must be fast and never block: the copy
// is sent elsewhere, and it can neither slow nor fail the real request.
type Mirror interface {
	Mirror(req *http.Request, body []byte) func(status int, d time.Duration)
}

// Hooks are optional callbacks for observability.
type Hooks struct {
	// BreakerChange is called on every circuit transition; target is nil
	// for the upstream-wide breaker.
	BreakerChange func(upstreamName string, target *upstream.Target, from, to breaker.State)
}

// Pool is a running upstream: targets, balancer, breakers, retries and the
// keep-alive transport. Its target set can be replaced while it serves
// (SetTargets, for upstreams discovered from a registry). Safe for
// concurrent use.
type Pool struct {
	name      string
	members   atomic.Pointer[members]
	cfg       PoolConfig       // for building member sets
	breaker   *breaker.Breaker // upstream-wide, nil when disabled
	retry     *retry.Policy
	backoff   retry.Backoff
	budget    *retry.Budget
	attempts  int
	transport http.RoundTripper
	closeIdle func()
	respTO    time.Duration
	scheme    string                 // of requests to the targets: http or https
	certAsked atomic.Bool            // a target asked for a client certificate the pool has none of
	inflight  *ratelimit.Concurrency // nil without a cap
}

// members is one generation of a pool's target set and what is built
// over it. A request reads it once and uses it for all its attempts:
// target indexes (upstream.Tried, breakers, metrics) only mean something
// within one generation.
type members struct {
	targets  []*upstream.Target
	policy   balance.Policy
	sticky   balance.Sticky
	observer AttemptObserver    // the policy, when it observes attempts (a rollout's split)
	mirror   Mirror             // the policy, when it mirrors requests (a rollout's shadow)
	breakers []*breaker.Breaker // per target, nil when disabled
	outlier  *health.Outlier
	obs      *poolObs // nil without metrics
}

// NewPool validates cfg and builds the pool.
func NewPool(cfg PoolConfig) (*Pool, error) {
	p := &Pool{
		name:     cfg.Name,
		cfg:      cfg,
		attempts: 1,
		respTO:   orDefault(cfg.Timeout.Response, DefaultResponseTimeout),
		scheme:   schemeOf(cfg.TLS),
	}
	if err := ValidProtocol(cfg.Protocol, cfg.TLS != nil); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	if cfg.MaxInFlight > 0 {
		c, err := ratelimit.NewConcurrency(cfg.MaxInFlight)
		if err != nil {
			return nil, err
		}
		p.inflight = c
	}
	if cfg.Breaker != nil {
		b, err := breaker.New(*cfg.Breaker, breaker.Options{OnStateChange: p.onBreakerChange(nil)})
		if err != nil {
			return nil, err
		}
		p.breaker = b
	}
	m, err := p.newMembers(cfg.Targets, cfg.Policy, cfg.Outlier, nil)
	if err != nil {
		return nil, err
	}
	p.members.Store(m)
	if cfg.Retry != nil && cfg.Retry.Attempts > 1 {
		pol, err := retry.NewPolicy(*cfg.Retry)
		if err != nil {
			return nil, err
		}
		p.retry = pol
		p.backoff = pol.Backoff()
		p.budget = pol.Budget()
		p.attempts = cfg.Retry.Attempts
	}
	if cfg.Transport != nil {
		p.transport = cfg.Transport
	} else {
		tr, dialer, idle := newTransport(cfg)
		if configureProtocols(tr, cfg, &p.certAsked) {
			h1 := newH1Transport(tr, dialer, cfg.Timeout.Header, idle)
			p.transport = h1
			p.closeIdle = h1.Close
		} else if cfg.Protocol == ProtocolH2C || cfg.Protocol == ProtocolH2 {
			// gRPC calls take the frame-level HTTP/2 path (h2up.go);
			// other requests (and upgrades) http.Transport.
			h2 := newH2Transport(cfg, dialer, &p.certAsked)
			p.transport = grpcSplit{grpc: h2, other: tr}
			p.closeIdle = func() { h2.CloseIdleConnections(); tr.CloseIdleConnections() }
		} else {
			// TLS and HTTP/2 go through http.Transport alone: the fast
			// path is plain HTTP/1.1.
			p.transport = tr
			p.closeIdle = tr.CloseIdleConnections
		}
	}
	return p, nil
}

func (p *Pool) onBreakerChange(t *upstream.Target) func(from, to breaker.State) {
	if p.cfg.Hooks == nil || p.cfg.Hooks.BreakerChange == nil {
		return nil
	}
	return func(from, to breaker.State) { p.cfg.Hooks.BreakerChange(p.name, t, from, to) }
}

// newMembers builds a member set; the per-target breakers of prev's
// targets with the same address carry over.
func (p *Pool) newMembers(targets []*upstream.Target, policy balance.Policy, outlier *health.Outlier, prev *members) (*members, error) {
	m := &members{targets: targets, policy: policy, outlier: outlier, obs: p.cfg.Metrics.forPool(p.name, targets)}
	m.sticky, _ = policy.(balance.Sticky)
	m.observer, _ = policy.(AttemptObserver)
	m.mirror, _ = policy.(Mirror)
	if p.cfg.Breaker == nil {
		return m, nil
	}
	old := map[string]*breaker.Breaker{}
	if prev != nil && prev.breakers != nil {
		for i, t := range prev.targets {
			old[t.Address] = prev.breakers[i]
		}
	}
	m.breakers = make([]*breaker.Breaker, len(targets))
	for i, t := range targets {
		if b, ok := old[t.Address]; ok {
			m.breakers[i] = b
			continue
		}
		b, err := breaker.New(*p.cfg.Breaker, breaker.Options{OnStateChange: p.onBreakerChange(t)})
		if err != nil {
			return nil, err
		}
		m.breakers[i] = b
	}
	return m, nil
}

// SetTargets replaces the pool's target set while it serves: requests
// already running finish on the old set, new ones use the new. policy and
// outlier (may be nil) must be built over targets, whose Index fields are
// their positions. Breakers of addresses that stay keep their state.
func (p *Pool) SetTargets(targets []*upstream.Target, policy balance.Policy, outlier *health.Outlier) error {
	for i, t := range targets {
		if t == nil || t.Index != i {
			return errors.New("proxy: SetTargets: target indexes must be their positions")
		}
	}
	if policy == nil {
		return errors.New("proxy: SetTargets: nil policy")
	}
	m, err := p.newMembers(targets, policy, outlier, p.members.Load())
	if err != nil {
		return err
	}
	p.members.Store(m)
	return nil
}

func newTransport(cfg PoolConfig) (*http.Transport, *net.Dialer, int) {
	dialer := &net.Dialer{Timeout: orDefault(cfg.Timeout.Connect, DefaultConnectTimeout), KeepAlive: 30 * time.Second}
	idle := cfg.MaxIdleConns
	if idle <= 0 {
		idle = 256
	}
	return &http.Transport{
		Proxy:                  nil, // never send upstream traffic through an environment proxy
		DialContext:            dialer.DialContext,
		MaxIdleConns:           0, // no global cap; per host below
		MaxIdleConnsPerHost:    idle,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  cfg.Timeout.Header,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // pass encodings through untouched
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}, dialer, idle
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Name returns the upstream name.
func (p *Pool) Name() string { return p.name }

// Targets returns the pool's current targets (do not modify the slice).
func (p *Pool) Targets() []*upstream.Target { return p.members.Load().targets }

// Policy is the pool's current balancing policy, for other traffic (L4
// listeners) balanced over the same targets. Read it per connection: a
// discovered upstream replaces it when its targets change.
func (p *Pool) Policy() balance.Policy { return p.members.Load().policy }

// Outlier is the pool's current outlier detector, nil when it has none.
// It ignores targets of another generation.
func (p *Pool) Outlier() *health.Outlier { return p.members.Load().outlier }

// BreakerState returns the current targets, the state of the
// upstream-wide breaker and of each target's breaker (nil slice and ""
// when breakers are disabled), all of one target set.
func (p *Pool) BreakerState() (targets []*upstream.Target, pool string, states []string) {
	m := p.members.Load()
	if p.breaker == nil {
		return m.targets, "", nil
	}
	states = make([]string, len(m.breakers))
	for i, b := range m.breakers {
		states[i] = b.State().String()
	}
	return m.targets, p.breaker.State().String(), states
}

// TargetHealthChanged lets active health checks close an open target
// breaker at once when the target is seen healthy again (the
// health-check-closing breaker variant).
func (p *Pool) TargetHealthChanged(t *upstream.Target, healthy bool) {
	m := p.members.Load()
	if healthy && m.breakers != nil && t.Index < len(m.breakers) && m.targets[t.Index].Address == t.Address {
		m.breakers[t.Index].ForceClose()
	}
}

// Close releases idle upstream connections and keeps no new ones; call it
// when the pool is retired.
func (p *Pool) Close() {
	if p.closeIdle != nil {
		p.closeIdle()
	}
}

// sleep waits for d or until ctx is done, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitterRand is the random source for backoff jitter; math/rand/v2's
// top-level functions are safe for concurrent use and lock-free.
type jitterRand struct{}

func (jitterRand) Int64N(n int64) int64 { return rand.Int64N(n) }
