package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchyard/switchyard/demo"
	"github.com/switchyard/switchyard/gateway"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--listen ADDR] [--admin ADDR] [--backends A,B,C]",
		"Start three demo backends and a gateway in front of them, with a bundled config,\n"+
			"and print what to curl. Ctrl-C stops everything.", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway address")
	adminAddr := fs.String("admin", "127.0.0.1:9901", "admin API and /metrics address")
	backends := fs.String("backends", "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003", "demo backend addresses (comma-separated; use port 0 for any free port)")
	accessLog := fs.String("access-log", "stdout", "access log: stdout, stderr, off or a file path")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard demo: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if _, port, err := net.SplitHostPort(*listen); err == nil && port != "0" && *listen == *adminAddr {
		fmt.Fprintf(stderr, "switchyard demo: --admin %s is the same address as --listen: give the admin API its own port (e.g. --admin 127.0.0.1:0)\n", *adminAddr)
		return errUsage
	}
	// Name a busy port before starting anything (the gateway would report
	// it against its generated config file, which says little here).
	for _, l := range []struct{ flag, addr string }{{"--listen", *listen}, {"--admin", *adminAddr}} {
		if err := demo.CheckFree(l.flag, l.addr); err != nil {
			return err
		}
	}
	var addrs []string
	for i, a := range strings.Split(*backends, ",") {
		a = strings.TrimSpace(a)
		b, err := demo.Start(ctx, fmt.Sprintf("backend-%d", i+1), a)
		if err != nil {
			return demo.PortError(err, "--backends", a)
		}
		defer b.Close()
		addrs = append(addrs, b.Addr())
	}
	cfgText, err := demo.Config(demo.ConfigParams{Listen: *listen, Admin: *adminAddr, AccessLog: *accessLog, Backends: addrs})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "switchyard-demo-")
	if err != nil {
		return fmt.Errorf("creating demo config dir: %w", err)
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		return fmt.Errorf("writing demo config: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := gateway.New(gateway.Options{ConfigPath: cfgPath, Logger: logger})
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-g.Ready():
		case <-ctx.Done():
			return
		}
		gw, ad := g.Addr().String(), *adminAddr
		if a := g.AdminAddr(); a != nil {
			ad = a.String() // the port it got, when --admin asked for port 0
		}
		fmt.Fprintf(stdout, `switchyard demo is running.
  gateway  http://%[1]s  (config: %[3]s)
  admin    http://%[2]s/admin/status   metrics: http://%[2]s/metrics
  backends %[4]s

Try:
  curl -s http://%[1]s/hello                    # round robin over %[6]d backends
  curl -s http://%[1]s/weighted/x               # smooth weighted 5:1:1
  curl -si http://%[1]s/sticky/x                # cookie sticky session (Set-Cookie)
  curl -s http://%[1]s/status/503               # retried on other targets, then 503
  curl -sN 'http://%[1]s/sse?n=3'               # Server-Sent Events streamed through
  curl -s -X POST 'http://%[5]s/demo/health?ok=false' # fail backend-1's health check
  curl -s http://%[2]s/admin/upstreams          # health, circuits, in-flight, ejections
  curl -s -X POST http://%[2]s/admin/upstreams/demo/targets/%[5]s/drain
Ctrl-C stops everything.
`, gw, ad, cfgPath, strings.Join(addrs, " "), addrs[0], len(addrs))
	}()
	return serveWithReload(ctx, g, logger)
}
