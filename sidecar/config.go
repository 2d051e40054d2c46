package sidecar

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/slo"
)

// Defaults of the sidecar's own settings. The building blocks' defaults
// (retry, breaker, health, balance, timeouts) live in their packages.
const (
	DefaultListen   = "127.0.0.1:15000"
	DefaultOutbound = "127.0.0.1:15001"
	DefaultAdmin    = "127.0.0.1:15002"
	DefaultRegistry = "http://127.0.0.1:8500"
	// DefaultRetryAttempts is the attempts of a dependency without a retry
	// section: the ambassador retries by default.
	DefaultRetryAttempts = 3
)

// DefaultRetryOn is what a dependency without a retry section retries
// (retry-safe requests only): failures where the instance never answered
// and 502/503/504 from it (its sidecar could not reach its app).
var DefaultRetryOn = []string{"connect_failure", "reset", "gateway_error"}

// Config is a sidecar configuration file. The zero value of every optional
// field means its default.
type Config struct {
	// Service is the registry name the app is registered under. Required.
	Service string `yaml:"service"`
	// ID is the instance id in the registry. Default SERVICE-HOST-PORT of
	// the advertised address.
	ID string `yaml:"id"`
	// App is the app's address, host:port. Required.
	App string `yaml:"app"`
	// Listen is the inbound listener: callers' traffic for the app. Default
	// 127.0.0.1:15000.
	Listen string `yaml:"listen"`
	// Advertise is the address registered for the instance (callers reach
	// the app through the sidecar). Default: the inbound listener's bound
	// address; required when listen's host is a wildcard.
	Advertise string `yaml:"advertise"`
	// Outbound is the ambassador's listener: the app calls
	// http://OUTBOUND/DEPENDENCY/... Default 127.0.0.1:15001; not started
	// without dependencies.
	Outbound string `yaml:"outbound"`
	// Admin serves /metrics, /healthz, /sidecar/status and the inbound and
	// outbound gateways' admin APIs under /inbound/admin/ and
	// /outbound/admin/. Default 127.0.0.1:15002; "off" disables it.
	Admin string `yaml:"admin"`
	// Registry is the service registry's URL. Default http://127.0.0.1:8500.
	Registry string `yaml:"registry"`
	// TTL is the registration's time to live without a heartbeat; the
	// sidecar heartbeats every third of it while the app is healthy.
	// Default 10s (100ms to 1h).
	TTL time.Duration `yaml:"ttl"`
	// Tags and Meta are registered with the instance.
	Tags []string          `yaml:"tags"`
	Meta map[string]string `yaml:"meta"`
	// AppHealth is how the sidecar checks the app (package health's check
	// settings). Without path it is a TCP check. The app is registered
	// at its first passing check (also when earlier ones failed while it
	// started), deregistered after unhealthy_after
	// failing ones and registered again after healthy_after passing ones.
	AppHealth health.CheckConfig `yaml:"app_health"`
	// TLS terminates TLS (and offers HTTP/2) on the inbound listener.
	TLS *gateway.TLS `yaml:"tls"`
	// AccessLog is where both listeners' JSON access logs go: stdout
	// (default), stderr, off, or a file path (appended). Inbound lines have
	// route "inbound", outbound ones the dependency's name.
	AccessLog string `yaml:"access_log"`
	// Inbound holds the settings of calls to the app.
	Inbound Inbound `yaml:"inbound"`
	// Dependencies are the services the app calls, by path prefix: the app
	// calls http://OUTBOUND/payments/x, the ambassador sends /x to an
	// instance of the service found in the registry.
	Dependencies map[string]*Dependency `yaml:"dependencies"`
	// SLOs are service level objectives over the app's own answers: the
	// inbound requests as the sidecar beside it serves them (status and
	// time), with the gateway's burn-rate alerts and webhooks (package
	// slo). Route and upstream are left out: they are the inbound route.
	// Served at /inbound/admin/slos on the admin listener, and as the
	// inbound side's switchyard_slo_* metrics on /metrics.
	SLOs []slo.Config `yaml:"slos"`
	// StateDir keeps the SLOs' counts and alert states across restarts
	// (the gateway's state_dir). Default none: they start empty.
	StateDir string `yaml:"state_dir"`

	src *config.Source
}

