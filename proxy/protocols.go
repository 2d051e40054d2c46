package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Upstream protocols (PoolConfig.Protocol).
const (
	// ProtocolAuto is HTTP/1.1 to plain targets and, over TLS, HTTP/2 when
	// the target offers it by ALPN, else HTTP/1.1.
	ProtocolAuto = ""
	// ProtocolHTTP1 is HTTP/1.1 only (over TLS too: ALPN offers http/1.1).
	ProtocolHTTP1 = "http1"
	// ProtocolH2 is HTTP/2 only: over TLS, ALPN offers h2 alone.
	ProtocolH2 = "h2"
	// ProtocolH2C is cleartext HTTP/2 by prior knowledge (RFC 9113 3.3),
	// for gRPC servers without TLS. Not with TLS.
	ProtocolH2C = "h2c"
)

// ValidProtocol checks an upstream protocol against its use of TLS.
func ValidProtocol(p string, withTLS bool) error {
	switch p {
	case ProtocolAuto, ProtocolHTTP1:
		return nil
	case ProtocolH2:
		if !withTLS {
			return fmt.Errorf("protocol %q needs tls (for cleartext HTTP/2 use h2c)", p)
		}
		return nil
	case ProtocolH2C:
		if withTLS {
			return fmt.Errorf("protocol %q is cleartext HTTP/2: with tls use h2 (or leave protocol out: h2 is negotiated by ALPN)", p)
		}
		return nil
	}
	return fmt.Errorf("unknown protocol %q: expected http1, h2 or h2c (default: http1, or h2 by ALPN over tls)", p)
}

// ALPN returns the protocols a TLS client offers for protocol p.
func ALPN(p string) []string {
	switch p {
	case ProtocolHTTP1:
		return []string{"http/1.1"}
	case ProtocolH2:
		return []string{"h2"}
	}
	return []string{"h2", "http/1.1"}
}

// configureProtocols sets tr up for cfg's protocol and TLS: HTTP/2 over
// TLS by ALPN, h2c by prior knowledge, or HTTP/1.1. It reports whether the
// h1 fast path may serve the pool (plain HTTP/1.1 only).
func configureProtocols(tr *http.Transport, cfg PoolConfig, certAsked *atomic.Bool) (fastPath bool) {
	tr.Protocols = new(http.Protocols)
	// Ping an HTTP/2 connection that has been silent for a while, and
	// close it when the ping goes unanswered: a target that vanished
	// without a FIN must not hold every stream multiplexed on it.
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
	switch {
	case cfg.TLS != nil:
		tc := cfg.TLS.Clone()
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = ALPN(cfg.Protocol)
		}
		if len(tc.Certificates) == 0 && tc.GetClientCertificate == nil {
			// Remember that a target asked for a client certificate the
			// upstream has none of: with TLS 1.3 its refusal comes after
			// the handshake, and HTTP/2 reports it only as a connection
			// that "could not be established".
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				certAsked.Store(true)
				return &tls.Certificate{}, nil
			}
		}
		tr.TLSClientConfig = tc
		tr.TLSHandshakeTimeout = orDefault(cfg.Timeout.Connect, DefaultConnectTimeout)
		tr.Protocols.SetHTTP1(cfg.Protocol != ProtocolH2)
		tr.Protocols.SetHTTP2(cfg.Protocol != ProtocolHTTP1)
		return false
	case cfg.Protocol == ProtocolH2C:
		tr.Protocols.SetUnencryptedHTTP2(true)
		return false
	}
	tr.Protocols.SetHTTP1(true)
	return true
}

// schemeOf is the URL scheme of requests to a pool's targets.
func schemeOf(t *tls.Config) string {
	if t != nil {
		return "https"
	}
	return "http"
}

// gRPC deadlines (grpc-timeout, PROTOCOL-HTTP2.md): at most 8 digits and a
// unit.
const maxGRPCTimeoutDigits = 8

// parseGRPCTimeout reads a grpc-timeout value ("100m", "5S", "1H").
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > maxGRPCTimeoutDigits+1 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	digits := v[:len(v)-1]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	// 99999999 hours overflows a Duration: saturate.
	if n > int64((1<<63-1)/unit) {
		return 1<<63 - 1, true
	}
	return time.Duration(n) * unit, true
}

// formatGRPCTimeout writes d as a grpc-timeout value in the finest unit
// that keeps it within 8 digits, rounding up so that the upstream's
// deadline is never earlier than d.
func formatGRPCTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit time.Duration
		c    byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}} {
		n := (d + u.unit - 1) / u.unit
		if n < 1e8 {
			return strconv.FormatInt(int64(n), 10) + string(u.c)
		}
	}
	return "99999999H"
}

// boundGRPCTimeout makes the grpc-timeout sent upstream the shorter of the
// client's and what is left of the route's response timeout, so that a
// gRPC server stops working when the gateway stops waiting. The route's
// bound is sent a little short (a tenth, at most 100ms) so that the
// server's own DEADLINE_EXCEEDED, with its trailers, reaches the client
// before the gateway cuts the call.
// It returns the timeout the upstream got.
func boundGRPCTimeout(h http.Header, left time.Duration) time.Duration {
	return (*reqState)(nil).boundGRPCTimeout(h, left)
}

// boundGRPCTimeout is boundGRPCTimeout setting the field with
// st.setHeader (st may be nil).
func (st *reqState) boundGRPCTimeout(h http.Header, left time.Duration) time.Duration {
	left -= min(left/10, 100*time.Millisecond)
	if d, ok := parseGRPCTimeout(h.Get("Grpc-Timeout")); ok && d <= left {
		return d
	}
	st.setHeader(h, "Grpc-Timeout", formatGRPCTimeout(left))
	return left
}
