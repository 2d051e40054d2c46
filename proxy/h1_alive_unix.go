//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// peeker checks an idle connection's socket without blocking. It is made
// once per connection, so a check allocates nothing.
type peeker struct {
	raw  syscall.RawConn // nil when the connection has no file descriptor
	fn   func(fd uintptr) bool
	open bool // the result of the last fn
	buf  [1]byte
}

func newPeeker(nc net.Conn) peeker {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return peeker{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return peeker{}
	}
	return peeker{raw: raw}
}

// alive reports whether an idle connection may be reused, with one
// non-blocking peek at the socket: nothing to read means open and clean;
// EOF means the server closed it; bytes mean an answer nobody asked for
// (sent after the last response ended), which must not be taken for the
// next request's.
func (c *h1Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	p := &c.peek
	if p.raw == nil {
		return true // cannot tell; a failure is retried on a new connection
	}
	if p.fn == nil {
		p.fn = func(fd uintptr) bool {
			_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			p.open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
			return true // never wait
		}
	}
	p.open = false
	err := p.raw.Read(p.fn)
	return err == nil && p.open
}
