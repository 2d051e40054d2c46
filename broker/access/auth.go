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
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
)

// Principal is an authenticated user and what it may do. A nil
// *Principal is the anonymous caller of an open broker (no auth block):
// it may do everything.
//
// A Principal follows its Authenticator's reloads: its permissions are
// those of the user in the users last loaded, and once the user, or the
// credential it logged in with, is gone from them, it is revoked (every
// check fails with ErrUnauthorized; see Revoked).
type Principal struct {
	Name string
	Via  string // "password", "token" or "certificate"

	a    *Authenticator
	cred string // what it logged in with: the bcrypt hash, the token's sum or the certificate name
	g    atomic.Pointer[grant]
}

// grant is what a principal may do under one generation of the users.
type grant struct {
	gen     uint64
	perms   [4][]pattern
	revoked bool
}

// current returns p's grant under the users now loaded.
func (p *Principal) current() *grant {
	g := p.g.Load()
	st := p.a.st.Load()
	if g != nil && g.gen == st.gen {
		return g
	}
	ng := st.grantFor(p.Name, p.Via, p.cred)
	p.g.Store(ng)
	return ng
}

// Revoked is nil while p's user and the credential it logged in with are
// still in the users loaded, else an error wrapping broker.ErrUnauthorized
// that says so. A nil p (an open broker) is never revoked.
func (p *Principal) Revoked() error {
	if p == nil || !p.current().revoked {
		return nil
	}
	return fmt.Errorf("%w: user %q: the %s it logged in with was revoked by a reload of the broker's users; log in again", broker.ErrUnauthorized, p.Name, p.Via)
}

// Allowed reports whether p holds perm on the kind's name.
func (p *Principal) Allowed(perm Perm, kind, name string) bool {
	if p == nil {
		return true
	}
	for _, pt := range p.current().perms[perm] {
		if pt.match(kind, name) {
			return true
		}
	}
	return false
}

// Check is Allowed as an error: nil, or a *broker.ForbiddenError naming
// the user, the permission and the resource (or Revoked's error).
func (p *Principal) Check(perm Perm, kind, name string) error {
	if p.Allowed(perm, kind, name) {
		return nil
	}
	if err := p.Revoked(); err != nil {
		return err
	}
	return &broker.ForbiddenError{User: p.Name, Permission: perm.String(), Kind: kind, Name: name}
}

