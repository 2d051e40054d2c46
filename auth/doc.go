// Package auth authenticates gateway requests (API keys, JWTs, HTTP Basic)
// against registered consumers, checks per-route authorization, and
// forwards the resulting identity upstream in headers.
//
// # Use
//
// The gateway builds one Authenticator per config generation with New and,
// for each proxied request: calls StripIdentityHeaders (always, even on
// auth: none routes), Authenticate with the route's Methods, the route's
// Require.Check, and ForwardHeaders. A failure is an *Error carrying the
// HTTP status (401, 403, 503), a stable code, a client-safe message and
// the WWW-Authenticate challenges (Error.SetHeaders).
//
// # Configuration
//
// Config, Consumer, JWTConfig, Route and Require carry yaml tags; every
// field documents its default. The shape, with defaults in comments:
//
//	auth:
//	  realm: switchyard              # WWW-Authenticate realm
//	  allow_insecure_basic: false    # accept Basic without TLS
//	  jwt:                           # omit to disable the jwt method
//	    issuer: https://idp.example.com       # iss must equal; unset = not checked
//	    audience: [switchyard]                # aud must contain one; unset = not checked
//	    algorithms: [RS256, ES256]            # subset of HS256, RS256, ES256
//	    secret: env:JWT_SECRET                # HS256 only: inline (>= 32 bytes), file:PATH or env:NAME
//	    public_keys: [file:/etc/sy/idp.pem]   # PEM, inline or file:PATH
//	    jwks_url: https://idp.example.com/.well-known/jwks.json
//	    jwks_refresh: 5m                      # max age of the cached key set (>= 10s)
//	    jwks_timeout: 5s                      # one fetch
//	    clock_skew: 30s                       # leeway on exp, nbf, iat (<= 5m)
//	    consumer_claim: sub                   # claim naming the consumer
//	    require_consumer: false               # reject tokens of unregistered consumers
//	    tier_claim: tier                      # tier of unregistered consumers
//	    scopes_claim: scope                   # "a b" or ["a", "b"]
//	    roles_claim: roles                    # dotted path into objects allowed
//	    cache_size: 1024                      # verified tokens remembered; -1 = off
//	  consumers:
//	    - name: alice
//	      tier: premium
//	      scopes: [orders:read]
//	      roles: [admin]
//	      api_keys:
//	        - hash: "sha256:9f86d0..."         # HashAPIKey(key); or key: PLAINTEXT (warned)
//	      basic: { username: alice, password_hash: "$2b$10$..." }
//
// and per route (Route, for inline embedding in the route's config):
//
//	auth: [jwt, api_key]        # or one name, or none (default)
//	require: { scopes: [orders:write], roles: [admin, ops], tiers: [premium] }
//
// # Lifecycle and concurrency
//
// New applies defaults, validates, reads key files and environment
// variables and parses keys once. The Authenticator is then safe for
// concurrent use; its only mutable state is three bounded caches (JWKS,
// verified tokens, verified Basic credentials). It starts no goroutine and
// needs no Close: a JWKS is fetched inline by the request that finds the
// cached set missing or stale (other requests keep using the old set
// meanwhile), so an Authenticator dropped on config reload leaves nothing
// running. Prefetch warms the JWKS cache at start if wanted.
//
// # Security notes
//
// API keys are stored as SHA-256 digests and must be high-entropy. JWT
// keys are bound to algorithms by type (see JWTConfig), which rejects
// "alg": "none" and HS256/RS256 confusion. Basic passwords are bcrypt
// hashes, compared for unknown users too so timing does not reveal which
// usernames exist, and accepted only over TLS unless allowed.
package auth
