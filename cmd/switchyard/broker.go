package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchyard/switchyard/broker/cli"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/broker/server"
	"github.com/switchyard/switchyard/broker/wire"
	"github.com/switchyard/switchyard/wal"
)

// runBroker runs the embedded message broker with its HTTP API or, when
// the first argument names a client command (publish, receive, ls, ...),
// that command against a running broker (package broker/cli).
func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "repair" {
		return runBrokerRepair(args[1:], stdout, stderr)
	}
	if len(args) > 0 && cli.IsCommand(args[0]) {
		err := cli.Run(ctx, args, os.Stdin, stdout, stderr)
		if errors.Is(err, cli.ErrUsage) {
			return errUsage
		}
		return err
	}
	return runBrokerServer(ctx, args, stdout, stderr)
}

// runBrokerServer runs the embedded message broker with its HTTP API.
func runBrokerServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker", "--data DIR [--http ADDR] [--listen ADDR] [--config FILE] [--fsync POLICY]",
		"Run the message broker: durable queues, pub/sub topics and replayable streams\n"+
			"over an HTTP/JSON API (Prometheus metrics at GET /metrics), persisted in an\n"+
			"append-only log under --data.\n\n"+
			"Client commands for a running broker: switchyard broker publish|receive|ack|nack|tail|\n"+
			"publish-topic|append|read|ls|info|declare|delete|redrive|status ('switchyard broker help').", stderr)
	dataDir := fs.String("data", "", "data `directory` for the log and metadata (required unless the config file sets data)")
	httpAddr := fs.String("http", "127.0.0.1:7401", "HTTP API and /metrics listen `address`")
	listen := fs.String("listen", "", "native binary protocol listen `address` (e.g. 127.0.0.1:7400); off when empty")
	configPath := fs.String("config", "", "YAML config `file` declaring queues, topics and streams")
	fsync := fs.String("fsync", "", "fsync `policy`: always, batch (default), interval:DURATION, never; overrides the config file")
	pprofAddr := fs.String("pprof", "", "serve Go profiles at /debug/pprof/ on this `address` (e.g. 127.0.0.1:7402); off when empty. Keep it private: profiles reveal internals")
	maxFrame := fs.Int("native-max-frame", wire.MaxFrame, "largest native protocol request frame in `bytes` (at most 65 MiB); a larger one is answered too_large and its connection closed")
	maxBuffered := fs.Int("native-max-buffered", native.DefaultMaxBuffered, "memory budget in `bytes` for native request frames above 64 KiB across all connections; when spent, connections are not read until it frees")
	pingInterval := fs.Duration("native-ping-interval", native.DefaultPingInterval, "ping a native connection silent for this `duration`; negative: never ping or close idle connections")
	pingTimeout := fs.Duration("native-ping-timeout", native.DefaultPingTimeout, "close a pinged native connection if nothing arrives within this `duration`")
	writeTimeout := fs.Duration("native-write-timeout", native.DefaultWriteTimeout, "close a native connection whose writes make no progress for this `duration` (a client that stopped reading); negative disables")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	nopts := native.Options{MaxFrame: *maxFrame, MaxBuffered: *maxBuffered, PingInterval: *pingInterval, PingTimeout: *pingTimeout, WriteTimeout: *writeTimeout}
	if err := nopts.Validate(); err != nil {
		fmt.Fprintf(stderr, "switchyard broker: %v\n", err)
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard broker: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	var fc server.FileConfig
	if *configPath != "" {
		var err error
		if fc, err = server.LoadFile(*configPath); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := engine.Config{Dir: fc.Dir, Fsync: fc.Fsync, SegmentBytes: fc.SegmentBytes, Preallocate: fc.Preallocate, Metrics: reg}
	if *dataDir != "" {
		cfg.Dir = *dataDir
	}
	if cfg.Dir == "" {
		fmt.Fprintln(stderr, "switchyard broker: --data is required (or data: in the config file)")
		fs.Usage()
		return errUsage
	}
	if *fsync != "" {
		p, err := wal.ParseSyncPolicy(*fsync)
		if err != nil {
			fmt.Fprintf(stderr, "switchyard broker: --fsync: %v\n", err)
			return errUsage
		}
		cfg.Fsync = p
	}
	b, err := engine.Open(cfg)
	if err != nil {
		if errors.As(err, new(*wal.CorruptError)) {
			return fmt.Errorf("%w\nto skip only the damaged records and keep the rest: switchyard broker repair --data %s", err, cfg.Dir)
		}
		return err
	}
	defer b.Close()
	if rec := b.Recovery(); rec.TruncatedBytes > 0 {
		fmt.Fprintf(stderr, "switchyard broker: recovered log: cut %d bytes of torn tail from %s at offset %d (%s); last intact record %d\n",
			rec.TruncatedBytes, rec.TruncatedFile, rec.TruncatedAt, rec.Reason, rec.LastSeq)
	}
	if err := fc.Apply(b); err != nil {
		return err // located in the file: FILE:LINE:COLUMN: KEY.PATH: ...
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listening on --http %q: %w", *httpAddr, err)
	}
	srv := &http.Server{Handler: httpapi.NewWithOptions(b, httpapi.Options{Metrics: reg}), ReadHeaderTimeout: 10 * time.Second}
	nativeAddr := "off"
	nctx, stopNative := context.WithCancel(ctx)
	defer stopNative()
	var nativeDone chan error // nil (never ready) when the native listener is off
	if *listen != "" {
		nativeDone = make(chan error, 1)
		nln, err := net.Listen("tcp", *listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on --listen %q: %w", *listen, err)
		}
		nativeAddr = nln.Addr().String()
		go func() { nativeDone <- native.New(b, nopts).Serve(nctx, nln) }()
	}
	pprofShown := "off"
	if *pprofAddr != "" {
		pln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on --pprof %q: %w", *pprofAddr, err)
		}
		pprofShown = pln.Addr().String()
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		psrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = psrv.Serve(pln) }()
		defer psrv.Close()
	}
	fmt.Fprintf(stdout, "switchyard broker: http=%s native=%s pprof=%s data=%s fsync=%s\n", ln.Addr(), nativeAddr, pprofShown, cfg.Dir, cfg.Fsync)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		stopNative()
		if nativeDone != nil {
			<-nativeDone
		}
		return fmt.Errorf("serving HTTP: %w", err)
	case err := <-nativeDone:
		srv.Close()
		<-errc
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("serving native protocol: %w", err)
	case <-ctx.Done():
	}
	stopNative()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down HTTP: %w", err)
	}
	<-errc
	if nativeDone != nil {
		return <-nativeDone
	}
	return nil
}

// runBrokerRepair repairs a stopped broker's data directory: damaged log
// records are skipped (and reported), everything intact is kept.
func runBrokerRepair(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker repair", "--data DIR",
		"Repair the logs of a stopped broker: skip damaged records (reporting each\n"+
			"segment, offset, byte and record count lost), keep every intact record,\n"+
			"cut a torn tail. The damaged originals are kept as *.seg.damaged.", stderr)
	dataDir := fs.String("data", "", "the broker's data `directory` (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *dataDir == "" {
		fmt.Fprintln(stderr, "switchyard broker repair: --data DIR is required, and nothing else")
		fs.Usage()
		return errUsage
	}
	dmg, err := server.Repair(*dataDir)
	var lost uint64
	for _, d := range dmg {
		fmt.Fprintf(stdout, "switchyard broker repair: %s\n", d)
		lost += d.Records
	}
	if err != nil {
		return err
	}
	if len(dmg) == 0 {
		fmt.Fprintf(stdout, "switchyard broker repair: %s: no damage found, nothing changed\n", *dataDir)
		return nil
	}
	fmt.Fprintf(stdout, "switchyard broker repair: %d damaged stretches repaired, %d records lost; every other record kept\n", len(dmg), lost)
	return nil
}
