// Package identity is Hitch's identity service: it owns the users (riders
// and drivers: email, name, role and a bcrypt password hash), issues the
// JWTs every other route of the gateway demands, and publishes the public
// key the gateway verifies them with as a JWKS.
//
// Pattern: the notes' "access token" flow with the gateway as the one place
// that verifies tokens. Identity signs ES256 tokens (sub = user id, scope =
// role, iss, aud "hitch", exp, kid in the header); the gateway fetches
// GET /.well-known/jwks.json, verifies each request's token, checks the
// route's required scope (rider or driver) and forwards the user id and role
// in X-Consumer and X-Scopes. Services behind it never see a token. An
// asymmetric key means the gateway holds nothing that can mint tokens.
//
// The signing key is made at the first start and stored in the service's
// own database, so every replica signs with the same key and a restart keeps
// tokens valid. Whoever reads the database can mint tokens: it is the
// service's own, reachable by nothing else.
//
// Attacks it answers: a duplicate email, in any letter case, is 409; a bad
// or unknown JSON field is 400 naming the field; a body over MaxBody is 413;
// a wrong password and an unknown email give the same 401 after the same
// bcrypt work (a dummy hash is compared for unknown emails); after
// MaxFailures failed logins for one email within FailureWindow further
// attempts are refused with 429 and Retry-After until the window ends,
// counted in the database so every replica shares the count. Passwords are
// never logged.
package identity
