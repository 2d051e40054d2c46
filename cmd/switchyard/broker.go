package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/broker/cli"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/broker/server"
	"github.com/switchyard/switchyard/broker/wire"
)

// runBroker runs the embedded message broker with its HTTP API or, when
// the first argument names a client command (publish, receive, ls, ...),
// that command against a running broker (package broker/cli).
func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "repair" {
		return runBrokerRepair(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "hash-password" {
		if len(args) > 1 {
			fmt.Fprintln(stderr, "switchyard broker hash-password: reads the password from stdin (never an argument: it would be in the shell history); no arguments")
			return errUsage
		}
		return server.HashPassword(os.Stdin, stdout)
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

// runBrokerServer parses the broker's flags and runs it (server.Run).
func runBrokerServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker", "--data DIR [--http ADDR] [--listen ADDR] [--config FILE] [--fsync POLICY]",
		"Run the message broker: durable queues, pub/sub topics and replayable streams\n"+
			"over an HTTP/JSON API (Prometheus metrics at GET /metrics), persisted in an\n"+
			"append-only log under --data.\n\n"+
			"SIGHUP re-reads the --config file's auth: block (users, tokens, permissions) without a\n"+
			"restart; a bad file keeps the users loaded before.\n\n"+
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
	var pingInterval time.Duration
	durationVar(fs, &pingInterval, "native-ping-interval", native.DefaultPingInterval, "s", "ping a native connection silent for this `duration`; negative: never ping or close idle connections")
	var pingTimeout time.Duration
	durationVar(fs, &pingTimeout, "native-ping-timeout", native.DefaultPingTimeout, "s", "close a pinged native connection if nothing arrives within this `duration`")
	var writeTimeout time.Duration
	durationVar(fs, &writeTimeout, "native-write-timeout", native.DefaultWriteTimeout, "s", "close a native connection whose writes make no progress for this `duration` (a client that stopped reading); negative disables")
	tlsCert := fs.String("tls-cert", "", "PEM certificate chain `file`: serve the HTTP and native listeners over TLS 1.2+ (with --tls-key; overrides tls.cert)")
	tlsKey := fs.String("tls-key", "", "PEM private key `file` of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM `file` of the CAs whose client certificates are verified (mTLS); overrides tls.client_ca")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	opts := server.Options{Data: *dataDir, HTTP: *httpAddr, Listen: *listen, ConfigFile: *configPath, Fsync: *fsync, Pprof: *pprofAddr,
		Native:  native.Options{MaxFrame: *maxFrame, MaxBuffered: *maxBuffered, PingInterval: pingInterval, PingTimeout: pingTimeout, WriteTimeout: writeTimeout},
		TLSCert: *tlsCert, TLSKey: *tlsKey, TLSClientCA: *tlsClientCA}
	if err := opts.Native.Validate(); err != nil { // before the arguments, as server.Run would
		fmt.Fprintf(stderr, "switchyard broker: %v\n", err)
		return errUsage
	}
	if fs.NArg() > 0 {
		// A first argument that is not a flag was meant as a client command.
		if len(args) > 0 && args[0] == fs.Arg(0) {
			fmt.Fprintf(stderr, "switchyard broker: unknown command %q", args[0])
			if s := cli.Suggest(args[0]); s != "" {
				fmt.Fprintf(stderr, ": did you mean %q?", s)
			}
			fmt.Fprintf(stderr, "\n\n")
			cli.Usage(stderr)
			return errUsage
		}
		fmt.Fprintf(stderr, "switchyard broker: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	// SIGHUP re-reads the config file's users (auth block) without a
	// restart; see server.Options.Reload.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	opts.Reload = reload
	err := server.Run(ctx, opts, stdout, stderr)
	var uerr *server.UsageError
	if errors.As(err, &uerr) {
		fmt.Fprintf(stderr, "switchyard broker: %v\n", uerr.Err)
		if uerr.ShowUsage {
			fs.Usage()
		}
		return errUsage
	}
	return err
}

// runBrokerRepair parses the flags of broker repair and repairs a stopped
// broker's data directory (server.RunRepair): damaged log records are
// skipped (and reported), everything intact is kept.
func runBrokerRepair(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker repair", "--data DIR",
		"Repair the logs of a stopped broker: skip damaged records (reporting each\n"+
			"segment, offset, byte and record count lost), keep every intact record,\n"+
			"cut a torn tail. The damaged originals are kept as *.seg.damaged.", stderr)
	dataDir := fs.String("data", "", "the broker's data `directory` (required)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 || *dataDir == "" {
		fmt.Fprintln(stderr, "switchyard broker repair: --data DIR is required, and nothing else")
		fs.Usage()
		return errUsage
	}
	return server.RunRepair(*dataDir, stdout)
}
