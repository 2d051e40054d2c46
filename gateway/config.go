// The gateway's YAML configuration: its shape (the
// public interface users write), strict decoding that rejects unknown keys,
// and validation whose errors name the file, the key path and what was
// expected.
//
// The structs here are the schema only; each building block (balance,
// health, breaker, retry ...) validates its own settings when the gateway
// builds it, and reports problems through Config.Errorf so they carry the
// same file and key-path location.
package gateway

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/chaos"
	"github.com/switchyard/switchyard/compose"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/contract"
	"github.com/switchyard/switchyard/cors"
	"github.com/switchyard/switchyard/dashboard"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/ipfilter"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/publish"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/route"
	"github.com/switchyard/switchyard/slo"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/throttle"
	"github.com/switchyard/switchyard/tlsconf"
	"github.com/switchyard/switchyard/transcode"
	"github.com/switchyard/switchyard/transform"
)

// Defaults the gateway applies to settings left out (or zero). The
// building blocks' own defaults (breaker, retry, health, balance) live in
// their packages; docs/gateway.md shows them all, checked by a test.
const (
	DefaultAccessLog         = "stdout"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultMaxBodyBuffer     = 64 << 10
	DefaultHTTP1             = "switchyard"
	DefaultHTTP2             = "switchyard"
	DefaultMaxIdleConns      = 256
	DefaultWeight            = 1
)

// Config is a whole gateway configuration file.
type Config struct {
	// Listen is the address the proxy serves on, host:port. Required.
	Listen string `yaml:"listen"`
	// Admin is the address of the admin API and /metrics; empty disables it.
	// Keep it on loopback: it can drain targets and reload config.
	Admin string `yaml:"admin"`
	// AdminAuth says who may use the admin API (bearer tokens, verified
	// client certificates) and with which role (read or operator); see
	// admin.AuthConfig. Required when Admin is not a loopback address.
	// Reloadable (tokens can be rotated with a reload).
	AdminAuth *admin.AuthConfig `yaml:"admin_auth"`
	// AdminTLS serves the admin API over HTTPS; with client_ca, client
	// certificates are verified and can authenticate (admin_auth.clients).
	// Its paths are read at start; the files (certificate, key and
	// client_ca) are re-read when they change, from the next handshake on.
	AdminTLS *AdminTLS `yaml:"admin_tls"`
	// TLS enables HTTPS (and HTTP/2 via ALPN) on Listen: certificates
	// chosen by SNI, client certificate verification, reload without
	// restart. See tlsconf.Server for every field and docs/security.md.
	TLS *tlsconf.Server `yaml:"tls"`
	// H2C enables cleartext HTTP/2 (prior knowledge or upgrade) on Listen.
	H2C bool `yaml:"h2c"`
	// AccessLog is where the JSON access log goes: "stdout" (default),
	// "stderr", "off", or a file path (appended).
	AccessLog string `yaml:"access_log"`
	// Server holds client-side timeouts and shutdown behaviour.
	Server Server `yaml:"server"`
	// Auth registers consumers and their credentials (API keys, JWT,
	// Basic); routes choose accepted methods with their own auth key.
	// See package auth for every field.
	Auth *auth.Config `yaml:"auth"`
	// RateLimitStore is where rate-limit state lives: "memory" (default,
	// per gateway process) or a redis:// URL shared by all replicas.
	RateLimitStore string `yaml:"rate_limit_store"`
	// RateLimitFailOpen lets requests through when the Redis store cannot
	// be reached (default false: they are refused with 503).
	RateLimitFailOpen bool `yaml:"rate_limit_fail_open"`
	// Broker is the switchyard message broker that publish routes hand
	// requests to (see Route.Publish). Required when a route publishes.
	Broker *publish.BrokerConfig `yaml:"broker"`
	// Discovery is the service registry that upstreams with `discover`
	// take their targets from, live. Required when an upstream discovers.
	Discovery *Discovery `yaml:"discovery"`
	// Tracing configures OpenTelemetry spans (package telemetry): a server
	// span per request and a client span per upstream attempt, kept in
	// memory (GET /admin/traces) and exported over OTLP when configured
	// here or by the OTEL_* environment variables. Default: on, in memory
	// only; `tracing: {disabled: true}` turns it off. Read at start; a
	// reload keeps the tracing the gateway started with.
	Tracing *telemetry.Config `yaml:"tracing"`
	// StateDir is a directory where the gateway keeps state that must
	// survive a restart (SLO alert state, rollouts in progress), one file
	// per feature, each replaced atomically. Empty (default): that state is
	// kept in memory only and a restart forgets it. Read at start.
	StateDir string `yaml:"state_dir"`
	// Dashboard configures the live dashboard on the admin listener
	// (GET /admin/dashboard): the brokers whose queues it shows (default:
	// broker.url) and how many pages may stream at once. See package
	// dashboard and docs/operations.md. Brokers apply on reload; the rest
	// is read at start.
	Dashboard *dashboard.Config `yaml:"dashboard"`
	// SLOs are service level objectives measured live on the routes' and
	// upstreams' requests, with error budgets and burn-rate alerts sent
	// to webhooks; see package slo for every field and docs/operations.md.
	// A reload rebuilds them, keeping the counts of unchanged ones.
	SLOs []slo.Config `yaml:"slos"`
	// Upstreams are the named backend pools routes forward to. At least one
	// is required unless every route publishes to the broker.
	Upstreams map[string]*Upstream `yaml:"upstreams"`
	// Caches are the named edge caches (RFC 9111 shared caches) routes
	// use with their cache key; see package edge for every field.
	Caches map[string]*edge.Config `yaml:"caches"`
	// Contracts are named OpenAPI 3.0/3.1 documents that routes enforce
	// with their contract key: requests are checked (parameters, JSON
	// body) and refused with 400 and an RFC 9457 problem naming the
	// field; responses optionally. See package contract for every field.
	// Re-read on reload.
	Contracts map[string]*contract.Config `yaml:"contracts"`
	// Routes are matched in order; the first match wins.
	Routes []Route `yaml:"routes"`
	// L4 are TCP and UDP listeners balanced over the upstreams' targets
	// (the notes' network load balancer); see docs/l4.md.
	L4 []L4Listener `yaml:"l4"`

	src *config.Source // positions of the keys, for errors found after decoding
}

