package svc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/message"
	_ "github.com/switchyard/switchyard/kit/message/jetstream" // nats://
	_ "github.com/switchyard/switchyard/kit/message/sybroker"  // switchyard://
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/tlsconf"
)

// Options are the flags of `switchyard hitch serve NAME`.
type Options struct {
	// Name is the service to run (a Spec's name). Required.
	Name string
	// Replica is this process's replica number; the instance registers as
	// NAME-REPLICA, so a restarted replica replaces its dead predecessor's
	// registration at once.
	Replica int
	// Listen is where to serve, host:port. Default 127.0.0.1:0; the port
	// bound is the one registered.
	Listen string
	// Data is the data directory (the SQLite database NAME.db). Required
	// unless Store is set.
	Data string
	// Registry is the discovery registry's URL. Required.
	Registry string
	// Bus is the message backend's URL (switchyard://HOST:PORT or
	// nats://HOST:PORT). Required for services with Spec.Bus.
	Bus string
	// Store is the database URL: empty for sqlite:DATA/NAME.db; a
	// postgres:// URL puts the service in its own schema hitch_NAME there
	// (created if missing).
	Store string
	// Redis is handed to the service (Deps.Redis).
	Redis string
	// TLSCA, TLSCert and TLSKey, all set, make every hop of the process
	// TLS with this identity (hitch up --secure): it serves HTTPS only,
	// requiring a client certificate signed by TLSCA whose common name is
	// one of Callers; it calls the registry and other services over HTTPS
	// presenting TLSCert. The bus URL carries its own TLS settings.
	TLSCA, TLSCert, TLSKey string
	// Callers are the client identities (certificate common names) the
	// service accepts with TLS on. Required then.
	Callers []string
	// ConfigFile is the service's YAML config; empty for defaults.
	ConfigFile string
	// TTL is the registration's TTL (heartbeats every third). Default 3s.
	TTL time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests and Run at
	// the end. Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives the process's logs. Default: JSON to stderr.
	Logger *slog.Logger
	// Ready, if set, hears the bound address once the instance is
	// registered (tests). A line "hitch serve: NAME-REPLICA ready on ADDR"
	// goes to Stdout anyway.
	Ready func(addr string)
	// Stdout receives the ready line. Default os.Stdout.
	Stdout io.Writer
}

// Validate reports every missing or malformed option.
func (o Options) Validate(specs []Spec) error {
	var errs []error
	spec, err := Lookup(specs, o.Name)
	if err != nil {
		errs = append(errs, err)
	} else if spec.New == nil {
		errs = append(errs, fmt.Errorf("service %q is in the table (its routes are) but not built yet: its Spec has no New", o.Name))
	}
	if o.Replica < 0 {
		errs = append(errs, fmt.Errorf("--replica %d: expected 0 or more", o.Replica))
	}
	if o.Data == "" && o.Store == "" {
		errs = append(errs, errors.New("--data DIR is required (or --store URL)"))
	}
	if o.Registry == "" {
		errs = append(errs, errors.New("--registry URL is required"))
	} else if u, err := url.Parse(o.Registry); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--registry %q: expected http://HOST:PORT", o.Registry))
	}
	if err == nil && spec.Bus && o.Bus == "" {
		errs = append(errs, fmt.Errorf("--bus URL is required: %s uses the message bus", o.Name))
	}
	if o.Store != "" && !strings.HasPrefix(o.Store, "postgres://") && !strings.HasPrefix(o.Store, "postgresql://") && !strings.HasPrefix(o.Store, "sqlite:") {
		errs = append(errs, fmt.Errorf("--store %q: expected postgres://... or sqlite:PATH", o.Store))
	}
	if tlsSet := o.TLSCA != "" || o.TLSCert != "" || o.TLSKey != ""; tlsSet {
		if o.TLSCA == "" || o.TLSCert == "" || o.TLSKey == "" {
			errs = append(errs, errors.New("--tls-ca, --tls-cert and --tls-key go together: set all three"))
		}
		if len(o.Callers) == 0 {
			errs = append(errs, errors.New("--tls-callers is required with TLS: the certificate names that may call the service"))
		}
	} else if len(o.Callers) > 0 {
		errs = append(errs, errors.New("--tls-callers needs --tls-ca, --tls-cert and --tls-key"))
	}
	if o.Listen != "" {
		if _, _, err := net.SplitHostPort(o.Listen); err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: %v", o.Listen, err))
		}
	}
	return errors.Join(errs...)
}