// inboundRoute is the inbound gateway's one route, which the sidecar's
// SLOs measure.
const inboundRoute = "inbound"

// Inbound holds the settings of the inbound listener's calls to the app.
type Inbound struct {
	// Timeout bounds connecting to and waiting for the app (package proxy).
	Timeout proxy.Timeouts `yaml:"timeout"`
	// MaxInFlight caps concurrent requests to the app (503 beyond); 0
	// means no cap.
	MaxInFlight int `yaml:"max_in_flight"`
	// Server holds client-side timeouts and limits (the gateway's server
	// section).
	Server gateway.Server `yaml:"server"`
}

// Dependency is a service the app calls through the ambassador.
type Dependency struct {
	// Service is the registry name to discover. Default: the dependency's
	// key.
	Service string `yaml:"service"`
	// Balancing policy (round_robin default ...), inline as in a gateway
	// upstream; see balance.Config.
	balance.Config `yaml:",inline"`
	// Retry retries retry-safe requests (package retry). Default: 3
	// attempts on connect_failure, reset and gateway_error, with the retry
	// package's budget (20% extra load) and backoff.
	Retry *retry.Config `yaml:"retry"`
	// CircuitBreaker opens per instance and for the dependency (package
	// breaker). Default: the breaker package's defaults. Set
	// circuit_breaker: {} for them explicitly; there is no way to disable
	// it.
	CircuitBreaker *breaker.Config `yaml:"circuit_breaker"`
	// Timeout bounds connecting and the whole exchange with retries
	// (package proxy).
	Timeout proxy.Timeouts `yaml:"timeout"`
	// Outlier enables passive outlier ejection of failing instances.
	Outlier *health.OutlierConfig `yaml:"outlier"`
	// HealthCheck enables active checks of the dependency's instances.
	HealthCheck *health.CheckConfig `yaml:"health_check"`
	// MaxInFlight caps concurrent calls to the dependency (a bulkhead);
	// 0 means no cap.
	MaxInFlight int `yaml:"max_in_flight"`
}

// LoadConfig reads, strictly decodes and validates a sidecar config file.
// Every problem is reported (joined), each at file:line:column and key
// path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig decodes and validates a config document; name is used in
// errors.
func ParseConfig(data []byte, name string) (*Config, error) {
	c, err := DecodeConfig(data, name)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ReadConfig reads and strictly decodes a config file without validating
// it, for a program that sets more fields (from flags) before Validate,
// whose errors still point into the file.
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return DecodeConfig(data, path)
}

// DecodeConfig strictly decodes a config document without validating it:
// unknown keys and bad values are reported at file:line:column and key
// path. An empty document decodes to the zero Config.
func DecodeConfig(data []byte, name string) (*Config, error) {
	var c Config
	src, err := config.DecodeYAML(data, name, &c)
	if errors.Is(err, config.ErrEmpty) {
		src, err = config.NewSource(name), nil
	}
	if err != nil {
		return nil, err
	}
	c.src = src
	return &c, nil
}

// File returns the name of the document the config came from.
func (c *Config) File() string {
	if c.src == nil {
		return "sidecar config"
	}
	return c.src.File()
}

func (c *Config) source() *config.Source {
	if c.src == nil {
		c.src = config.NewSource("command line")
	}
	return c.src
}

// WithDefaults fills the sidecar's own defaults (not the building
// blocks', which apply when the gateways are built).
func (c *Config) WithDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Outbound == "" {
		c.Outbound = DefaultOutbound
	}
	if c.Admin == "" {
		c.Admin = DefaultAdmin
	}
	if c.Registry == "" {
		c.Registry = DefaultRegistry
	}
	if c.TTL == 0 {
		c.TTL = discovery.DefaultTTL
	}
	for name, d := range c.Dependencies {
		if d == nil {
			d = &Dependency{}
			c.Dependencies[name] = d
		}
		if d.Service == "" {
			d.Service = name
		}
	}
}

