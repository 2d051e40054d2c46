// Package sidecar runs beside an app that knows nothing of switchyard
// (`switchyard sidecar`): it registers the app in the service registry
// while the app's health check passes (heartbeating on its behalf,
// deregistering on shutdown), serves the app's inbound traffic (a gateway
// with TLS termination, metrics and the access log, whose one upstream is
// the app), and gives the app a local outbound port where
// http://OUTBOUND/DEPENDENCY/... reaches an instance of that service
// found through the registry, with retries under a budget, timeouts,
// circuit breakers and trace propagation (the ambassador, a gateway with
// one discovered upstream per dependency).
//
// The instance registered is the sidecar's inbound address, so callers go
// through it. Trace context: both listeners continue the W3C traceparent
// they receive; an app that copies the traceparent of its inbound request
// onto its outbound calls keeps one trace across services (as with
// Envoy).
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/kit/discovery"
)

// Options are a sidecar's dependencies.
type Options struct {
	// Logger receives operational logs. Default: JSON to stderr.
	Logger *slog.Logger
	// AccessLogWriter overrides where both listeners' access logs go
	// (tests); nil lets the config's access_log decide.
	AccessLogWriter io.Writer
}

// Sidecar is a running sidecar; create it with New, then Run.
type Sidecar struct {
	cfg      *Config
	log      *slog.Logger
	reg      *prometheus.Registry
	inbound  *gateway.Gateway
	outbound *gateway.Gateway // nil without dependencies
	client   *discovery.Client
	agent    *agent

	appHealthy prometheus.Gauge
	registered prometheus.Gauge

	mu        sync.Mutex
	adminAddr net.Addr
	ready     chan struct{}
}

// New validates cfg and builds the sidecar's gateways. Nothing listens
// until Run.
func New(cfg *Config, opts Options) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, log: opts.Logger, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.appHealthy = prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchyard_sidecar_app_healthy",
		Help: "1 while the app passes its health check, else 0."})
	s.registered = prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchyard_sidecar_registered",
		Help: "1 while the app is registered in the service registry (heartbeats running), else 0."})
	s.reg.MustRegister(s.appHealthy, s.registered)
	var err error
	s.inbound, err = gateway.New(gateway.Options{
		ConfigPath: cfg.File() + " (inbound)", Config: cfg.inboundGateway(), Logger: s.log.With("side", "inbound"),
		AccessLogWriter: opts.AccessLogWriter, Registry: s.reg, MetricLabels: prometheus.Labels{"side": "inbound"},
	})
	if err != nil {
		return nil, fmt.Errorf("building the inbound listener: %w", err)
	}
	if oc := cfg.outboundGateway(); oc != nil {
		s.outbound, err = gateway.New(gateway.Options{
			ConfigPath: cfg.File() + " (outbound)", Config: oc, Logger: s.log.With("side", "outbound"),
			AccessLogWriter: opts.AccessLogWriter, Registry: s.reg, MetricLabels: prometheus.Labels{"side": "outbound"},
		})
		if err != nil {
			return nil, fmt.Errorf("building the outbound listener: %w", err)
		}
	}
	if s.client, err = discovery.NewClient(cfg.Registry, nil); err != nil {
		return nil, err // validated
	}
	return s, nil
}

// Addr is the inbound listener's address once Run is listening.
func (s *Sidecar) Addr() net.Addr { return s.inbound.Addr() }

// OutboundAddr is the ambassador's address once Run is listening (nil
// without dependencies).
func (s *Sidecar) OutboundAddr() net.Addr {
	if s.outbound == nil {
		return nil
	}
	return s.outbound.Addr()
}

// AdminAddr is the admin listener's address once Run is listening (nil
// when disabled).
func (s *Sidecar) AdminAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.adminAddr }

// Ready is closed once every listener is serving and the app's health
// checks have started.
func (s *Sidecar) Ready() <-chan struct{} { return s.ready }

// Registered reports whether the app is registered right now.
func (s *Sidecar) Registered() bool {
	if s.agent == nil {
		return false
	}
	return s.agent.isRegistered()
}