// StoreURL is the database URL of service name: sqlite:DATA/NAME.db, or
// store's PostgreSQL URL with search_path set to the service's schema.
func StoreURL(store, data, name string) string {
	if store == "" {
		return "sqlite:" + filepath.Join(data, name+".db")
	}
	if strings.HasPrefix(store, "sqlite:") {
		return store
	}
	sep := "?"
	if strings.Contains(store, "?") {
		sep = "&"
	}
	return store + sep + "search_path=" + Schema(name)
}

// Schema is service name's PostgreSQL schema.
func Schema(name string) string {
	return "hitch_" + strings.NewReplacer("-", "_", ".", "_").Replace(name)
}

// openStore opens the service's database, creating its PostgreSQL schema
// first when it lives on PostgreSQL.
func openStore(ctx context.Context, o Options) (*store.DB, error) {
	if strings.HasPrefix(o.Store, "postgres") {
		admin, err := store.Open(ctx, o.Store)
		if err != nil {
			return nil, fmt.Errorf("opening PostgreSQL %s: %w", redact(o.Store), err)
		}
		_, err = admin.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema(o.Name))
		admin.Close()
		if err != nil && !store.IsUniqueViolation(err) { // two replicas creating it at once
			return nil, fmt.Errorf("creating schema %s: %w", Schema(o.Name), err)
		}
	}
	dsn := StoreURL(o.Store, o.Data, o.Name)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening the database %s: %w", redact(dsn), err)
	}
	return db, nil
}

