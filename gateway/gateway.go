// Package gateway assembles the L7 load balancer from its building blocks:
// it loads the config, builds routes and upstream pools (balancer, health
// checks, outlier detection, breakers, retries), serves the proxy and the
// admin API, and reloads the config without dropping in-flight requests.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/chaos"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/dashboard"
	"github.com/switchyard/switchyard/httpserver"
	h2srv "github.com/switchyard/switchyard/httpserver/h2"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/ratelimit"
	"github.com/switchyard/switchyard/slo"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/tlsconf"
)

// Options configure a Gateway.
type Options struct {
	// ConfigPath is the YAML file to load (and re-read on Reload).
	ConfigPath string
	// Logger receives operational logs (reloads, health changes, errors).
	// Default: JSON to stderr.
	Logger *slog.Logger
	// AccessLogWriter overrides where the access log goes (tests); when nil
	// the config's access_log setting decides.
	AccessLogWriter io.Writer
	// Config is a configuration built in code, used instead of reading
	// ConfigPath (which then only names it in errors and logs), for
	// programs that assemble gateways (the sidecar). New validates it as
	// it would a file's, errors naming key paths without positions; Reload
	// is refused.
	Config *Config
	// Registry is where the gateway registers its metrics, served on the
	// admin listener's /metrics. Default: a registry of its own with the
	// Go and process collectors. Programs running several gateways in one
	// process pass one registry (with those collectors registered once)
	// and tell the gateways apart with MetricLabels.
	Registry *prometheus.Registry
	// MetricLabels are constant labels added to every metric the gateway
	// registers, e.g. {"side": "inbound"}.
	MetricLabels prometheus.Labels
	// Tracing is the tracer provider and trace store to use, for programs
	// running several gateways in one process; nil sets one up from the
	// config's tracing block (and the OTEL_* environment).
	Tracing *telemetry.Tracing
	// AdminExtensions are handlers of the program that assembles the
	// gateway, served on the admin listener beside the admin API, keyed by
	// http.ServeMux pattern ("GET /admin/hitch/processes"). Each must be a
	// fixed path under /admin/ that the admin API does not serve itself;
	// New refuses others. `hitch up` lists its processes this way.
	AdminExtensions map[string]http.Handler
	// DashboardProcesses is an admin path (typically one of
	// AdminExtensions) answering {"processes": [...]}, shown in the
	// dashboard's processes panel; empty: no such panel. `hitch up` passes
	// "/admin/hitch/processes".
	DashboardProcesses string
	// DashboardClient calls the dashboard's brokers (GET /v1/queues ...);
	// nil: a plain client with a 2 s timeout. A program whose brokers
	// require TLS client certificates passes one presenting its own
	// (`hitch up --secure` does).
	DashboardClient *http.Client
}

// Gateway is a running L7 load balancer. Create it with New, then Run.
type Gateway struct {
	opts        Options
	log         *slog.Logger
	reg         *prometheus.Registry
	metrics     *proxy.Metrics
	handler     *proxy.Handler
	current     atomic.Pointer[runtime]
	reloadMu    sync.Mutex
	logFile     *os.File
	limits      ratelimit.Store // rate-limit state; survives reloads
	closeLimits func() error
	brokerConns *http.Transport    // connections of publish routes to the broker; survive reloads
	overrides   weightOverrides    // admin-set weights; survive reloads
	rollouts    *rolloutManager    // rollouts of upstreams' targets; survive reloads and (with state_dir) restarts
	faults      *chaos.RouteFaults // routes' fault injection; survives reloads
	tracing     *telemetry.Tracing
	adminAuth   atomic.Pointer[admin.Authenticator] // nil: the admin API is open (loopback only)
	ownTracing  bool                                // set up here (not given in Options): shut down here
	// slos counts requests against the SLOs and runs their alerts; it
	// survives reloads.
	slos  *slo.Engine
	certs *tlsconf.Certs // the listener's certificates (tls:), reloadable; nil without TLS

	// Set by Run once listening.
	mu        sync.Mutex
	addr      net.Addr
	adminAddr net.Addr
	l4        []*l4Server
	ready     chan struct{}
}