// TLS is a certificate and key in PEM files (an l4 listener's).
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// AdminTLS is the admin listener's TLS.
type AdminTLS struct {
	// Cert and Key are PEM files of the admin listener's certificate.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA is a PEM file of CAs whose client certificates are verified
	// when a client presents one (admin_auth.clients maps them to roles).
	// A presented certificate that does not verify fails the handshake.
	// The file is re-read when it changes (a rotated CA applies from the
	// next handshake on); a file that stops loading keeps the running one.
	ClientCA string `yaml:"client_ca"`
}

// Server is t as the proxy listener's TLS settings (nil for nil), for
// programs that take one certificate and assemble a gateway (the sidecar).
func (t *TLS) Server() *tlsconf.Server {
	if t == nil {
		return nil
	}
	return &tlsconf.Server{Cert: t.Cert, Key: t.Key}
}

// Server holds timeouts and limits on the client side of the gateway.
type Server struct {
	// ReadHeaderTimeout bounds reading a request's line and headers, from
	// its first byte. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle client keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadBodyTimeout is the longest wait for the next part of a request
	// body (not for the whole body): a client that sends nothing for this
	// long is answered 408 and closed. Default 60s.
	ReadBodyTimeout time.Duration `yaml:"read_body_timeout"`
	// WriteTimeout closes a client connection that accepts no bytes of a
	// response for this long (renewed as the client reads, not a bound on
	// the whole response), so a client that stops reading cannot hold an
	// upstream connection. Default 60s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxHeaderBytes bounds a request's line plus header fields: a longer
	// request line gets 414, a longer header 431. Default 16384 (16 KiB);
	// 1024 to 1048576.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds the wait for in-flight requests on SIGTERM or
	// when a reload retires a listener. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxBodyBuffer is how many bytes of a request body the gateway reads
	// before it picks and contacts a target (so a slow client holds no
	// upstream connection), and keeps so the request can be retried.
	// Default 64 KiB; larger bodies are streamed and not retried after
	// they were sent.
	MaxBodyBuffer int `yaml:"max_body_buffer"`
	// MaxBodyBufferTotal bounds the bytes of request bodies buffered at
	// once over all requests; a body that does not fit is streamed.
	// Default 64 MiB.
	MaxBodyBufferTotal int64 `yaml:"max_body_buffer_total"`
	// HTTP1 chooses the server of HTTP/1.x connections: "switchyard"
	// (default), the gateway's own lean server (package httpserver), or
	// "net/http", the standard library's. On a tls listener it serves the
	// connections that negotiated http/1.1 (or no protocol) by ALPN; those
	// that negotiated h2 are served by the HTTP/2 server (HTTP2).
	// Listeners with h2c use net/http for every HTTP/1.x connection.
	HTTP1 string `yaml:"http1"`
	// HTTP2 chooses the server of HTTP/2 connections on tls and h2c
	// listeners: "switchyard" (default), the gateway's own frame-level
	// server (package httpserver/h2), which costs less CPU per stream, or
	// "net/http", the standard library's. HTTP/1.x connections on those
	// listeners stay with net/http.
	HTTP2 string `yaml:"http2"`
}

