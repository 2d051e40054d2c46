package l4

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

// DefaultUDPIdleTimeout ends a UDP session after this long without a
// datagram either way.
const DefaultUDPIdleTimeout = 30 * time.Second

// DefaultMaxUDPSessions bounds a UDP listener's sessions when
// MaxSessions is 0. A session costs a socket, a goroutine and a 64 KiB
// buffer, and a datagram from any new (easily spoofed) source address
// opens one: unbounded, a flood of such datagrams exhausts file
// descriptors and memory (4096 sessions hold 256 MiB of buffers).
const DefaultMaxUDPSessions = 4096

// maxDatagram is the largest UDP payload.
const maxDatagram = 64 << 10

// UDPConfig configures a UDP listener.
type UDPConfig struct {
	Name    string
	Backend *Backend
	// ProxyProtocol "v2" prefixes every datagram sent upstream with a
	// PROXY v2 header (DGRAM); v1 cannot carry UDP.
	ProxyProtocol string
	// IdleTimeout ends a session with no datagram either way for this
	// long. Default 30s.
	IdleTimeout time.Duration
	// MaxSessions in total (0: DefaultMaxUDPSessions, negative: no
	// limit) and per client (an IPv4 address or an IPv6 /64; 0: no
	// limit). Datagrams that would open
	// a session past a limit are dropped.
	MaxSessions, MaxSessionsPerClient int
	Log                               *slog.Logger
}

// UDPServer forwards UDP datagrams: one session per client address, each
// with its own upstream socket, so answers go back to the right client.
type UDPServer struct {
	cfg     UDPConfig
	log     *slog.Logger
	backend atomic.Pointer[Backend]

	mu        sync.Mutex
	sessions  map[netip.AddrPort]*udpSession
	perClient map[netip.Addr]int
	closed    bool
	wg        sync.WaitGroup

	accepted, rejected, connFail, active atomic.Uint64
	bytesIn, bytesOut                    atomic.Uint64
}

type udpSession struct {
	up      *net.UDPConn
	target  *upstream.Target
	outlier Observer
	last    atomic.Int64
}

// NewUDP checks cfg and returns a server.
func NewUDP(cfg UDPConfig) (*UDPServer, error) {
	if cfg.Backend == nil {
		return nil, errors.New("l4: a UDP listener needs a backend")
	}
	if cfg.ProxyProtocol == ProxyV1 {
		return nil, errors.New("l4: proxy_protocol v1 carries TCP only; use v2 for UDP")
	}
	if cfg.ProxyProtocol != ProxyNone && cfg.ProxyProtocol != ProxyV2 {
		return nil, errors.New("l4: proxy_protocol: expected v2 for UDP")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultUDPIdleTimeout
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxUDPSessions
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &UDPServer{cfg: cfg, log: cfg.Log.With("l4", cfg.Name), sessions: map[netip.AddrPort]*udpSession{}, perClient: map[netip.Addr]int{}}
	s.backend.Store(cfg.Backend)
	return s, nil
}

// Update replaces the backend for new sessions (a config reload).
func (s *UDPServer) Update(b *Backend) error {
	if b == nil {
		return errors.New("l4: a UDP listener needs a backend")
	}
	s.backend.Store(b)
	return nil
}

// Stats returns the counters (Accepted counts sessions).
func (s *UDPServer) Stats() Stats {
	return Stats{Active: s.active.Load(), Accepted: s.accepted.Load(), Rejected: s.rejected.Load(),
		ConnectFailures: s.connFail.Load(), BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load()}
}

// Serve reads datagrams from pc until it is closed (Close).
func (s *UDPServer) Serve(pc *net.UDPConn) error {
	stop := make(chan struct{})
	defer close(stop)
	go s.sweep(stop)
	buf := make([]byte, maxDatagram)
	var hdr []byte
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		sess := s.session(pc, from)
		if sess == nil {
			continue
		}
		sess.last.Store(time.Now().UnixNano())
		out := buf[:n]
		if s.cfg.ProxyProtocol == ProxyV2 {
			hdr, _ = AppendProxyHeader(hdr[:0], ProxyV2, net.UDPAddrFromAddrPort(from), pc.LocalAddr(), true)
			hdr = append(hdr, out...)
			out = hdr
		}
		if _, err := sess.up.Write(out); err == nil {
			s.bytesIn.Add(uint64(n))
		}
	}
}

