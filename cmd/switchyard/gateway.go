package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard/switchyard/gateway"
)

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", "--config FILE [--check]",
		"Run the L7 load balancer / API gateway. SIGHUP (or POST /admin/reload) reloads the\n"+
			"config without dropping in-flight requests; SIGTERM drains and exits.", stderr)
	cfgPath := fs.String("config", "", "path to the YAML config (required)")
	check := fs.Bool("check", false, "validate the config and exit (0 when valid)")
	logLevel := fs.String("log-level", "info", "operational log level: debug, info, warn, error")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard gateway: unexpected argument %q: expected only flags\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "switchyard gateway: --config FILE is required")
		fs.Usage()
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "switchyard gateway: invalid --log-level %q: expected debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	if *check {
		if err := gateway.Check(*cfgPath); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	g, err := gateway.New(gateway.Options{ConfigPath: *cfgPath, Logger: logger})
	if err != nil {
		return err
	}
	return serveWithReload(ctx, g, logger)
}

// serveWithReload runs g until ctx ends, reloading on SIGHUP.
func serveWithReload(ctx context.Context, g *gateway.Gateway, logger *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-hup:
			logger.Info("SIGHUP: reloading config")
			_ = g.Reload(ctx) // a refused config is logged; the old one keeps serving
		}
	}
}
