package access

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
)

// Principal is an authenticated user and what it may do. A nil
// *Principal is the anonymous caller of an open broker (no auth block):
// it may do everything.
type Principal struct {
	Name  string
	Via   string // "password", "token" or "certificate"
	perms [4][]pattern
}

// Allowed reports whether p holds perm on the kind's name.
func (p *Principal) Allowed(perm Perm, kind, name string) bool {
	if p == nil {
		return true
	}
	for _, pt := range p.perms[perm] {
		if pt.match(kind, name) {
			return true
		}
	}
	return false
}

// Check is Allowed as an error: nil, or a *broker.ForbiddenError naming
// the user, the permission and the resource.
func (p *Principal) Check(perm Perm, kind, name string) error {
	if p.Allowed(perm, kind, name) {
		return nil
	}
	return &broker.ForbiddenError{User: p.Name, Permission: perm.String(), Kind: kind, Name: name}
}

// CheckAll requires perm on every name ("*" of every kind), as reading
// the whole broker's metrics does.
func (p *Principal) CheckAll(perm Perm) error {
	if p == nil {
		return nil
	}
	for _, pt := range p.perms[perm] {
		if pt.kind == "" && pt.prefix && pt.name == "" {
			return nil
		}
	}
	return &broker.ForbiddenError{User: p.Name, Permission: perm.String(), Name: "*"}
}

// Sees reports whether a listing shows the kind's name to p and p may
// read its settings and counts: it holds any permission on it (read
// being the one that allows nothing else).
func (p *Principal) Sees(kind, name string) bool {
	return p.Allowed(Publish, kind, name) || p.Allowed(Consume, kind, name) || p.Allowed(Manage, kind, name) ||
		p.Allowed(Read, kind, name)
}

// Authenticator checks credentials against a Config whose secrets have
// been read. Safe for concurrent use.
type Authenticator struct {
	cfg    Config
	users  map[string]*userEntry
	tokens []tokenEntry
	certs  map[string]*Principal
	now    func() time.Time
	// bcrypt costs tens of milliseconds of CPU: at most GOMAXPROCS run at
	// once, so a flood of password guesses cannot take every core.
	bcryptSem chan struct{}
	dummyOnce sync.Once
	dummyCost int
	dummy     []byte // a bcrypt hash compared for unknown users (made on first use)

	mu       sync.Mutex
	failures map[string]failure // by remote IP
}

type userEntry struct {
	p    *Principal
	hash []byte // bcrypt; nil: no password
	// ok remembers SHA-256 sums of passwords that matched the hash, so
	// that a client logging in again (or an HTTP client sending Basic on
	// every request) costs a hash, not a bcrypt.
	mu sync.Mutex
	ok [][sha256.Size]byte
}

type tokenEntry struct {
	sum [sha256.Size]byte
	p   *Principal
}

type failure struct {
	n    int
	last time.Time
}

// Options of New; zero fields take the defaults.
type Options struct {
	// Now is the clock of the failure counts. Default time.Now.
	Now func() time.Time
}