// Bounds of the server settings: values outside them are refused.
const (
	MinServerTimeout   = time.Millisecond
	MaxServerTimeout   = 24 * time.Hour
	MinHeaderBytes     = 1 << 10
	MaxHeaderBytes     = 1 << 20
	DefaultHeaderBytes = 16 << 10 // httpserver.DefaultMaxHeaderBytes
)

// Upstream is a pool of targets and the policies applied to it. The
// sections are the building blocks' own configs (package balance, health,
// breaker, retry, proxy), documented and defaulted there.
type Upstream struct {
	// Balancing policy and its settings, written in the upstream's own
	// mapping: balance (round_robin default, weighted_round_robin,
	// least_connections, least_response_time, random, ip_hash,
	// consistent_hash, cookie), hash_on, cookie {name, ttl},
	// virtual_nodes, load_factor, balance_fallback. See balance.Config.
	balance.Config `yaml:",inline"`
	// Targets are the backends. At least one is required, unless Discover
	// is set.
	Targets []Target `yaml:"targets"`
	// Discover names the registry service whose instances are this
	// upstream's targets, followed live (instances joining, draining and
	// leaving apply without a reload); exclusive with Targets. Needs the
	// top-level discovery section.
	Discover string `yaml:"discover"`
	// HealthCheck enables active health checks; absent means targets are
	// considered healthy unless passive outlier detection ejects them.
	HealthCheck *health.CheckConfig `yaml:"health_check"`
	// Outlier enables passive outlier ejection.
	Outlier *health.OutlierConfig `yaml:"outlier"`
	// CircuitBreaker enables a breaker per target and one for the upstream.
	CircuitBreaker *breaker.Config `yaml:"circuit_breaker"`
	// Retry enables retries (only of retry-safe requests).
	Retry *retry.Config `yaml:"retry"`
	// Timeout bounds connecting and waiting for the upstream.
	Timeout proxy.Timeouts `yaml:"timeout"`
	// MaxIdleConns is the keep-alive pool size per target. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// TLS makes connections to the targets HTTPS, verified against a CA
	// bundle and server name, optionally with a client certificate (mTLS);
	// see tlsconf.Upstream. Default: plain HTTP.
	TLS *tlsconf.Upstream `yaml:"tls"`
	// Protocol to the targets: http1, h2 (TLS only) or h2c (cleartext
	// HTTP/2 by prior knowledge, e.g. gRPC servers without TLS). Default:
	// HTTP/1.1, or over tls HTTP/2 when the target offers it by ALPN.
	Protocol string `yaml:"protocol"`
	// MaxInFlight caps concurrent requests to the upstream; requests over
	// it get 503 upstream_busy at once. 0 (default) means no cap.
	MaxInFlight int `yaml:"max_in_flight"`
}

// Discovery is the top-level discovery section.
type Discovery struct {
	// Registry is the URL of the service registry (`switchyard
	// registry`), e.g. http://127.0.0.1:8500. Required.
	Registry string `yaml:"registry"`
	// InitialWait is how long the gateway waits at start for the first
	// instance set of each discovered upstream before it listens anyway
	// (with no targets for an upstream whose registry is unreachable).
	// Default 5s.
	InitialWait time.Duration `yaml:"initial_wait"`
	// Wait is how long one watch long-poll blocks at the registry.
	// Default 30s.
	Wait time.Duration `yaml:"wait"`
	// TLS, for an https:// registry: the CA that signs its certificate
	// and the client certificate the gateway presents (a registry with
	// access control knows callers by it). Read at start.
	TLS *tlsconf.Upstream `yaml:"tls"`
}

// DefaultDiscoveryInitialWait is Discovery.InitialWait's default.
const DefaultDiscoveryInitialWait = 5 * time.Second

// Target is one backend.
type Target struct {
	// Address is host:port. Required.
	Address string `yaml:"address"`
	// Weight for weighted policies, >= 1. Default 1.
	Weight int `yaml:"weight"`
}