// New loads and validates the config and builds the gateway. Nothing
// listens until Run.
func New(opts Options) (*Gateway, error) {
	cfg, err := loadOrValidate(opts)
	if err != nil {
		return nil, err
	}
	if err := checkFiles(cfg); err != nil {
		return nil, err
	}
	if err := checkAdminExtensions(opts.AdminExtensions); err != nil {
		return nil, err
	}
	g := &Gateway{opts: opts, log: opts.Logger, reg: opts.Registry, ready: make(chan struct{})}
	if g.log == nil {
		g.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if g.reg == nil {
		g.reg = prometheus.NewRegistry()
		g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	metricsReg := prometheus.WrapRegistererWith(opts.MetricLabels, g.reg)
	if g.metrics, err = proxy.NewMetrics(metricsReg); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if g.faults, err = chaos.NewRouteFaults(chaos.RouteFaultsOptions{StateDir: cfg.StateDir, Logger: g.log}); err != nil {
		return nil, err
	}
	if err := errors.Join(metricsReg.Register(targetCollector{g}), metricsReg.Register(l4Collector{g}),
		metricsReg.Register(cacheCollector{g}), metricsReg.Register(contractCollector{g}), metricsReg.Register(rolloutCollector{g}), metricsReg.Register(g.faults.Collector())); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if err := g.setupSLOs(cfg, metricsReg); err != nil {
		return nil, err
	}
	accessLog, err := g.accessLogger(cfg)
	if err != nil {
		return nil, err
	}
	g.tracing = opts.Tracing
	if g.tracing == nil {
		tc := telemetry.Config{}
		if cfg.Tracing != nil {
			tc = *cfg.Tracing
		}
		if g.tracing, err = telemetry.Setup(context.Background(), tc, "switchyard-gateway", nil); err != nil {
			return nil, cfg.Errorf("tracing", "%v", err)
		}
		g.ownTracing = true
	}
	var tracing *telemetry.RequestTracer
	if cfg.Tracing == nil || !cfg.Tracing.Disabled {
		tracing = g.tracing.RequestTracer("switchyard/gateway")
	}
	g.handler = proxy.New(g, proxy.Options{
		AccessLog: accessLog, ErrorLog: g.log, Metrics: g.metrics,
		MaxBodyBuffer: orInt(cfg.Server.MaxBodyBuffer, DefaultMaxBodyBuffer), MaxBodyBufferTotal: cfg.Server.MaxBodyBufferTotal,
		Tracing: tracing, Observer: g.slos,
	})
	if g.limits, g.closeLimits, err = newLimitStore(cfg); err != nil {
		return nil, err
	}
	g.brokerConns = newBrokerTransport()
	auth, err := newAdminAuth(cfg, g.log)
	if err != nil {
		_ = g.closeLimits()
		if g.logFile != nil {
			_ = g.logFile.Close()
		}
		return nil, err
	}
	if g.rollouts, err = newRolloutManager(g.log, &g.overrides, cfg.StateDir); err != nil {
		_ = g.closeLimits()
		if g.logFile != nil {
			_ = g.logFile.Close()
		}
		return nil, cfg.Errorf("state_dir", "%v", err)
	}
	rt, err := build(cfg, g.deps(nil))
	if err != nil {
		_ = g.closeLimits()
		if g.logFile != nil {
			_ = g.logFile.Close()
		}
		return nil, err
	}
	g.rollouts.attach(rt)
	g.current.Store(rt)
	g.adminAuth.Store(auth)
	g.faults.SetRoutes(cfg.routeFaults())
	return g, nil
}

// newAdminAuth builds the admin API's authenticator from cfg (nil when
// admin_auth is absent: the admin API is open, on loopback only).
func newAdminAuth(cfg *Config, log *slog.Logger) (*admin.Authenticator, error) {
	if cfg.AdminAuth == nil {
		return nil, nil
	}
	a, err := admin.NewAuthenticator(cfg.AdminAuth, log)
	if err != nil {
		return nil, cfg.Wrap("admin_auth", err)
	}
	return a, nil
}

// adminTLSConfig loads the admin listener's certificate and client CAs.
// Both are re-read when their files change (at a handshake, at most
// every tlsconf.FileCertCheck): a renewed certificate is served, and a
// rotated client CA bundle verifies, from the next handshake on.
func adminTLSConfig(t *AdminTLS) (*tls.Config, error) {
	fc, err := tlsconf.LoadFileCert(t.Cert, t.Key)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{GetCertificate: fc.GetCertificate, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		base := tc.Clone()
		base.ClientAuth = tls.VerifyClientCertIfGiven
		cas, err := tlsconf.WatchClientCAs(base, t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client_ca: %w", err)
		}
		// Each handshake gets the current bundle's config (one per
		// bundle generation; its GetCertificate is fc's, so the
		// certificate still reloads on its own).
		tc.GetConfigForClient = cas.GetConfigForClient
	}
	return tc, nil
}

// loadOrValidate returns the config of opts: opts.Config validated, or
// the file at opts.ConfigPath loaded.
func loadOrValidate(opts Options) (*Config, error) {
	if opts.Config == nil {
		return LoadConfig(opts.ConfigPath)
	}
	name := opts.ConfigPath
	if name == "" {
		name = "gateway config"
	}
	if err := opts.Config.validate(config.NewSource(name)); err != nil {
		return nil, err
	}
	return opts.Config, nil
}

// Gatherer returns the registry of the gateway's metrics (what its admin
// listener serves on /metrics).
func (g *Gateway) Gatherer() prometheus.Gatherer { return g.reg }

// Check loads the config at path and builds (without starting) everything
// it describes, reporting every problem; it is `switchyard gateway --check`.
func Check(path string) error {
	cfg, err := loadDecoded(path)
	if cfg == nil {
		return err
	}
	if err != nil { // invalid, but decoded: report its files' problems too
		return errors.Join(err, checkFiles(cfg))
	}
	fileErr := checkFiles(cfg)
	limits, closeLimits, err := newLimitStore(cfg)
	if err != nil {
		return errors.Join(fileErr, err)
	}
	defer closeLimits()
	rt, err := build(cfg, buildDeps{log: slog.New(slog.DiscardHandler), limits: limits})
	if rt != nil {
		rt.closeCaches()
		rt.releaseStores(nil)
	}
	return errors.Join(fileErr, err)
}

// checkFiles checks the files the config names outside the building
// blocks (which load theirs, e.g. JWT keys, when built): the TLS
// certificate and key must load, and the access log must be a file that
// can be opened for appending (or created in an existing directory). It
// creates nothing.
func checkFiles(cfg *Config) error {
	var errs []error
	if cfg.AdminTLS != nil && cfg.AdminTLS.Cert != "" && cfg.AdminTLS.Key != "" {
		if _, err := adminTLSConfig(cfg.AdminTLS); err != nil {
			errs = append(errs, cfg.Errorf("admin_tls", "%v", err))
		}
	}
	if cfg.AdminAuth != nil && cfg.AdminAuth.Validate() == nil { // else the config's validation reported it already
		if _, err := admin.NewAuthenticator(cfg.AdminAuth, slog.New(slog.DiscardHandler)); err != nil {
			errs = append(errs, cfg.Wrap("admin_auth", err))
		}
	}
	if cfg.TLS != nil {
		if err := tlsconf.Load(*cfg.TLS); err != nil {
			errs = append(errs, cfg.Errorf("tls", "%v", err))
		}
	}
	for i, l := range cfg.L4 {
		if l.TLS != nil && l.TLS.Cert != "" && l.TLS.Key != "" {
			if _, err := tls.LoadX509KeyPair(l.TLS.Cert, l.TLS.Key); err != nil {
				errs = append(errs, cfg.Errorf(fmt.Sprintf("l4[%d].tls", i), "loading certificate: %v", err))
			}
		}
	}
	switch f := cfg.AccessLog; f {
	case "", "stdout", "stderr", "off":
	default:
		if fi, err := os.Stat(f); err == nil {
			if fi.IsDir() {
				errs = append(errs, cfg.Errorf("access_log", "%q is a directory: expected a file path", f))
			} else if fh, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0); err != nil {
				errs = append(errs, cfg.Errorf("access_log", "opening access log: %v", err))
			} else {
				fh.Close()
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, cfg.Errorf("access_log", "opening access log: %v", err))
		} else if fi, err := os.Stat(filepath.Dir(f)); err != nil {
			errs = append(errs, cfg.Errorf("access_log", "cannot create %q: %v", f, err))
		} else if !fi.IsDir() {
			errs = append(errs, cfg.Errorf("access_log", "cannot create %q: %s is not a directory", f, filepath.Dir(f)))
		}
	}
	return errors.Join(errs...)
}

func (g *Gateway) accessLogger(cfg *Config) (*slog.Logger, error) {
	w := g.opts.AccessLogWriter
	switch {
	case w != nil:
	case cfg.AccessLog == "" || cfg.AccessLog == "stdout":
		w = os.Stdout
	case cfg.AccessLog == "stderr":
		w = os.Stderr
	case cfg.AccessLog == "off":
		return nil, nil
	default:
		f, err := os.OpenFile(cfg.AccessLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, cfg.Errorf("access_log", "opening access log: %v", err)
		}
		g.logFile = f
		w = f
	}
	return slog.New(slog.NewJSONHandler(w, nil)), nil
}

func (g *Gateway) deps(prev *runtime) buildDeps {
	return buildDeps{log: g.log, metrics: g.metrics, handler: g.handler, limits: g.limits, prev: prev,
		brokerTransport: g.brokerConns, overrides: &g.overrides, rollouts: g.rollouts, faults: g.faults}
}

// newBrokerTransport returns the HTTP transport of publish routes' calls
// to the broker: direct (no proxy from the environment), with enough idle
// connections per host for a busy route.
func newBrokerTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 64
	return t
}