// New reads c's secrets (env: and file: tokens) and returns its
// Authenticator. Errors carry key paths relative to the block.
func New(c Config, o Options) (*Authenticator, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	if c.MaxUnauthenticated == 0 {
		c.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if c.FailureDelay == 0 {
		c.FailureDelay = DefaultFailureDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Authenticator{cfg: c, users: map[string]*userEntry{}, certs: map[string]*Principal{}, now: o.Now,
		bcryptSem: make(chan struct{}, runtime.GOMAXPROCS(0)), failures: map[string]failure{}}
	// Unknown users cost a bcrypt of the configured users' cost too, so
	// the time of an answer does not tell which users exist.
	a.dummyCost = bcrypt.DefaultCost
	for _, name := range sortedNames(c.Users) {
		if n, err := bcrypt.Cost([]byte(c.Users[name].PasswordHash)); err == nil {
			a.dummyCost = n
			break
		}
	}
	var errs []error
	seen := map[[sha256.Size]byte]string{}
	for _, name := range sortedNames(c.Users) {
		u := c.Users[name]
		p := &Principal{Name: name}
		for perm, pats := range [][]string{u.Publish, u.Consume, u.Manage, u.Read} {
			for _, s := range pats {
				pt, _ := parsePattern(s) // checked by Validate
				p.perms[perm] = append(p.perms[perm], pt)
			}
		}
		e := &userEntry{p: p}
		if u.PasswordHash != "" {
			e.hash = []byte(u.PasswordHash)
		}
		a.users[name] = e
		for i, spec := range u.Tokens {
			sum, err := tokenSum(spec)
			if err != nil {
				errs = append(errs, config.Fieldf(fmt.Sprintf("users.%s.tokens[%d]", name, i), "%v", err))
				continue
			}
			if other, dup := seen[sum]; dup {
				errs = append(errs, config.Fieldf(fmt.Sprintf("users.%s.tokens[%d]", name, i), "the same token as user %q's: each holder needs its own", other))
				continue
			}
			seen[sum] = name
			a.tokens = append(a.tokens, tokenEntry{sum: sum, p: p})
		}
		for _, cn := range u.Certs {
			a.certs[cn] = p
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// tokenSum resolves a token spec to the SHA-256 of the token.
func tokenSum(spec string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	var v string
	switch {
	case strings.HasPrefix(spec, "sha256:"):
		b, err := hex.DecodeString(spec[len("sha256:"):])
		if err != nil || len(b) != sha256.Size {
			return sum, errors.New("sha256: expects 64 hex digits")
		}
		copy(sum[:], b)
		return sum, nil
	case strings.HasPrefix(spec, "env:"):
		name := spec[len("env:"):]
		val, ok := os.LookupEnv(name)
		if !ok {
			return sum, fmt.Errorf("environment variable %q is not set", name)
		}
		v = val
	case strings.HasPrefix(spec, "file:"):
		b, err := os.ReadFile(spec[len("file:"):])
		if err != nil {
			return sum, fmt.Errorf("reading token file: %w", err)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	default:
		return sum, checkTokenSpec(spec)
	}
	if len(v) < MinTokenLen {
		return sum, fmt.Errorf("token too short (%d bytes): at least %d", len(v), MinTokenLen)
	}
	return sha256.Sum256([]byte(v)), nil
}

// AuthTimeout, MaxUnauthenticated: the configured limits with defaults.
func (a *Authenticator) AuthTimeout() time.Duration { return a.cfg.AuthTimeout }

// MaxUnauthenticated is the cap on native connections not yet logged in.
func (a *Authenticator) MaxUnauthenticated() int { return a.cfg.MaxUnauthenticated }

// NeedsClientCerts reports whether some user logs in by certificate.
func (a *Authenticator) NeedsClientCerts() bool { return len(a.certs) > 0 }

// errLogin is the one answer to every failed login: it does not say
// whether the user exists.
func errLogin(how string) error {
	return fmt.Errorf("%w: invalid %s", broker.ErrUnauthorized, how)
}

// Password logs user in with password. A failure waits (see
// Config.FailureDelay) before returning ErrUnauthorized; ip is the
// caller's address for that count.
func (a *Authenticator) Password(ctx context.Context, ip, user, password string) (*Principal, error) {
	e := a.users[user]
	sum := sha256.Sum256([]byte(user + "\x00" + password))
	if e != nil && e.hash != nil && e.remembered(sum) {
		return a.as(e.p, "password"), nil
	}
	a.dummyOnce.Do(func() {
		a.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), a.dummyCost)
	})
	hash := a.dummy
	if e != nil && e.hash != nil {
		hash = e.hash
	}
	select {
	case a.bcryptSem <- struct{}{}:
	default: // all busy: wait for one, or the caller to give up
		select {
		case a.bcryptSem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	<-a.bcryptSem
	if err != nil || e == nil || e.hash == nil {
		return nil, a.fail(ctx, ip, errLogin("user or password"))
	}
	e.remember(sum)
	return a.as(e.p, "password"), nil
}

// Token logs in with a bearer token.
func (a *Authenticator) Token(ctx context.Context, ip, token string) (*Principal, error) {
	sum := sha256.Sum256([]byte(token))
	var found *Principal
	for i := range a.tokens { // every entry compared: no early exit to time
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
			found = a.tokens[i].p
		}
	}
	if found == nil {
		return nil, a.fail(ctx, ip, errLogin("token"))
	}
	return a.as(found, "token"), nil
}

// Certificate maps a verified TLS client certificate (the connection
// state's first verified chain) to its user by subject common name, then
// DNS names. ok is false without a verified certificate or a user for it.
func (a *Authenticator) Certificate(cs *tls.ConnectionState) (*Principal, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil, false
	}
	p := a.certUser(cs.VerifiedChains[0][0])
	if p == nil {
		return nil, false
	}
	return a.as(p, "certificate"), true
}

func (a *Authenticator) certUser(c *x509.Certificate) *Principal {
	if p := a.certs[c.Subject.CommonName]; p != nil && c.Subject.CommonName != "" {
		return p
	}
	for _, d := range c.DNSNames {
		if p := a.certs[d]; p != nil {
			return p
		}
	}
	return nil
}

// as returns a copy of p logged in via how.
func (a *Authenticator) as(p *Principal, how string) *Principal {
	c := *p
	c.Via = how
	return &c
}

func (e *userEntry) remembered(sum [sha256.Size]byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	hit := 0
	for _, s := range e.ok {
		hit |= subtle.ConstantTimeCompare(s[:], sum[:])
	}
	return hit == 1
}

func (e *userEntry) remember(sum [sha256.Size]byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.ok {
		if s == sum {
			return
		}
	}
	if len(e.ok) >= 4 { // a few, for a password being rotated
		e.ok = e.ok[1:]
	}
	e.ok = append(e.ok, sum)
}

// failureWindow is how long failures from an address count.
const failureWindow = time.Minute

// fail counts a failure for ip and waits FailureDelay times the recent
// failures (at most 10), or until ctx ends, then returns err.
func (a *Authenticator) fail(ctx context.Context, ip string, err error) error {
	d := a.FailureDelayFor(ip)
	if d <= 0 {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return err
}

// FailureDelayFor records a failed login from ip and returns how long its
// answer waits.
func (a *Authenticator) FailureDelayFor(ip string) time.Duration {
	if a.cfg.FailureDelay < 0 {
		return 0
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.failures) > 10000 {
		for k, f := range a.failures {
			if now.Sub(f.last) > failureWindow {
				delete(a.failures, k)
			}
		}
	}
	f := a.failures[ip]
	if now.Sub(f.last) > failureWindow {
		f.n = 0
	}
	f.n++
	f.last = now
	a.failures[ip] = f
	return a.cfg.FailureDelay * time.Duration(min(f.n, 10))
}

// CheckBinding checks that p may bind a topic to queues: binding makes
// every publish to the topic a publish to each queue, so it needs publish
// on each of them (besides manage on the topic).
func (p *Principal) CheckBinding(queues []string) error {
	for _, q := range queues {
		if err := p.Check(Publish, Queue, q); err != nil {
			return err
		}
	}
	return nil
}
