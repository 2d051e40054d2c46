package l4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// maxHello bounds how much of a client's first bytes are held while
// looking for the TLS ClientHello (a ClientHello is at most a few KiB;
// post-quantum key shares push it past 1 KiB, so allow a generous bound).
const maxHello = 16 << 10

var errHelloSeen = errors.New("l4: client hello read")

// PeekSNI reads the TLS ClientHello at the start of r and returns the
// server name it asks for ("" when it has none) and every byte read, to
// be replayed to the upstream. It uses crypto/tls's own parser on a
// connection that cannot write, so nothing reaches the client. A stream
// that is not TLS, or a hello larger than 16 KiB, is an error.
func PeekSNI(r io.Reader) (name string, read []byte, err error) {
	var buf bytes.Buffer
	lr := &io.LimitedReader{R: r, N: maxHello}
	conn := &peekConn{r: io.TeeReader(lr, &buf)}
	var hello *tls.ClientHelloInfo
	err = tls.Server(conn, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = h
			return nil, errHelloSeen
		},
	}).Handshake()
	if hello == nil {
		if lr.N <= 0 {
			return "", buf.Bytes(), errors.New("l4: no TLS client hello in the first 16 KiB")
		}
		if err == nil {
			err = errors.New("l4: handshake ended without a client hello")
		}
		return "", buf.Bytes(), err
	}
	if !validServerName(hello.ServerName) {
		return "", buf.Bytes(), fmt.Errorf("l4: client hello names server %q, which is not a DNS host name", hello.ServerName)
	}
	return hello.ServerName, buf.Bytes(), nil
}

// validServerName reports whether name is a DNS host name as RFC 6066
// requires of host_name: letters, digits, '-', '_' and '.' only, labels of
// 1-63 bytes, 253 bytes in all. crypto/tls passes control bytes such as
// NUL through, and a name routed on or logged must not carry them.
func validServerName(name string) bool {
	if name == "" {
		return true
	}
	if len(name) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// peekConn is a net.Conn that only reads; writes (the server's alert)
// are dropped.
type peekConn struct{ r io.Reader }

func (c *peekConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *peekConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *peekConn) Close() error                       { return nil }
func (c *peekConn) LocalAddr() net.Addr                { return nil }
func (c *peekConn) RemoteAddr() net.Addr               { return nil }
func (c *peekConn) SetDeadline(t time.Time) error      { return nil }
func (c *peekConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *peekConn) SetWriteDeadline(t time.Time) error { return nil }

// matchName reports whether host matches pattern: an exact name or a
// "*.example.com" wildcard covering exactly one more label.
func matchName(pattern, host string) bool {
	if len(pattern) > 2 && pattern[0] == '*' && pattern[1] == '.' {
		i := bytes.IndexByte([]byte(host), '.')
		return i > 0 && equalFold(host[i:], pattern[1:])
	}
	return equalFold(pattern, host)
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }
