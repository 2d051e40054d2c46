package gateway

import (
	"context"
	"errors"
	"fmt"
	"github.com/switchyard/switchyard/contract"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/chaos"
	"github.com/switchyard/switchyard/compose"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/publish"
	"github.com/switchyard/switchyard/ratelimit"
	"github.com/switchyard/switchyard/route"
	"github.com/switchyard/switchyard/transcode"
	"github.com/switchyard/switchyard/transform"
	"github.com/switchyard/switchyard/upstream"
)

// runtime is one generation of the gateway built from one config: routes,
// pools and their health checkers. A reload builds a new runtime and swaps
// it in; requests already running finish on the old one.
type runtime struct {
	cfg      *Config
	loadedAt time.Time
	routes   route.Table[*proxy.Route]
	pools    map[string]*proxy.Pool
	names    []string // upstream names, sorted
	// contracts are the loaded OpenAPI contracts, by name.
	contracts map[string]*contract.Contract
	// configTargets are each pool's targets as built from the config (the
	// ones its health checker checks), before a rollout replaces the set.
	configTargets map[string][]*upstream.Target
	checkers      []*health.Checker
	caches        map[string]*edge.Store // named caches' memory tiers
	// routeCaches are the routes' caches, closed when the generation retires.
	routeCaches []*edge.Cache
	// cacheOf is each cached route's cache, for pushes.
	cacheOf map[*proxy.Route]*edge.Cache
	// discovered are the upstreams whose targets come from the registry;
	// registry and registryConns are their client (nil without).
	discovered    []*discoveredPool
	registry      *discovery.Client
	registryConns *http.Transport

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Resolve implements proxy.Resolver.
func (rt *runtime) Resolve(r *http.Request) (*proxy.Route, bool) { return rt.routes.Lookup(r) }

// call returns the composition Doer over this runtime's pools.
func (rt *runtime) call(h *proxy.Handler) compose.Doer {
	return func(upstreamName string, req *http.Request) (*http.Response, error) {
		p, ok := rt.pools[upstreamName]
		if !ok || h == nil {
			return nil, fmt.Errorf("unknown upstream %q", upstreamName)
		}
		return h.Call(p, req)
	}
}

// withTraceContext gives an aggregate route's calls the request's identity:
// X-Request-Id is set to the gateway's id of the request (the client's
// when valid, else a generated one) and Traceparent to the gateway's span
// in the client's trace (or in a new one), so each call
// (proxy.Handler.Call) sends a child span of the same trace.
func withTraceContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(r.Context())
		r.Header = r.Header.Clone()
		if id := httpx.RequestID(r); id != "" {
			r.Header.Set("X-Request-Id", id)
		}
		// The gateway's span, a child of the client's trace (or a new
		// trace); each call then sends a child of it.
		r.Header.Set("Traceparent", httpx.ChildTraceparent(r.Header.Get("Traceparent")))
		next.ServeHTTP(w, r)
	})
}

func aggregateError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	httpx.WriteError(w, r, &httpx.Error{Status: status, Code: code, Msg: msg})
}

// buildDeps are what building a runtime needs from the gateway.
type buildDeps struct {
	log     *slog.Logger
	metrics *proxy.Metrics
	handler *proxy.Handler  // prepares routes; nil when only checking
	limits  ratelimit.Store // rate-limit state, shared by all generations
	// brokerTransport carries publish routes' calls to the broker, shared
	// by all generations; nil uses http.DefaultTransport (when checking).
	brokerTransport http.RoundTripper
	prev            *runtime // previous generation, to carry target state over; may be nil
	// overrides are admin-set weights that replace the config's; may be nil.
	overrides *weightOverrides
	// contracts are this generation's loaded OpenAPI contracts (set by build).
	contracts map[string]*contract.Contract
	// rollouts decide discovered upstreams' policies under a rollout; may be nil.
	rollouts *rolloutManager
	// faults are the routes' fault injection, shared by all generations;
	// nil when only checking.
	faults *chaos.RouteFaults
}

