package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
	"github.com/switchyard/switchyard/tlsconf"
)

// Credentials log a client in to a broker with users (its config's auth:
// block). Token wins over User and Password; with neither, a TLS client
// certificate (in the TLS config) logs in. The zero value sends none.
type Credentials struct {
	User     string
	Password string
	Token    string
}

func (c Credentials) empty() bool { return c.Token == "" && c.User == "" && c.Password == "" }

// String never shows the secret.
func (c Credentials) String() string {
	switch {
	case c.Token != "":
		return "token"
	case c.User != "":
		return fmt.Sprintf("user %q", c.User)
	}
	return "none"
}

// LoadTLS builds a client TLS config: caFile (PEM) verifies the broker's
// certificate (empty: the system's roots), certFile and keyFile (both or
// neither) are the client certificate for mTLS. serverName overrides the
// name checked in the broker's certificate (empty: the dialled host).
func LoadTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("broker CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker CA %q: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		fc, err := tlsconf.LoadFileCert(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.GetClientCertificate = fc.GetClientCertificate // re-read when renewed
	}
	return tc, nil
}

// errLogin marks a refused login: Conn does not retry it.
type errLogin struct{ err error }

func (e *errLogin) Error() string { return e.err.Error() }
func (e *errLogin) Unwrap() error { return e.err }

// secure runs the TLS handshake (if opts.TLS) and the login (if
// credentials or a client certificate) on a fresh connection, within the
// dial timeout. On error nc is closed.
func secure(ctx context.Context, nc net.Conn, addr string, opts *Options) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if opts.TLS != nil {
		cfg := opts.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with broker %s: %w", addr, err)
		}
		nc = tc
	}
	cert := opts.TLS != nil && (len(opts.TLS.Certificates) > 0 || opts.TLS.GetClientCertificate != nil)
	if opts.Credentials.empty() && !cert {
		return nc, nil
	}
	req := wire.AuthReq{Method: wire.AuthCertificate}
	switch {
	case opts.Credentials.Token != "":
		req.Method, req.Secret = wire.AuthToken, []byte(opts.Credentials.Token)
	case !opts.Credentials.empty():
		req.Method, req.User, req.Secret = wire.AuthPassword, opts.Credentials.User, []byte(opts.Credentials.Password)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	err := login(nc, &req)
	nc.SetDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("logging in to broker %s (%s): %w", addr, opts.Credentials, err)
	}
	return nc, nil
}

// login sends an Auth frame and reads its answer, byte by byte exactly
// (nothing after it is consumed: the link's reader takes over).
func login(nc net.Conn, req *wire.AuthReq) error {
	if _, err := nc.Write(wire.AppendFrame(nil, wire.Auth, 0, wire.AppendAuthReq(nil, req))); err != nil {
		return err
	}
	var h [9]byte
	if _, err := io.ReadFull(nc, h[:]); err != nil {
		return fmt.Errorf("reading the login answer: %w (a broker closes the connection after a refused login)", err)
	}
	n := int(binary.BigEndian.Uint32(h[:4]))
	if n < 5 || n > 1<<16 {
		return fmt.Errorf("%w: login answer of %d bytes", wire.ErrMalformed, n)
	}
	body := make([]byte, n-5)
	if _, err := io.ReadFull(nc, body); err != nil {
		return fmt.Errorf("reading the login answer: %w", err)
	}
	switch wire.Type(h[4]) {
	case wire.AuthOK:
		_, err := wire.DecodeAuthOK(body)
		return err
	case wire.Err:
		err := decodeErr(body)
		var we *wire.Error
		if errors.As(err, &we) || errors.Is(err, broker.ErrInvalid) {
			if strings.Contains(err.Error(), "unknown frame type") {
				return &errLogin{fmt.Errorf("the broker does not know logins (it is older than this client, or has no auth: block and predates it): %w", err)}
			}
		}
		return &errLogin{err}
	}
	return fmt.Errorf("%w: login answered with frame type %#x", wire.ErrMalformed, h[4])
}
