package registry

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchyard/switchyard/httpx"
)

// MinTokenLen is the shortest registry token accepted, in bytes.
const MinTokenLen = 16

// Access says who may use the registry API. Without it (Handler alone)
// anyone who reaches the registry may register, drain and deregister any
// instance, which is why `hitch up --secure` protects its registry.
//
// A caller is known by a bearer token (Authorization: Bearer TOKEN) or by
// a TLS client certificate the listener verified (its subject common
// name). A known caller may read everything; it may write (register,
// heartbeat, set state, deregister) only the instances of the services
// its grant lists ("*": every service). GET /healthz stays open.
type Access struct {
	// Tokens are the bearer tokens.
	Tokens []TokenGrant
	// Certs maps a verified client certificate's common name to the
	// services it may write (empty: read only).
	Certs map[string][]string
	// AnonymousReads lets callers without a credential read (GET and
	// HEAD); default: every request but /healthz needs one.
	AnonymousReads bool
}

// TokenGrant is one bearer token.
type TokenGrant struct {
	// Name identifies the holder in errors and logs; never the token.
	Name string
	// Token is the secret, at least MinTokenLen bytes.
	Token string
	// Services it may write ("*": all); empty: read only.
	Services []string
}

// Validate reports every malformed grant.
func (a *Access) Validate() error {
	var errs []error
	if len(a.Tokens) == 0 && len(a.Certs) == 0 {
		errs = append(errs, errors.New("registry access: no tokens and no certificates: nobody could write"))
	}
	for i, t := range a.Tokens {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("registry access: tokens[%d]: missing name", i))
		}
		if len(t.Token) < MinTokenLen {
			errs = append(errs, fmt.Errorf("registry access: tokens[%d] (%s): token of %d bytes: expected at least %d", i, t.Name, len(t.Token), MinTokenLen))
		}
	}
	return errors.Join(errs...)
}

type grant struct {
	name     string
	services []string
}

func (g *grant) mayWrite(service string) bool {
	for _, s := range g.services {
		if s == "*" || s == service {
			return true
		}
	}
	return false
}

// Protect wraps a registry handler (Handler's) with a's checks: 401 for a
// request without a known credential, 403 for a write to a service the
// caller may not write. It panics on an invalid Access (check Validate).
func Protect(h http.Handler, a Access) http.Handler {
	if err := a.Validate(); err != nil {
		panic(err)
	}
	tokens := map[[32]byte]grant{}
	for _, t := range a.Tokens {
		tokens[sha256.Sum256([]byte(t.Token))] = grant{name: t.Name, services: t.Services}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/healthz" {
			h.ServeHTTP(w, req)
			return
		}
		g, ok := caller(req, tokens, a.Certs)
		read := req.Method == http.MethodGet || req.Method == http.MethodHead
		if !ok {
			if read && a.AnonymousReads {
				h.ServeHTTP(w, req)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="registry"`)
			httpx.WriteProblem(w, http.StatusUnauthorized, "unauthenticated",
				"the registry needs a credential: a bearer token or a client certificate it trusts")
			return
		}
		if !read {
			service := writtenService(req.URL.EscapedPath())
			if !g.mayWrite(service) {
				httpx.WriteProblem(w, http.StatusForbidden, "forbidden",
					fmt.Sprintf("%s may not change instances of service %q", g.name, clip(service)))
				return
			}
		}
		h.ServeHTTP(w, req)
	})
}

// caller finds the request's credential: a bearer token, else a verified
// client certificate.
func caller(req *http.Request, tokens map[[32]byte]grant, certs map[string][]string) (*grant, bool) {
	if auth := req.Header.Get("Authorization"); auth != "" {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return nil, false
		}
		sum := sha256.Sum256([]byte(tok))
		for k, g := range tokens { // constant time over every token
			if subtle.ConstantTimeCompare(k[:], sum[:]) == 1 {
				return &g, true
			}
		}
		return nil, false // a wrong token does not fall back to the certificate
	}
	if req.TLS != nil && len(req.TLS.VerifiedChains) > 0 && len(req.TLS.VerifiedChains[0]) > 0 {
		cn := req.TLS.VerifiedChains[0][0].Subject.CommonName
		if s, ok := certs[cn]; ok {
			return &grant{name: "certificate " + fmt.Sprintf("%q", cn), services: s}, true
		}
	}
	return nil, false
}

// writtenService is the {service} of /v1/services/{service}/... in an
// escaped path, decoded as the handler's mux decodes it; "" for any other
// path (which no grant but "*" may write).
func writtenService(escaped string) string {
	rest, ok := strings.CutPrefix(escaped, "/v1/services/")
	if !ok {
		return ""
	}
	seg, _, _ := strings.Cut(rest, "/")
	s, err := url.PathUnescape(seg)
	if err != nil {
		return ""
	}
	return s
}
