package access

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/switchyard/switchyard/broker"
)

// Challenge is the WWW-Authenticate value of a 401 answer.
const Challenge = `Bearer realm="switchyard broker", Basic realm="switchyard broker"`

// Request authenticates an HTTP request: "Authorization: Bearer TOKEN",
// "Authorization: Basic" with a user and password, or else a verified
// client certificate. The error wraps broker.ErrUnauthorized and never
// contains the credential.
func (a *Authenticator) Request(r *http.Request) (*Principal, error) {
	ip := RemoteIP(r.RemoteAddr)
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		rest = strings.TrimSpace(rest)
		switch {
		case strings.EqualFold(scheme, "Bearer") && rest != "":
			return a.Token(r.Context(), ip, rest)
		case strings.EqualFold(scheme, "Basic"):
			b, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				return nil, fmt.Errorf("%w: Authorization Basic: not base64", broker.ErrUnauthorized)
			}
			user, pass, ok := strings.Cut(string(b), ":")
			if !ok {
				return nil, fmt.Errorf("%w: Authorization Basic: expected user:password", broker.ErrUnauthorized)
			}
			return a.Password(r.Context(), ip, user, pass)
		}
		return nil, fmt.Errorf("%w: Authorization: expected Bearer TOKEN or Basic credentials", broker.ErrUnauthorized)
	}
	if p, ok := a.Certificate(r.TLS); ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w: the broker needs a credential: Authorization: Bearer TOKEN, Basic user:password, or a client certificate it trusts", broker.ErrUnauthorized)
}

// RemoteIP is the host of a host:port address (the address itself if it
// has no port).
func RemoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
