package wire

import "fmt"

// AuthVersion is the version of the Auth frame this package speaks. A
// broker answers an Auth of another version with Err bad_request naming
// the versions it speaks.
const AuthVersion = 1

// MaxAuthBody bounds an Auth frame's body, in bytes: a broker reads no
// more than this from a connection that has not logged in.
const MaxAuthBody = 4096

// AuthMethod is how an Auth frame proves who the client is.
type AuthMethod uint8

// Auth methods.
const (
	// AuthPassword: user and password (checked against a bcrypt hash).
	AuthPassword AuthMethod = 1
	// AuthToken: a bearer token in the secret; user is ignored.
	AuthToken AuthMethod = 2
	// AuthCertificate: the connection's verified TLS client certificate;
	// user and secret are empty.
	AuthCertificate AuthMethod = 3
)

func (m AuthMethod) String() string {
	switch m {
	case AuthPassword:
		return "password"
	case AuthToken:
		return "token"
	case AuthCertificate:
		return "certificate"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// AuthReq is an Auth body.
type AuthReq struct {
	Version uint64
	Method  AuthMethod
	User    string
	Secret  []byte // never logged or echoed
}

// AppendAuthReq encodes an Auth body (Version 0: AuthVersion).
func AppendAuthReq(b []byte, r *AuthReq) []byte {
	v := r.Version
	if v == 0 {
		v = AuthVersion
	}
	b = AppendUvarint(b, v)
	b = append(b, byte(r.Method))
	b = AppendString(b, r.User)
	return AppendBytes(b, r.Secret)
}

// DecodeAuthReq decodes an Auth body; Secret aliases body. A version
// other than AuthVersion or an unknown method is an error wrapping
// ErrMalformed that says what this side speaks.
func DecodeAuthReq(body []byte) (AuthReq, error) {
	if len(body) > MaxAuthBody {
		return AuthReq{}, fmt.Errorf("%w: auth frame of %d bytes, limit %d", ErrMalformed, len(body), MaxAuthBody)
	}
	d := Decoder{B: body}
	r := AuthReq{Version: d.Uvarint()}
	if d.Err == nil && r.Version != AuthVersion {
		return r, fmt.Errorf("%w: auth version %d: this broker speaks version %d", ErrMalformed, r.Version, AuthVersion)
	}
	r.Method = AuthMethod(d.Byte())
	if d.Err == nil && (r.Method < AuthPassword || r.Method > AuthCertificate) {
		return r, fmt.Errorf("%w: unknown auth method %d: expected 1 (password), 2 (token) or 3 (certificate)", ErrMalformed, r.Method)
	}
	r.User = d.String()
	r.Secret = d.Bytes()
	return r, d.Done()
}

// AppendAuthOK encodes an AuthOK body.
func AppendAuthOK(b []byte, user string) []byte {
	b = AppendUvarint(b, AuthVersion)
	return AppendString(b, user)
}

// DecodeAuthOK decodes an AuthOK body: the user logged in.
func DecodeAuthOK(body []byte) (string, error) {
	d := Decoder{B: body}
	v := d.Uvarint()
	if d.Err == nil && v != AuthVersion {
		return "", fmt.Errorf("%w: auth version %d: this client speaks version %d", ErrMalformed, v, AuthVersion)
	}
	u := d.String()
	return u, d.Done()
}