// Route sends matching requests to an upstream.
type Route struct {
	// Name identifies the route in metrics and logs. Default "route<N>".
	Name string `yaml:"name"`
	// Match selects requests; an empty match matches everything.
	Match Match `yaml:"match"`
	// Upstream is the name of the pool. Required unless Aggregate or
	// Publish is set.
	Upstream string `yaml:"upstream"`
	// Aggregate answers the route by composing several upstream calls
	// (scatter-gather) instead of forwarding; see package compose.
	Aggregate *compose.Config `yaml:"aggregate"`
	// Publish answers the route by publishing each request to a broker
	// queue (202 Accepted, tracking id, status URL) instead of forwarding.
	// Exclusive with Upstream and Aggregate; needs the top-level broker.
	// See package publish.
	Publish *publish.Config `yaml:"publish"`
	// StripPrefix removes this prefix from the path before forwarding.
	StripPrefix string `yaml:"strip_prefix"`
	// ClientCert is the route's client certificate requirement (needs
	// tls.client_ca): "required" refuses requests without a verified
	// client certificate (403), "optional" lets them through; both forward
	// a verified certificate's identity upstream in
	// X-Forwarded-Client-Cert. Default: the identity is not forwarded.
	ClientCert string `yaml:"client_cert"`
	// Auth lists the accepted credential methods: api_key, jwt, basic, or
	// none (default). Needs the top-level auth section.
	Auth auth.Methods `yaml:"auth"`
	// Require authorizes authenticated requests: all of scopes, any of
	// roles, any of tiers; otherwise 403.
	Require *auth.Require `yaml:"require"`
	// RateLimit throttles the route; see package throttle.
	RateLimit *throttle.Config `yaml:"rate_limit"`
	// CORS answers preflights and sets CORS headers; see package cors.
	CORS *cors.Config `yaml:"cors"`
	// IPFilter allows or denies client addresses; see package ipfilter.
	IPFilter *ipfilter.Config `yaml:"ip_filter"`
	// MaxRequestBody caps request bodies in bytes (413 beyond); 0 = no cap.
	MaxRequestBody int64 `yaml:"max_request_body"`
	// Transform rewrites requests (headers, path, query) and responses
	// (headers, JSON field allow-list); see package transform.
	Transform *transform.Config `yaml:"transform"`
	// Split sends part of the traffic to another upstream (strangler fig
	// migrations, canaries).
	Split *Split `yaml:"split"`
	// Deprecated marks the route's API version as deprecated: responses
	// carry Deprecation, Sunset and Link headers.
	Deprecated *Deprecated `yaml:"deprecated"`
	// Cache answers the route's GET and HEAD requests from a named cache
	// of the caches block: the name (cache: edge) or the name with
	// overrides (cache: {name: edge, default_ttl: 60s}). Hits never reach
	// the upstream; see docs/edge.md.
	Cache *RouteCache `yaml:"cache"`
	// Fault injects delays and aborts into the route's requests (as
	// Envoy's fault filter), for a share of them or only for those
	// carrying a header; switchable at runtime through /admin/faults.
	// See package chaos (RouteFault) and docs/chaos.md.
	Fault *chaos.RouteFault `yaml:"fault"`
	// Contract names an entry of the top-level contracts: requests on
	// this route must match that OpenAPI document (checked after
	// authentication and rate limits, before the request transform).
	Contract string `yaml:"contract"`
	// GRPCJSON answers the route's HTTP/JSON requests by calling the
	// gRPC methods of a protobuf descriptor set on the route's upstream
	// (protocol h2 or h2c), as Envoy's gRPC-JSON transcoder: paths from
	// the methods' google.api.http annotations and POST
	// /package.Service/Method; gRPC errors become HTTP statuses with
	// RFC 9457 problems. See package transcode and docs/api-gateway.md.
	GRPCJSON *transcode.Config `yaml:"grpc_json"`
}

// Split moves traffic from a route's upstream to another one.
type Split struct {
	// Upstream receives the split-off requests. Required.
	Upstream string `yaml:"upstream"`
	// Percent of requests (0-100) sent there at random.
	Percent float64 `yaml:"percent"`
	// Paths are path prefixes (segment boundary) always sent there.
	Paths []string `yaml:"paths"`
}

// Deprecated describes a deprecated API version (RFC 9745, RFC 8594).
type Deprecated struct {
	// Since is when the version was deprecated (RFC 3339), sent as
	// "Deprecation: @<unix seconds>" (RFC 9745). When omitted the header is
	// "Deprecation: true", the form of the earlier drafts.
	Since string `yaml:"since"`
	// Sunset is when the version stops working (RFC 3339); sent as the
	// Sunset header (HTTP date).
	Sunset string `yaml:"sunset"`
	// Link points to migration documentation; sent as
	// Link: <URL>; rel="deprecation".
	Link string `yaml:"link"`
}

