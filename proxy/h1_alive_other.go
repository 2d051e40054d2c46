//go:build !unix

package proxy

import "net"

type peeker struct{}

func newPeeker(net.Conn) peeker { return peeker{} }

// alive cannot peek at the socket here; a connection that turns out to be
// closed fails and is retried on a new one, and bytes an upstream sends
// after a response are only caught when they arrived with it.
func (c *h1Conn) alive() bool { return c.br.Buffered() == 0 }