// Resolve implements proxy.Resolver over the current runtime.
func (g *Gateway) Resolve(r *http.Request) (*proxy.Route, bool) { return g.current.Load().Resolve(r) }

// Handler returns the proxy handler (for embedding the gateway in a server
// of one's own).
func (g *Gateway) Handler() http.Handler { return g.handler }

// Addr returns the proxy's listen address once Run is listening.
func (g *Gateway) Addr() net.Addr { g.mu.Lock(); defer g.mu.Unlock(); return g.addr }

// AdminAddr returns the admin API's listen address (nil when disabled).
func (g *Gateway) AdminAddr() net.Addr { g.mu.Lock(); defer g.mu.Unlock(); return g.adminAddr }

// Ready is closed when Run is listening.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Run listens and serves until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish (up to
// server.shutdown_timeout) and returns.
func (g *Gateway) Run(ctx context.Context) error {
	rt := g.current.Load()
	cfg := rt.cfg
	ln, err := listenTCP(cfg.Listen)
	if err != nil {
		return cfg.Errorf("listen", "listening: %v", err)
	}
	srv, ln, err := g.newServer(cfg, ln)
	if err != nil {
		ln.Close()
		return err
	}

	var adminSrv *http.Server
	var adminLn net.Listener
	if cfg.Admin != "" {
		adminLn, err = net.Listen("tcp", cfg.Admin)
		if err != nil {
			ln.Close()
			return cfg.Errorf("admin", "listening: %v", err)
		}
		if cfg.AdminTLS != nil {
			tc, err := adminTLSConfig(cfg.AdminTLS)
			if err != nil {
				ln.Close()
				adminLn.Close()
				return cfg.Errorf("admin_tls", "%v", err)
			}
			adminLn = tls.NewListener(adminLn, tc)
		}
		h, dash, err := g.adminHandler()
		if err != nil {
			ln.Close()
			adminLn.Close()
			return err
		}
		adminSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		adminSrv.RegisterOnShutdown(dash.Close) // end the dashboard's event streams, or Shutdown would wait on them
	}

	l4s, err := g.startL4(rt)
	if err != nil {
		ln.Close()
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}

	runCtx, stopRuntimes := context.WithCancel(context.Background())
	defer stopRuntimes()
	g.start(runCtx, rt)
	rolloutsDone := g.rollouts.start(runCtx)
	stopSLOs := g.runSLOs()
	g.waitDiscovered(ctx, rt)

	g.mu.Lock()
	g.l4 = l4s
	g.addr = ln.Addr()
	if adminLn != nil {
		g.adminAddr = adminLn.Addr()
	}
	g.mu.Unlock()
	close(g.ready)

	errc := make(chan error, 2)
	if g.certs != nil {
		go g.certs.Watch(cfg.TLS.WatchInterval)
		defer g.certs.Close()
	}
	go func() { errc <- srv.Serve(ln) }()
	if adminSrv != nil {
		go func() { errc <- adminSrv.Serve(adminLn) }()
	}
	g.log.Info("gateway listening", "addr", ln.Addr().String(), "admin", cfg.Admin, "config", cfg.File(),
		"routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	grace := orDuration(g.current.Load().cfg.Server.ShutdownTimeout, DefaultShutdownTimeout)
	g.log.Info("gateway shutting down", "grace", grace.String(), "in_flight", g.handler.InFlight())
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	l4done := make(chan struct{})
	go func() { shutdownL4(sctx, l4s); close(l4done) }()
	shutErr := srv.Shutdown(sctx)
	if shutErr != nil {
		_ = srv.Close() // the grace period is over: cut what is left
	}
	<-l4done
	if adminSrv != nil {
		_ = adminSrv.Shutdown(sctx)
	}
	stopSLOs() // after the last request: its counts are saved
	g.stop(g.current.Load())
	stopRuntimes()
	<-rolloutsDone
	if g.logFile != nil {
		_ = g.logFile.Close()
	}
	_ = g.closeLimits()
	g.brokerConns.CloseIdleConnections()
	if g.ownTracing {
		_ = g.tracing.Shutdown(sctx)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", serveErr)
	}
	if shutErr != nil {
		return fmt.Errorf("graceful shutdown: %w", shutErr)
	}
	return nil
}

// server is what serves the proxy listener: net/http's server or the
// gateway's own HTTP/1.x server (package httpserver).
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// newServer builds the proxy listener's server: the gateway's own
// HTTP/1.x server (package httpserver), which costs less CPU per request
// and per connection (docs/benchmarks.md), for plain listeners and for
// the HTTP/1.x connections of TLS listeners; switchyard's HTTP/2 server
// (package httpserver/h2; net/http's with server.http2: net/http) for
// HTTP/2 (the TLS connections that negotiated h2 by ALPN, h2c); net/http's
// for every HTTP/1.x connection when server.http1 is net/http or h2c is
// on. It returns the listener to serve on (wrapped for TLS).
func (g *Gateway) newServer(cfg *Config, ln net.Listener) (server, net.Listener, error) {
	readHeader := orDuration(cfg.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	idle := orDuration(cfg.Server.IdleTimeout, DefaultIdleTimeout)
	readBody := orDuration(cfg.Server.ReadBodyTimeout, httpserver.DefaultReadBodyTimeout)
	write := orDuration(cfg.Server.WriteTimeout, httpserver.DefaultWriteTimeout)
	maxHeader := cfg.Server.MaxHeaderBytes
	if maxHeader == 0 {
		maxHeader = httpserver.DefaultMaxHeaderBytes
	}
	ownH1 := cfg.Server.HTTP1 != "net/http" && !cfg.H2C
	h1 := &httpserver.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: readHeader,
		IdleTimeout:       idle,
		ReadBodyTimeout:   readBody,
		WriteTimeout:      write,
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          g.log.With("component", "server"),
	}
	if cfg.TLS == nil && ownH1 {
		return h1, ln, nil
	}
	srv := &http.Server{
		// net/http's WriteTimeout and ReadTimeout bound a whole exchange:
		// the progress-based deadlines are set per write and per body read.
		Handler:           progressDeadlines(g.handler, write, readBody),
		ReadHeaderTimeout: readHeader,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if coalesceServerWrites && cfg.Server.HTTP2 == "net/http" {
		// (switchyard's HTTP/2 server, the default, gathers its writes
		// itself.)
		// Under TLS too: the TLS layer's records then leave together.
		// Only HTTP/2 connections coalesce (see coalescingConn).
		ln = coalesceListener{ln}
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			coalesceH2(c)
			return ctx
		}
	}
	if cfg.H2C {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	// switchyard's HTTP/2 server (the default), with net/http's as its Other
	var h2 server
	if cfg.Server.HTTP2 != "net/http" && (cfg.TLS != nil || cfg.H2C) {
		// (Only where HTTP/2 is served: on a plain listener without h2c
		// the HTTP/2 preface is net/http's, which refuses it.)
		// HTTP/2 connections go to switchyard's server, the others (HTTP/1.x,
		// TLS without ALPN h2) on to net/http's, which then needs no HTTP/2.
		srv.Protocols.SetHTTP2(false)
		srv.Protocols.SetUnencryptedHTTP2(false)
		h2 = &h2srv.Server{
			Handler:              g.handler,
			Other:                srv,
			MaxConcurrentStreams: h2srv.DefaultMaxConcurrentStreams,
			MaxHeaderBytes:       maxHeader,
			ReadHeaderTimeout:    readHeader,
			IdleTimeout:          idle,
			WriteTimeout:         write,
			ReadBodyTimeout:      readBody,
			ErrorLog:             g.log.With("component", "server"),
		}
	}
	if cfg.TLS == nil {
		if h2 != nil {
			return h2, ln, nil
		}
		return srv, ln, nil
	}
	// NextProtos must offer h2 here: http.Server only sets up HTTP/2 on a
	// listener it did not wrap itself when the config already names "h2",
	// and the listener negotiates ALPN with this very config.
	certs, err := tlsconf.NewCerts(*cfg.TLS, []string{"h2", "http/1.1"}, g.log.With("component", "tls"))
	if err != nil {
		return nil, ln, cfg.Errorf("tls", "%v", err)
	}
	g.certs = certs
	srv.TLSConfig = certs.TLSConfig()
	if h2 == nil {
		srv.Protocols.SetHTTP2(true)
		h2 = srv
	}
	// Handshakes run on their own goroutines, each bounded by
	// tls.handshake_timeout, before a server sees the connection.
	tlsLog := g.log.With("component", "tls")
	if !ownH1 {
		return h2, tlsconf.Listener(ln, srv.TLSConfig, cfg.TLS.HandshakeTimeout, tlsLog), nil
	}
	h1ln, h2ln := tlsconf.SplitListener(ln, srv.TLSConfig, cfg.TLS.HandshakeTimeout, tlsLog)
	return &splitServer{h1: h1, h2: h2, h2ln: h2ln}, h1ln, nil
}

// splitServer serves a TLS listener with two servers: the connections
// that negotiated HTTP/1.1 (or nothing) by ALPN with the gateway's own
// HTTP/1.x server, those that negotiated h2 with the HTTP/2 server
// (switchyard's, or net/http's with server.http2: net/http; a
// tlsconf.SplitListener hands each to its own). Shutdown and Close act
// on both.
type splitServer struct {
	h1       *httpserver.Server
	h2       server
	h2ln     net.Listener
	shutting atomic.Bool
}

// Serve serves h1ln (SplitListener's HTTP/1.x side) and the HTTP/2 side
// until both servers stop: after Shutdown or Close, or when either fails
// (its Serve closes the shared listener, which stops the other).
func (s *splitServer) Serve(h1ln net.Listener) error {
	h2err := make(chan error, 1)
	go func() { h2err <- s.h2.Serve(s.h2ln) }()
	err := s.h1.Serve(h1ln)
	err2 := <-h2err
	if s.shutting.Load() {
		return http.ErrServerClosed
	}
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = err2 // the HTTP/2 side's failure closed the listener
	}
	return err
}

// Shutdown shuts both servers down at once (each as it does alone).
func (s *splitServer) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	h2done := make(chan error, 1)
	go func() { h2done <- s.h2.Shutdown(ctx) }()
	err := s.h1.Shutdown(ctx)
	return errors.Join(err, <-h2done)
}