// redact hides a URL's password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Serve runs the service o.Name of specs until ctx ends (SIGTERM), then
// stops in order: deregister (callers stop picking it), stop serving
// (in-flight requests finish), end Run, close the bus and the database.
// It returns Run's error if Run failed early.
func Serve(ctx context.Context, specs []Spec, o Options) error {
	if err := o.Validate(specs); err != nil {
		return err
	}
	spec, _ := Lookup(specs, o.Name)
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.TTL == 0 {
		o.TTL = 3 * time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	id := o.Name + "-" + strconv.Itoa(o.Replica)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	// Lines logged with a request's or message's ctx carry its trace_id
	// and span_id.
	log := slog.New(telemetry.LogHandler(o.Logger.Handler())).With("service", o.Name, "instance", id)
	tracing, err := setupTracing(ctx, o.Name)
	if err != nil {
		return fmt.Errorf("tracing (OTEL_* environment): %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tracing.Shutdown(sctx) // the last spans go out
	}()

	var yamlConfig []byte
	if o.ConfigFile != "" {
		b, err := os.ReadFile(o.ConfigFile)
		if err != nil {
			return fmt.Errorf("reading --config: %w", err)
		}
		yamlConfig = b
	}

	db, err := openStore(ctx, o)
	if err != nil {
		return err
	}
	defer db.Close()
	var bus message.Backend
	if spec.Bus {
		bus, err = message.Open(ctx, o.Bus)
		if err != nil {
			return fmt.Errorf("opening the message bus %s: %w", redact(o.Bus), err)
		}
		defer bus.Close()
		if needsFanOut(o.Bus) {
			if err := declareQueues(ctx, bus); err != nil {
				return fmt.Errorf("message bus %s: %w", redact(o.Bus), err)
			}
			bus = fanOut{Backend: bus, bindings: hitch.Bindings}
		}
	}
	var serverTLS, clientTLS *tls.Config
	var regHTTP *http.Client
	scheme := "http"
	if o.TLSCert != "" {
		callers := map[string]bool{}
		for _, c := range o.Callers {
			callers[c] = true
		}
		if serverTLS, err = tlsconf.ServerConfig(o.TLSCA, o.TLSCert, o.TLSKey, func(n string) bool { return callers[n] }); err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		if clientTLS, err = tlsconf.ClientConfig(o.TLSCA, o.TLSCert, o.TLSKey); err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy, t.TLSClientConfig = nil, clientTLS
		regHTTP, scheme = &http.Client{Transport: t}, "https"
	}
	reg, err := discovery.NewClient(o.Registry, regHTTP)
	if err != nil {
		return err
	}
	resolver := NewResolver(reg, nil)
	if clientTLS != nil {
		resolver = NewSecureResolver(reg, clientTLS)
	}
	defer resolver.Close()

	s, err := spec.New(ctx, Deps{Name: o.Name, Replica: o.Replica, DB: db, Bus: bus,
		HTTPClient: &http.Client{Transport: tracedTransport(resolver), Timeout: 30 * time.Second}, Redis: o.Redis, Logger: log}, yamlConfig, o.ConfigFile)
	if err != nil {
		return fmt.Errorf("starting %s: %w", o.Name, err)
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on --listen %q: %w", o.Listen, err)
	}
	addr := ln.Addr().String()
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS) // HTTPS only: a plain HTTP request fails its handshake
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := &http.Server{Handler: instrument(o.Name, traced(tracing.Tracer("github.com/switchyard/switchyard/hitch/svc"), s.Handler()), metrics), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(runCtx) }()

	lease, err := reg.Register(ctx, discovery.Registration{Service: o.Name, ID: id, Address: addr,
		HealthURL: scheme + "://" + addr + "/healthz", TTL: config.Duration(o.TTL),
		Meta: map[string]string{"pid": strconv.Itoa(os.Getpid()), "replica": strconv.Itoa(o.Replica)}})
	if err != nil {
		stopRun()
		<-runErr
		srv.Close()
		return fmt.Errorf("registering %s at %s: %w", id, o.Registry, err)
	}
	fmt.Fprintf(o.Stdout, "hitch serve: %s ready on %s\n", id, addr)
	log.Info("serving", "addr", addr, "registry", o.Registry)
	if o.Ready != nil {
		o.Ready(addr)
	}

	var failed error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		failed = fmt.Errorf("serving: %w", err)
		serveErr <- nil
	case err := <-runErr:
		if err == nil {
			err = errors.New("returned before shutdown")
		}
		failed = fmt.Errorf("%s run: %w", o.Name, err)
		runErr <- nil
	}
	log.Info("shutting down", "reason", orString(failed, "signal"))
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if err := lease.Close(sctx); err != nil { // deregistered: callers stop picking it
		log.Warn("deregistering", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	stopRun()
	select {
	case err := <-runErr:
		if err != nil && failed == nil {
			failed = fmt.Errorf("%s run: %w", o.Name, err)
		}
	case <-sctx.Done():
		if failed == nil {
			failed = fmt.Errorf("%s run did not end within %v", o.Name, o.ShutdownTimeout)
		}
	}
	return failed
}

func orString(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// instrument serves /metrics from reg and counts the service's requests by
// status and method.
func instrument(name string, h http.Handler, reg *prometheus.Registry) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hitch_http_requests_total",
		Help: "Requests served by the Hitch service, by method and status code.", ConstLabels: prometheus.Labels{"service": name}},
		[]string{"method", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hitch_http_request_duration_seconds",
		Help: "Time to answer a request, by method.", ConstLabels: prometheus.Labels{"service": name},
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"method"})
	reg.MustRegister(requests, latency)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	counted := promhttp.InstrumentHandlerDuration(latency, promhttp.InstrumentHandlerCounter(requests, h))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		counted.ServeHTTP(w, r)
	})
}
