// Package server runs a broker process: the config file (FileConfig), the
// data directory's engine, the HTTP API with /metrics, the native protocol
// listener, pprof, and shutdown when the context ends (Run); and the
// offline repair of a data directory (Repair, RunRepair). The command line
// (cmd/switchyard) only parses flags into Options.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/wal"
)

// Options configure a broker process; the names are those of the
// switchyard broker command's flags.
type Options struct {
	// Data is the data directory (--data); it overrides the config file's
	// data. One of them is required.
	Data string
	// HTTP is the HTTP API and /metrics listen address (--http).
	HTTP string
	// Listen is the native protocol listen address (--listen); "" is off.
	Listen string
	// ConfigFile is the YAML config file (--config); "" is none.
	ConfigFile string
	// Fsync is the fsync policy (--fsync); it overrides the config file's.
	// "" keeps the config file's (default batch).
	Fsync string
	// Pprof serves Go profiles at /debug/pprof/ on this address (--pprof);
	// "" is off.
	Pprof string
	// Native tunes the native protocol listener (--native-*).
	Native native.Options
	// TLSCert and TLSKey (--tls-cert, --tls-key) serve both listeners
	// over TLS; they override the config file's tls.cert and tls.key.
	TLSCert, TLSKey string
	// TLSClientCA (--tls-client-ca) verifies client certificates against
	// this PEM bundle; it overrides the config file's tls.client_ca.
	TLSClientCA string
	// Reload, if set, re-reads the config file's auth block (users,
	// password hashes, tokens and their env:/file: secrets, certificate
	// names and permissions) each time it receives (cmd/switchyard sends
	// on SIGHUP); see reloadAuth. Nothing else of the file is re-applied.
	Reload <-chan struct{}
}

