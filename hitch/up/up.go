// Package up is `switchyard hitch up`: it runs the whole of Hitch on one
// machine. It starts the service registry (in this process), the message
// broker (a child process, declared with Hitch's topics and bound queues),
// each service of svc.Services as child processes (`switchyard hitch serve
// NAME`, several replicas of the replicated ones), waits until each has
// registered, then the gateway (in this process) with a route per public
// route of the table: JWT auth against identity's JWKS, the route's role
// required as a scope, rate limits per consumer. It supervises the children
// (a crashed one is restarted with exponential backoff), lists them at
// GET /admin/hitch/processes on the admin listener (where POST
// /admin/hitch/processes/{process}/kill|pause|resume injects process
// faults), and on ctx end stops
// the gateway, then the services, then the broker, and waits for them.
package up

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/contract"
	"github.com/switchyard/switchyard/dashboard"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/identity"
	"github.com/switchyard/switchyard/hitch/svc"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/throttle"
	"github.com/switchyard/switchyard/tlsconf"
	"github.com/switchyard/switchyard/wal"
)

// Options are the flags of `switchyard hitch up`.
type Options struct {
	// Data is the data directory: the registry, the broker's log, the
	// services' SQLite databases, the gateway's access log. Default
	// "hitch-data".
	Data string
	// Replicas is how many processes each replicated service runs.
	// Default 2.
	Replicas int
	// Listen is the gateway's address. Default 127.0.0.1:8080.
	Listen string
	// Admin is the gateway's admin address (with /admin/hitch/processes).
	// Default 127.0.0.1:9901.
	Admin string
	// Postgres, when set, puts every service's database in its own schema
	// of this PostgreSQL database (postgres://...).
	Postgres string
	// Redis, when set, is handed to the services and keeps the gateway's
	// rate limits (redis://...).
	Redis string
	// NATS, when set (nats://HOST:PORT), is the message bus instead of a
	// switchyard broker child: NATS JetStream, with Hitch's queues as
	// streams and its topics fanned out to them by each publisher.
	NATS string
	// Command runs switchyard: the program and the arguments before
	// "broker ..." or "hitch serve ...". Default: this executable.
	Command []string
	// Specs are the services. Default svc.Services(). A spec whose New is
	// nil is routed to (discover: NAME) but not started here: its
	// instances register from elsewhere.
	Specs []svc.Spec
	// ConsumerRate is the rate limit of each authenticated user on its
	// routes, as throttle writes it ("100/s"). Default "100/s", burst 200.
	ConsumerRate string
	// PublicRate is the limit per client IP on the public routes
	// (register, login, JWKS). Default "50/s", burst 100.
	PublicRate string
	// Backoff of restarts. Default DefaultBackoff.
	Backoff Backoff
	// Out receives the children's output (each line prefixed with the
	// process) and the URLs once up. Default os.Stdout.
	Out io.Writer
	// Logger receives the supervisor's and the gateway's logs. Default:
	// text to stderr.
	Logger *slog.Logger
	// Secure runs every hop over TLS with identities from a local CA in
	// DATA/pki (hitch up --secure, docs/security.md): HTTPS at the
	// gateway, mTLS to the services and between them, the registry and
	// the broker authenticated by client certificate with per-service
	// permissions, the admin API over HTTPS with a token or certificate.
	Secure bool
	// Ready, if set, is called once everything is up (tests).
	Ready func(Info)

	// leafValidity is the lifetime of the --secure leaves (tests: short,
	// to see them renewed while running). Default 90 days.
	leafValidity time.Duration
}

// Info says where the running system is.
type Info struct {
	Gateway  string // http://ADDR
	Admin    string // http://ADDR
	Registry string // http://ADDR
	Broker   string // http://ADDR (the broker's HTTP API)
	Bus      string // the message bus URL the services use
	// Under Secure: the CA certificate (curl --cacert), the operator's
	// certificate and key (curl --cert/--key, hitch check), and the file
	// holding the admin API's operator token.
	CACert, OperatorCert, OperatorKey, AdminTokenFile string
}