// CheckAll requires perm on every name ("*" of every kind), as reading
// the whole broker's metrics does.
func (p *Principal) CheckAll(perm Perm) error {
	if p == nil {
		return nil
	}
	for _, pt := range p.current().perms[perm] {
		if pt.kind == "" && pt.prefix && pt.name == "" {
			return nil
		}
	}
	if err := p.Revoked(); err != nil {
		return err
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
// been read. Reload replaces the users atomically. Safe for concurrent
// use.
type Authenticator struct {
	st  atomic.Pointer[authState]
	now func() time.Time
	// bcrypt costs tens of milliseconds of CPU: at most GOMAXPROCS run at
	// once, so a flood of password guesses cannot take every core.
	bcryptSem chan struct{}

	mu       sync.Mutex
	failures map[string]failure // by remote IP
}

// authState is one generation of the users, as a Config read them.
// Never changed once published.
type authState struct {
	gen    uint64
	cfg    Config
	users  map[string]*userEntry
	tokens []tokenEntry
	certs  map[string]*userEntry

	dummyOnce sync.Once
	dummyCost int
	dummy     []byte // a bcrypt hash compared for unknown users (made on first use)
}

type userEntry struct {
	name   string
	perms  [4][]pattern
	hash   []byte // bcrypt; nil: no password
	tokens [][sha256.Size]byte
	certs  []string
	// ok remembers SHA-256 sums of passwords that matched the hash, so
	// that a client logging in again (or an HTTP client sending Basic on
	// every request) costs a hash, not a bcrypt.
	mu sync.Mutex
	ok [][sha256.Size]byte
}

type tokenEntry struct {
	sum [sha256.Size]byte
	u   *userEntry
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
	st, err := load(c)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Authenticator{now: o.Now, bcryptSem: make(chan struct{}, runtime.GOMAXPROCS(0)), failures: map[string]failure{}}
	a.st.Store(st)
	return a, nil
}

// Reload replaces the users with c's, all at once: a login or a check
// sees either the old users or the new ones, never a mix. If c is
// invalid or a secret cannot be read, it returns the errors (key paths
// relative to the block) and the old users stay. Logged-in principals
// take the new permissions on their next check; those whose user or
// credential is gone are revoked (Principal.Revoked).
func (a *Authenticator) Reload(c Config) error {
	st, err := load(c)
	if err != nil {
		return err
	}
	for {
		old := a.st.Load()
		st.gen = old.gen + 1
		if a.st.CompareAndSwap(old, st) {
			return nil
		}
	}
}

// Generation counts the reloads: 0 for the users New read, then one more
// for each Reload that took.
func (a *Authenticator) Generation() uint64 { return a.st.Load().gen }

// load validates c and reads its secrets.
func load(c Config) (*authState, error) {
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
	st := &authState{cfg: c, users: map[string]*userEntry{}, certs: map[string]*userEntry{}}
	// Unknown users cost a bcrypt of the configured users' cost too, so
	// the time of an answer does not tell which users exist.
	st.dummyCost = bcrypt.DefaultCost
	for _, name := range sortedNames(c.Users) {
		if n, err := bcrypt.Cost([]byte(c.Users[name].PasswordHash)); err == nil {
			st.dummyCost = n
			break
		}
	}
	var errs []error
	seen := map[[sha256.Size]byte]string{}
	for _, name := range sortedNames(c.Users) {
		u := c.Users[name]
		e := &userEntry{name: name}
		for perm, pats := range [][]string{u.Publish, u.Consume, u.Manage, u.Read} {
			for _, s := range pats {
				pt, _ := parsePattern(s) // checked by Validate
				e.perms[perm] = append(e.perms[perm], pt)
			}
		}
		if u.PasswordHash != "" {
			e.hash = []byte(u.PasswordHash)
		}
		st.users[name] = e
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
			e.tokens = append(e.tokens, sum)
			st.tokens = append(st.tokens, tokenEntry{sum: sum, u: e})
		}
		for _, cn := range u.Certs {
			e.certs = append(e.certs, cn)
			st.certs[cn] = e
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return st, nil
}

// grantFor is the grant of the user name logged in via how with cred
// under these users: revoked if the user or that credential is gone.
func (st *authState) grantFor(name, how, cred string) *grant {
	g := &grant{gen: st.gen, revoked: true}
	e := st.users[name]
	if e == nil {
		return g
	}
	switch how {
	case "password":
		g.revoked = string(e.hash) != cred
	case "token":
		for _, s := range e.tokens {
			if string(s[:]) == cred {
				g.revoked = false
			}
		}
	case "certificate":
		for _, cn := range e.certs {
			if cn == cred {
				g.revoked = false
			}
		}
	}
	if !g.revoked {
		g.perms = e.perms
	}
	return g
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
func (a *Authenticator) AuthTimeout() time.Duration { return a.st.Load().cfg.AuthTimeout }

// MaxUnauthenticated is the cap on native connections not yet logged in.
func (a *Authenticator) MaxUnauthenticated() int { return a.st.Load().cfg.MaxUnauthenticated }

// NeedsClientCerts reports whether some user logs in by certificate.
func (a *Authenticator) NeedsClientCerts() bool { return len(a.st.Load().certs) > 0 }

// NeedsClientCerts reports whether some user of c logs in by certificate.
func (c *Config) NeedsClientCerts() bool {
	for _, u := range c.Users {
		if len(u.Certs) > 0 {
			return true
		}
	}
	return false
}

// errLogin is the one answer to every failed login: it does not say
// whether the user exists.
func errLogin(how string) error {
	return fmt.Errorf("%w: invalid %s", broker.ErrUnauthorized, how)
}

// Password logs user in with password. A failure waits (see
// Config.FailureDelay) before returning ErrUnauthorized; ip is the
// caller's address for that count.
func (a *Authenticator) Password(ctx context.Context, ip, user, password string) (*Principal, error) {
	st := a.st.Load()
	e := st.users[user]
	sum := sha256.Sum256([]byte(user + "\x00" + password))
	if e != nil && e.hash != nil && e.remembered(sum) {
		return a.as(st, e, "password", string(e.hash)), nil
	}
	st.dummyOnce.Do(func() {
		st.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), st.dummyCost)
	})
	hash := st.dummy
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
	return a.as(st, e, "password", string(e.hash)), nil
}

// Token logs in with a bearer token.
func (a *Authenticator) Token(ctx context.Context, ip, token string) (*Principal, error) {
	st := a.st.Load()
	sum := sha256.Sum256([]byte(token))
	var found *userEntry
	for i := range st.tokens { // every entry compared: no early exit to time
		if subtle.ConstantTimeCompare(sum[:], st.tokens[i].sum[:]) == 1 {
			found = st.tokens[i].u
		}
	}
	if found == nil {
		return nil, a.fail(ctx, ip, errLogin("token"))
	}
	return a.as(st, found, "token", string(sum[:])), nil
}

// Certificate maps a verified TLS client certificate (the connection
// state's first verified chain) to its user by subject common name, then
// DNS names. ok is false without a verified certificate or a user for it.
func (a *Authenticator) Certificate(cs *tls.ConnectionState) (*Principal, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil, false
	}
	st := a.st.Load()
	e, cn := st.certUser(cs.VerifiedChains[0][0])
	if e == nil {
		return nil, false
	}
	return a.as(st, e, "certificate", cn), true
}

func (st *authState) certUser(c *x509.Certificate) (*userEntry, string) {
	if e := st.certs[c.Subject.CommonName]; e != nil && c.Subject.CommonName != "" {
		return e, c.Subject.CommonName
	}
	for _, d := range c.DNSNames {
		if e := st.certs[d]; e != nil {
			return e, d
		}
	}
	return nil, ""
}

// as returns the principal of user e logged in via how with cred, under
// the users st.
func (a *Authenticator) as(st *authState, e *userEntry, how, cred string) *Principal {
	p := &Principal{Name: e.name, Via: how, a: a, cred: cred}
	p.g.Store(&grant{gen: st.gen, perms: e.perms})
	return p
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
	delay := a.st.Load().cfg.FailureDelay
	if delay < 0 {
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
	return delay * time.Duration(min(f.n, 10))
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
