package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/switchyard/switchyard/hitch/svc"
	"github.com/switchyard/switchyard/hitch/up"
)

// runHitch dispatches `switchyard hitch up|serve`.
func runHitch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func(w io.Writer) {
		fmt.Fprint(w, "Usage: switchyard hitch <command> [flags]\n\n"+
			"Hitch, the ride-sharing example, on switchyard (docs/hitch.md).\n\nCommands:\n"+
			"  up      run everything on this machine: registry, broker, every service, gateway\n"+
			"  serve   run one Hitch service as a process (hitch up starts these)\n"+
			"  check   run every use case of the notes against a running Hitch\n"+
			"  sim     drive simulated riders and drivers through a running Hitch\n"+
			"  bench   measure a running Hitch with the load generator\n")
	}
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "up":
		return runHitchUp(ctx, args[1:], stdout, stderr)
	case "serve":
		return runHitchServe(ctx, args[1:], stdout, stderr)
	case "check":
		return runHitchCheck(ctx, args[1:], stdout, stderr)
	case "sim":
		return runHitchSim(ctx, args[1:], stdout, stderr)
	case "bench":
		return runHitchBench(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	fmt.Fprintf(stderr, "switchyard hitch: unknown command %q\n\n", args[0])
	usage(stderr)
	return errUsage
}

func runHitchUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hitch up", "[--data DIR] [--replicas 2] [--listen ADDR] [--admin ADDR] [--postgres URL] [--redis URL] [--secure]",
		"Run Hitch on this machine: the service registry, the message broker, every\n"+
			"service as its own processes (replicated ones --replicas times), and the gateway\n"+
			"in front of them with JWT auth and rate limits. Crashed processes are restarted\n"+
			"with backoff; GET /admin/hitch/processes on the admin address lists them.\n"+
			"Ctrl-C stops the gateway, then the services, then the broker. See docs/hitch.md.", stderr)
	var o up.Options
	fs.StringVar(&o.Data, "data", "hitch-data", "data `directory` (registry, broker log, databases, access log)")
	fs.IntVar(&o.Replicas, "replicas", 2, "processes per replicated service")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "gateway listen `address` (the web app and API)")
	fs.StringVar(&o.Admin, "admin", "127.0.0.1:9901", "gateway admin `address` (admin API, /metrics, /admin/hitch/processes)")
	fs.StringVar(&o.Postgres, "postgres", "", "PostgreSQL `URL`: each service gets its own schema there instead of a SQLite file")
	fs.StringVar(&o.NATS, "nats", "", "NATS `URL` (nats://HOST:4222, with JetStream): the message bus instead of a switchyard broker")
	fs.StringVar(&o.Redis, "redis", "", "Redis `URL` for the gateway's rate limits and the services' caches")
	fs.StringVar(&o.ConsumerRate, "consumer-rate", "", "rate limit of each signed-in user, e.g. 100/s (default 100/s; raise it to load-test with few users)")
	fs.StringVar(&o.PublicRate, "public-rate", "", "rate limit per client IP on the public routes, e.g. 50/s (default 50/s)")
	fs.BoolVar(&o.Secure, "secure", false, "every hop over TLS with identities from a local CA made in DATA/pki at first start: HTTPS gateway, mTLS to and between services, authenticated registry and broker with per-service permissions, admin API over HTTPS with a token (docs/security.md)")
	logLevel := fs.String("log-level", "warn", "supervisor and gateway log level: debug, info, warn, error")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard hitch up: unexpected argument %q: expected only flags\n", fs.Arg(0))
		return errUsage
	}
	if o.Replicas < 1 {
		fmt.Fprintf(stderr, "switchyard hitch up: --replicas %d: expected 1 to 16\n", o.Replicas)
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "switchyard hitch up: invalid --log-level %q: expected debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	o.Out = stdout
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return up.Run(ctx, o)
}

func runHitchServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	specs := svc.Services()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	fs := newFlagSet("hitch serve", "NAME --registry URL --data DIR [--bus URL] [--listen ADDR] [--store URL] [--redis URL] [--config FILE]",
		"Run one Hitch service ("+strings.Join(names, ", ")+") as a process: its own\n"+
			"database, the message bus, its HTTP API (and /healthz, /metrics) on --listen,\n"+
			"registered in discovery under the port it bound. SIGTERM deregisters it and\n"+
			"stops it cleanly. `switchyard hitch up` starts these for you.", stderr)
	var o svc.Options
	fs.IntVar(&o.Replica, "replica", 0, "replica `number`; the instance registers as NAME-N")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:0", "listen `address`; port 0 picks a free one (the registered port is the bound one)")
	fs.StringVar(&o.Data, "data", "", "data `directory` for the SQLite database NAME.db")
	fs.StringVar(&o.Registry, "registry", "", "service registry `URL` (http://HOST:PORT)")
	fs.StringVar(&o.Bus, "bus", "", "message bus `URL`: switchyard://HOST:PORT (broker native port) or nats://HOST:PORT")
	fs.StringVar(&o.Store, "store", "", "database `URL`: postgres://... (a schema hitch_NAME) or sqlite:PATH; default sqlite:DATA/NAME.db")
	fs.StringVar(&o.Redis, "redis", "", "Redis `URL` handed to the service")
	fs.StringVar(&o.ConfigFile, "config", "", "the service's YAML config `file`")
	fs.StringVar(&o.TLSCA, "tls-ca", "", "CA `file` (PEM): with --tls-cert and --tls-key the service serves HTTPS only, requiring client certificates from this CA, and calls the registry and other services over HTTPS")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "the service's certificate `file` (PEM), presented as server and client")
	fs.StringVar(&o.TLSKey, "tls-key", "", "the private key `file` of --tls-cert")
	callers := fs.String("tls-callers", "", "comma-separated certificate common `names` allowed to call the service (with --tls-cert)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	// The name comes first: flags after it.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.Name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if o.Name == "" && fs.NArg() > 0 {
		o.Name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard hitch serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	for _, c := range strings.Split(*callers, ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.Callers = append(o.Callers, c)
		}
	}
	if o.Name == "" {
		fmt.Fprintf(stderr, "switchyard hitch serve: the service NAME is required: one of %s\n", strings.Join(names, ", "))
		fs.Usage()
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "switchyard hitch serve: invalid --log-level %q: expected debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	if err := o.Validate(specs); err != nil {
		fmt.Fprintf(stderr, "switchyard hitch serve: %v\n", err)
		return errUsage
	}
	o.Stdout = stdout
	o.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	return svc.Serve(ctx, specs, o)
}