func (o *Options) defaults() error {
	if o.Data == "" {
		o.Data = "hitch-data"
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.Admin == "" {
		o.Admin = "127.0.0.1:9901"
	}
	if len(o.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this executable to start the services: %w", err)
		}
		o.Command = []string{exe}
	}
	if o.Specs == nil {
		o.Specs = svc.Services()
	}
	if o.ConsumerRate == "" {
		o.ConsumerRate = "100/s"
	}
	if o.PublicRate == "" {
		o.PublicRate = "50/s"
	}
	if o.Backoff == (Backoff{}) {
		o.Backoff = DefaultBackoff
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var errs []error
	if o.Replicas < 1 || o.Replicas > 16 {
		errs = append(errs, fmt.Errorf("--replicas %d: expected 1 to 16", o.Replicas))
	}
	for _, a := range []struct{ flag, v string }{{"--listen", o.Listen}, {"--admin", o.Admin}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", a.flag, a.v, err))
		}
	}
	if o.Postgres != "" && !strings.HasPrefix(o.Postgres, "postgres://") && !strings.HasPrefix(o.Postgres, "postgresql://") {
		errs = append(errs, fmt.Errorf("--postgres %q: expected postgres://USER@HOST:PORT/DB", o.Postgres))
	}
	if o.Secure && o.NATS != "" {
		errs = append(errs, errors.New("--secure with --nats: refused: the NATS hop would be the one without TLS or identities "+
			"(hitch up gives NATS no certificates or per-service permissions). Drop --nats to use the switchyard broker, "+
			"which --secure runs over TLS with a certificate login and per-service permissions; or drop --secure to use NATS"))
	}
	if o.Redis != "" && !strings.HasPrefix(o.Redis, "redis://") && !strings.HasPrefix(o.Redis, "rediss://") {
		errs = append(errs, fmt.Errorf("--redis %q: expected redis://HOST:PORT", o.Redis))
	}
	seen := map[string]bool{}
	for _, s := range o.Specs {
		if err := discovery.ValidName(s.Name); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", s.Name, err))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("service %q listed twice", s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// Run runs Hitch until ctx ends, then stops it in order and returns once
// every child has exited.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	data, err := filepath.Abs(o.Data)
	if err != nil {
		return err
	}
	for _, d := range []string{"registry", "broker", "services"} {
		if err := os.MkdirAll(filepath.Join(data, d), 0o755); err != nil {
			return fmt.Errorf("creating the data directory: %w", err)
		}
	}
	// One hitch up per data directory: a second one would run its broker
	// into the first one's lock (a restart loop) and its services on the
	// first one's databases.
	lock, err := wal.LockDir(data)
	if err != nil {
		var le *wal.LockedError
		if errors.As(err, &le) {
			return fmt.Errorf("--data %s is in use by another hitch up (pid %d, lock file %s): stop it or use another --data", data, le.PID, le.Path)
		}
		return fmt.Errorf("--data %s: %w", data, err)
	}
	defer lock.Unlock()
	// The gateway binds its addresses last, after every service is up:
	// refuse taken ones now rather than then.
	if err := addressesFree(o.Listen, o.Admin); err != nil {
		return err
	}
	log := o.Logger
	out := &lockedWriter{w: o.Out}
	started := time.Now()

	// Tracing: the gateway's, in this process, and the children's through
	// the OTEL_* environment. With no collector configured, the children
	// export to a receiver here that feeds the gateway's trace store, so a
	// request's whole trace is at the admin listener's /admin/traces/{id}.
	var sec *secure
	var svcNames []string
	for _, s := range o.Specs {
		svcNames = append(svcNames, s.Name)
	}
	if o.Secure {
		if sec, err = setupSecure(data, svcNames, o.leafValidity); err != nil {
			return fmt.Errorf("--secure: %w", err)
		}
		renewCtx, stopRenew := context.WithCancel(context.Background())
		renewDone := make(chan struct{})
		go func() {
			defer close(renewDone)
			sec.renew(renewCtx, func(l tlsconf.Leaf) {
				log.Info("hitch up --secure: leaf certificate renewed", "identity", l.Name, "not_after", l.NotAfter.Format(time.RFC3339))
			}, func(name string, err error) {
				log.Error("hitch up --secure: renewing a leaf certificate failed; the current one stays", "identity", name, "error", err.Error())
			})
		}()
		defer func() { stopRenew(); <-renewDone }()
	}
	tracing, childEnv, receiver, err := setupTracing(ctx, os.Getenv, sec)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tracing.Shutdown(sctx)
	}()
	if receiver != nil {
		defer receiver.Close()
	}

	// The registry, in this process.
	reg, err := registry.Open(registry.Config{Dir: filepath.Join(data, "registry"), Logger: log.With("component", "registry")})
	if err != nil {
		return fmt.Errorf("opening the registry: %w", err)
	}
	defer reg.Close()
	regLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("registry listener: %w", err)
	}
	regHandler := registry.Handler(reg)
	regURL := "http://" + regLn.Addr().String()
	if sec != nil {
		tcfg, access, err := sec.registryServer(svcNames)
		if err != nil {
			regLn.Close()
			return fmt.Errorf("--secure: registry TLS: %w", err)
		}
		regHandler = registry.Protect(regHandler, access)
		regLn = tls.NewListener(regLn, tcfg)
		regURL = "https://" + regLn.Addr().String()
		verb := "reusing"
		if sec.ca.Created {
			verb = "created"
		}
		fmt.Fprintf(out, "hitch up --secure: %s the local CA %s (curl --cacert %s)\n", verb, sec.ca.CACert(), sec.ca.CACert())
	}
	regSrv := &http.Server{Handler: regHandler, ReadHeaderTimeout: 10 * time.Second}
	go regSrv.Serve(regLn)
	defer regSrv.Close()

	var wg sync.WaitGroup
	defer wg.Wait() // every child has exited before Run returns

	// The broker, a child process.
	brokerCtx, stopBroker := context.WithCancel(context.Background())
	defer stopBroker()
	var (
		bp         *process
		bus        = o.NATS
		brokerHTTP string
	)
	if o.NATS == "" {
		bp, bus, brokerHTTP, err = startBroker(ctx, brokerCtx, &wg, o, data, out, childEnv("broker"), sec, svcNames)
		if err != nil {
			return err
		}
	}

	// The services, child processes.
	svcCtx, stopServices := context.WithCancel(context.Background())
	defer stopServices()
	var procs []*process
	if bp != nil {
		procs = append(procs, bp)
	}
	var svcProcs []*process
	for _, s := range o.Specs {
		if s.New == nil {
			continue
		}
		n := 1
		if s.Replicated {
			n = o.Replicas
		}
		for i := 0; i < n; i++ {
			args := append(append([]string{}, o.Command...), "hitch", "serve", s.Name, "--replica", strconv.Itoa(i),
				"--listen", "127.0.0.1:0", "--data", filepath.Join(data, "services"), "--registry", regURL)
			if s.Bus {
				if sec != nil {
					args = append(args, "--bus", sec.busURL(strings.TrimPrefix(bus, "switchyard://"), s.Name))
				} else {
					args = append(args, "--bus", bus)
				}
			}
			scheme := ""
			if sec != nil {
				args, scheme = append(args, sec.serveArgs(s.Name)...), "https"
			}
			if o.Postgres != "" {
				args = append(args, "--store", o.Postgres)
			}
			if o.Redis != "" {
				args = append(args, "--redis", o.Redis)
			}
			p := &process{name: s.Name, replica: i, role: "service", argv: args, env: childEnv(s.Name), backoff: o.Backoff,
				log: log, out: out, readyLine: serveReady, health: "/healthz", scheme: scheme, ready: make(chan struct{})}
			procs = append(procs, p)
			svcProcs = append(svcProcs, p)
			wg.Add(1)
			go func() { defer wg.Done(); p.run(svcCtx) }()
		}
	}
	for _, p := range svcProcs {
		if err := waitReady(ctx, p, 60*time.Second); err != nil {
			return err
		}
	}

	// JWKS for the gateway: served here on loopback, fetched from one of
	// identity's instances through discovery.
	health := &http.Client{Timeout: time.Second}
	var regHTTP *http.Client
	if sec != nil {
		health = sec.httpClient()
		health.Timeout = time.Second
		regHTTP = sec.httpClient()
	}
	dc, err := discovery.NewClient(regURL, regHTTP)
	if err != nil {
		return err
	}
	resolver := svc.NewResolver(dc, nil)
	if sec != nil {
		resolver = svc.NewSecureResolver(dc, sec.client)
	}
	defer resolver.Close()
	jwksLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("JWKS listener: %w", err)
	}
	var gw *gateway.Gateway
	scheme := "http://"
	if sec != nil {
		scheme = "https://"
	}
	gwAddr := func() string { return addrOf(gw.Addr()) }
	processes := processesHandler(procs, reg, regURL, health, gwAddr, started)
	relay := http.NewServeMux()
	relay.Handle(identity.PathJWKS, jwksProxy(&http.Client{Transport: resolver, Timeout: 5 * time.Second}))
	// The operator view's read-only data, reachable from the web app's
	// origin through the gateway (/ops/...): the process list, the
	// gateway's upstreams, the broker's queues.
	relay.Handle("GET /ops/admin/hitch/processes", processes)
	relay.Handle("GET /ops/admin/upstreams", relayGET(health, func() string { return scheme + addrOf(gw.AdminAddr()) + "/admin/upstreams" }))
	if brokerHTTP != "" {
		relay.Handle("GET /ops/v1/queues", relayGET(health, func() string { return scheme + brokerHTTP + "/v1/queues" }))
	}
	jwksSrv := &http.Server{Handler: relay, ReadHeaderTimeout: 10 * time.Second}
	go jwksSrv.Serve(jwksLn)
	defer jwksSrv.Close()

	// The gateway verifies tokens with this JWKS: make sure it is there.
	jwksURL := "http://" + jwksLn.Addr().String() + identity.PathJWKS
	if err := waitJWKS(ctx, jwksURL, 30*time.Second); err != nil {
		return err
	}
	cfg, err := GatewayConfig(o, regURL, jwksURL, filepath.Join(data, "access.log"))
	if err != nil {
		return err
	}
	cfg.Upstreams["ops"] = &gateway.Upstream{Targets: []gateway.Target{{Address: jwksLn.Addr().String()}}}
	cfg.Routes = append(cfg.Routes, gateway.Route{Name: "ops", Upstream: "ops",
		Match: gateway.Match{PathPrefix: "/ops", Methods: []string{http.MethodGet, http.MethodHead}}})
	if sec != nil {
		sec.gateway(cfg)
	}
	var dashClient *http.Client
	if brokerHTTP != "" {
		// The dashboard shows Hitch's queues (not with NATS JetStream,
		// which has no switchyard broker HTTP API). Under --secure it
		// asks the broker over HTTPS with the gateway's certificate,
		// whose broker user may read the queues (brokerYAML).
		cfg.Dashboard = &dashboard.Config{Brokers: []string{scheme + brokerHTTP}}
		if sec != nil {
			dashClient = sec.httpClient()
			dashClient.Timeout = 2 * time.Second
		}
	}
	gw, err = gateway.New(gateway.Options{Config: cfg, ConfigPath: "hitch up (generated)", Logger: log.With("component", "gateway"), Tracing: tracing,
		AdminExtensions: map[string]http.Handler{"GET /admin/hitch/processes": processes,
			"POST /admin/hitch/processes/": faultHandler(procs)},
		DashboardProcesses: "/admin/hitch/processes", DashboardClient: dashClient})
	if err != nil {
		return fmt.Errorf("building the gateway: %w", err)
	}
	gwCtx, stopGateway := context.WithCancel(context.Background())
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Run(gwCtx) }()
	select {
	case <-gw.Ready():
	case err := <-gwDone:
		stopGateway()
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	info := Info{Gateway: scheme + addrOf(gw.Addr()), Admin: scheme + addrOf(gw.AdminAddr()), Registry: regURL, Bus: bus}
	if sec != nil {
		op := sec.leaves[IDOperator]
		info.CACert, info.OperatorCert, info.OperatorKey, info.AdminTokenFile = sec.ca.CACert(), op.Cert, op.Key, sec.adminTokenFile
	}
	if brokerHTTP != "" {
		info.Broker = scheme + brokerHTTP
	} else {
		info.Broker = "NATS JetStream"
	}
	if ctx.Err() == nil {
		traces := info.Admin + "/admin/traces  (every process exports to " + receiverURL(receiver) + ")"
		if receiver == nil {
			traces = "exported to $OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT by every process (the gateway's also at " + info.Admin + "/admin/traces)"
		}
		fmt.Fprintf(out, "\nHitch is up.\n  web app:   %s/\n  gateway:   %s  (POST /v1/auth/register, POST /v1/auth/login, ...)\n  admin:     %s/admin/status  (processes: %s/admin/hitch/processes)\n  dashboard: %s/admin/dashboard\n  broker:    %s  (bus %s)\n  registry:  %s/v1/services\n  traces:    %s\n  data:      %s\nCtrl-C stops everything.\n\n",
			info.Gateway, info.Gateway, info.Admin, info.Admin, info.Admin, info.Broker, redactURL(bus), regURL, traces, data)
		if sec != nil {
			fmt.Fprintf(out, "Every hop is TLS with identities from the local CA (docs/security.md):\n  CA:        %s  (curl --cacert)\n  operator:  --cert %s --key %s\n  admin:     token in %s (0600): curl -H \"Authorization: Bearer $(cat %s)\"\n  hitch check --cacert %s --cert %s --key %s --url %s --admin %s\n\n",
				info.CACert, info.OperatorCert, info.OperatorKey, info.AdminTokenFile, info.AdminTokenFile, info.CACert, info.OperatorCert, info.OperatorKey, info.Gateway, info.Admin)
		}
		if o.Ready != nil {
			o.Ready(info)
		}
	}

	var gwErr error
	select {
	case <-ctx.Done():
		stopGateway()
		gwErr = <-gwDone
	case gwErr = <-gwDone:
		stopGateway()
	}
	log.Info("hitch up: gateway stopped; stopping the services")
	stopServices()
	for _, p := range svcProcs {
		waitStopped(p)
	}
	log.Info("hitch up: services stopped; stopping the broker")
	stopBroker()
	wg.Wait()
	log.Info("hitch up: stopped")
	if gwErr != nil {
		return fmt.Errorf("gateway: %w", gwErr)
	}
	return nil
}