// build turns a validated config into a runtime, validating each building
// block's settings and locating every problem at its key path. It starts
// nothing; start does.
func build(cfg *Config, deps buildDeps) (*runtime, error) {
	rt := &runtime{cfg: cfg, loadedAt: time.Now(), pools: map[string]*proxy.Pool{}, names: cfg.UpstreamNames(),
		configTargets: map[string][]*upstream.Target{}}
	var errs []error
	if d := cfg.Discovery; d != nil {
		hc, tr := registryClient()
		if d.TLS != nil {
			tc, err := d.TLS.ClientConfig(nil)
			if err != nil {
				errs = append(errs, cfg.Errorf("discovery.tls", "%v", err))
			}
			tr.TLSClientConfig = tc
		}
		c, err := discovery.NewClient(d.Registry, hc)
		if err != nil {
			errs = append(errs, cfg.Errorf("discovery.registry", "%v", err))
		}
		rt.registry, rt.registryConns = c, tr
	}
	for _, name := range rt.names {
		pool, checker, err := buildPool(cfg, name, deps)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rt.pools[name] = pool
		rt.configTargets[name] = pool.Targets()
		if u := cfg.Upstreams[name]; u.Discover != "" {
			rt.discovered = append(rt.discovered, newDiscoveredPool(cfg, name, pool, deps))
			continue // its checks run over the discovered targets
		}
		if checker != nil {
			rt.checkers = append(rt.checkers, checker)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	stores, err := buildCaches(cfg, deps.prev)
	if err != nil {
		return nil, err
	}
	rt.caches = stores
	contracts, err := loadContracts(cfg)
	if err != nil {
		return nil, err
	}
	rt.contracts = contracts
	deps.contracts = contracts
	var authn *auth.Authenticator
	if cfg.Auth != nil {
		a, err := auth.New(*cfg.Auth, auth.Options{Logger: deps.log})
		if err != nil {
			return nil, cfg.Wrap("auth", err)
		}
		authn = a
	}
	for i, r := range cfg.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		mws, err := routeMiddleware(cfg, p, r, authn, deps)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var cache *edge.Cache
		if r.Cache != nil { // innermost: hits have passed auth, limits and the request transform
			c, err := rt.routeCache(cfg, p, r, deps)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rt.routeCaches = append(rt.routeCaches, c)
			mws = append(mws, c.Middleware())
			cache = c
		}
		if g := r.GRPCJSON; g != nil { // innermost: the cache and everything before it see JSON
			tc, err := transcode.Load(*g)
			if err != nil {
				errs = append(errs, cfg.Wrap(p+".grpc_json", err))
				continue
			}
			mws = append(mws, tc.Middleware())
		}
		m := r.Match.routeMatch()
		pr := &proxy.Route{Name: r.Name, Pool: rt.pools[r.Upstream], StripPrefix: r.StripPrefix, Middleware: mws}
		if cache != nil {
			if rt.cacheOf == nil {
				rt.cacheOf = map[*proxy.Route]*edge.Cache{}
			}
			rt.cacheOf[pr] = cache
		}
		if r.Aggregate != nil {
			agg, err := compose.New(*r.Aggregate, rt.call(deps.handler), aggregateError)
			if err != nil {
				errs = append(errs, cfg.Wrap(p+".aggregate", err))
				continue
			}
			pr.Terminal = withTraceContext(agg)
		}
		if r.Publish != nil {
			// The config was validated, so cfg.Broker is set.
			pub, err := publish.New(*r.Publish, publish.Options{Broker: *cfg.Broker, Base: statusBase(r.Match),
				MaxBody: r.MaxRequestBody, Transport: deps.brokerTransport})
			if err != nil {
				errs = append(errs, cfg.Wrap(p+".publish", err))
				continue
			}
			pr.Terminal = pub
			// The status lookups come first: GET {path}/_status/{id}.
			sm := statusMatch(r.Match, pub.StatusPrefix())
			status := &proxy.Route{Name: r.Name + ".status", Middleware: mws, Terminal: pub.Status()}
			if deps.handler != nil {
				deps.handler.Prepare(status)
			}
			if err := rt.routes.Add(route.Match{Host: sm.Host, PathPrefix: sm.PathPrefix, Methods: sm.Methods,
				Headers: sm.Headers, Client: sm.Client}, status); err != nil {
				errs = append(errs, cfg.Wrap(p+".match", err))
				continue
			}
		}
		if sp := r.Split; sp != nil {
			pr.Split = &proxy.Split{Pool: rt.pools[sp.Upstream], Percent: sp.Percent, PathPrefixes: sp.Paths}
		}
		if d := r.Deprecated; d != nil {
			pr.ResponseHooks = append(pr.ResponseHooks, deprecationHook(d))
		}
		if t := r.Transform; t != nil && t.Response != nil {
			rt, err := transform.NewResponse(*t.Response)
			if err != nil {
				errs = append(errs, cfg.Wrap(p+".transform.response", err))
				continue
			}
			pr.ResponseHooks = append(pr.ResponseHooks, rt.Hook())
		}
		if deps.handler != nil {
			deps.handler.Prepare(pr)
		}
		if err := rt.routes.Add(m, pr); err != nil {
			errs = append(errs, cfg.Wrap(fmt.Sprintf("routes[%d].match", i), err))
		}
	}
	if len(errs) > 0 {
		rt.closeCaches()
		rt.releaseStores(deps.prev)
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

// discoveredPool returns rt's discovered pool of upstream name when it
// follows service; rt may be nil.
func (rt *runtime) discoveredPool(name, service string) *discoveredPool {
	if rt == nil {
		return nil
	}
	for _, dp := range rt.discovered {
		if dp.name == name && dp.service == service {
			return dp
		}
	}
	return nil
}

func newDiscoveredPool(cfg *Config, name string, pool *proxy.Pool, deps buildDeps) *discoveredPool {
	u := cfg.Upstreams[name]
	dp := &discoveredPool{name: name, service: u.Discover, u: u, pool: pool, log: deps.log,
		overrides: deps.overrides, synced: make(chan struct{}), rollouts: deps.rollouts}
	if hc := u.HealthCheck; hc != nil {
		c := hc.WithDefaults() // validated by buildPool
		dp.check = &c
	}
	var prevTracker *discovery.Tracker
	if prev := deps.prev.discoveredPool(name, u.Discover); prev != nil {
		prev.mu.Lock()
		defer prev.mu.Unlock()
		prevTracker = prev.tracker
	}
	dp.tracker = discovery.NewTracker(pool.Targets(), prevTracker)
	return dp
}

func buildPool(cfg *Config, name string, deps buildDeps) (*proxy.Pool, *health.Checker, error) {
	u := cfg.Upstreams[name]
	path := "upstreams." + name
	var errs []error

	var prevTargets map[string]*upstream.Target
	if deps.prev != nil {
		if p, ok := deps.prev.pools[name]; ok {
			prevTargets = make(map[string]*upstream.Target, len(p.Targets()))
			for _, t := range p.Targets() {
				prevTargets[t.Address] = t
			}
		}
	}
	configured := u.Targets
	if u.Discover != "" {
		// A discovered upstream starts from the previous generation's
		// targets (none at first); the registry's answer replaces them.
		configured = nil
		if dp := deps.prev.discoveredPool(name, u.Discover); dp != nil {
			for _, t := range dp.pool.Targets() {
				configured = append(configured, Target{Address: t.Address, Weight: t.Weight()})
			}
		}
	}
	targets := make([]*upstream.Target, len(configured))
	for i, tc := range configured {
		w := tc.Weight
		if ow, ok := deps.overrides.get(name, tc.Address); ok {
			w = ow // an admin override survives reloads while its target stays
		}
		targets[i] = upstream.NewTarget(tc.Address, i, w)
		if old, ok := prevTargets[tc.Address]; ok {
			targets[i].CarryStateFrom(old)
		}
	}

	// Validate first and wrap the joined problems themselves: balance.New
	// wraps them in one more error, behind which Wrap would see only the
	// first.
	var policy balance.Policy
	err := u.Config.Validate()
	if err != nil {
		errs = append(errs, cfg.Wrap(path, err))
	} else if policy, err = balance.New(u.Config, targets); err != nil {
		errs = append(errs, cfg.Wrap(path, err))
	}

	pc := proxy.PoolConfig{
		Name: name, Targets: targets, Policy: policy, Timeout: u.Timeout,
		MaxIdleConns: orInt(u.MaxIdleConns, DefaultMaxIdleConns), MaxInFlight: u.MaxInFlight,
		Metrics: deps.metrics,
	}
	if err := u.Timeout.Validate(); err != nil {
		errs = append(errs, cfg.Wrap(path+".timeout", err))
	}
	pc.Protocol = u.Protocol
	if u.TLS != nil {
		tc, err := u.TLS.ClientConfig(proxy.ALPN(u.Protocol))
		if err != nil {
			errs = append(errs, cfg.Errorf(path+".tls", "%v", err))
		}
		pc.TLS = tc
		if u.TLS.InsecureSkipVerify {
			deps.log.Warn("TLS certificate verification is OFF for this upstream: anyone on the path can impersonate its targets",
				"upstream", name, "key", path+".tls.insecure_skip_verify")
		}
	}
	if u.MaxInFlight < 0 {
		errs = append(errs, cfg.Errorf(path+".max_in_flight", "negative value %d", u.MaxInFlight))
	}
	if m := deps.metrics; m != nil {
		pc.Hooks = &proxy.Hooks{BreakerChange: func(up string, t *upstream.Target, from, to breaker.State) {
			addr := ""
			if t != nil {
				addr = t.Address
			}
			m.BreakerTransition(up, addr, from.String(), to.String())
			deps.log.Warn("circuit breaker state change", "upstream", up, "target", addr, "from", from.String(), "to", to.String())
		}}
	}
	if c := u.CircuitBreaker; c != nil {
		bcfg := c.WithDefaults()
		if err := bcfg.Validate(); err != nil {
			errs = append(errs, cfg.Wrap(path+".circuit_breaker", err))
		}
		pc.Breaker = &bcfg
	}
	if o := u.Outlier; o != nil {
		out, err := health.NewOutlier(*o, targets)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".outlier", err))
		}
		pc.Outlier = out
	}
	if r := u.Retry; r != nil {
		rc := r.WithDefaults()
		if err := rc.Validate(); err != nil {
			errs = append(errs, cfg.Wrap(path+".retry", err))
		}
		pc.Retry = &rc
	}
	var checker *health.Checker
	var poolRef atomic.Pointer[proxy.Pool] // set once the pool exists; read by the health hook
	if hc := u.HealthCheck; hc != nil {
		ccfg := hc.WithDefaults()
		if err := ccfg.Validate(); err != nil {
			errs = append(errs, cfg.Wrap(path+".health_check", err))
		}
		if len(errs) == 0 {
			checker, err = health.NewChecker(ccfg, targets, health.CheckerOptions{
				Logger: deps.log, TLS: pc.TLS,
				OnChange: func(t *upstream.Target, healthy bool) {
					deps.log.Warn("target health changed", "upstream", name, "target", t.Address, "healthy", healthy)
					if p := poolRef.Load(); p != nil {
						p.TargetHealthChanged(t, healthy)
					}
				},
			})
			if err != nil {
				errs = append(errs, cfg.Wrap(path+".health_check", err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	p, err := proxy.NewPool(pc)
	if err != nil {
		return nil, nil, cfg.Wrap(path, err)
	}
	poolRef.Store(p)
	return p, checker, nil
}

// deprecationHook stamps Deprecation, Sunset and Link headers (RFC 9745,
// RFC 8594) on the responses of a deprecated API version. The config was
// validated, so the times parse.
func deprecationHook(d *Deprecated) func(*http.Response) error {
	dep := "true"
	if t, err := time.Parse(time.RFC3339, d.Since); err == nil {
		dep = fmt.Sprintf("@%d", t.Unix())
	}
	sunset := ""
	if t, err := time.Parse(time.RFC3339, d.Sunset); err == nil {
		sunset = t.UTC().Format(http.TimeFormat)
	}
	link := ""
	if d.Link != "" {
		link = "<" + d.Link + `>; rel="deprecation"`
	}
	return func(resp *http.Response) error {
		resp.Header.Set("Deprecation", dep)
		if sunset != "" {
			resp.Header.Set("Sunset", sunset)
		}
		if link != "" {
			resp.Header.Add("Link", link)
		}
		return nil
	}
}

// statusBase is the path under which a publish route's status lookups
// live: its exact path or path prefix, without a trailing slash.
func statusBase(m Match) string {
	base := m.Path
	if base == "" {
		base = m.PathPrefix
	}
	return strings.TrimSuffix(base, "/")
}

// statusMatch is the match of the status route of a publish route: the
// same host, headers and client type, GET and HEAD under the status path.
func statusMatch(m Match, statusPrefix string) Match {
	m.Path = ""
	m.PathPrefix = strings.TrimSuffix(statusPrefix, "/")
	m.Methods = []string{http.MethodGet, http.MethodHead}
	return m
}

// loadContracts reads and checks every contract of cfg, reporting every
// problem at its key path.
func loadContracts(cfg *Config) (map[string]*contract.Contract, error) {
	if len(cfg.Contracts) == 0 {
		return nil, nil
	}
	out := make(map[string]*contract.Contract, len(cfg.Contracts))
	var errs []error
	for _, name := range sortedKeys(cfg.Contracts) {
		c, err := contract.Load(name, *cfg.Contracts[name])
		if err != nil {
			errs = append(errs, cfg.Wrap("contracts."+name, err))
			continue
		}
		out[name] = c
	}
	return out, errors.Join(errs...)
}
