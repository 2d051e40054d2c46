// Package dns is an authoritative DNS server and global server load
// balancer: it serves configured zones and answers load-balanced names with
// the healthy sites of a pool, chosen by weight, by the client's region
// (source address or EDNS Client Subnet) and by measured probe latency.
//
// Health and latency come from the health package's active checks over
// upstream.Targets, and weighted choice from the balance package, so a
// check or a weight means the same here as in the L7 gateway. Messages are
// encoded and served with github.com/miekg/dns over UDP and TCP.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/upstream"
)

// Options are the dependencies of a Server.
type Options struct {
	// Logger receives health changes and serving errors. Default: discard.
	Logger *slog.Logger
}

// Server answers DNS queries from a compiled Config. Create it with New,
// then call Run (or Serve with your own sockets). Safe for concurrent use.
type Server struct {
	t       *tables
	log     *slog.Logger
	checker *health.Checker
}

var _ mdns.Handler = (*Server)(nil)

// New validates cfg and builds a Server; it does not listen yet.
func New(cfg Config, opts Options) (*Server, error) {
	t, err := compile(&cfg, nil)
	if err != nil {
		return nil, err
	}
	s := &Server{t: t, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	targets := make([]*upstream.Target, len(t.sites))
	for i, st := range t.sites {
		targets[i] = st.target
	}
	s.checker, err = health.NewChecker(t.check, targets, health.CheckerOptions{
		Logger: s.log,
		OnCheck: func(tg *upstream.Target, rtt time.Duration, err error) {
			if err == nil {
				tg.ObserveLatency(time.Now(), rtt)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("building health checker: %w", err)
	}
	return s, nil
}

// Listen returns the configured listen address (after defaults).
func (s *Server) Listen() string { return s.t.listen }

// Run listens on the configured address (UDP and TCP) and serves until ctx
// is done.
func (s *Server) Run(ctx context.Context) error {
	pc, err := net.ListenPacket("udp", s.t.listen)
	if err != nil {
		return fmt.Errorf("listening on udp %s: %w", s.t.listen, err)
	}
	l, err := net.Listen("tcp", s.t.listen)
	if err != nil {
		pc.Close()
		return fmt.Errorf("listening on tcp %s: %w", s.t.listen, err)
	}
	return s.Serve(ctx, pc, l)
}

// Serve answers queries on pc (UDP) and l (TCP), and runs the sites' health
// checks, until ctx is done; then it closes both and returns nil. Either
// socket may be nil.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var servers []*mdns.Server
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if u, ok := ownUDP(pc); ok {
		// The server's own loop (udp.go): batched system calls, no
		// goroutine per query, and the packed-answer cache (fast.go).
		wg.Go(func() {
			if err := s.serveUDP(ctx, u); err != nil {
				errs <- err
				cancel()
			}
		})
	} else if pc != nil {
		servers = append(servers, &mdns.Server{PacketConn: pc, Handler: s, UDPSize: mdns.MaxMsgSize, MsgAcceptFunc: accept})
	}
	if l != nil {
		l = newLimitListener(l, s.t.maxTCP, s.t.maxTCPPerClient, s.log)
		servers = append(servers, &mdns.Server{Listener: l, Handler: s, MsgAcceptFunc: accept})
	}
	wg.Go(func() { _ = s.checker.Run(ctx) })
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
				cancel()
			}
		})
		select {
		case <-started:
		case <-ctx.Done():
		}
	}
	s.log.Info("dns listening", "udp", addrOf(pc), "tcp", addrOfL(l))
	<-ctx.Done()
	if _, ok := ownUDP(pc); ok {
		pc.Close() // stops the UDP workers
	}
	for _, srv := range servers {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.ShutdownContext(sctx)
		c()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func addrOf(pc net.PacketConn) string {
	if pc == nil {
		return ""
	}
	return pc.LocalAddr().String()
}

func addrOfL(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// accept is the early check of a request header (before unpacking): only
// queries with one question and no answer or authority records are served.
func accept(dh mdns.Header) mdns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR: a response, never answer it
		return mdns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != mdns.OpcodeQuery {
		return mdns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return mdns.MsgReject
	}
	return mdns.MsgAccept
}

// ServeDNS answers one query; it implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		src = ap.Addr()
	}
	resp := s.answer(req, src, udp, nil)
	if resp == nil {
		return
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns write failed", "client", w.RemoteAddr().String(), "err", err)
	}
}
