package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeOptions are what `switchyard registry` runs with.
type ServeOptions struct {
	// Listen is the HTTP listen address (host:port). Required.
	Listen string
	// Config configures the registry (Config.Dir is the data directory).
	Config Config
	// Logger receives operational logs. Default: discarded.
	Logger *slog.Logger
	// Ready, if set, is called with the listen address once serving.
	Ready func(net.Addr)
	// TLS, if set, serves HTTPS with it (ClientCAs and ClientAuth decide
	// whether client certificates are verified; Access.Certs needs that).
	TLS *tls.Config
	// Access, if set, protects the API (Protect): callers need a token
	// or a verified client certificate, and may write only their grants.
	Access *Access
}

// Serve opens the registry, serves its HTTP API on opts.Listen until ctx
// ends, then stops accepting, lets requests finish (long-polls are
// answered at once) and closes the registry, recording the time so a
// restart gives each instance the TTL it had left.
func Serve(ctx context.Context, opts ServeOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Config.Logger == nil {
		opts.Config.Logger = log
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("listening on %q: %w", opts.Listen, err)
	}
	if opts.Access != nil {
		if err := opts.Access.Validate(); err != nil {
			ln.Close()
			return err
		}
	}
	r, err := Open(opts.Config)
	if err != nil {
		ln.Close()
		return err
	}
	h := Handler(r)
	if opts.Access != nil {
		h = Protect(h, *opts.Access)
	}
	if opts.TLS != nil {
		ln = tls.NewListener(ln, opts.TLS)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	r.mu.Lock()
	n := r.count
	r.mu.Unlock()
	log.Info("registry listening", "addr", ln.Addr().String(), "data", opts.Config.Dir, "instances", n,
		"tls", opts.TLS != nil, "access_control", opts.Access != nil)
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	// Closing the registry first answers the long-polls (503 closed), so
	// that the shutdown does not wait for them.
	closeErr := r.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	log.Info("registry stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("serving: %w", serveErr), closeErr)
	}
	return closeErr
}
