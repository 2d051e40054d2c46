package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/switchyard/switchyard/sidecar"
)

// runSidecar runs a sidecar beside an app (package sidecar).
func runSidecar(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sidecar", "--service NAME --app ADDR [--depend NAME,...] | --config FILE",
		"Run beside an app that knows nothing of switchyard: register it in the service\n"+
			"registry while its health check passes (heartbeats on its behalf, deregistration\n"+
			"on shutdown), serve its inbound traffic (metrics, access log, optional TLS), and\n"+
			"give it an outbound port where http://OUTBOUND/DEPENDENCY/... reaches an instance\n"+
			"of that service through discovery, with retries, timeouts, circuit breakers and\n"+
			"trace propagation. Flags given override the config file. See docs/sidecar.md.", stderr)
	cfgPath := fs.String("config", "", "YAML config `file` (dependencies and their settings); flags override it")
	service := fs.String("service", "", "service `name` the app is registered under")
	app := fs.String("app", "", "the app's `address`, host:port")
	listen := fs.String("listen", sidecar.DefaultListen, "inbound listener `address` (registered unless --advertise)")
	advertise := fs.String("advertise", "", "`address` to register (default: the inbound listener's)")
	outbound := fs.String("outbound", sidecar.DefaultOutbound, "outbound (ambassador) listener `address`")
	adminAddr := fs.String("admin", sidecar.DefaultAdmin, "admin listener `address` (/metrics, /sidecar/status), or off")
	registryURL := fs.String("registry", sidecar.DefaultRegistry, "service registry `URL`")
	var depends []string
	fs.Func("depend", "dependency service `names`, comma-separated (repeatable): the app calls http://OUTBOUND/NAME/...",
		func(v string) error {
			for n := range strings.SplitSeq(v, ",") {
				if n = strings.TrimSpace(n); n == "" {
					return errors.New("empty dependency name: expected NAME[,NAME...]")
				}
				depends = append(depends, n)
			}
			return nil
		})
	healthPath := fs.String("health-path", "", "the app's health check `path`, e.g. /healthz (default: a TCP check)")
	ttl := fs.Duration("ttl", 0, "registration time to live; heartbeats every third of it (default 10s)")
	check := fs.Bool("check", false, "validate the configuration and exit (0 when valid)")
	logLevel := fs.String("log-level", "info", "operational log level: debug, info, warn, error")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "switchyard sidecar: no positional arguments are accepted")
		fs.Usage()
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "switchyard sidecar: invalid --log-level %q: expected debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	cfg := &sidecar.Config{}
	if *cfgPath != "" {
		c, err := sidecar.ReadConfig(*cfgPath)
		if err != nil {
			return err
		}
		cfg = c
	} else if *service == "" || *app == "" {
		fmt.Fprintln(stderr, "switchyard sidecar: --service NAME and --app ADDR are required (or --config FILE)")
		fs.Usage()
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	str := func(name string, dst *string, v string) {
		if set[name] || (*cfgPath == "" && v != "") {
			*dst = v
		}
	}
	str("service", &cfg.Service, *service)
	str("app", &cfg.App, *app)
	str("listen", &cfg.Listen, *listen)
	str("advertise", &cfg.Advertise, *advertise)
	str("outbound", &cfg.Outbound, *outbound)
	str("admin", &cfg.Admin, *adminAddr)
	str("registry", &cfg.Registry, *registryURL)
	if set["health-path"] {
		cfg.AppHealth.Path = *healthPath
	}
	if set["ttl"] {
		if *ttl <= 0 {
			fmt.Fprintf(stderr, "switchyard sidecar: invalid --ttl %v: expected a positive duration, e.g. 10s\n", *ttl)
			return errUsage
		}
		cfg.TTL = *ttl
	}
	for _, d := range depends {
		if cfg.Dependencies == nil {
			cfg.Dependencies = map[string]*sidecar.Dependency{}
		}
		if _, ok := cfg.Dependencies[d]; !ok {
			cfg.Dependencies[d] = &sidecar.Dependency{}
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok\n", cfg.File())
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	s, err := sidecar.New(cfg, sidecar.Options{Logger: logger})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