// Close closes both servers' listener and connections.
func (s *splitServer) Close() error {
	s.shutting.Store(true)
	return errors.Join(s.h1.Close(), s.h2.Close())
}

// start runs a runtime's health checkers and registry watches under ctx.
func (g *Gateway) start(ctx context.Context, rt *runtime) {
	ctx, rt.cancel = context.WithCancel(ctx)
	for _, c := range rt.checkers {
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			c.Run(ctx)
		}()
	}
	for _, dp := range rt.discovered {
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			dp.run(ctx, rt.registry, rt.cfg.Discovery.Wait)
		}()
	}
}

// waitDiscovered waits, up to discovery.initial_wait, for the first
// instance set of each discovered upstream, so that a starting gateway
// does not answer 503 for instances the registry already knows.
func (g *Gateway) waitDiscovered(ctx context.Context, rt *runtime) {
	if len(rt.discovered) == 0 {
		return
	}
	t := time.NewTimer(orDuration(rt.cfg.Discovery.InitialWait, DefaultDiscoveryInitialWait))
	defer t.Stop()
	for _, dp := range rt.discovered {
		select {
		case <-dp.synced:
		case <-ctx.Done():
			return
		case <-t.C:
			g.log.Warn("no instance set from the registry yet: serving without", "upstream", dp.name, "service", dp.service,
				"registry", rt.cfg.Discovery.Registry)
			return
		}
	}
}