// Match is a conjunction of conditions.
type Match struct {
	// Host matches the request host (port ignored); "*.example.com" matches subdomains.
	Host string `yaml:"host"`
	// Path matches the path exactly.
	Path string `yaml:"path"`
	// PathPrefix matches a path prefix at a segment boundary ("/v1" matches
	// "/v1" and "/v1/x" but not "/v10").
	PathPrefix string `yaml:"path_prefix"`
	// PathPattern matches the path segment by segment, "*" standing for
	// exactly one non-empty segment: "/v1/rides/*/receipt" matches
	// "/v1/rides/42/receipt", not "/v1/rides/42" or "/v1/rides/4/2/receipt".
	// Exclusive with path and path_prefix.
	PathPattern string `yaml:"path_pattern"`
	// Methods lists accepted methods; empty accepts all.
	Methods []string `yaml:"methods"`
	// Headers must all be present with exactly these values. Versioned
	// APIs can match a header such as Accept-Version: v2.
	Headers map[string]string `yaml:"headers"`
	// Client matches a client type: mobile, desktop or other (from
	// X-Client-Type, else the User-Agent), for backends for frontends.
	Client string `yaml:"client"`
}

// File returns the name of the file the config was loaded from.
func (c *Config) File() string { return c.src.File() }

// Errorf returns a *config.Error located at the key path in this config's
// file.
func (c *Config) Errorf(path, format string, args ...any) error {
	return c.src.Errorf(path, format, args...)
}

// Wrap locates err at path; it returns nil for a nil err, and one located
// error per joined error inside err.
func (c *Config) Wrap(path string, err error) error { return c.src.Wrap(path, err) }

// UpstreamNames returns the upstream names in sorted order.
func (c *Config) UpstreamNames() []string {
	names := make([]string, 0, len(c.Upstreams))
	for n := range c.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// upstreamChoices is the expectation of an error naming an unknown
// upstream: the names defined, or that there are none.
func (c *Config) upstreamChoices() string {
	if len(c.Upstreams) == 0 {
		return "no upstreams are defined (add one under upstreams:)"
	}
	return "expected one of " + strings.Join(c.UpstreamNames(), ", ")
}

// onlyPublishes reports whether there are routes and all of them publish
// to the broker (such a gateway needs no upstream).
func (c *Config) onlyPublishes() bool {
	for _, r := range c.Routes {
		if r.Publish == nil {
			return false
		}
	}
	return len(c.Routes) > 0
}

// MaxWeight bounds target weights, in the config and through the admin
// API: large enough for any ratio worth expressing, small enough that
// weight sums and weighted structures stay cheap.
const MaxWeight = 1_000_000

// checkListenAddr checks a listener address: host:port with a port of 0
// (any free port) to 65535.
func checkListenAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: expected host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid address %q: port %q out of range: expected 0 to 65535", s, port)
	}
	return nil
}

// checkTargetAddr checks a backend address: host:port with a port of 1 to
// 65535.
func checkTargetAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: expected host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid address %q: port %q out of range: expected 1 to 65535", s, port)
	}
	return nil
}

// sameListener reports whether two valid listen addresses would collide:
// the same non-zero port on the same host, or on a wildcard host that
// covers the other.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	if na == 0 || na != nb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return strings.EqualFold(ha, hb) || wild(ha) || wild(hb)
}

