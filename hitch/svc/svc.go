// Package svc runs one Hitch service as an OS process (`switchyard hitch
// serve NAME`): it opens the service's own database and the message bus,
// builds the service from the table of services (Services), serves its
// Handler with /metrics beside it, registers the instance in discovery with
// the port it really bound, runs its background work, and on SIGTERM (ctx
// end) deregisters, stops serving and waits for the work to end.
//
// Adding a service is one entry in Services: its name, whether it may run
// as several replicas, a constructor adapter (Adapt over the package's New)
// and its public routes, which `hitch up` turns into gateway routes.
package svc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/tlsconf"
)

// Service is what the runtime needs of a built service (the shape every
// hitch/NAME package has).
type Service interface {
	Handler() http.Handler
	Run(ctx context.Context) error
}

// Deps are what the runtime hands a service's constructor.
type Deps struct {
	// Name is the service name; Replica its replica number (0, 1, ...).
	Name    string
	Replica int
	// DB is the service's own database, open. Never nil.
	DB *store.DB
	// Bus is the message backend; nil when the service does not use one
	// (Spec.Bus false).
	Bus message.Backend
	// HTTPClient calls other services by name: http://rides/v1/... goes
	// to one of rides' live instances (discovery, round robin, retry on
	// another instance when safe).
	HTTPClient *http.Client
	// Redis is the --redis URL, "" when none (services keep caches in
	// process then).
	Redis string
	// Logger is the process's logger, with the service's name.
	Logger *slog.Logger
}

// Constructor builds a service from its dependencies and its YAML config
// (nil when there is no --config file; name is the file for errors).
type Constructor func(ctx context.Context, d Deps, yamlConfig []byte, name string) (Service, error)

