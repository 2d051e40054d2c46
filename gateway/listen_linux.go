package gateway

import (
	"context"
	"net"
	"syscall"
)

// listenTCP listens on addr for the proxy listener. TCP keep-alive is
// set up once, on the listening socket, with net's defaults (on after
// 15s idle, probes every 15s, 9 of them): Linux copies the options to
// every accepted socket. Go's default sets the same four options with a
// system call each on every accepted connection (5% of the gateway's
// CPU for TLS connections with one request each, docs/benchmarks.md
// "tls17h").
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			for _, o := range keepAliveOptions {
				if e := syscall.SetsockoptInt(int(fd), o.level, o.name, o.value); e != nil && err == nil {
					err = e
				}
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// keepAliveOptions are net's keep-alive defaults (net.KeepAliveConfig's
// zero value), as options of the listening socket.
var keepAliveOptions = []struct{ level, name, value int }{
	{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
	{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
	{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
	{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
}