// waitStopped waits until p's current child has exited (its supervisor
// saw ctx end).
func waitStopped(p *process) {
	for {
		p.mu.Lock()
		r := p.running
		p.mu.Unlock()
		if !r {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func addrOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// waitReady waits for p's first ready line.
func waitReady(ctx context.Context, p *process, limit time.Duration) error {
	select {
	case <-p.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(limit):
		return fmt.Errorf("%s did not become ready within %v (its output above says why)", p.id(), limit)
	}
}

// addressesFree checks that the gateway's --listen and --admin addresses
// can be bound (a port 0 always can). The check is only early feedback:
// the gateway binds them for real later.
func addressesFree(listen, admin string) error {
	for _, a := range []struct{ flag, addr string }{{"--listen", listen}, {"--admin", admin}} {
		if _, port, _ := net.SplitHostPort(a.addr); port == "0" {
			continue
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w (another hitch up or gateway running? pick another address)", a.flag, a.addr, err)
		}
		ln.Close()
	}
	return nil
}

// startBroker writes the broker's config (hitch.Bindings' queues and
// topics) and supervises it. The first start picks free ports; restarts
// keep them, so the services' bus URL stays right.
func startBroker(ctx, brokerCtx context.Context, wg *sync.WaitGroup, o Options, data string, out io.Writer, env []string, sec *secure, services []string) (*process, string, string, error) {
	cfgPath := filepath.Join(data, "broker.yaml")
	doc, scheme := BrokerConfig(), ""
	if sec != nil {
		doc, scheme = append(doc, sec.brokerYAML(services)...), "https"
	}
	if err := os.WriteFile(cfgPath, doc, 0o644); err != nil {
		return nil, "", "", fmt.Errorf("writing the broker config: %w", err)
	}
	p := &process{name: "broker", role: "broker", env: env, backoff: o.Backoff, log: o.Logger, out: out,
		health: "/healthz", scheme: scheme, ready: make(chan struct{})}
	var native string
	var mu sync.Mutex
	p.readyLine = func(line string) (string, bool) {
		h, n, ok := brokerReady(line)
		if ok {
			mu.Lock()
			native = n
			mu.Unlock()
			// Restart on the same ports.
			p.mu.Lock()
			p.argv = append(append([]string{}, o.Command...), "broker", "--data", filepath.Join(data, "broker"),
				"--config", cfgPath, "--http", h, "--listen", n)
			p.mu.Unlock()
		}
		return h, ok
	}
	p.argv = append(append([]string{}, o.Command...), "broker", "--data", filepath.Join(data, "broker"),
		"--config", cfgPath, "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0")
	wg.Add(1)
	go func() { defer wg.Done(); p.run(brokerCtx) }()
	if err := waitReady(ctx, p, 60*time.Second); err != nil {
		return nil, "", "", err
	}
	mu.Lock()
	defer mu.Unlock()
	p.mu.Lock()
	h := p.addr
	p.mu.Unlock()
	return p, "switchyard://" + native, h, nil
}

// BrokerConfig is the broker's YAML config: every queue of hitch.Bindings
// and every topic bound to its queues.
func BrokerConfig() []byte {
	// A consumer killed with messages in hand spends one delivery of
	// each: 100 deliveries outlast a crash loop of a supervised service,
	// while a message no handler can ever take still reaches its
	// dead-letter queue. The dedup window outlasts an outbox relay that
	// was down for a while (a re-relay within it is dropped).
	type queue struct {
		VisibilityTimeout string `yaml:"visibility_timeout"`
		MaxDeliveries     int    `yaml:"max_deliveries"`
		DedupWindow       string `yaml:"dedup_window"`
	}
	type topic struct {
		Queues []string `yaml:"queues,flow"`
	}
	doc := struct {
		Queues map[string]queue `yaml:"queues"`
		Topics map[string]topic `yaml:"topics"`
	}{Queues: map[string]queue{}, Topics: map[string]topic{}}
	for t, qs := range hitch.Bindings {
		for _, q := range qs {
			doc.Queues[q] = queue{VisibilityTimeout: "15s", MaxDeliveries: 100, DedupWindow: "10m"}
		}
		doc.Topics[t] = topic{Queues: qs}
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		panic(err) // plain maps and strings always marshal
	}
	return append([]byte("# Written by switchyard hitch up: Hitch's queues and the topics bound to them (hitch.Bindings).\n"), b...)
}

// HitchContract names Hitch's OpenAPI document among the gateway's
// contracts (the contract label of its metrics).
const HitchContract = "hitch"

// GatewayConfig is the gateway `hitch up` runs: one upstream per service
// (discover: NAME), one route per public route of o.Specs in their order,
// JWT verified against jwksURL, the route's role required as a scope,
// rate limits per consumer (per IP on public routes), and Hitch's OpenAPI
// contract on the routes marked Contract (served at hitch.OpenAPIPath).
func GatewayConfig(o Options, regURL, jwksURL, accessLog string) (*gateway.Config, error) {
	cfg := &gateway.Config{
		Listen:    o.Listen,
		Admin:     o.Admin,
		AccessLog: accessLog,
		Auth: &auth.Config{Realm: "hitch", JWT: &auth.JWTConfig{Issuer: identity.DefaultIssuer, Audience: []string{identity.Audience},
			Algorithms: []string{"ES256"}, JWKSURL: jwksURL, JWKSRefresh: 10 * time.Second}},
		Discovery: &gateway.Discovery{Registry: regURL, InitialWait: 2 * time.Second},
		Upstreams: map[string]*gateway.Upstream{},
	}
	if o.Redis != "" {
		cfg.RateLimitStore = o.Redis
	}
	burst := func(rate string) int {
		n, _ := strconv.Atoi(strings.SplitN(rate, "/", 2)[0])
		return 2 * n
	}
	contracted := "" // the first service with a route under the contract
	for _, s := range o.Specs {
		cfg.Upstreams[s.Name] = &gateway.Upstream{
			Discover: s.Name,
			// A reset (the replica died with the request in hand) is
			// retried only where that is safe: idempotent methods and
			// requests with an Idempotency-Key (retry.Safe).
			Retry: &retry.Config{Attempts: 3, On: []string{retry.OnConnectFailure, retry.OnReset, "503"}},
		}
		for _, r := range s.Routes {
			gr := gateway.Route{Name: r.Name, Upstream: s.Name,
				Match: gateway.Match{Path: r.Path, PathPrefix: r.PathPrefix, PathPattern: r.PathPattern, Methods: r.Methods}}
			switch r.Role {
			case svc.Public:
				gr.RateLimit = &throttle.Config{Limits: []throttle.Limit{{Key: "ip", Rate: o.PublicRate, Burst: burst(o.PublicRate)}}}
			case svc.AnyRole, svc.Rider, svc.Driver:
				gr.Auth = auth.MethodJWT
				if r.Role != svc.AnyRole {
					gr.Require = &auth.Require{Scopes: []string{r.Role}}
				}
				gr.RateLimit = &throttle.Config{Limits: []throttle.Limit{{Key: "consumer", Rate: o.ConsumerRate, Burst: burst(o.ConsumerRate)}}}
			default:
				return nil, fmt.Errorf("service %s route %s: role %q: expected \"\", \"*\", rider or driver", s.Name, r.Name, r.Role)
			}
			if r.Cache {
				if cfg.Caches == nil {
					cfg.Caches = map[string]*edge.Config{"edge": {Memory: 64 << 20}}
				}
				gr.Cache = &gateway.RouteCache{Name: "edge"}
			}
			if r.Contract {
				gr.Contract = HitchContract
				if contracted == "" {
					contracted = s.Name
				}
			}
			cfg.Routes = append(cfg.Routes, gr)
		}
	}
	if contracted != "" {
		// Hitch's own OpenAPI document: requests on the API routes are
		// checked at the edge (400 with the violations, the service never
		// sees them), responses reported (logged and counted at
		// switchyard_contract_responses_total), and the document served
		// on a route of its own, answered by the contract's middleware
		// (its upstream is never asked).
		cfg.Contracts = map[string]*contract.Config{HitchContract: {Document: hitch.OpenAPI(), ServeAt: hitch.OpenAPIPath,
			Responses: contract.ResponsesReport}}
		cfg.Routes = append([]gateway.Route{{Name: "openapi", Upstream: contracted, Contract: HitchContract,
			Match:     gateway.Match{Path: hitch.OpenAPIPath, Methods: []string{http.MethodGet, http.MethodHead}},
			RateLimit: &throttle.Config{Limits: []throttle.Limit{{Key: "ip", Rate: o.PublicRate, Burst: burst(o.PublicRate)}}}}},
			cfg.Routes...)
	}
	return cfg, nil
}

// jwksProxy serves identity's JWKS, fetched through discovery.
func jwksProxy(client *http.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != identity.PathJWKS {
			http.NotFound(w, r)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+hitch.Identity+identity.PathJWKS, nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "fetching identity's JWKS: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
	})
}

// processesHandler lists every process: the registry and gateway (this
// process), the broker and each service replica, with their health.
func processesHandler(procs []*process, reg *registry.Registry, regURL string, client *http.Client, gwAddr func() string, started time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list := make([]ProcessInfo, len(procs))
		var wg sync.WaitGroup
		for i, p := range procs {
			wg.Add(1)
			go func() { defer wg.Done(); list[i] = p.info(r.Context(), client) }()
		}
		wg.Wait()
		self := os.Getpid()
		list = append(list,
			ProcessInfo{Name: "registry", PID: self, Address: strings.TrimPrefix(strings.TrimPrefix(regURL, "http://"), "https://"), Role: "registry",
				Health: checkHealth(r.Context(), client, regURL+"/healthz"), Started: started},
			ProcessInfo{Name: "gateway", PID: self, Address: gwAddr(), Role: "gateway", Health: "up", Started: started})
		// A service instance counts as up only while registered.
		for i := range list {
			if list[i].Role != "service" || list[i].Health != "up" {
				continue
			}
			found := false
			for _, in := range reg.Snapshot(list[i].Name).Instances {
				found = found || (in.Address == list[i].Address && in.State == discovery.StateUp)
			}
			if !found {
				list[i].Health = "unregistered"
			}
		}
		sort.SliceStable(list, func(a, b int) bool {
			ra, rb := roleOrder(list[a].Role), roleOrder(list[b].Role)
			if ra != rb {
				return ra < rb
			}
			if list[a].Name != list[b].Name {
				return list[a].Name < list[b].Name
			}
			return list[a].Replica < list[b].Replica
		})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"processes": list})
	})
}