// validate checks the structure and cross references; it runs after decoding.
func (c *Config) validate(src *config.Source) error {
	c.src = src
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, c.Errorf(path, format, args...)) }

	if c.Listen == "" {
		add("listen", "missing: expected the proxy's listen address, e.g. 127.0.0.1:8080")
	} else if err := checkListenAddr(c.Listen); err != nil {
		add("listen", "%v", err)
	}
	if c.Admin != "" {
		if err := checkListenAddr(c.Admin); err != nil {
			add("admin", "%v", err)
		} else if c.Listen != "" && sameListener(c.Listen, c.Admin) {
			add("admin", "%q is the same address as listen (%q): two listeners cannot share an address; give admin its own port", c.Admin, c.Listen)
		}
	}
	if c.AdminAuth != nil {
		if err := c.AdminAuth.Validate(); err != nil {
			errs = append(errs, c.Wrap("admin_auth", err))
		}
		if len(c.AdminAuth.Clients) > 0 && (c.AdminTLS == nil || c.AdminTLS.ClientCA == "") {
			add("admin_auth.clients", "client certificates need admin_tls with a client_ca to verify them")
		}
	} else if c.Admin != "" && !admin.IsLoopback(c.Admin) {
		add("admin", "%q is not a loopback address and admin_auth is not set: anyone who reaches it could drain targets and reload config; bind it to 127.0.0.1 or add admin_auth", c.Admin)
	}
	if t := c.AdminTLS; t != nil {
		if c.Admin == "" {
			add("admin_tls", "set, but admin is not: expected an admin address to serve TLS on")
		}
		if t.Cert == "" || t.Key == "" {
			add("admin_tls", "both cert and key are required")
		}
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, c.Wrap("tls", err))
		}
	}
	for _, name := range sortedKeys(c.Contracts) {
		if cc := c.Contracts[name]; cc == nil {
			add("contracts."+name, "empty: expected at least file")
		} else if err := cc.Validate(); err != nil {
			errs = append(errs, c.Wrap("contracts."+name, err))
		}
	}
	if c.Tracing != nil {
		if err := c.Tracing.Validate(); err != nil {
			errs = append(errs, c.Wrap("tracing", err))
		}
	}
	switch c.Server.HTTP1 {
	case "", "switchyard", "net/http":
	default:
		add("server.http1", "unknown server %q: expected switchyard or net/http", c.Server.HTTP1)
	}
	switch c.Server.HTTP2 {
	case "", "switchyard", "net/http":
	default:
		add("server.http2", "unknown server %q: expected switchyard or net/http", c.Server.HTTP2)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"read_header_timeout", c.Server.ReadHeaderTimeout},
		{"idle_timeout", c.Server.IdleTimeout},
		{"read_body_timeout", c.Server.ReadBodyTimeout},
		{"write_timeout", c.Server.WriteTimeout},
		{"shutdown_timeout", c.Server.ShutdownTimeout},
	} {
		if d.v != 0 && (d.v < MinServerTimeout || d.v > MaxServerTimeout) {
			add("server."+d.key, "%s out of range: expected %s to %s (or omit it for the default)", d.v, MinServerTimeout, MaxServerTimeout)
		}
	}
	if n := c.Server.MaxHeaderBytes; n != 0 && (n < MinHeaderBytes || n > MaxHeaderBytes) {
		add("server.max_header_bytes", "%d out of range: expected %d to %d bytes (default %d)", n, MinHeaderBytes, MaxHeaderBytes, DefaultHeaderBytes)
	}
	if c.Server.MaxBodyBuffer < 0 {
		add("server.max_body_buffer", "negative size %d", c.Server.MaxBodyBuffer)
	}
	if c.Server.MaxBodyBufferTotal < 0 {
		add("server.max_body_buffer_total", "negative size %d", c.Server.MaxBodyBufferTotal)
	}
	if len(c.Upstreams) == 0 && !c.onlyPublishes() {
		add("upstreams", "missing: expected at least one upstream")
	}
	if b := c.Broker; b != nil {
		if err := b.Validate(); err != nil {
			errs = append(errs, c.Wrap("broker", err))
		}
	}
	if d := c.Dashboard; d != nil {
		if err := d.Validate(); err != nil {
			errs = append(errs, c.Wrap("dashboard", err))
		}
	}
	if d := c.Discovery; d != nil {
		if _, err := discovery.NewClient(d.Registry, nil); d.Registry == "" {
			add("discovery.registry", "missing: expected the registry URL, e.g. http://127.0.0.1:8500")
		} else if err != nil {
			add("discovery.registry", "%v", err)
		}
		if d.TLS != nil {
			if err := d.TLS.Validate(); err != nil {
				errs = append(errs, c.Wrap("discovery.tls", err))
			}
			if !strings.HasPrefix(d.Registry, "https://") {
				add("discovery.tls", "set, but discovery.registry %q is not an https:// URL", d.Registry)
			}
		}
		if d.InitialWait < 0 {
			add("discovery.initial_wait", "negative duration %s", d.InitialWait)
		}
		if d.Wait < 0 || d.Wait > 10*time.Minute {
			add("discovery.wait", "%s out of range: expected up to 10m (default 30s)", d.Wait)
		}
	}
	for _, name := range c.UpstreamNames() {
		u := c.Upstreams[name]
		p := "upstreams." + name
		if u == nil {
			add(p, "empty upstream: expected balance and targets")
			continue
		}
		switch {
		case u.Discover != "" && len(u.Targets) > 0:
			add(p+".discover", "an upstream has either targets or discover, not both")
		case u.Discover != "":
			if err := discovery.ValidName(u.Discover); err != nil {
				add(p+".discover", "%v", err)
			}
			if c.Discovery == nil {
				add(p+".discover", "upstream discovers service %q but the config has no top-level discovery section (discovery: { registry: http://127.0.0.1:8500 })", u.Discover)
			}
		case len(u.Targets) == 0:
			add(p+".targets", "missing: expected at least one target (or discover: SERVICE)")
		}
		seen := map[string]bool{}
		for i, t := range u.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", p, i)
			if t.Address == "" {
				add(tp+".address", "missing: expected host:port")
			} else if err := checkTargetAddr(t.Address); err != nil {
				add(tp+".address", "%v", err)
			} else if seen[t.Address] {
				add(tp+".address", "duplicate target %q in upstream %q", t.Address, name)
			}
			seen[t.Address] = true
			if written := c.src.Written(tp + ".weight"); (written || t.Weight != 0) && (t.Weight < 1 || t.Weight > MaxWeight) {
				add(tp+".weight", "weight %d out of range: expected 1 to %d (default 1; to take a target out of service, drain it through the admin API or remove it)", t.Weight, MaxWeight)
			}
		}
		if u.MaxIdleConns < 0 {
			add(p+".max_idle_conns", "negative value %d", u.MaxIdleConns)
		}
		if u.TLS != nil {
			if err := u.TLS.Validate(); err != nil {
				errs = append(errs, c.Wrap(p+".tls", err))
			}
		}
		if err := proxy.ValidProtocol(u.Protocol, u.TLS != nil); err != nil {
			add(p+".protocol", "%v", err)
		}
	}
	if len(c.Routes) == 0 && len(c.L4) == 0 {
		add("routes", "missing: expected at least one route (or an l4 listener)")
	}
	errs = append(errs, c.validateL4()...)
	names := map[string]bool{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		if r.Name == "" {
			r.Name = fmt.Sprintf("route%d", i)
		}
		if names[r.Name] {
			add(p+".name", "duplicate route name %q", r.Name)
		}
		names[r.Name] = true
		if pub := r.Publish; pub != nil {
			if r.Upstream != "" || r.Aggregate != nil {
				add(p+".publish", "a route has one of upstream, aggregate and publish, not several")
			}
			if r.Split != nil {
				add(p+".split", "a publish route forwards nothing: split needs upstream")
			}
			if err := pub.Validate(); err != nil {
				errs = append(errs, c.Wrap(p+".publish", err))
			}
			if c.Broker == nil {
				add(p+".publish", "route publishes to queue %q but the config has no top-level broker section (broker: { url: http://127.0.0.1:7401 })", pub.Queue)
			}
		} else if a := r.Aggregate; a != nil {
			if r.Upstream != "" {
				add(p+".aggregate", "a route has either upstream or aggregate, not both")
			}
			for j, call := range a.Calls {
				if _, ok := c.Upstreams[call.Upstream]; call.Upstream != "" && !ok {
					add(fmt.Sprintf("%s.aggregate.calls[%d].upstream", p, j), "unknown upstream %q: %s", call.Upstream, c.upstreamChoices())
				}
			}
		} else if r.Upstream == "" {
			add(p+".upstream", "missing: expected the name of an upstream")
		} else if _, ok := c.Upstreams[r.Upstream]; !ok {
			add(p+".upstream", "unknown upstream %q: %s", r.Upstream, c.upstreamChoices())
		}
		if n := nonEmpty(r.Match.Path, r.Match.PathPrefix, r.Match.PathPattern); n > 1 {
			add(p+".match", "path, path_prefix and path_pattern are exclusive")
		}
		if r.Match.PathPattern != "" {
			if err := route.ValidPattern(r.Match.PathPattern); err != nil {
				add(p+".match.path_pattern", "%v", err)
			}
			if r.Publish != nil {
				add(p+".match.path_pattern", "a publish route needs path or path_prefix (its status lookups live under it)")
			}
		}
		if err := route.ValidPattern(r.Match.PathPattern); r.Match.PathPattern == "" || err == nil {
			for j := 0; j < i; j++ {
				prev := c.Routes[j].Match
				if route.ValidPattern(prev.PathPattern) != nil && prev.PathPattern != "" {
					continue
				}
				if route.Covers(prev.routeMatch(), r.Match.routeMatch()) {
					add(p+".match", "never reached: routes[%d]%s matches every request this route matches (the first match wins: put the more specific route first)", j, nameOf(c.Routes[j]))
					break
				}
			}
		}
		for _, k := range []struct{ key, v string }{{"path", r.Match.Path}, {"path_prefix", r.Match.PathPrefix}} {
			if k.v != "" && !strings.HasPrefix(k.v, "/") {
				add(p+".match."+k.key, "%q must start with /", k.v)
			}
		}
		if r.Contract != "" {
			if _, ok := c.Contracts[r.Contract]; !ok {
				add(p+".contract", "unknown contract %q: expected one of the contracts block (%s)", r.Contract, strings.Join(sortedKeys(c.Contracts), ", "))
			}
		}
		if g := r.GRPCJSON; g != nil {
			if err := g.Validate(); err != nil {
				errs = append(errs, c.Wrap(p+".grpc_json", err))
			}
			if r.Upstream == "" || r.Aggregate != nil || r.Publish != nil {
				add(p+".grpc_json", "transcoding calls the route's upstream: set upstream (a gRPC server), not aggregate or publish")
			} else if u, ok := c.Upstreams[r.Upstream]; ok && u.Protocol != proxy.ProtocolH2 && u.Protocol != proxy.ProtocolH2C {
				add(p+".grpc_json", "upstream %q speaks %s: gRPC needs HTTP/2, so set its protocol to h2c (cleartext) or h2 (with tls)", r.Upstream, protocolName(u.Protocol))
			}
			if r.StripPrefix != "" {
				add(p+".strip_prefix", "a grpc_json route forwards to /package.Service/Method: strip_prefix does not apply (match the full paths of the google.api.http rules)")
			}
		}
		if err := tlsconf.ValidClientCertMode(r.ClientCert); err != nil {
			add(p+".client_cert", "%v", err)
		} else if r.ClientCert != "" && (c.TLS == nil || c.TLS.ClientCA == "") {
			add(p+".client_cert", "route wants client certificates but the gateway asks for none: set tls.client_ca (the CA bundle that signs them)")
		}
		if r.StripPrefix != "" && !strings.HasPrefix(r.StripPrefix, "/") {
			add(p+".strip_prefix", "%q must start with /", r.StripPrefix)
		}
		if r.MaxRequestBody < 0 {
			add(p+".max_request_body", "negative size %d", r.MaxRequestBody)
		}
		if sp := r.Split; sp != nil {
			if sp.Upstream == "" {
				add(p+".split.upstream", "missing: expected the name of an upstream")
			} else if _, ok := c.Upstreams[sp.Upstream]; !ok {
				add(p+".split.upstream", "unknown upstream %q: %s", sp.Upstream, c.upstreamChoices())
			}
			if sp.Percent < 0 || sp.Percent > 100 {
				add(p+".split.percent", "%v out of range: expected 0 to 100", sp.Percent)
			}
			if sp.Percent == 0 && len(sp.Paths) == 0 {
				add(p+".split", "nothing to split: expected percent and/or paths")
			}
			for j, path := range sp.Paths {
				if !strings.HasPrefix(path, "/") {
					add(fmt.Sprintf("%s.split.paths[%d]", p, j), "%q must start with /", path)
				}
			}
		}
		if d := r.Deprecated; d != nil {
			for _, f := range []struct{ key, v string }{{"since", d.Since}, {"sunset", d.Sunset}} {
				if f.v == "" {
					continue
				}
				if _, err := time.Parse(time.RFC3339, f.v); err != nil {
					add(p+".deprecated."+f.key, "invalid time %q: expected RFC 3339, e.g. 2027-01-31T00:00:00Z", f.v)
				}
			}
		}
		for j, m := range r.Match.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
				add(fmt.Sprintf("%s.match.methods[%d]", p, j), "invalid method %q: expected an upper-case HTTP method such as GET", m)
			}
		}
	}
	errs = append(errs, c.validateSLOs()...)
	return errors.Join(errs...)
}