// stop ends a runtime's checkers and releases its idle connections.
func (g *Gateway) stop(rt *runtime) {
	if rt.cancel != nil {
		rt.cancel()
	}
	rt.wg.Wait()
	rt.closeCaches()
	rt.releaseStores(nil)
	for _, p := range rt.pools {
		p.Close()
	}
	if rt.registryConns != nil {
		rt.registryConns.CloseIdleConnections()
	}
}

// Reload re-reads the config file and swaps in the new routes and pools.
// An invalid config is refused and the running one keeps serving. Listener
// addresses, TLS and the access log cannot change without a restart.
func (g *Gateway) Reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.current.Load()
	if g.opts.Config != nil {
		err := fmt.Errorf("%s: the configuration was built in code: restart to change it", old.cfg.File())
		g.log.Error("reload refused", "error", err.Error())
		return err
	}
	cfg, err := LoadConfig(g.opts.ConfigPath)
	if err != nil {
		g.log.Error("reload refused", "error", err.Error())
		return err
	}
	if err := restartOnly(old.cfg, cfg); err != nil {
		g.log.Error("reload refused", "error", err.Error())
		return err
	}
	auth, err := newAdminAuth(cfg, g.log) // tokens rotate with a reload
	if err != nil {
		g.log.Error("reload refused", "error", err.Error())
		return err
	}
	rt, err := build(cfg, g.deps(old))
	if err != nil {
		g.log.Error("reload refused", "error", err.Error())
		return err
	}
	if g.certs != nil {
		// Last, so that a config refused above leaves the certificates
		// alone; a certificate that does not load refuses the reload.
		if err := g.certs.Reload(cfg.TLS); err != nil {
			err = cfg.Errorf("tls", "%v", err)
			g.log.Error("reload refused", "error", err.Error())
			rt.closeCaches()
			rt.releaseStores(old)
			for _, p := range rt.pools {
				p.Close()
			}
			return err
		}
	}
	if old.cancel != nil { // running: start the new generation's checkers
		g.start(context.WithoutCancel(ctx), rt)
	}
	g.rollouts.attach(rt)
	g.current.Store(rt)
	g.adminAuth.Store(auth)
	g.slos.Set(cfg.SLOs)
	g.faults.SetRoutes(cfg.routeFaults())
	g.mu.Lock()
	l4s := g.l4
	g.mu.Unlock()
	if err := updateL4(l4s, rt); err != nil { // validated by l4RestartOnly: not expected
		g.log.Error("l4 listeners keep their old upstreams", "error", err.Error())
	}
	g.overrides.keepOnly(cfg)
	// Requests in flight on the old generation keep their pool pointers and
	// finish normally; only its health checkers stop now. Its idle
	// connections are closed after the grace period.
	if old.cancel != nil {
		old.cancel()
	}
	if old.registryConns != nil {
		old.registryConns.CloseIdleConnections()
	}
	time.AfterFunc(orDuration(old.cfg.Server.ShutdownTimeout, DefaultShutdownTimeout), func() {
		old.closeCaches()
		old.releaseStores(rt)
		for _, p := range old.pools {
			p.Close()
		}
	})
	g.log.Info("config reloaded", "config", cfg.File(), "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	return nil
}