// session finds or opens the session of client.
func (s *UDPServer) session(pc *net.UDPConn, client netip.AddrPort) *udpSession {
	s.mu.Lock()
	if sess := s.sessions[client]; sess != nil || s.closed {
		s.mu.Unlock()
		return sess
	}
	if (s.cfg.MaxSessions > 0 && len(s.sessions) >= s.cfg.MaxSessions) ||
		(s.cfg.MaxSessionsPerClient > 0 && s.perClient[clientKey(client.Addr())] >= s.cfg.MaxSessionsPerClient) {
		s.mu.Unlock()
		s.rejected.Add(1)
		return nil
	}
	s.mu.Unlock()
	req := pickRequest(net.UDPAddrFromAddrPort(client), "")
	var tried upstream.Tried
	var up *net.UDPConn
	var t *upstream.Target
	be := s.backend.Load()
	for range 3 {
		t = be.Policy.Pick(req, tried)
		if t == nil {
			s.connFail.Add(1)
			return nil
		}
		tried.Add(t.Index)
		raddr, err := net.ResolveUDPAddr("udp", t.Address)
		if err == nil {
			up, err = net.DialUDP("udp", nil, raddr)
		}
		if err == nil {
			break
		}
		s.connFail.Add(1)
		up = nil
	}
	if up == nil {
		return nil
	}
	t.Begin()
	sess := &udpSession{up: up, target: t, outlier: be.Outlier}
	sess.last.Store(time.Now().UnixNano())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		up.Close()
		t.Done(false)
		return nil
	}
	s.sessions[client] = sess
	s.perClient[clientKey(client.Addr())]++
	s.mu.Unlock()
	s.accepted.Add(1)
	s.active.Add(1)
	s.wg.Add(1)
	go s.replies(pc, client, sess)
	return sess
}

// replies sends the upstream's datagrams back to the client until the
// session ends. A refused upstream (ICMP port unreachable) counts as a
// failure for outlier detection and ends the session.
func (s *UDPServer) replies(pc *net.UDPConn, client netip.AddrPort, sess *udpSession) {
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	failed := false
	for {
		n, err := sess.up.Read(buf)
		if err != nil {
			failed = !errors.Is(err, net.ErrClosed)
			break
		}
		sess.last.Store(time.Now().UnixNano())
		if _, err := pc.WriteToUDPAddrPort(buf[:n], client); err == nil {
			s.bytesOut.Add(uint64(n))
		}
	}
	if sess.outlier != nil {
		sess.outlier.Observe(sess.target, failed, time.Now())
	}
	s.end(client, sess, failed)
}

func (s *UDPServer) end(client netip.AddrPort, sess *udpSession, failed bool) {
	s.mu.Lock()
	if s.sessions[client] == sess {
		delete(s.sessions, client)
		key := clientKey(client.Addr())
		if s.perClient[key]--; s.perClient[key] <= 0 {
			delete(s.perClient, key)
		}
		s.active.Add(^uint64(0))
		sess.target.Done(failed)
	}
	s.mu.Unlock()
	sess.up.Close()
}

// sweep closes idle sessions.
func (s *UDPServer) sweep(stop <-chan struct{}) {
	tick := time.NewTicker(max(s.cfg.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s.mu.Lock()
			for _, sess := range s.sessions {
				if now.Sub(time.Unix(0, sess.last.Load())) >= s.cfg.IdleTimeout {
					sess.up.Close() // replies() ends the session
				}
			}
			s.mu.Unlock()
		}
	}
}

// Close ends every session; Serve returns once its socket is closed by
// the caller.
func (s *UDPServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, sess := range s.sessions {
		sess.up.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
