// Package l4 is the network load balancer of the notes: TCP and UDP
// connections spread over the same upstream targets, balancing policies,
// active health checks and outlier ejection the L7 gateway uses, so a
// policy or a health check means the same at every layer.
//
// TCP: plain forwarding (zero-copy: Linux splices between the two
// sockets), TLS termination, or routing by the SNI of the ClientHello
// with the TLS passed through untouched; PROXY protocol v1/v2 towards
// upstreams that want the client's address; connection limits in total
// and per client address; an idle timeout over both directions; a
// failed connect tries another target. UDP: sessions keyed by the
// client's address, each with its own upstream socket, ended after an
// idle timeout.
package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/upstream"
)

// Backend is what a listener (or an SNI route) forwards to: a policy
// choosing among targets, and optionally an outlier detector fed with
// connect failures. Both may follow a changing target set (the gateway
// passes views of its pools' current generation).
type Backend struct {
	Name    string
	Policy  balance.Policy
	Outlier Observer // optional
}

// Observer hears each connect's outcome (health.Outlier is one).
type Observer interface {
	Observe(t *upstream.Target, failed bool, now time.Time) (ejected bool)
}

var _ Observer = (*health.Outlier)(nil)

// SNIRoute sends TLS connections whose ClientHello names one of Names
// ("api.example.com", "*.example.com") to Backend, without decrypting.
type SNIRoute struct {
	Names   []string
	Backend *Backend
}

// Defaults.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTCPIdleTimeout = time.Hour
	DefaultHelloTimeout   = 10 * time.Second
	DefaultConnectRetries = 2
)

// TCPConfig configures a TCP listener.
type TCPConfig struct {
	Name string
	// Backend serves connections no SNI route takes. Required unless
	// SNIRoutes cover everything (then unmatched connections are closed).
	Backend *Backend
	// SNIRoutes route TLS passthrough by server name; checked in order.
	SNIRoutes []SNIRoute
	// TLS terminates TLS with this configuration and forwards plain
	// bytes. Not combinable with SNIRoutes.
	TLS *tls.Config
	// ProxyProtocol: "", "v1" or "v2", sent to the upstream first.
	ProxyProtocol string
	// MaxConnections in total and per client (an IPv4 address or an
	// IPv6 /64); 0 means no limit.
	MaxConnections, MaxConnectionsPerClient int
	// ConnectTimeout bounds one connect to a target. Default 5s.
	ConnectTimeout time.Duration
	// ConnectRetries is how many other targets are tried after a failed
	// connect. Default 2; -1 for none.
	ConnectRetries int
	// IdleTimeout closes a connection when neither side sent anything
	// for this long. Default 1h.
	IdleTimeout time.Duration
	// HelloTimeout bounds reading the ClientHello for SNI routing and the
	// TLS handshake when terminating. Default 10s.
	HelloTimeout time.Duration
	// KeepAlive turns on TCP keepalive probes on upstream connections
	// after this much idle time (client connections get it from the
	// listener: ListenConfig). Default 0: off, as HAProxy (option tcpka)
	// and nginx (so_keepalive) have it; IdleTimeout ends idle connections.
	KeepAlive time.Duration
	Log       *slog.Logger
}

// Stats are a listener's counters.
type Stats struct {
	Active, Accepted, Rejected, ConnectFailures uint64
	BytesIn, BytesOut                           uint64 // client->upstream, upstream->client
}

// TCPServer forwards TCP connections. Create with NewTCP.
type TCPServer struct {
	cfg    TCPConfig
	log    *slog.Logger
	dialer net.Dialer
	routes atomic.Pointer[routing] // swapped by Update (config reloads)

	active, accepted, rejected, connFail atomic.Uint64
	bytesIn, bytesOut                    atomic.Uint64

	mu        sync.Mutex
	perClient map[netip.Addr]int
	conns     map[net.Conn]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
	wg        sync.WaitGroup
	spare     spares
}

// NewTCP checks cfg and returns a server.
func NewTCP(cfg TCPConfig) (*TCPServer, error) {
	if cfg.Backend == nil && len(cfg.SNIRoutes) == 0 {
		return nil, errors.New("l4: a TCP listener needs a backend or SNI routes")
	}
	if cfg.TLS != nil && len(cfg.SNIRoutes) > 0 {
		return nil, errors.New("l4: tls termination and sni passthrough routes cannot be combined on one listener")
	}
	if cfg.ProxyProtocol != ProxyNone && cfg.ProxyProtocol != ProxyV1 && cfg.ProxyProtocol != ProxyV2 {
		return nil, fmt.Errorf("l4: proxy_protocol %q: expected v1 or v2", cfg.ProxyProtocol)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultTCPIdleTimeout
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = DefaultHelloTimeout
	}
	if cfg.ConnectRetries == 0 {
		cfg.ConnectRetries = DefaultConnectRetries
	} else if cfg.ConnectRetries < 0 {
		cfg.ConnectRetries = 0
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &TCPServer{
		cfg: cfg, log: cfg.Log.With("l4", cfg.Name),
		dialer:    net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: keepAlive(cfg.KeepAlive)},
		perClient: map[netip.Addr]int{}, conns: map[net.Conn]struct{}{}, listeners: map[net.Listener]struct{}{},
		spare: spares{work: make(chan func()), quit: make(chan struct{})},
	}
	s.routes.Store(&routing{def: cfg.Backend, sni: cfg.SNIRoutes})
	return s, nil
}