// Validate applies the defaults and reports every problem, each at its
// key path (and position, for a config from a file).
func (c *Config) Validate() error {
	c.WithDefaults()
	src := c.source()
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, src.Errorf(path, format, args...)) }
	if c.Service == "" {
		add("service", "missing: expected the service name the app is registered under, e.g. rides")
	} else if err := discovery.ValidName(c.Service); err != nil {
		add("service", "%v", err)
	}
	if c.App == "" {
		add("app", "missing: expected the app's address, host:port, e.g. 127.0.0.1:9000")
	} else if err := checkAddr(c.App, 1); err != nil {
		add("app", "%v", err)
	}
	listeners := []struct{ key, v string }{{"listen", c.Listen}, {"outbound", c.Outbound}}
	if c.Admin != "off" {
		listeners = append(listeners, struct{ key, v string }{"admin", c.Admin})
	}
	for i, l := range listeners {
		if err := checkAddr(l.v, 0); err != nil {
			add(l.key, "%v", err)
			continue
		}
		for _, o := range listeners[:i] {
			if sameAddr(o.v, l.v) {
				add(l.key, "%q is the same address as %s: every listener needs its own port", l.v, o.key)
			}
		}
	}
	if c.Advertise != "" {
		if err := checkAddr(c.Advertise, 1); err != nil {
			add("advertise", "%v", err)
		} else if host, _, _ := net.SplitHostPort(c.Advertise); wildcard(host) {
			add("advertise", "%q: expected an address callers can reach, not a wildcard", c.Advertise)
		}
	} else if host, port, err := net.SplitHostPort(c.Listen); err == nil && wildcard(host) {
		_ = port
		add("listen", "%q has a wildcard host, so the address to register is unknown: expected advertise: HOST:PORT too", c.Listen)
	}
	if _, err := discovery.NewClient(c.Registry, nil); err != nil {
		add("registry", "%v", err)
	}
	if c.TTL < discovery.MinTTL || c.TTL > discovery.MaxTTL {
		add("ttl", "%v out of range: expected %v to %v (default %v)", c.TTL, discovery.MinTTL, discovery.MaxTTL, discovery.DefaultTTL)
	}
	if c.ID != "" {
		reg := discovery.Registration{Service: "x", ID: c.ID, Address: "127.0.0.1:1"}
		if err := reg.Validate(); err != nil {
			add("id", "%v", err)
		}
	}
	reg := discovery.Registration{Service: "x", ID: "x", Address: "127.0.0.1:1", Tags: c.Tags, Meta: c.Meta}
	if err := reg.Validate(); err != nil {
		add("tags", "%v", err)
	}
	errs = append(errs, src.Wrap("app_health", c.AppHealth.Validate()))
	if c.TLS != nil && (c.TLS.Cert == "" || c.TLS.Key == "") {
		add("tls", "both cert and key are required")
	}
	errs = append(errs, src.Wrap("inbound.timeout", c.Inbound.Timeout.Validate()))
	sloNames := map[string]bool{}
	for i, o := range c.SLOs {
		p := fmt.Sprintf("slos[%d]", i)
		if o.Route != "" && o.Route != inboundRoute {
			add(p+".route", "%q: a sidecar's SLOs measure the app's inbound requests: leave route out", o.Route)
		}
		if o.Upstream != "" {
			add(p+".upstream", "%q: a sidecar's SLOs measure the app's inbound requests: leave upstream out", o.Upstream)
		}
		o.Route, o.Upstream = inboundRoute, ""
		errs = append(errs, src.Wrap(p, o.Validate()))
		if o.Name != "" && sloNames[o.Name] {
			add(p+".name", "duplicate slo name %q", o.Name)
		}
		sloNames[o.Name] = true
	}
	if c.Inbound.MaxInFlight < 0 {
		add("inbound.max_in_flight", "negative value %d", c.Inbound.MaxInFlight)
	}
	for _, name := range c.DependencyNames() {
		d := c.Dependencies[name]
		p := "dependencies." + name
		if err := discovery.ValidName(name); err != nil {
			add(p, "dependency name (the outbound path prefix /%s): %v", name, err)
		}
		if err := discovery.ValidName(d.Service); err != nil && d.Service != name {
			add(p+".service", "%v", err)
		}
		errs = append(errs, src.Wrap(p, d.Config.Validate()))
		if d.Retry != nil {
			errs = append(errs, src.Wrap(p+".retry", d.Retry.Validate()))
		}
		if d.CircuitBreaker != nil {
			errs = append(errs, src.Wrap(p+".circuit_breaker", d.CircuitBreaker.Validate()))
		}
		errs = append(errs, src.Wrap(p+".timeout", d.Timeout.Validate()))
		if d.Outlier != nil {
			errs = append(errs, src.Wrap(p+".outlier", d.Outlier.Validate()))
		}
		if d.HealthCheck != nil {
			errs = append(errs, src.Wrap(p+".health_check", d.HealthCheck.Validate()))
		}
		if d.MaxInFlight < 0 {
			add(p+".max_in_flight", "negative value %d", d.MaxInFlight)
		}
	}
	return errors.Join(errs...)
}