// LoadConfig reads, strictly decodes and validates the gateway config file
// at path. Every problem found is reported (joined), each naming the file,
// line and column, the key path and what was expected.
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
	cfg, err := parseConfig(data, name)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// loadDecoded is LoadConfig for checkers that want to report more: when
// the file decodes but does not validate, it returns the decoded config
// too, with the validation errors, so further checks (files it names) can
// run on it. The config must not be used to serve.
func loadDecoded(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return parseConfig(data, path)
}

func parseConfig(data []byte, name string) (*Config, error) {
	var cfg Config
	src, err := config.DecodeYAML(data, name, &cfg)
	if errors.Is(err, config.ErrEmpty) {
		return nil, &config.Error{File: name, Msg: "config is empty: expected a YAML mapping with at least listen, upstreams and routes", Err: config.ErrEmpty}
	}
	if err != nil {
		// Unknown keys and bad values, each at its own position;
		// validating a partially decoded config would add noise.
		return nil, err
	}
	if err := cfg.validate(src); err != nil {
		return &cfg, err
	}
	return &cfg, nil
}

// orDuration returns d, or def when d is zero (not set).
func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// routeMatch is m as the route matcher takes it.
func (m Match) routeMatch() route.Match {
	return route.Match{Host: m.Host, Path: m.Path, PathPrefix: m.PathPrefix, PathPattern: m.PathPattern,
		Methods: m.Methods, Headers: m.Headers, Client: m.Client}
}

func nonEmpty(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

func nameOf(r Route) string {
	if r.Name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", r.Name)
}

// routeFaults maps every route name to its fault block (nil without).
func (c *Config) routeFaults() map[string]*chaos.RouteFault {
	m := make(map[string]*chaos.RouteFault, len(c.Routes))
	for _, r := range c.Routes {
		m[r.Name] = r.Fault
	}
	return m
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func protocolName(p string) string {
	if p == "" {
		return "HTTP/1.1 or ALPN's choice (protocol unset)"
	}
	return p
}