// keepAlive is d as net.Dialer and net.ListenConfig take it: 0 (off) is
// -1 there (their 0 turns keepalive on with 15 s).
func keepAlive(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// ListenConfig is the listen configuration of a TCP listener with
// keepalive after d idle (0: off; see TCPConfig.KeepAlive).
func ListenConfig(d time.Duration) *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: keepAlive(d)}
}

// routing is what a connection is forwarded to: replaced whole on Update.
type routing struct {
	def *Backend
	sni []SNIRoute
}

// Update replaces the backends (a config reload with new targets or
// policies). Open connections keep their upstream; new ones use these.
// Whether SNI routing is on cannot change: SNI routes replace SNI routes.
func (s *TCPServer) Update(def *Backend, routes []SNIRoute) error {
	if (len(routes) > 0) != (len(s.cfg.SNIRoutes) > 0) {
		return errors.New("l4: turning SNI routing on or off needs a new listener")
	}
	if def == nil && len(routes) == 0 {
		return errors.New("l4: a TCP listener needs a backend or SNI routes")
	}
	s.routes.Store(&routing{def: def, sni: routes})
	return nil
}

// Stats returns the counters.
func (s *TCPServer) Stats() Stats {
	return Stats{Active: s.active.Load(), Accepted: s.accepted.Load(), Rejected: s.rejected.Load(),
		ConnectFailures: s.connFail.Load(), BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load()}
}

// Serve accepts connections on ln until Close. It returns nil after
// Close, or the accept error.
func (s *TCPServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || resourceExhausted(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.admit(c) {
			s.rejected.Add(1)
			c.Close()
			continue
		}
		s.accepted.Add(1)
		s.wg.Add(1)
		s.spare.run(func() {
			defer s.wg.Done()
			defer s.release(c)
			s.handle(c)
		})
	}
}

// clientIP is the client a connection counts against for the per-client
// limits: its IPv4 address, or the /64 network of its IPv6 address (one
// host usually holds a whole /64, so counting single IPv6 addresses would
// let it dodge the limit by rotating through them).
func clientIP(a net.Addr) netip.Addr {
	if ap, ok := addrPort(a); ok {
		return clientKey(ap.Addr())
	}
	return netip.Addr{}
}

// clientKey maps an address to its per-client key: IPv4 (and IPv4-mapped
// IPv6) as is, other IPv6 addresses to their /64.
func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

func (s *TCPServer) admit(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections {
		return false
	}
	ip := clientIP(c.RemoteAddr())
	if s.cfg.MaxConnectionsPerClient > 0 && s.perClient[ip] >= s.cfg.MaxConnectionsPerClient {
		return false
	}
	s.perClient[ip]++
	s.conns[c] = struct{}{}
	s.active.Add(1)
	return true
}

func (s *TCPServer) release(c net.Conn) {
	c.Close()
	s.mu.Lock()
	ip := clientIP(c.RemoteAddr())
	if s.perClient[ip]--; s.perClient[ip] <= 0 {
		delete(s.perClient, ip)
	}
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Add(^uint64(0))
}

// spares keeps the goroutines of ended connections (up to maxSpare of
// them) waiting for the next connection's work: a new goroutine starts
// with a small stack that a connection's dial and copy grow (a copy of
// the stack each time it doubles), a spare one has it grown already.
type spares struct {
	work chan func() // unbuffered: a send succeeds only to a waiting spare
	idle atomic.Int32
	quit chan struct{} // closed when the server closes: spares end
	once sync.Once
}

// maxSpare bounds the goroutines left waiting after a burst of
// connections ends.
const maxSpare = 256