// DependencyNames returns the dependencies' names, sorted.
func (c *Config) DependencyNames() []string {
	names := make([]string, 0, len(c.Dependencies))
	for n := range c.Dependencies {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// inboundGateway is the gateway configuration of the inbound listener:
// every request to the app.
func (c *Config) inboundGateway() *gateway.Config {
	return &gateway.Config{
		Listen:    c.Listen,
		TLS:       c.TLS.Server(),
		AccessLog: c.AccessLog,
		Server:    c.Inbound.Server,
		Upstreams: map[string]*gateway.Upstream{"app": {
			Targets:     []gateway.Target{{Address: c.App}},
			Timeout:     c.Inbound.Timeout,
			MaxInFlight: c.Inbound.MaxInFlight,
		}},
		Routes:   []gateway.Route{{Name: inboundRoute, Upstream: "app"}},
		SLOs:     c.inboundSLOs(),
		StateDir: c.StateDir,
	}
}

// inboundSLOs are the SLOs on the inbound route.
func (c *Config) inboundSLOs() []slo.Config {
	out := make([]slo.Config, len(c.SLOs))
	for i, o := range c.SLOs {
		o.Route, o.Upstream = inboundRoute, ""
		out[i] = o
	}
	return out
}

// outboundGateway is the gateway configuration of the ambassador: one
// route per dependency, /NAME/... to an instance of its service with the
// prefix stripped. Nil without dependencies.
func (c *Config) outboundGateway() *gateway.Config {
	if len(c.Dependencies) == 0 {
		return nil
	}
	g := &gateway.Config{
		Listen:    c.Outbound,
		AccessLog: c.AccessLog,
		Discovery: &gateway.Discovery{Registry: c.Registry},
		Upstreams: map[string]*gateway.Upstream{},
	}
	for _, name := range c.DependencyNames() {
		d := c.Dependencies[name]
		r := d.Retry
		if r == nil {
			r = &retry.Config{Attempts: DefaultRetryAttempts, On: DefaultRetryOn}
		}
		cb := d.CircuitBreaker
		if cb == nil {
			cb = &breaker.Config{}
		}
		g.Upstreams[name] = &gateway.Upstream{
			Config: d.Config, Discover: d.Service, Retry: r, CircuitBreaker: cb,
			Timeout: d.Timeout, Outlier: d.Outlier, HealthCheck: d.HealthCheck, MaxInFlight: d.MaxInFlight,
		}
		g.Routes = append(g.Routes, gateway.Route{
			Name: name, Match: gateway.Match{PathPrefix: "/" + name}, StripPrefix: "/" + name, Upstream: name,
		})
	}
	return g
}

// checkAddr checks host:port with a port from minPort to 65535.
func checkAddr(s string, minPort int) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: expected host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 {
		return fmt.Errorf("invalid address %q: port %q out of range: expected %d to 65535", s, port, minPort)
	}
	return nil
}

func wildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

// sameAddr reports whether two listen addresses would collide.
func sameAddr(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa == "0" || pa != pb {
		return false
	}
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func configDuration(d time.Duration) config.Duration { return config.Duration(d) }
