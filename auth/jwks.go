package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSSize bounds a JWKS response body.
const maxJWKSSize = 1 << 20

// jwksCache holds the last good key set fetched from a JWKS URL.
//
// There is no background goroutine. A request that finds the set missing
// or older than maxAge fetches it inline (detached from the request's
// cancellation, bounded by timeout); requests arriving meanwhile keep using
// the old set, or wait for the fetch when there is none. A token with an
// unknown kid asks for a fetch too. Fetch attempts, successful or not, are
// at least MinJWKSRefreshInterval apart; a failed fetch keeps the old set.
type jwksCache struct {
	url     string
	client  *http.Client
	timeout time.Duration
	maxAge  time.Duration
	now     func() time.Time
	log     *slog.Logger
	onStore func() // called after a new key set is stored; may be nil

	set atomic.Pointer[jwkSet]

	mu          sync.Mutex
	inflight    chan struct{} // closed when the running fetch ends; nil when none runs
	lastAttempt time.Time
	lastErr     error // of the last fetch; nil after a success
}

func (c *jwksCache) lastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == nil {
		return errors.New("no fetch completed")
	}
	return c.lastErr
}

type jwkSet struct {
	fetched time.Time
	keys    []jwkKey
	byKID   map[string]jwkKey
}

type jwkKey struct {
	kid    string
	alg    string // the JWK's "alg", may be empty
	family string // "RS256" or "ES256": the only algorithm the key may verify
	key    any    // *rsa.PublicKey or *ecdsa.PublicKey
}

func (c *jwksCache) current() *jwkSet { return c.set.Load() }

// refreshIfStale fetches when the set is missing or older than maxAge.
func (c *jwksCache) refreshIfStale(ctx context.Context) {
	ks := c.set.Load()
	if ks != nil && c.now().Sub(ks.fetched) < c.maxAge {
		return
	}
	c.fetchLimited(ctx, ks == nil)
}

// refresh fetches unless a fetch was attempted in the last
// MinJWKSRefreshInterval, and waits for a fetch already running.
func (c *jwksCache) refresh(ctx context.Context) { c.fetchLimited(ctx, true) }

func (c *jwksCache) fetchLimited(ctx context.Context, wait bool) {
	c.mu.Lock()
	if ch := c.inflight; ch != nil {
		c.mu.Unlock()
		if wait {
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
		return
	}
	now := c.now()
	if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < MinJWKSRefreshInterval {
		c.mu.Unlock()
		return
	}
	c.lastAttempt = now
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		c.inflight = nil
		c.mu.Unlock()
		close(ch)
	}()
	// The fetch serves every later request: do not let this request's
	// client hanging up abort it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	ks, err := c.fetch(fctx)
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("auth: fetching jwks failed; keeping the previous key set", "url", c.url, "error", err)
		return
	}
	ks.fetched = c.now()
	c.set.Store(ks)
	if c.onStore != nil {
		c.onStore()
	}
}

// rawJWK is the subset of RFC 7517/7518 members this package reads.
type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (c *jwksCache) fetch(ctx context.Context) (*jwkSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("requesting %q: %w", c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("requesting %q: status %d", c.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", c.url, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("reading %q: larger than %d bytes", c.url, maxJWKSSize)
	}
	return parseJWKS(body, c.log)
}

// parseJWKS keeps the RSA (2048+ bits) and P-256 signature keys of a JWK
// set and skips, with a warning, everything else (symmetric keys, other
// curves, encryption keys), so a key set can never supply an HMAC secret.
func parseJWKS(body []byte, log *slog.Logger) (*jwkSet, error) {
	var doc struct {
		Keys []rawJWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decoding jwks: %w", err)
	}
	ks := &jwkSet{byKID: map[string]jwkKey{}}
	for i, raw := range doc.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			log.Warn("auth: skipping jwk", "index", i, "kid", raw.Kid, "error", err)
			continue
		}
		if k.kid != "" {
			if _, dup := ks.byKID[k.kid]; dup {
				log.Warn("auth: skipping jwk with duplicate kid", "index", i, "kid", raw.Kid)
				continue
			}
			ks.byKID[k.kid] = k
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("decoding jwks: no usable key among %d", len(doc.Keys))
	}
	return ks, nil
}

func parseJWK(raw rawJWK) (jwkKey, error) {
	k := jwkKey{kid: raw.Kid, alg: raw.Alg}
	if raw.Use != "" && raw.Use != "sig" {
		return k, fmt.Errorf("use %q: not a signature key", raw.Use)
	}
	switch raw.Kty {
	case "RSA":
		if raw.Alg != "" && raw.Alg != "RS256" {
			return k, fmt.Errorf("alg %q: unsupported for an RSA key", raw.Alg)
		}
		n, err1 := b64Int(raw.N)
		e, err2 := b64Int(raw.E)
		if err := errors.Join(err1, err2); err != nil {
			return k, fmt.Errorf("rsa key: %w", err)
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return k, fmt.Errorf("rsa exponent %s: invalid", e)
		}
		pub, err := checkPublicKey(&rsa.PublicKey{N: n, E: int(e.Int64())})
		if err != nil {
			return k, err
		}
		k.family, k.key = "RS256", pub
	case "EC":
		if raw.Crv != "P-256" {
			return k, fmt.Errorf("curve %q: only P-256 is supported", raw.Crv)
		}
		if raw.Alg != "" && raw.Alg != "ES256" {
			return k, fmt.Errorf("alg %q: unsupported for a P-256 key", raw.Alg)
		}
		x, err1 := base64.RawURLEncoding.DecodeString(raw.X)
		y, err2 := base64.RawURLEncoding.DecodeString(raw.Y)
		if err := errors.Join(err1, err2); err != nil || len(x) != 32 || len(y) != 32 {
			return k, errors.New("ec key: x and y must be 32 bytes of base64url")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return k, fmt.Errorf("ec key: %w", err)
		}
		k.family, k.key = "ES256", pub
	default:
		return k, fmt.Errorf("kty %q: unsupported (only RSA and EC)", raw.Kty)
	}
	return k, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("invalid base64url integer %q", truncate(s, 16))
	}
	return new(big.Int).SetBytes(b), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
