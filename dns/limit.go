package dns

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// limitListener closes accepted TCP connections past a total bound and a
// per-client bound (IPv4 address, or IPv6 /64), so a flood of idle or
// trickling connections cannot take every file descriptor.
type limitListener struct {
	net.Listener
	max, perClient int
	log            *slog.Logger

	mu      sync.Mutex
	open    int
	clients map[netip.Addr]int
	refused atomic.Uint64
}

func newLimitListener(l net.Listener, max, perClient int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: l, max: max, perClient: perClient, log: log, clients: map[netip.Addr]int{}}
}

// Accept returns the next connection within the bounds; the ones past
// them are closed here and never reach the DNS server.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientOf(c.RemoteAddr())
		l.mu.Lock()
		ok := l.open < l.max && l.clients[key] < l.perClient
		if ok {
			l.open++
			l.clients[key]++
		}
		l.mu.Unlock()
		if ok {
			return &limitConn{Conn: c, l: l, key: key}, nil
		}
		if n := l.refused.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th ... refusal
			l.log.Warn("dns tcp connection refused: too many open", "client", c.RemoteAddr().String(),
				"max_tcp_connections", l.max, "max_tcp_connections_per_client", l.perClient, "refused_so_far", n)
		}
		c.Close()
	}
}

func (l *limitListener) release(key netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.clients[key]--; l.clients[key] <= 0 {
		delete(l.clients, key)
	}
	l.mu.Unlock()
}

// clientOf is the per-client key of a remote address.
func clientOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

type limitConn struct {
	net.Conn
	l    *limitListener
	key  netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}
