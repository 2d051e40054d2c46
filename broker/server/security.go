package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker/access"
)

// security is what the listeners enforce: TLS and the users.
type security struct {
	tls  *tls.Config           // nil: plain TCP
	auth *access.Authenticator // nil: open
}

func (s security) tlsShown() string {
	switch {
	case s.tls == nil:
		return "off"
	case s.tls.ClientAuth == tls.RequireAndVerifyClientCert:
		return "on(client-cert-required)"
	case s.tls.ClientCAs != nil:
		return "on(client-ca)"
	}
	return "on"
}

func (s security) authShown() string {
	if s.auth == nil {
		return "off"
	}
	return "users"
}

// security merges the --tls-* flags into the file's tls block, reads the
// certificates and the users' secrets, and refuses an open broker on an
// address other machines can reach.
func (o Options) security(fc FileConfig) (security, error) {
	var sec security
	t := fc.TLS
	if o.TLSCert != "" || o.TLSKey != "" || o.TLSClientCA != "" {
		merged := TLSConfig{}
		if t != nil {
			merged = *t
		}
		if o.TLSCert != "" {
			merged.Cert = o.TLSCert
		}
		if o.TLSKey != "" {
			merged.Key = o.TLSKey
		}
		if o.TLSClientCA != "" {
			merged.ClientCA = o.TLSClientCA
		}
		if err := merged.Validate(); err != nil {
			return sec, &UsageError{Err: fmt.Errorf("--tls-cert, --tls-key, --tls-client-ca: %w", err)}
		}
		t = &merged
	}
	if t != nil {
		tc, err := t.Load()
		if err != nil {
			return sec, err
		}
		sec.tls = tc
	}
	if fc.Auth != nil {
		a, err := access.New(*fc.Auth, access.Options{})
		if err != nil {
			if fc.src != nil {
				return sec, fc.src.Wrap("auth", err)
			}
			return sec, fmt.Errorf("auth: %w", err)
		}
		if a.NeedsClientCerts() && (sec.tls == nil || sec.tls.ClientCAs == nil) {
			return sec, errors.New("auth: users log in by certificate (certs:) but no tls.client_ca (or --tls-client-ca) verifies client certificates")
		}
		sec.auth = a
		return sec, nil
	}
	for _, l := range []struct{ flag, addr string }{{"--http", o.HTTP}, {"--listen", o.Listen}} {
		if l.addr != "" && !isLoopback(l.addr) {
			return sec, &UsageError{Err: fmt.Errorf("%s %q is not a loopback address and the broker has no auth: block: anyone who can reach it could publish, consume and delete everything; add users under auth: in the config file (docs/broker.md, Security) or listen on 127.0.0.1", l.flag, l.addr)}
		}
	}
	return sec, nil
}

// isLoopback reports whether a listen address binds only to loopback:
// 127.0.0.0/8, ::1 or localhost (an empty or wildcard host does not).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HashPassword reads a password (its first line) from in and prints its
// bcrypt hash for a user's password_hash.
func HashPassword(in io.Reader, out io.Writer) error {
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("empty password on stdin: expected e.g. printf %s \"$PASSWORD\" | switchyard broker hash-password")
	}
	if len(pw) > 72 {
		return errors.New("password longer than 72 bytes: bcrypt ignores the rest; use a token instead")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, string(h))
	return err
}
