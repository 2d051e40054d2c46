package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/switchyard/switchyard/kit/discovery/registry"
)

// runRegistry runs the service registry (package kit/discovery/registry).
func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("registry", "--data DIR [--listen ADDR]",
		"Run the service registry: services register instances (address, tags, metadata,\n"+
			"health URL) and renew a TTL with heartbeats; an instance that stops renewing is\n"+
			"removed. Watchers long-poll GET /v1/services/NAME?index=N and are answered as soon\n"+
			"as the instance set changes. State is kept in DIR/registry.db (SQLite, WAL) and\n"+
			"survives restarts with each instance's remaining TTL. See docs/discovery.md.", stderr)
	listen := fs.String("listen", "127.0.0.1:8500", "HTTP API listen `address`")
	dataDir := fs.String("data", "", "data `directory` for registry.db (required)")
	maxInstances := fs.Int("max-instances", registry.DefaultMaxInstances, "most instances registered at once over all services")
	maxBytes := fs.Int64("max-bytes", registry.DefaultMaxBytes, "most `bytes` the registered instances hold (names, tags, metadata, URLs)")
	logLevel := fs.String("log-level", "info", "operational log level: debug, info, warn, error")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard registry: unexpected argument %q: expected only flags\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	if *dataDir == "" {
		fmt.Fprintln(stderr, "switchyard registry: --data DIR is required")
		fs.Usage()
		return errUsage
	}
	if *maxInstances < 1 {
		fmt.Fprintf(stderr, "switchyard registry: invalid --max-instances %d: expected at least 1\n", *maxInstances)
		return errUsage
	}
	if *maxBytes < 1 {
		fmt.Fprintf(stderr, "switchyard registry: invalid --max-bytes %d: expected at least 1\n", *maxBytes)
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "switchyard registry: invalid --log-level %q: expected debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	return registry.Serve(ctx, registry.ServeOptions{Listen: *listen, Logger: logger,
		Config: registry.Config{Dir: *dataDir, MaxInstances: *maxInstances, MaxBytes: *maxBytes}})
}
