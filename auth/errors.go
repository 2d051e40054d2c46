package auth

import (
	"net/http"
	"strings"
)

// Error codes: Error.Code, stable, for the gateway's JSON error body.
const (
	CodeMissingCredentials   = "missing_credentials"   // 401: no credential for an accepted method
	CodeInvalidCredentials   = "invalid_credentials"   // 401: unknown key, wrong password, malformed token, unknown consumer
	CodeTokenExpired         = "token_expired"         // 401: exp passed (beyond clock skew)
	CodeTokenNotYetValid     = "token_not_yet_valid"   // 401: nbf or iat in the future (beyond clock skew)
	CodeWrongAudience        = "wrong_audience"        // 401: aud missing or not an accepted audience
	CodeWrongIssuer          = "wrong_issuer"          // 401: iss missing or not the configured issuer
	CodeBadSignature         = "bad_signature"         // 401: signature does not verify
	CodeUnsupportedAlgorithm = "unsupported_algorithm" // 401: alg not accepted (none, HS256 where not configured ...)
	CodeUnknownKeyID         = "unknown_key_id"        // 401: kid unknown after a refresh, or missing with several candidate keys
	CodeInsecureBasic        = "insecure_basic"        // 403: Basic credentials over plain HTTP
	CodeForbidden            = "forbidden"             // 403: authenticated but Require not met
	CodeKeysUnavailable      = "keys_unavailable"      // 503: no JWKS could be fetched yet; retry later
)

// Error is an authentication or authorization failure. The gateway answers
// with Status, a JSON body carrying Code and Message, and one
// WWW-Authenticate header per entry of Challenges (see SetHeaders).
type Error struct {
	// Status is 401 (authentication failed), 403 (authenticated but not
	// allowed, or Basic over plain HTTP) or 503 (keys unavailable).
	Status int
	// Code is one of the Code* constants.
	Code string
	// Message is a lowercase description safe to show to the client
	// ("token expired", "missing scopes \"orders:write\"").
	Message string
	// Challenges are WWW-Authenticate values (RFC 7235, RFC 6750), one per
	// accepted scheme, e.g. `Bearer realm="switchyard", error="invalid_token",
	// error_description="token expired"`. Always at least one on 401.
	Challenges []string
	// Err is the underlying cause, for logs; may be nil. Not for clients.
	Err error
}

// Error returns the message, and the cause when there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return "auth: " + e.Message + ": " + e.Err.Error()
	}
	return "auth: " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Challenge returns the challenges joined into one header value (RFC 7235
// allows a comma-separated list); SetHeaders is preferred.
func (e *Error) Challenge() string { return strings.Join(e.Challenges, ", ") }

// SetHeaders sets one WWW-Authenticate field per challenge on h (replacing
// any), or none when there is no challenge.
func (e *Error) SetHeaders(h http.Header) {
	h.Del("WWW-Authenticate")
	for _, c := range e.Challenges {
		h.Add("WWW-Authenticate", c)
	}
}

// challenges builds WWW-Authenticate values. Descriptions are made of
// constant strings of this package, so they need no escaping beyond what
// quote does for safety.
type challenges struct{ realm string }

func (c challenges) bearer(errCode, desc string) string {
	s := `Bearer realm="` + c.realm + `"`
	if errCode != "" {
		s += `, error="` + errCode + `"`
	}
	if desc != "" {
		s += `, error_description="` + quoteSafe(desc) + `"`
	}
	return s
}

func (c challenges) basic() string  { return `Basic realm="` + c.realm + `", charset="UTF-8"` }
func (c challenges) apiKey() string { return `APIKey realm="` + c.realm + `"` }

// forMethods returns the plain challenges of every method in m.
func (c challenges) forMethods(m Methods) []string {
	out := make([]string, 0, 3)
	if m&MethodJWT != 0 {
		out = append(out, c.bearer("", ""))
	}
	if m&MethodAPIKey != 0 {
		out = append(out, c.apiKey())
	}
	if m&MethodBasic != 0 {
		out = append(out, c.basic())
	}
	return out
}

// quoteSafe drops characters that cannot appear in an RFC 7230
// quoted-string without escaping (and that RFC 6750 excludes from
// error_description anyway).
func quoteSafe(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b = append(b, c)
		}
	}
	return string(b)
}

// FieldError is a configuration problem of one setting: Path is its key
// path inside the auth section ("jwt.public_keys[0]", "jwt.secret"), so
// the gateway can name the file, line and full key path.
type FieldError struct {
	Path string
	Err  error
}

// Error returns the key path and the problem.
func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the problem.
func (e *FieldError) Unwrap() error { return e.Err }

// KeyPath returns Path (relative to the auth section).
func (e *FieldError) KeyPath() string { return e.Path }