func roleOrder(role string) int {
	switch role {
	case "gateway":
		return 0
	case "registry":
		return 1
	case "broker":
		return 2
	}
	return 3
}

// lockedWriter serialises the children's lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitJWKS fetches url until it answers 200 or limit passes.
func waitJWKS(ctx context.Context, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("identity's JWKS not available through discovery within %v: %s", limit, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// redactURL hides a password in a URL for printing.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// relayGET answers a GET with what url() answers (status, JSON body up to
// 4 MiB): read-only operator data for the web app's operator view. The
// request's query and If-None-Match go along (a listing's cursor and
// limit, a conditional read), and the answer's ETag comes back, and its
// Link rel="next" rewritten to this relay's path (the upstream's path is
// not served here); a link to any other path is dropped.
func relayGET(client *http.Client, url func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := url()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
		if err != nil {
			httpx.WriteProblem(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query %.80q: %v", r.URL.RawQuery, err))
			return
		}
		if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
			req.Header["If-None-Match"] = inm
		}
		resp, err := client.Do(req)
		if err != nil {
			httpx.WriteProblem(w, http.StatusBadGateway, "upstream_unavailable", "operator data unavailable: "+err.Error())
			return
		}
		defer resp.Body.Close()
		h := w.Header()
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			h.Set("Content-Type", ct)
		}
		if et := resp.Header.Get("ETag"); et != "" {
			h.Set("ETag", et)
		}
		if next := relayLink(req.URL.Path, r.URL.Path, resp.Header.Values("Link")); next != "" {
			h.Set("Link", "<"+next+`>; rel="next"`)
		}
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, 4<<20))
	})
}

// relayLink is the rel="next" target among an upstream's Link values,
// moved from the upstream's path (from) to the relay's (to), or "" when
// there is none or it names another path (or another host).
func relayLink(from, to string, links []string) string {
	next := httpx.NextLink(links)
	if next == "" {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" || u.Path != from {
		return ""
	}
	// The query is decoded and encoded again: a raw space, quote or
	// angle bracket in it would break the Link header it goes into.
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return ""
	}
	return (&url.URL{Path: to, RawQuery: q.Encode()}).String()
}