// restartOnly rejects changes that a reload cannot apply.
func restartOnly(old, cfg *Config) error {
	var errs []error
	if old.Listen != cfg.Listen {
		errs = append(errs, cfg.Errorf("listen", "changed from %q to %q: listener changes need a restart", old.Listen, cfg.Listen))
	}
	if old.Admin != cfg.Admin {
		errs = append(errs, cfg.Errorf("admin", "changed from %q to %q: listener changes need a restart", old.Admin, cfg.Admin))
	}
	if (old.TLS == nil) != (cfg.TLS == nil) || old.H2C != cfg.H2C {
		errs = append(errs, cfg.Errorf("tls", "TLS / h2c changes need a restart"))
	} else if cfg.TLS != nil && (old.TLS.MinVersion != cfg.TLS.MinVersion || old.TLS.HandshakeTimeout != cfg.TLS.HandshakeTimeout ||
		old.TLS.WatchInterval != cfg.TLS.WatchInterval || (old.TLS.ClientCA == "") != (cfg.TLS.ClientCA == "")) {
		errs = append(errs, cfg.Errorf("tls", "min_version, handshake_timeout, watch_interval and turning client_ca on or off need a restart (certificates and the client CA file reload)"))
	}
	if old.RateLimitStore != cfg.RateLimitStore || old.RateLimitFailOpen != cfg.RateLimitFailOpen {
		errs = append(errs, cfg.Errorf("rate_limit_store", "changed: rate-limit store changes need a restart"))
	}
	if old.AccessLog != cfg.AccessLog {
		errs = append(errs, cfg.Errorf("access_log", "changed: access log changes need a restart"))
	}
	if !reflect.DeepEqual(old.AdminTLS, cfg.AdminTLS) {
		errs = append(errs, cfg.Errorf("admin_tls", "changed: the admin listener's TLS is read at start; a change needs a restart"))
	}
	if old.StateDir != cfg.StateDir {
		errs = append(errs, cfg.Errorf("state_dir", "changed: the state directory is read at start; a change needs a restart"))
	}
	if err := l4RestartOnly(old, cfg); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// orInt returns v, or def when v is zero.
func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// SLOHandler serves GET /admin/slos and /admin/slos/{name}: the SLOs'
// status (the sidecar mounts it beside its inbound admin API).
func (g *Gateway) SLOHandler() http.Handler { return g.slos.Handler() }

// adminHandler is the admin API with the program's extensions and the
// dashboard beside it.
func (g *Gateway) adminHandler() (http.Handler, *dashboard.Server, error) {
	h := admin.Handler(g, g.reg)
	mux := http.NewServeMux()
	mux.Handle("/", h)
	traces := g.tracing.Store.Handler() // GET /admin/traces, /admin/traces/{id}
	mux.Handle("/admin/traces", traces)
	mux.Handle("/admin/traces/", traces)
	slos := g.slos.Handler() // GET /admin/slos, /admin/slos/{name}
	mux.Handle("GET /admin/slos", slos)
	mux.Handle("GET /admin/slos/{name}", slos)
	faults := g.faults.Handler() // GET /admin/faults, PUT and DELETE /admin/faults/{route}
	mux.Handle("/admin/faults", faults)
	mux.Handle("/admin/faults/", faults)
	for pattern, eh := range g.opts.AdminExtensions {
		mux.Handle(pattern, eh) // checked by checkAdminExtensions
	}
	dash, err := g.newDashboard(mux)
	if err != nil {
		return nil, nil, err
	}
	mux.Handle(dashboard.PathPage, dash)
	mux.Handle(dashboard.PathPage+"/", dash)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.adminAuth.Load().Wrap(mux).ServeHTTP(w, r) // the current admin_auth, after a reload too
	}), dash, nil
}