// Adapt turns a service package's New into a Constructor: the YAML config
// (if any) is decoded strictly into C (unknown keys and bad values are
// errors naming file:line and key), then setup fills what YAML cannot
// carry (Logger, HTTPClient, ...) from the runtime's Deps, then New runs.
//
//	svc.Adapt(identity.New, func(c *identity.Config, d svc.Deps) { c.Logger = d.Logger })
func Adapt[C any, S Service](newFn func(context.Context, *store.DB, message.Backend, C) (S, error), setup func(*C, Deps)) Constructor {
	return func(ctx context.Context, d Deps, yamlConfig []byte, name string) (Service, error) {
		var cfg C
		if len(yamlConfig) > 0 {
			if _, err := config.DecodeYAML(yamlConfig, name, &cfg); err != nil {
				return nil, err
			}
		}
		if setup != nil {
			setup(&cfg, d)
		}
		s, err := newFn(ctx, d.DB, d.Bus, cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// Roles a route may require (Route.Role).
const (
	Public  = ""       // no token needed
	AnyRole = "*"      // a valid token of either role
	Rider   = "rider"  // a rider's token (hitch.RoleRider)
	Driver  = "driver" // a driver's token (hitch.RoleDriver)
)

// Route is one public route of a service, for the gateway `hitch up`
// builds: exactly one of Path, PathPrefix and PathPattern.
type Route struct {
	// Name names the route in the gateway's metrics and logs.
	Name string
	// Path matches exactly; PathPrefix at a segment boundary; PathPattern
	// segment by segment, "*" standing for one non-empty segment
	// ("/v1/rides/*/receipt").
	Path, PathPrefix, PathPattern string
	// Methods accepted; empty accepts every method.
	Methods []string
	// Role is who may call it: Public, AnyRole, Rider or Driver. A
	// token of the other role gets 403 from the gateway.
	Role string
	// Cache: the gateway answers the route's GETs from its edge cache
	// (the origin's Cache-Control decides what is stored and how long).
	Cache bool
	// Contract: the gateway checks the route's requests (and reports on
	// its responses) against Hitch's OpenAPI document (hitch.OpenAPI),
	// which must then describe the route's operations. Not for streams
	// or the web app.
	Contract bool
}

// Spec describes one Hitch service to the runtime and the supervisor.
type Spec struct {
	// Name is the service's name in discovery and the gateway (hitch.X).
	Name string
	// Replicated services run `hitch up --replicas` processes; the others
	// one (they hold state in memory, or must be alone).
	Replicated bool
	// Bus: the service publishes or consumes events (it gets Deps.Bus).
	Bus bool
	// New builds the service.
	New Constructor
	// Routes are its public routes. Routes of all services are put in the
	// gateway's table in Services order, each service's in its own order;
	// the first match wins, so a more specific route must come before a
	// broader one that also matches its requests (the gateway refuses a
	// route that an earlier one makes unreachable).
	Routes []Route
}

// Lookup finds the spec of name in specs.
func Lookup(specs []Spec, name string) (Spec, error) {
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	msg := fmt.Sprintf("unknown Hitch service %q: expected one of %s", name, strings.Join(names, ", "))
	if c := config.Closest(name, names); c != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", c)
	}
	return Spec{}, errors.New(msg)
}

// Resolver is an http.RoundTripper that sends http://SERVICE/... to one of
// SERVICE's instances, watching each service named in a URL from its first
// use until Close.
type Resolver struct {
	client *discovery.Client
	base   http.RoundTripper
	ctx    context.Context
	cancel context.CancelFunc

	// tls, when set, makes every call HTTPS with this client config, the
	// server's certificate required to name the service called.
	tls *tls.Config

	mu    sync.Mutex
	pools map[string]*resolved
}

type resolved struct {
	created time.Time
	w       *discovery.Watcher
	b       *discovery.Balancer
	tr      *discovery.Transport
}

// NewResolver returns a Resolver over the registry client c; base sends
// the requests (nil: a fresh transport without proxies).
func NewResolver(c *discovery.Client, base http.RoundTripper) *Resolver {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.MaxIdleConnsPerHost = 64
		base = t
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{client: c, base: base, ctx: ctx, cancel: cancel, pools: map[string]*resolved{}}
}

// NewSecureResolver is NewResolver whose calls go over TLS with cfg (the
// caller's client certificate and the CA): http://SERVICE/... is sent as
// https to an instance whose certificate must name SERVICE.
func NewSecureResolver(c *discovery.Client, cfg *tls.Config) *Resolver {
	r := NewResolver(c, nil)
	r.tls = cfg
	return r
}

// RoundTrip implements http.RoundTripper. A service first named less
// than FirstWait ago and with no instance known yet is waited for (up to
// FirstWait from its first use, or the request's context): its watch's
// first answer is on its way. After that a service without instances
// fails at once with discovery.ErrNoInstance.
func (r *Resolver) RoundTrip(req *http.Request) (*http.Response, error) {
	p, err := r.pool(req.URL.Hostname())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if r.tls != nil && req.URL.Scheme != "https" {
		req = req.Clone(req.Context())
		req.URL.Scheme = "https"
	}
	if len(p.b.Targets()) == 0 && time.Since(p.created) < FirstWait {
		wait := time.NewTimer(FirstWait - time.Since(p.created))
		defer wait.Stop()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
	waiting:
		for len(p.b.Targets()) == 0 {
			select {
			case <-req.Context().Done():
				closeBody(req)
				return nil, req.Context().Err()
			case <-wait.C:
				break waiting
			case <-tick.C:
			}
		}
	}
	return p.tr.RoundTrip(req)
}

// FirstWait is how long a Resolver waits for the first instances of a
// service it has just started watching.
const FirstWait = 5 * time.Second

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func (r *Resolver) pool(service string) (*resolved, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pools[service]; ok {
		return p, nil
	}
	if r.ctx.Err() != nil {
		return nil, errors.New("resolver closed")
	}
	if err := discovery.ValidName(service); err != nil {
		return nil, fmt.Errorf("resolving service %q: %w", service, err)
	}
	w, err := r.client.Watch(r.ctx, service, discovery.WatchOptions{})
	if err != nil {
		return nil, err
	}
	b, err := discovery.NewBalancer(w, discovery.BalancerConfig{})
	if err != nil {
		w.Close()
		return nil, err
	}
	base := r.base
	if r.tls != nil {
		t := r.base.(*http.Transport).Clone()
		t.TLSClientConfig = tlsconf.ExpectServer(r.tls, service)
		base = t
	}
	p := &resolved{created: time.Now(), w: w, b: b, tr: &discovery.Transport{Balancer: b, Base: base}}
	r.pools[service] = p
	return p, nil
}

// Close stops every watch.
func (r *Resolver) Close() {
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pools {
		p.b.Close()
		p.w.Close()
	}
	r.pools = map[string]*resolved{}
}