// UsageError is an error in the Options (the command line's fault), as
// opposed to one of running: cmd/switchyard prints it, with the usage text
// if ShowUsage, and exits 2.
type UsageError struct {
	Err       error
	ShowUsage bool // a required option is missing
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Run runs a broker until ctx ends, then shuts it down (HTTP requests get
// up to 5s to finish). Once listening it prints a line with the addresses
// to stdout; a log recovered with a torn tail is reported on stderr. Bad
// Options are a *UsageError; anything else that stops it is returned.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	if err := o.Native.Validate(); err != nil {
		return &UsageError{Err: err}
	}
	var fc FileConfig
	if o.ConfigFile != "" {
		var err error
		if fc, err = LoadFile(o.ConfigFile); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := engine.Config{Dir: fc.Dir, Fsync: fc.Fsync, SegmentBytes: fc.SegmentBytes, Preallocate: fc.Preallocate, Metrics: reg}
	if o.Data != "" {
		cfg.Dir = o.Data
	}
	if cfg.Dir == "" {
		return &UsageError{Err: errors.New("--data is required (or data: in the config file)"), ShowUsage: true}
	}
	if o.Fsync != "" {
		p, err := wal.ParseSyncPolicy(o.Fsync)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--fsync: %w", err)}
		}
		cfg.Fsync = p
	}
	tc := telemetry.Config{}
	if fc.Tracing != nil {
		tc = *fc.Tracing
	}
	tr, err := telemetry.Setup(ctx, tc, "switchyard-broker", nil)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Shutdown(sctx)
	}()
	if tr.Exporting && !tc.Disabled {
		cfg.Tracer = tr.Tracer("switchyard/broker")
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
	sec, err := o.security(fc)
	if err != nil {
		return err
	}
	o.Native.Auth = sec.auth
	ln, err := net.Listen("tcp", o.HTTP)
	if err != nil {
		return fmt.Errorf("listening on --http %q: %w", o.HTTP, err)
	}
	if sec.tls != nil {
		ln = tls.NewListener(ln, sec.tls)
	}
	srv := &http.Server{Handler: httpapi.NewWithOptions(b, httpapi.Options{Metrics: reg, Auth: sec.auth}), ReadHeaderTimeout: 10 * time.Second}
	nativeAddr := "off"
	var ns *native.Server // nil when the native listener is off
	nctx, stopNative := context.WithCancel(ctx)
	defer stopNative()
	var nativeDone chan error // nil (never ready) when the native listener is off
	if o.Listen != "" {
		nativeDone = make(chan error, 1)
		nln, err := net.Listen("tcp", o.Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on --listen %q: %w", o.Listen, err)
		}
		nativeAddr = nln.Addr().String()
		if sec.tls != nil {
			nln = tls.NewListener(nln, sec.tls)
		}
		ns = native.New(b, o.Native)
		go func() { nativeDone <- ns.Serve(nctx, nln) }()
	}
	pprofShown := "off"
	if o.Pprof != "" {
		pln, err := net.Listen("tcp", o.Pprof)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on --pprof %q: %w", o.Pprof, err)
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
	fmt.Fprintf(stdout, "switchyard broker: http=%s native=%s pprof=%s data=%s fsync=%s tls=%s auth=%s\n", ln.Addr(), nativeAddr, pprofShown, cfg.Dir, cfg.Fsync, sec.tlsShown(), sec.authShown())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	for running := true; running; {
		select {
		case <-o.Reload:
			if err := o.reloadAuth(sec, ns, stderr); err != nil {
				fmt.Fprintf(stderr, "switchyard broker: reload refused, the users loaded before stay: %v\n", err)
			}
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
			running = false
		}
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

// RunRepair repairs a stopped broker's data directory (Repair), reporting
// on stdout each damaged stretch skipped and what was lost, or that there
// was nothing to repair.
func RunRepair(dir string, stdout io.Writer) error {
	dmg, err := Repair(dir)
	var lost uint64
	for _, d := range dmg {
		fmt.Fprintf(stdout, "switchyard broker repair: %s\n", d)
		lost += d.Records
	}
	if err != nil {
		return err
	}
	if len(dmg) == 0 {
		fmt.Fprintf(stdout, "switchyard broker repair: %s: no damage found, nothing changed\n", dir)
		return nil
	}
	fmt.Fprintf(stdout, "switchyard broker repair: %d damaged stretches repaired, %d records lost; every other record kept\n", len(dmg), lost)
	return nil
}

// reloadAuth re-reads the config file and swaps in its auth block's users
// at once (access.Authenticator.Reload). The whole file must parse and
// validate, or nothing changes and the error (FILE:LINE:COLUMN: KEY.PATH)
// is returned. Adding or removing the auth block needs a restart (the
// listeners' loopback check and login handshake are set at start).
// Native connections of revoked credentials are closed and push
// subscriptions that lost their permission ended (native.Revalidate); the
// HTTP API authenticates every request anyway and ends event streams
// whose user lost consume. It reports what it did on stderr.
func (o Options) reloadAuth(sec security, ns *native.Server, stderr io.Writer) error {
	if o.ConfigFile == "" {
		return errors.New("no --config file to reload the users from")
	}
	fc, err := LoadFile(o.ConfigFile)
	if err != nil {
		return err
	}
	switch {
	case sec.auth == nil && fc.Auth == nil:
		fmt.Fprintf(stderr, "switchyard broker: reload: %s has no auth block and the broker has none: nothing to reload\n", o.ConfigFile)
		return nil
	case sec.auth == nil:
		return fmt.Errorf("%s: auth: the broker started open (no auth block): adding users needs a restart", o.ConfigFile)
	case fc.Auth == nil:
		return fmt.Errorf("%s: auth: the block is gone: a reload cannot open the broker to everyone; restart it to run without users", o.ConfigFile)
	}
	if fc.Auth.NeedsClientCerts() && (sec.tls == nil || sec.tls.ClientCAs == nil) {
		return fmt.Errorf("%s: auth: users log in by certificate (certs:) but the broker started without tls.client_ca (or --tls-client-ca): restart it with one", o.ConfigFile)
	}
	if err := sec.auth.Reload(*fc.Auth); err != nil {
		if fc.src != nil {
			return fc.src.Wrap("auth", err)
		}
		return fmt.Errorf("%s: auth: %w", o.ConfigFile, err)
	}
	closed, ended := 0, 0
	if ns != nil {
		closed, ended = ns.Revalidate()
	}
	fmt.Fprintf(stderr, "switchyard broker: reloaded %d users from %s (generation %d); closed %d native connections whose credential was revoked, ended %d subscriptions whose permission was withdrawn\n",
		len(fc.Auth.Users), o.ConfigFile, sec.auth.Generation(), closed, ended)
	return nil
}
