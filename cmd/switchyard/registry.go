package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
	"github.com/switchyard/switchyard/tlsconf"
)

// runRegistry runs the service registry (package kit/discovery/registry).
func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("registry", "--data DIR [--listen ADDR] [--tls-cert F --tls-key F [--client-ca F]] [--read-token F] [--register-token SERVICES:F] [--read-cert CN] [--register-cert SERVICES:CN]",
		"Run the service registry: services register instances (address, tags, metadata,\n"+
			"health URL) and renew a TTL with heartbeats; an instance that stops renewing is\n"+
			"removed. Watchers long-poll GET /v1/services/NAME?index=N and are answered as soon\n"+
			"as the instance set changes. State is kept in DIR/registry.db (SQLite, WAL) and\n"+
			"survives restarts with each instance's remaining TTL. Any token or cert flag turns\n"+
			"access control on: every request but GET /healthz then needs a bearer token or a\n"+
			"verified client certificate, and writes only the services granted. See\n"+
			"docs/discovery.md and docs/security.md.", stderr)
	listen := fs.String("listen", "127.0.0.1:8500", "HTTP API listen `address`")
	dataDir := fs.String("data", "", "data `directory` for registry.db (required)")
	maxInstances := fs.Int("max-instances", registry.DefaultMaxInstances, "most instances registered at once over all services")
	maxBytes := fs.Int64("max-bytes", registry.DefaultMaxBytes, "most `bytes` the registered instances hold (names, tags, metadata, URLs)")
	logLevel := fs.String("log-level", "info", "operational log level: debug, info, warn, error")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate `file` (re-read when it changes; needs --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key `file` of --tls-cert")
	clientCA := fs.String("client-ca", "", "verify client certificates against the CAs in this PEM `file` (needs --tls-cert); with --read-cert/--register-cert")
	var readTokens, registerTokens, readCerts, registerCerts stringList
	fs.Var(&readTokens, "read-token", "a bearer token in `FILE` (0600, one line) that may read (repeatable); any token or cert flag turns access control on")
	fs.Var(&registerTokens, "register-token", "`SERVICES:FILE`: the token in FILE may read and register, drain and deregister instances of SERVICES (comma-separated names, or *) (repeatable)")
	fs.Var(&readCerts, "read-cert", "a client certificate's common `name` that may read (repeatable; needs --client-ca)")
	fs.Var(&registerCerts, "register-cert", "`SERVICES:NAME`: the client certificate with common name NAME may read and write instances of SERVICES (repeatable; needs --client-ca)")
	anonReads := fs.Bool("anonymous-reads", false, "with access control: let callers without a credential read (GET) too")
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
	tlsCfg, access, err := registryAccess(*tlsCert, *tlsKey, *clientCA, readTokens, registerTokens, readCerts, registerCerts, *anonReads)
	if err != nil {
		fmt.Fprintf(stderr, "switchyard registry: %v\n", err)
		return errUsage
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if access != nil && tlsCfg == nil {
		logger.Warn("registry access control without --tls-cert: bearer tokens cross the network in clear text; use it on loopback only")
	}
	return registry.Serve(ctx, registry.ServeOptions{Listen: *listen, Logger: logger, TLS: tlsCfg, Access: access,
		Config: registry.Config{Dir: *dataDir, MaxInstances: *maxInstances, MaxBytes: *maxBytes}})
}

// registryAccess turns the TLS and access flags of `switchyard registry`
// into the listener's TLS config and the registry.Access (nil, nil: plain
// HTTP, open). Errors name the flag and the value.
func registryAccess(cert, key, clientCA string, readTokens, registerTokens, readCerts, registerCerts []string, anonReads bool) (*tls.Config, *registry.Access, error) {
	var errs []error
	if (cert == "") != (key == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both"))
	}
	if clientCA != "" && cert == "" {
		errs = append(errs, errors.New("--client-ca needs --tls-cert and --tls-key: client certificates are verified in a TLS handshake"))
	}
	if clientCA == "" && len(readCerts)+len(registerCerts) > 0 {
		errs = append(errs, errors.New("--read-cert and --register-cert need --client-ca: the CAs that sign the client certificates"))
	}
	a := &registry.Access{AnonymousReads: anonReads}
	addToken := func(flag, file string, services []string) {
		tok, err := readTokenFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", flag, file, err))
			return
		}
		a.Tokens = append(a.Tokens, registry.TokenGrant{Name: file, Token: tok, Services: services})
	}
	for _, f := range readTokens {
		addToken("--read-token", f, nil)
	}
	for _, v := range registerTokens {
		services, file, err := splitGrant(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--register-token %q: %w", v, err))
			continue
		}
		addToken("--register-token", file, services)
	}
	addCert := func(flag, v, name string, services []string) {
		if name == "" {
			errs = append(errs, fmt.Errorf("%s %q: empty certificate name", flag, v))
			return
		}
		if a.Certs == nil {
			a.Certs = map[string][]string{}
		}
		if _, dup := a.Certs[name]; dup {
			errs = append(errs, fmt.Errorf("%s %q: certificate name %q given twice", flag, v, name))
			return
		}
		a.Certs[name] = services
	}
	for _, n := range readCerts {
		addCert("--read-cert", n, n, nil)
	}
	for _, v := range registerCerts {
		services, name, err := splitGrant(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--register-cert %q: %w", v, err))
			continue
		}
		addCert("--register-cert", v, name, services)
	}
	if anonReads && len(a.Tokens) == 0 && len(a.Certs) == 0 {
		errs = append(errs, errors.New("--anonymous-reads without any --read-token, --register-token, --read-cert or --register-cert: the registry is open anyway"))
	}
	var cfg *tls.Config
	if cert != "" && key != "" {
		fc, err := tlsconf.LoadFileCert(cert, key)
		if err != nil {
			errs = append(errs, fmt.Errorf("--tls-cert/--tls-key: %w", err))
		} else {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tlsconf.CipherSuites(), GetCertificate: fc.GetCertificate}
		}
		if clientCA != "" && cfg != nil {
			pool, err := tlsconf.LoadCAs(clientCA)
			if err != nil {
				errs = append(errs, fmt.Errorf("--client-ca: %w", err))
			} else {
				cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if len(a.Tokens) == 0 && len(a.Certs) == 0 {
		return cfg, nil, nil
	}
	if err := a.Validate(); err != nil {
		return nil, nil, err
	}
	return cfg, a, nil
}

// splitGrant reads "SERVICES:REST": SERVICES a comma-separated list of
// service names or "*".
func splitGrant(v string) ([]string, string, error) {
	list, rest, ok := strings.Cut(v, ":")
	if !ok || list == "" || rest == "" {
		return nil, "", errors.New("expected SERVICES:VALUE, e.g. payments,rides:/etc/registry/payments.token or *:deployer")
	}
	services := strings.Split(list, ",")
	for _, s := range services {
		if s == "*" {
			continue
		}
		if err := discovery.ValidName(s); err != nil {
			return nil, "", fmt.Errorf("service %q: %w", s, err)
		}
	}
	return services, rest, nil
}

// readTokenFile reads a token file: owner-only (0600), one line (a
// trailing newline is dropped), at least registry.MinTokenLen bytes.
func readTokenFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("readable by group or others (mode %o): chmod 600 it", st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.ContainsAny(tok, "\r\n") {
		return "", errors.New("more than one line: expected just the token")
	}
	if len(tok) < registry.MinTokenLen {
		return "", fmt.Errorf("token of %d bytes: expected at least %d (e.g. openssl rand -hex 24)", len(tok), registry.MinTokenLen)
	}
	return tok, nil
}
