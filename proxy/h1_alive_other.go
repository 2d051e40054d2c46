//go:build !unix

package proxy

// alive cannot peek at the socket here; a connection that turns out to be
// closed fails and is retried on a new one.
func (c *h1Conn) alive() bool { return c.br.Buffered() == 0 }
