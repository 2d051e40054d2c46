package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

type basicEntry struct {
	consumer *consumerEntry
	hash     []byte
}

func checkBcrypt(h string) error {
	if h == "" {
		return errors.New("required: a bcrypt hash")
	}
	if !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
		return errors.New("expected a bcrypt hash starting with $2a$, $2b$ or $2y$")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return fmt.Errorf("parsing bcrypt hash: %w", err)
	}
	return nil
}

// dummyBcrypt returns a bcrypt hash with the highest cost among the
// configured ones, compared when the username is unknown so that response
// time does not tell which usernames exist.
func dummyBcrypt(users map[string]*basicEntry) ([]byte, error) {
	cost := bcrypt.MinCost
	for _, u := range users {
		if c, err := bcrypt.Cost(u.hash); err == nil && c > cost {
			cost = c
		}
	}
	h, err := bcrypt.GenerateFromPassword([]byte("switchyard-no-such-user"), cost)
	if err != nil {
		return nil, fmt.Errorf("generating dummy bcrypt hash: %w", err)
	}
	return h, nil
}

// authBasic checks HTTP Basic credentials. Over plain HTTP it refuses
// before looking at the password (403 insecure_basic), unless allowed.
func (a *Authenticator) authBasic(r *http.Request) (*Identity, error) {
	if r.TLS == nil && !a.insecureOK {
		return nil, &Error{Status: http.StatusForbidden, Code: CodeInsecureBasic,
			Message: "basic credentials are accepted only over https"}
	}
	user, pass, ok := r.BasicAuth()
	if !ok || len(user)+len(pass) > maxCredentialLen {
		return nil, a.invalidBasic("malformed basic credentials")
	}
	e := a.basic[user]
	if e != nil && a.bcache.hit(user, pass, e) {
		return e.consumer.byBasic, nil
	}
	hash := a.dummyHash
	if e != nil {
		hash = e.hash
	}
	if hash == nil { // no Basic credential configured at all
		return nil, a.invalidBasic("invalid username or password")
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pass))
	if e == nil || err != nil {
		return nil, a.invalidBasic("invalid username or password")
	}
	a.bcache.add(user, pass, e)
	return e.consumer.byBasic, nil
}

func (a *Authenticator) invalidBasic(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials, Message: msg,
		Challenges: []string{a.ch.basic()}}
}

// basicCache remembers credentials that passed bcrypt, so a client sending
// Basic on every request pays one bcrypt comparison per basicCacheTTL
// instead of one per request. Entries are keyed by SHA-256 over a random
// per-Authenticator key, the username and the password: the password is
// never stored and the key cannot be reproduced from outside. Failures are
// not cached. The cache is bounded; when full it is emptied.
type basicCache struct {
	key [32]byte
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]basicCached
}

type basicCached struct {
	entry   *basicEntry
	expires time.Time
}

const (
	basicCacheTTL  = 5 * time.Minute
	basicCacheSize = 4096
)

func newBasicCache(key [32]byte, now func() time.Time) *basicCache {
	return &basicCache{key: key, now: now, m: map[[32]byte]basicCached{}}
}

func (c *basicCache) id(user, pass string) [32]byte {
	h := sha256.New()
	h.Write(c.key[:])
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (c *basicCache) hit(user, pass string, e *basicEntry) bool {
	id := c.id(user, pass)
	c.mu.Lock()
	v, ok := c.m[id]
	c.mu.Unlock()
	return ok && v.entry == e && c.now().Before(v.expires)
}

func (c *basicCache) add(user, pass string, e *basicEntry) {
	id := c.id(user, pass)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= basicCacheSize {
		clear(c.m)
	}
	c.m[id] = basicCached{entry: e, expires: c.now().Add(basicCacheTTL)}
}
