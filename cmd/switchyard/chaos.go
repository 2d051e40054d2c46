package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchyard/switchyard/chaos"
	"github.com/switchyard/switchyard/chaos/experiment"
	"github.com/switchyard/switchyard/load/chart"
)

// proxyFlags collects repeated --proxy NAME=LISTEN,UPSTREAM flags.
type proxyFlags []chaos.ProxyConfig

func (p *proxyFlags) String() string { return "" }

func (p *proxyFlags) Set(s string) error {
	name, rest, ok := strings.Cut(s, "=")
	listen, upstream, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 || name == "" || listen == "" || upstream == "" {
		return fmt.Errorf("%q: expected NAME=LISTEN,UPSTREAM, e.g. db=127.0.0.1:15432,127.0.0.1:5432", s)
	}
	*p = append(*p, chaos.ProxyConfig{Name: name, Listen: listen, Upstream: upstream})
	return nil
}

// runChaos dispatches the chaos subcommands.
func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "run" {
		return runChaosExperiment(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "proxy" {
		fmt.Fprintln(stderr, "usage: switchyard chaos proxy [--api ADDR] [--proxy NAME=LISTEN,UPSTREAM ...]\n"+
			"       switchyard chaos run [--json] [--chart FILE.svg|.png] [--quiet] EXPERIMENT.yaml\n\n"+
			"  proxy   a TCP fault proxy (latency, jitter, bandwidth, slow close, reset,\n"+
			"          blackhole, timeout) managed over HTTP\n"+
			"  run     run a chaos experiment file: steady-state hypothesis, method\n"+
			"          (faults over time), rollbacks; reports whether it held\n"+
			"see docs/chaos.md")
		return errUsage
	}
	return runChaosProxy(ctx, args[1:], stdout, stderr)
}

func runChaosProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chaos proxy", "[--api ADDR] [--proxy NAME=LISTEN,UPSTREAM ...]",
		"Run TCP fault proxies between components (as Toxiproxy does): each forwards\n"+
			"LISTEN to UPSTREAM, and faults set through the HTTP API add latency and\n"+
			"jitter, limit bandwidth, close slowly, reset, blackhole or cut connections,\n"+
			"per direction and for a share of connections. See docs/chaos.md.", stderr)
	api := fs.String("api", "127.0.0.1:8474", "HTTP API listen `address`")
	var proxies proxyFlags
	fs.Var(&proxies, "proxy", "a proxy to start, `NAME=LISTEN,UPSTREAM` (repeatable; more can be added through the API)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard chaos proxy: unexpected argument %q: expected only flags\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	srv := chaos.NewServer(logger)
	defer srv.Close()
	for _, p := range proxies {
		px, err := srv.Add(p)
		if err != nil {
			return fmt.Errorf("--proxy %s: %w", p.Name, err)
		}
		fmt.Fprintf(stdout, "proxy %s: %s -> %s\n", p.Name, px.Addr(), p.Upstream)
	}
	ln, err := net.Listen("tcp", *api)
	if err != nil {
		return fmt.Errorf("--api: %w", err)
	}
	fmt.Fprintf(stdout, "chaos API on http://%s (GET /proxies)\n", ln.Addr())
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		return nil
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// runChaosExperiment is `switchyard chaos run FILE`: exit 0 when the
// hypothesis held, 1 when it did not, 2 for a bad command line or file.
func runChaosExperiment(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chaos run", "[--json] [--chart FILE.svg|.png] [--quiet] EXPERIMENT.yaml",
		"Run a chaos experiment file: check the steady-state hypothesis (HTTP probes,\n"+
			"SLIs of the experiment's own load, Prometheus metrics) before the method,\n"+
			"every second during it and after it; inject the method's faults (route\n"+
			"faults, chaos proxy toxics, process kills and pauses) at their offsets;\n"+
			"always run the rollbacks, also on Ctrl-C. Exit status 0 when the hypothesis\n"+
			"held, 1 when it did not, 2 for an invalid file. See docs/chaos.md.", stderr)
	asJSON := fs.Bool("json", false, "write the report as JSON (with the timeline) instead of text")
	chartPath := fs.String("chart", "", "draw the SLI timeline into this `file` (.svg or .png)")
	quiet := fs.Bool("quiet", false, "do not print the checks and actions as they happen (on stderr)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "switchyard chaos run: expected one experiment file")
		fs.Usage()
		return errUsage
	}
	if *chartPath != "" {
		if _, err := chart.FormatOf(*chartPath); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--chart: %w", err)}
		}
	}
	e, err := experiment.LoadFile(fs.Arg(0))
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	opts := experiment.Options{}
	if !*quiet {
		opts.Progress = stderr
	}
	rep := experiment.Run(ctx, e, opts)
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if *chartPath != "" {
		if err := rep.WriteChart(*chartPath); err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "chart: %s\n", *chartPath)
		}
	}
	if !rep.Held {
		return &exitError{code: 1, err: fmt.Errorf("the hypothesis did not hold: %s", rep.Reason)}
	}
	return nil
}