// Run serves until ctx ends, then shuts down in order: the instance is
// deregistered first (callers stop picking it), then both listeners stop
// accepting and let in-flight requests finish (server.shutdown_timeout).
func (s *Sidecar) Run(ctx context.Context) error {
	gctx, stopGateways := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGateways()
	type result struct {
		side string
		err  error
	}
	results := make(chan result, 2)
	running := 0
	start := func(side string, g *gateway.Gateway) error {
		running++
		go func() { results <- result{side, g.Run(gctx)} }()
		select {
		case <-g.Ready():
			return nil
		case r := <-results:
			running--
			return fmt.Errorf("%s listener: %w", r.side, r.err)
		}
	}
	wait := func() error {
		var errs []error
		for ; running > 0; running-- {
			if r := <-results; r.err != nil {
				errs = append(errs, fmt.Errorf("%s listener: %w", r.side, r.err))
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) error { stopGateways(); return errors.Join(err, wait()) }

	if err := start("inbound", s.inbound); err != nil {
		return fail(err)
	}
	if s.outbound != nil {
		if err := start("outbound", s.outbound); err != nil {
			return fail(err)
		}
	}
	s.agent = s.newAgent() // before the admin listener, which reports its status
	var adminSrv *http.Server
	adminDone := make(chan error, 1)
	if s.cfg.Admin != "off" {
		ln, err := net.Listen("tcp", s.cfg.Admin)
		if err != nil {
			return fail(s.cfg.source().Errorf("admin", "listening: %v", err))
		}
		adminSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.mu.Lock()
		s.adminAddr = ln.Addr()
		s.mu.Unlock()
		go func() { adminDone <- adminSrv.Serve(ln) }()
	}

	agentCtx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	agentDone := make(chan struct{})
	go func() { defer close(agentDone); s.agent.run(agentCtx) }()
	close(s.ready)
	s.log.Info("sidecar running", "service", s.cfg.Service, "app", s.cfg.App, "inbound", s.Addr().String(),
		"outbound", addrString(s.OutboundAddr()), "admin", addrString(s.AdminAddr()),
		"advertise", s.agent.reg.Address, "dependencies", s.cfg.DependencyNames())

	var runErr error
	select {
	case <-ctx.Done():
	case r := <-results:
		running--
		runErr = fmt.Errorf("%s listener stopped: %v", r.side, r.err)
	case err := <-adminDone:
		adminSrv = nil
		runErr = fmt.Errorf("admin listener stopped: %w", err)
	}
	s.log.Info("sidecar shutting down: deregistering, then draining", "service", s.cfg.Service)
	stopAgent()
	<-agentDone
	stopGateways()
	err := wait()
	if adminSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = adminSrv.Shutdown(sctx)
		cancel()
	}
	return errors.Join(runErr, err)
}

func (s *Sidecar) newAgent() *agent {
	advertise := s.cfg.Advertise
	if advertise == "" {
		advertise = s.Addr().String()
	}
	id := s.cfg.ID
	if id == "" {
		host, port, _ := net.SplitHostPort(advertise)
		id = s.cfg.Service + "-" + strings.NewReplacer(":", "-", "[", "", "]", "").Replace(host) + "-" + port
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	reg := discovery.Registration{Service: s.cfg.Service, ID: id, Address: advertise, Tags: s.cfg.Tags, Meta: s.cfg.Meta,
		TTL: configDuration(s.cfg.TTL)}
	if s.cfg.AppHealth.Path != "" {
		reg.HealthURL = scheme + "://" + advertise + s.cfg.AppHealth.Path
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &agent{
		client: s.client, reg: reg, app: s.cfg.App, check: s.cfg.AppHealth.WithDefaults(), log: s.log,
		hc:     &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		onFlip: func(h bool) { s.appHealthy.Set(b2f(h)) },
		onReg:  func(r bool) { s.registered.Set(b2f(r)) },
	}
}

// adminHandler serves the sidecar's admin listener.
//
//	GET /healthz              200 "ok" (the sidecar runs)
//	GET /sidecar/status       the app's health and registration, JSON
//	GET /metrics              Prometheus: both listeners (label side) and the sidecar's own
//	/inbound/admin/...        the inbound gateway's admin API (package admin)
//	/inbound/admin/slos[/N]   the app's SLOs (Config.SLOs)
//	/outbound/admin/...       the outbound gateway's admin API
func (s *Sidecar) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /sidecar/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.agent.status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	in := http.NewServeMux()
	in.Handle("/", admin.Handler(s.inbound, nil))
	slos := s.inbound.SLOHandler() // the app's SLOs (Config.SLOs)
	in.Handle("GET /admin/slos", slos)
	in.Handle("GET /admin/slos/{name}", slos)
	mux.Handle("/inbound/", http.StripPrefix("/inbound", in))
	if s.outbound != nil {
		mux.Handle("/outbound/", http.StripPrefix("/outbound", admin.Handler(s.outbound, nil)))
	}
	// Anything else (the root, a gateway admin path without its prefix)
	// is a problem details 404 saying where the admin APIs are.
	return httpx.MuxProblems(mux, "sidecar admin", func(r *http.Request) string {
		where := "/inbound/admin/..."
		if s.outbound != nil {
			where += " or /outbound/admin/..."
		}
		if strings.HasPrefix(r.URL.Path, "/admin/") {
			return fmt.Sprintf("the gateways' admin APIs are under a prefix here: %s (e.g. /inbound%.80s)", where, r.URL.Path)
		}
		return "this listener serves /healthz, /sidecar/status, /metrics and " + where
	})
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
