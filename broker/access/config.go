// Package access is the broker's authentication and authorization: users
// with bcrypt-hashed passwords, tokens and verified TLS client
// certificates, each with publish / consume / manage permissions on name
// patterns of queues, topics and streams. The native and HTTP servers ask
// an Authenticator who a caller is and a *Principal what it may do.
package access

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
)

// Defaults of Config.
const (
	DefaultAuthTimeout        = 5 * time.Second
	DefaultMaxUnauthenticated = 256
	DefaultFailureDelay       = time.Second
	// MinTokenLen is the shortest token accepted, in bytes: long enough
	// that it cannot be guessed by trying.
	MinTokenLen = 16
)

// Config is the broker config file's `auth:` block. Without it the broker
// is open to anyone who can reach it, which is why it refuses a
// non-loopback listen address without one.
//
//	auth:
//	  users:
//	    orders-writer:
//	      password_hash: $2a$10$...      # bcrypt (switchyard broker hash-password)
//	      publish: [queue:orders.*]
//	    billing:
//	      tokens: [env:BILLING_TOKEN]    # or file:PATH, or sha256:HEX of the token
//	      consume: [queue:orders.*, stream:payments]
//	    ops:
//	      certs: [ops.example.com]       # a verified client certificate's CN or DNS name
//	      publish: ["*"]
//	      consume: ["*"]
//	      manage: ["*"]
type Config struct {
	// Users by name. The name is what error messages and logs show; never
	// a secret.
	Users map[string]User `yaml:"users"`
	// AuthTimeout bounds how long a native connection may take for its TLS
	// handshake and its Auth frame; then it is closed. Default 5s.
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// MaxUnauthenticated caps native connections that have not yet
	// authenticated (handshaking or before their Auth frame); a new one
	// beyond it closes the oldest. Default 256.
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
	// FailureDelay is how long a failed login waits before its answer,
	// times the failures from the same IP address in the last minute (at
	// most 10 times). Only the failing caller waits. Default 1s; negative:
	// no delay.
	FailureDelay time.Duration `yaml:"failure_delay"`
}

// User is one user's credentials and permissions. A user needs at least
// one credential: a password hash, a token or a certificate name.
type User struct {
	// PasswordHash is the bcrypt hash of the user's password ($2a$, $2b$
	// or $2y$). The password itself never appears in the file.
	PasswordHash string `yaml:"password_hash"`
	// Tokens are the user's bearer tokens, each "sha256:HEX" (the SHA-256
	// of the token, 64 hex digits), "env:NAME" (an environment variable)
	// or "file:PATH" (a file's content, one trailing newline dropped).
	// A token is at least 16 bytes; an inline plain token is refused.
	Tokens []string `yaml:"tokens"`
	// Certs are the subject common names or DNS names of verified TLS
	// client certificates that log in as this user (needs the listener's
	// tls.client_ca).
	Certs []string `yaml:"certs"`
	// Publish: patterns of what the user may publish to (queues, topics)
	// or append to (streams).
	Publish []string `yaml:"publish"`
	// Consume: receive, ack, nack and subscribe (queues), subscribe
	// (topics), read, fetch and commit group offsets (streams).
	Consume []string `yaml:"consume"`
	// Manage: declare (create or change settings), delete and redrive;
	// manage on "*" also reads /metrics.
	Manage []string `yaml:"manage"`
	// Read: see the resources in listings and read their settings and
	// counts (GET /v1/queues/{name}, ...), nothing else: for dashboards
	// and monitors. Every other permission implies it.
	Read []string `yaml:"read"`
}

// A pattern is "[KIND:]NAME": KIND is queue, topic or stream (none: all
// three); NAME is a name, a prefix ending in "*" ("orders.*") or "*".

