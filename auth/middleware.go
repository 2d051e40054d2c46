package auth

import (
	"errors"
	"net/http"

	"github.com/switchyard/switchyard/httpx"
)

// Middleware strips identity headers a client sent and, when methods is
// not None, authenticates the request with a, checks req (if any) and
// forwards the identity upstream (X-Consumer, X-Consumer-Tier, X-Scopes).
// Failures are answered with the gateway's JSON error (401/403, with
// WWW-Authenticate). a may be nil when methods is None.
func Middleware(a *Authenticator, methods Methods, req *Require) httpx.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			StripIdentityHeaders(r.Header)
			if methods == None {
				next.ServeHTTP(w, r)
				return
			}
			id, err := a.Authenticate(r, methods)
			if err == nil && req != nil {
				err = req.Check(id)
			}
			if err != nil {
				writeError(w, r, err)
				return
			}
			ForwardHeaders(r.Header, id)
			next.ServeHTTP(w, r)
		})
	}
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		httpx.WriteError(w, r, &httpx.Error{Status: http.StatusInternalServerError, Code: "auth_error", Msg: "authentication failed", Err: err})
		return
	}
	ae.SetHeaders(w.Header())
	httpx.WriteError(w, r, &httpx.Error{Status: ae.Status, Code: ae.Code, Msg: ae.Message, Err: ae})
}