// run runs f on a waiting spare goroutine, or on a new one.
func (p *spares) run(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

func (p *spares) loop(f func()) {
	for {
		f()
		f = nil // a waiting spare holds nothing of the last connection
		if p.idle.Add(1) > maxSpare {
			p.idle.Add(-1)
			return
		}
		select {
		case f = <-p.work:
			p.idle.Add(-1)
		case <-p.quit:
			p.idle.Add(-1)
			return
		}
	}
}

func (p *spares) stop() { p.once.Do(func() { close(p.quit) }) }

// Close stops accepting and closes every connection at once.
func (s *TCPServer) Close() error {
	defer s.spare.stop()
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown stops accepting and waits for open connections to end by
// themselves until ctx ends, then closes the rest.
func (s *TCPServer) Shutdown(ctx context.Context) error {
	defer s.spare.stop()
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

func (s *TCPServer) handle(c net.Conn) {
	client := c
	var prefix []byte
	rt := s.routes.Load()
	be := rt.def
	var host string
	switch {
	case s.cfg.TLS != nil:
		tc := tls.Server(c, s.cfg.TLS)
		c.SetDeadline(time.Now().Add(s.cfg.HelloTimeout))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("tls handshake", "client", c.RemoteAddr().String(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		client = tc
		host = tc.ConnectionState().ServerName
		if !validServerName(host) {
			s.log.Debug("tls server name is not a host name", "client", c.RemoteAddr().String(), "sni", host)
			return
		}
	case len(s.cfg.SNIRoutes) > 0:
		c.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
		name, read, err := PeekSNI(c)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			s.log.Debug("sni peek", "client", c.RemoteAddr().String(), "err", err)
			return
		}
		prefix, host = read, name
		for _, r := range rt.sni {
			if routeMatches(r, name) {
				be = r.Backend
				break
			}
		}
		if be == nil {
			s.log.Debug("no sni route", "client", c.RemoteAddr().String(), "sni", name)
			return
		}
	}
	up, t := s.connect(be, c.RemoteAddr(), host)
	if up == nil {
		return
	}
	defer up.Close()
	defer t.Done(false)
	if s.cfg.ProxyProtocol != ProxyNone {
		hdr, err := AppendProxyHeader(nil, s.cfg.ProxyProtocol, c.RemoteAddr(), c.LocalAddr(), false)
		if err != nil {
			return
		}
		prefix = append(hdr, prefix...)
	}
	if len(prefix) > 0 {
		up.SetWriteDeadline(time.Now().Add(s.cfg.ConnectTimeout))
		if _, err := up.Write(prefix); err != nil {
			return
		}
		up.SetWriteDeadline(time.Time{})
	}
	s.pipe(client, up)
}

func routeMatches(r SNIRoute, name string) bool {
	for _, n := range r.Names {
		if matchName(n, name) {
			return true
		}
	}
	return false
}

// connect picks a target and dials it, trying others after a failure.
func (s *TCPServer) connect(be *Backend, client net.Addr, host string) (net.Conn, *upstream.Target) {
	req := pickRequest(client, host)
	var tried upstream.Tried
	for attempt := 0; attempt <= s.cfg.ConnectRetries; attempt++ {
		t := be.Policy.Pick(req, tried)
		if t == nil {
			break
		}
		tried.Add(t.Index)
		t.Begin()
		up, err := s.dialer.Dial("tcp", t.Address)
		if be.Outlier != nil {
			be.Outlier.Observe(t, err != nil, time.Now())
		}
		if err == nil {
			return up, t
		}
		t.Done(true)
		s.connFail.Add(1)
		s.log.Debug("connect", "target", t.Address, "err", err)
	}
	return nil, nil
}

// pickRequest is what a balance.Policy sees of a connection: the client
// address (client_ip hashing) and the SNI as the host (header hashing).
// No header map: the policies read headers from a nil map as empty.
func pickRequest(client net.Addr, host string) *http.Request {
	return &http.Request{Method: "CONNECT", RemoteAddr: client.String(), Host: host}
}

// pipe copies both ways until both directions end (half-closes are
// passed on) or the connection is idle for IdleTimeout. The upstream to
// client direction runs on the calling goroutine (one goroutine less to
// start per connection).
func (s *TCPServer) pipe(client, up net.Conn) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	in, out := &flow{src: client, dst: up}, &flow{src: up, dst: client}
	done := make(chan struct{}, 1)
	s.spare.run(func() {
		n := s.copyDir(in, out, &last)
		s.bytesIn.Add(uint64(n))
		done <- struct{}{}
	})
	n := s.copyDir(out, in, &last)
	s.bytesOut.Add(uint64(n))
	<-done
}

// chunk is how much one splice call may move before the idle clock is
// checked again. A step's write must finish within twice IdleTimeout,
// so a peer must read at least chunk bytes per two IdleTimeouts.
const chunk = 64 << 10

// smallBuf is the buffer a direction reads into before it splices: a
// short connection (a request and its answer of a few bytes) costs a
// read and a write per step instead of a splice into a pipe and one out
// of it. A read that fills the buffer marks the direction as bulk, and
// from then on it splices (zero-copy on Linux).
const smallBuf = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}

// flow is one direction of a connection.
type flow struct {
	src, dst net.Conn
	// poked: the other direction timed out and asks this one to count
	// the bytes of its copy in progress (cut short by a past deadline).
	poked atomic.Bool
	ended atomic.Bool
}

// copyDir copies f.src to f.dst. Each step reads under a deadline of
// IdleTimeout from now; io.CopyN over TCP connections splices on Linux,
// so the bytes of a step are only seen when it returns. A step that
// times out with nothing moved for a whole IdleTimeout does not end the
// connection by itself: the other direction may be mid-step (a slow
// one-way stream). It pokes the other direction to return and count its
// bytes; the poked one ends the connection when it moved nothing either,
// and so does the poker when the poke is still unanswered at its next
// timeout (the other way is stuck in a write no one reads).
func (s *TCPServer) copyDir(f, other *flow, last *atomic.Int64) int64 {
	defer f.ended.Store(true)
	var total int64
	bp := bufPool.Get().(*[]byte)
	defer func() {
		if bp != nil {
			bufPool.Put(bp)
		}
	}()
	for {
		start := time.Now()
		f.src.SetReadDeadline(start.Add(s.cfg.IdleTimeout))
		if f.poked.Load() {
			f.src.SetReadDeadline(time.Now()) // a poke the line above overrode
		}
		// A write to a peer that reads nothing would block forever, and
		// with both peers not reading no read deadline ever fires. The
		// write deadline is later than the read one, so a step that
		// times out after it was stuck writing.
		f.dst.SetWriteDeadline(start.Add(2 * s.cfg.IdleTimeout))
		var n int64
		var err error
		// small: the step read and wrote (not spliced), and wrote says
		// whether its error is the write's (dst failed) or the read's.
		small, wrote := bp != nil, false
		if small {
			n, wrote, err = copyStep(f.dst, f.src, *bp)
			if n == smallBuf { // bulk: splice from now on
				bufPool.Put(bp)
				bp = nil
			}
		} else {
			n, err = io.CopyN(f.dst, f.src, chunk)
		}
		poked := f.poked.Swap(false)
		total += n
		if n > 0 {
			last.Store(time.Now().UnixNano())
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && time.Since(start) < 2*s.cfg.IdleTimeout {
			if idle := time.Since(time.Unix(0, last.Load())); idle < s.cfg.IdleTimeout {
				continue // one of the directions moved bytes lately
			}
			if !poked && !other.ended.Load() && !other.poked.Load() {
				other.poked.Store(true)
				other.src.SetReadDeadline(time.Now())
				continue
			}
			// Idle both ways, or the other way did not answer a poke for
			// a whole IdleTimeout (stuck writing to a peer that stopped
			// reading): end the whole connection.
			f.dst.Close()
			f.src.Close()
			return total
		}
		if errors.Is(err, io.EOF) {
			// Half-close: tell the other side no more is coming.
			closeWrite(f.dst)
			return total
		}
		// A side that reset the connection has its peer's reset passed
		// on, as HAProxy does: the other side learns of the abort (a
		// graceful close would tell it "request complete"), and the
		// proxy's socket ends at once, without a FIN exchange and a
		// TIME_WAIT socket per connection. (The splice path cannot tell
		// which side failed and closes both gracefully.)
		switch {
		case !small:
		case !wrote && errors.Is(err, syscall.ECONNRESET):
			abort(f.dst)
		case wrote && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
			abort(f.src)
		}
		f.dst.Close()
		f.src.Close()
		return total
	}
}

// abort makes c's close send a reset (SO_LINGER 0) instead of a FIN and
// closes it. Unsent data is dropped: the peer it was for is gone.
func abort(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn() // no close_notify towards a peer that reset
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// copyStep moves one read's worth of src to dst through buf: what
// io.CopyN does for a step, with a read and a write instead of splices.
// A read ending in EOF or an error still passes its bytes on first.
// wrote reports that err came from the write (dst failed), not the read.
func copyStep(dst io.Writer, src io.Reader, buf []byte) (n int64, wrote bool, err error) {
	nr, rerr := src.Read(buf)
	if nr > 0 {
		nw, werr := dst.Write(buf[:nr])
		if werr != nil {
			return int64(nw), true, werr
		}
		if nw < nr {
			return int64(nw), true, io.ErrShortWrite
		}
	}
	if nr == 0 && rerr == nil {
		return 0, false, nil
	}
	return int64(nr), false, rerr
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		c.CloseWrite()
	case *tls.Conn:
		c.CloseWrite()
	default:
		c.Close()
	}
}