// Validate reports every problem, each a config.FieldError relative to
// the block. It reads no secret.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Users) == 0 {
		errs = append(errs, config.Fieldf("users", "no users: expected at least one (or remove the auth block, which leaves the broker open)"))
	}
	if c.AuthTimeout < 0 || c.AuthTimeout > time.Minute {
		errs = append(errs, config.Fieldf("auth_timeout", "%s: must be between 0 (default 5s) and 1m", c.AuthTimeout))
	}
	if c.MaxUnauthenticated < 0 {
		errs = append(errs, config.Fieldf("max_unauthenticated", "%d: must not be negative", c.MaxUnauthenticated))
	}
	if c.FailureDelay > 10*time.Second {
		errs = append(errs, config.Fieldf("failure_delay", "%s: at most 10s", c.FailureDelay))
	}
	certs := map[string]string{}
	for _, name := range sortedNames(c.Users) {
		u := c.Users[name]
		p := "users." + name
		if name == "" || strings.ContainsAny(name, " \t\r\n\x00:") {
			errs = append(errs, config.Fieldf(p, "invalid user name %q: expected no spaces or colons", name))
		}
		if u.PasswordHash == "" && len(u.Tokens) == 0 && len(u.Certs) == 0 {
			errs = append(errs, config.Fieldf(p, "no credential: expected password_hash, tokens or certs"))
		}
		if u.PasswordHash != "" {
			if err := checkBcrypt(u.PasswordHash); err != nil {
				errs = append(errs, config.Fieldf(p+".password_hash", "%v", err))
			}
		}
		for i, t := range u.Tokens {
			if err := checkTokenSpec(t); err != nil {
				errs = append(errs, config.Fieldf(fmt.Sprintf("%s.tokens[%d]", p, i), "%v", err))
			}
		}
		for i, cn := range u.Certs {
			switch {
			case cn == "":
				errs = append(errs, config.Fieldf(fmt.Sprintf("%s.certs[%d]", p, i), "empty: expected a certificate's common name or DNS name"))
			case certs[cn] != "":
				errs = append(errs, config.Fieldf(fmt.Sprintf("%s.certs[%d]", p, i), "%q is already user %q's certificate name", cn, certs[cn]))
			default:
				certs[cn] = name
			}
		}
		for perm, pats := range map[string][]string{"publish": u.Publish, "consume": u.Consume, "manage": u.Manage, "read": u.Read} {
			for i, s := range pats {
				if _, err := parsePattern(s); err != nil {
					errs = append(errs, config.Fieldf(fmt.Sprintf("%s.%s[%d]", p, perm, i), "%v", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkBcrypt(h string) error {
	if !(strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")) || len(h) != 60 {
		return errors.New("not a bcrypt hash: expected 60 characters starting $2a$, $2b$ or $2y$ (make one with: switchyard broker hash-password)")
	}
	return nil
}

func checkTokenSpec(s string) error {
	switch {
	case strings.HasPrefix(s, "env:"):
		if len(s) == len("env:") {
			return errors.New(`"env:" needs a variable name`)
		}
	case strings.HasPrefix(s, "file:"):
		if len(s) == len("file:") {
			return errors.New(`"file:" needs a path`)
		}
	case strings.HasPrefix(s, "sha256:"):
		h := s[len("sha256:"):]
		if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
			return errors.New("sha256: expects 64 hex digits (printf %s TOKEN | sha256sum)")
		}
	default:
		return errors.New("an inline token would be a secret in the config file: expected sha256:HEX, env:NAME or file:PATH")
	}
	return nil
}

// Kinds of resources, as patterns and errors name them.
const (
	Queue  = "queue"
	Topic  = "topic"
	Stream = "stream"
)

// Perm is a permission.
type Perm uint8

// Permissions.
const (
	Publish Perm = iota
	Consume
	Manage
	// Read sees a resource (listings, settings, counts) and nothing more.
	Read
)

func (p Perm) String() string {
	switch p {
	case Publish:
		return "publish"
	case Consume:
		return "consume"
	case Manage:
		return "manage"
	case Read:
		return "read"
	}
	return fmt.Sprintf("perm(%d)", uint8(p))
}

// pattern is a parsed "[KIND:]NAME".
type pattern struct {
	kind   string // "" any
	name   string // exact name, or the prefix when prefix is set
	prefix bool
}

func parsePattern(s string) (pattern, error) {
	var p pattern
	rest := s
	if k, n, ok := strings.Cut(s, ":"); ok {
		switch k {
		case Queue, Topic, Stream:
		default:
			return p, fmt.Errorf("pattern %q: unknown kind %q: expected queue:, topic: or stream: (or none for all three)", s, k)
		}
		p.kind, rest = k, n
	}
	if rest == "" {
		return p, fmt.Errorf("pattern %q: empty name: expected NAME, PREFIX* or *", s)
	}
	if strings.HasSuffix(rest, "*") {
		p.prefix, rest = true, rest[:len(rest)-1]
	}
	if strings.Contains(rest, "*") {
		return p, fmt.Errorf("pattern %q: \"*\" only at the end: expected NAME, PREFIX* or *", s)
	}
	if strings.ContainsAny(rest, " \t\r\n\x00/") {
		return p, fmt.Errorf("pattern %q: spaces and slashes never appear in names", s)
	}
	p.name = rest
	return p, nil
}

func (p pattern) match(kind, name string) bool {
	if p.kind != "" && p.kind != kind {
		return false
	}
	if p.prefix {
		return strings.HasPrefix(name, p.name)
	}
	return name == p.name
}

func sortedNames[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
