package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/switchyard/switchyard/dns"
)

// runDNS runs the authoritative DNS server and GSLB (package dns).
func runDNS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dns", "--config FILE [--listen ADDR] [--check]",
		"Run the authoritative DNS server and global server load balancer: it serves the\n"+
			"configured zones over UDP and TCP and answers load-balanced names with healthy\n"+
			"sites chosen by weight, region (source address or EDNS Client Subnet) and probe\n"+
			"latency, with short TTLs (default 20s). See docs/dns.md.", stderr)
	cfgPath := fs.String("config", "", "path to the YAML config (required)")
	listen := fs.String("listen", "", "override the config's listen `address` (UDP and TCP)")
	check := fs.Bool("check", false, "validate the config and exit (0 when valid)")
	logLevel := fs.String("log-level", "info", "operational log level: debug, info, warn, error")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "switchyard dns: --config FILE is required and no positional arguments are accepted")
		fs.Usage()
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "switchyard dns: invalid --log-level %q: expected debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	cfg, err := dns.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
		return nil
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv, err := dns.New(*cfg, dns.Options{Logger: logger})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
