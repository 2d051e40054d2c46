package tlsconf

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/switchyard/switchyard/httpx"
)

// HeaderClientCert carries the verified client certificate's identity to
// upstreams (the name and the Key=Value form Envoy uses). The gateway
// removes any copy a client sends, on every route, and sets it only from
// a certificate it verified itself.
const HeaderClientCert = "X-Forwarded-Client-Cert"

// MaxSANs bounds how many DNS and how many URI names of a certificate are
// forwarded (each); more are left out.
const MaxSANs = 32

// ClientCert is the identity of a verified client certificate as
// forwarded upstream.
type ClientCert struct {
	// Hash is the hex SHA-256 of the leaf certificate (DER).
	Hash string
	// Subject is the subject's distinguished name (RFC 2253 form).
	Subject string
	// CN is the subject's common name.
	CN string
	// DNS and URI are the certificate's DNS and URI subject alternative
	// names (SPIFFE IDs are URIs), at most MaxSANs each.
	DNS []string
	URI []string
}

// FromCertificate takes the identity of a certificate.
func FromCertificate(c *x509.Certificate) ClientCert {
	sum := sha256.Sum256(c.Raw)
	cc := ClientCert{Hash: hex.EncodeToString(sum[:]), Subject: c.Subject.String(), CN: c.Subject.CommonName}
	cc.DNS = c.DNSNames[:min(len(c.DNSNames), MaxSANs)]
	for _, u := range c.URIs[:min(len(c.URIs), MaxSANs)] {
		cc.URI = append(cc.URI, u.String())
	}
	return cc
}

// Format renders the identity as the header value:
//
//	Hash=<hex>;Subject="CN=alice,O=Example";CN="alice";DNS="a.example";URI="spiffe://example/alice"
//
// Every value but Hash is in double quotes; inside them a backslash
// escapes '"' and '\', and \xNN stands for a byte outside printable ASCII
// (control bytes, DEL, and each byte of a non-ASCII UTF-8 character), so
// the value is always a valid header field whatever the certificate holds.
// Empty CN and Subject are left out; DNS and URI repeat per name.
func (cc ClientCert) Format() string {
	var b strings.Builder
	b.WriteString("Hash=")
	b.WriteString(cc.Hash)
	field := func(k, v string) {
		b.WriteString(";" + k + "=\"")
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, "\\x%02x", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	if cc.Subject != "" {
		field("Subject", cc.Subject)
	}
	if cc.CN != "" {
		field("CN", cc.CN)
	}
	for _, d := range cc.DNS {
		field("DNS", d)
	}
	for _, u := range cc.URI {
		field("URI", u)
	}
	return b.String()
}

// ParseClientCert reads a header value written by Format (for upstreams
// in Go, and the tests). Unknown keys are an error, as is anything that
// Format could not have written.
func ParseClientCert(s string) (ClientCert, error) {
	var cc ClientCert
	rest, ok := strings.CutPrefix(s, "Hash=")
	if !ok {
		return cc, fmt.Errorf("client cert header %q: expected it to start with Hash=", clip(s))
	}
	i := strings.IndexByte(rest, ';')
	if i < 0 {
		i = len(rest)
	}
	cc.Hash, rest = rest[:i], rest[i:]
	if len(cc.Hash) != 64 || strings.Trim(cc.Hash, "0123456789abcdef") != "" {
		return cc, fmt.Errorf("client cert header: hash %q: expected 64 lower-case hex digits", clip(cc.Hash))
	}
	for rest != "" {
		rest = rest[1:] // ';'
		eq := strings.Index(rest, "=\"")
		if eq < 0 {
			return cc, fmt.Errorf("client cert header: at %q: expected Key=\"value\"", clip(rest))
		}
		key := rest[:eq]
		v, n, err := unquote(rest[eq+1:])
		if err != nil {
			return cc, fmt.Errorf("client cert header: %s: %w", clip(key), err)
		}
		rest = rest[eq+1+n:]
		if rest != "" && rest[0] != ';' {
			return cc, fmt.Errorf("client cert header: after %s: expected ';', found %q", clip(key), clip(rest))
		}
		switch key {
		case "Subject":
			cc.Subject = v
		case "CN":
			cc.CN = v
		case "DNS":
			cc.DNS = append(cc.DNS, v)
		case "URI":
			cc.URI = append(cc.URI, v)
		default:
			return cc, fmt.Errorf("client cert header: unknown key %q: expected Subject, CN, DNS or URI", clip(key))
		}
	}
	return cc, nil
}

// unquote reads a quoted value at the start of s, returning it and the
// bytes consumed.
func unquote(s string) (string, int, error) {
	if s == "" || s[0] != '"' {
		return "", 0, errors.New("expected '\"'")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		case c == '\\' && i+3 < len(s) && s[i+1] == 'x':
			v, err := hex.DecodeString(s[i+2 : i+4])
			if err != nil || s[i+2] >= 'A' && s[i+2] <= 'F' || s[i+3] >= 'A' && s[i+3] <= 'F' || v[0] >= 0x20 && v[0] < 0x7f {
				return "", 0, fmt.Errorf("bad escape %q: expected \\xNN (lower-case hex) of a non-printable byte", s[i:i+4])
			}
			b.WriteByte(v[0])
			i += 3
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", 0, fmt.Errorf("byte %#x at %d: expected an escape", c, i)
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated quoted value")
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Client certificate requirements of a route (its client_cert key).
const (
	// ClientCertOptional forwards the identity of a verified client
	// certificate when the client sent one, and lets requests without one
	// through.
	ClientCertOptional = "optional"
	// ClientCertRequired refuses requests without a verified client
	// certificate (403) and forwards the identity of those with one.
	ClientCertRequired = "required"
)

// ValidClientCertMode checks a route's client_cert value.
func ValidClientCertMode(m string) error {
	switch m {
	case "", ClientCertOptional, ClientCertRequired:
		return nil
	}
	return fmt.Errorf("unknown client_cert %q: expected required or optional", m)
}

// Middleware applies a route's client certificate requirement and
// forwards the verified identity in HeaderClientCert (the proxy has
// already removed any copy the client sent). A required certificate
// missing is 403 client_cert_required; a request whose Host is not the
// server name the TLS connection was opened for (HTTP/2 connection reuse
// across names) is 421 misdirected_request on such a route, so that the
// client opens a connection for this very name. gRPC calls get these as
// gRPC statuses (PERMISSION_DENIED, UNAVAILABLE).
func Middleware(mode string) httpx.Middleware {
	required := mode == ClientCertRequired
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var leaf *x509.Certificate
			if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
				leaf = r.TLS.VerifiedChains[0][0]
			}
			if required {
				if leaf == nil {
					httpx.WriteError(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "client_cert_required",
						Msg: "this route requires a client certificate signed by the gateway's client CA"})
					return
				}
				if sni := r.TLS.ServerName; sni != "" && !strings.EqualFold(sni, hostOnly(r.Host)) {
					httpx.WriteError(w, r, &httpx.Error{Status: http.StatusMisdirectedRequest, Code: "misdirected_request",
						Msg: "the connection was opened for " + sni + ", not for this host: open a new connection"})
					return
				}
			}
			if leaf != nil {
				r.Header[HeaderClientCert] = []string{FromCertificate(leaf).Format()}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// hostOnly is the host of a Host field, without port and trailing dot.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.Trim(h, "[]"), ".")
}