// checkAdminExtensions refuses extension patterns that http.ServeMux
// would not take, that lie outside /admin/, or that would hide a path the
// admin API serves itself.
func checkAdminExtensions(ext map[string]http.Handler) (err error) {
	if len(ext) == 0 {
		return nil
	}
	builtin := admin.Handler(nopBackend{}, nil)
	mux := http.NewServeMux()
	for pattern, h := range ext {
		method, path, _ := strings.Cut(pattern, " ")
		if path == "" {
			method, path = "", method
		}
		if h == nil {
			return fmt.Errorf("admin extension %q: nil handler", pattern)
		}
		if !strings.HasPrefix(path, "/admin/") || strings.ContainsAny(path, "{}") {
			return fmt.Errorf("admin extension %q: expected a fixed path under /admin/ such as \"GET /admin/myprogram/things\"", pattern)
		}
		if strings.HasPrefix(path, dashboard.PathPage) {
			return fmt.Errorf("admin extension %q: the dashboard serves %s itself", pattern, dashboard.PathPage)
		}
		if method == "" {
			method = http.MethodGet
		}
		req, rerr := http.NewRequest(method, "http://admin"+path, nil)
		if rerr != nil {
			return fmt.Errorf("admin extension %q: %v", pattern, rerr)
		}
		w := &statusOnly{}
		builtin.ServeHTTP(w, req)
		if w.code != http.StatusNotFound {
			return fmt.Errorf("admin extension %q: the admin API serves %s itself", pattern, path)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("admin extension %q: %v", pattern, r)
				}
			}()
			mux.Handle(pattern, h)
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// statusOnly is a ResponseWriter that keeps only the status code.
type statusOnly struct {
	h    http.Header
	code int
}

func (w *statusOnly) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *statusOnly) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(b), nil
}
func (w *statusOnly) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// nopBackend is an admin.Backend that has nothing, for probing which paths
// the admin API serves.
type nopBackend struct{}

func (nopBackend) Snapshot() admin.Snapshot               { return admin.Snapshot{} }
func (nopBackend) SetDraining(string, string, bool) error { return admin.ErrNotFound }
func (nopBackend) SetWeight(string, string, int) error    { return admin.ErrNotFound }
func (nopBackend) ResetWeight(string, string) error       { return admin.ErrNotFound }
func (nopBackend) Reload(context.Context) error           { return nil }
