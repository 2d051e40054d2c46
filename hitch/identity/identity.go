package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
	"golang.org/x/crypto/bcrypt"
)

// Component is the name of the service's migrations in its database.
const Component = "hitch-identity"

// Audience is the aud claim of every token: the gateway checks it.
const Audience = "hitch"

// Defaults of Config.
const (
	DefaultIssuer        = "hitch-identity"
	DefaultTokenTTL      = time.Hour
	DefaultBcryptCost    = bcrypt.DefaultCost // 10
	DefaultMaxBody       = 16 << 10
	DefaultMaxFailures   = 5
	DefaultFailureWindow = 15 * time.Minute
	DefaultSweepInterval = time.Minute
)

// Limits on what a user registers with.
const (
	MinPassword = 8   // bytes
	MaxPassword = 72  // bytes: bcrypt reads no more
	MaxName     = 100 // characters
	MaxEmail    = 254 // bytes (RFC 5321 path limit)
)

// Config configures the identity service.
// compareHash checks a password against a bcrypt hash; a variable so a
// test can see which hash each login compares.
var compareHash = bcrypt.CompareHashAndPassword

type Config struct {
	// Issuer is the iss claim of the tokens. Default "hitch-identity".
	Issuer string `yaml:"issuer"`
	// TokenTTL is how long a token is valid. 1m to 24h. Default 1h.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// BcryptCost is the work factor of password hashes, 4 to 31. Default
	// 10 (about 50 ms per hash here); tests use 4.
	BcryptCost int `yaml:"bcrypt_cost"`
	// MaxBody is the largest request body accepted, in bytes (413 over
	// it). Default 16 KiB.
	MaxBody int64 `yaml:"max_body"`
	// MaxFailures is how many failed logins one email may have within
	// FailureWindow before further attempts get 429. Default 5; -1
	// disables the limit.
	MaxFailures int `yaml:"max_failures"`
	// FailureWindow is how long failures count, from the first one.
	// Default 15m.
	FailureWindow time.Duration `yaml:"failure_window"`
	// SweepInterval is how often Run deletes failure counts whose window
	// ended. Default 1m.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives operational logs. Default: discarded.
	Logger *slog.Logger `yaml:"-"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = DefaultBcryptCost
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = DefaultFailureWindow
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate reports every problem of c (after defaults), each naming its key.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &config.FieldError{Path: key, Err: fmt.Errorf(format, args...)})
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		add("token_ttl", "%v out of range: expected 1m to 24h", c.TokenTTL)
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		add("bcrypt_cost", "%d out of range: expected %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if c.MaxBody < 256 || c.MaxBody > 1<<20 {
		add("max_body", "%d out of range: expected 256 to 1048576 bytes", c.MaxBody)
	}
	if c.MaxFailures < -1 {
		add("max_failures", "%d: expected a positive count, or -1 for no limit", c.MaxFailures)
	}
	if c.FailureWindow < 0 {
		add("failure_window", "negative duration %v", c.FailureWindow)
	}
	if c.SweepInterval < 0 {
		add("sweep_interval", "negative duration %v", c.SweepInterval)
	}
	return errors.Join(errs...)
}

// Service is the identity service. Safe for concurrent use.
type Service struct {
	db    *store.DB
	cfg   Config
	key   *ecdsa.PrivateKey
	kid   string
	jwks  []byte // the JWKS document, built once
	dummy []byte // a bcrypt hash compared for unknown emails
}

var migrations = []store.Migration{
	{Version: 1, Name: "users, signing key, login failures", SQL: `
CREATE TABLE hitch_identity_users (
	id            TEXT PRIMARY KEY,
	email         TEXT NOT NULL UNIQUE,
	name          TEXT NOT NULL,
	role          TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created_at    BIGINT NOT NULL
);
CREATE TABLE hitch_identity_keys (
	slot        INTEGER PRIMARY KEY,
	kid         TEXT NOT NULL,
	private_der TEXT NOT NULL,
	created_at  BIGINT NOT NULL
);
CREATE TABLE hitch_identity_failures (
	email    TEXT PRIMARY KEY,
	failures INTEGER NOT NULL,
	since    BIGINT NOT NULL
)`},
}

// New opens the service on db: it runs its migrations and loads the signing
// key, creating it if this is the first start of any replica. bus is unused
// (identity publishes no events) and may be nil.
func New(ctx context.Context, db *store.DB, _ message.Backend, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("identity config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if err := db.Migrate(ctx, Component, migrations); err != nil {
		return nil, fmt.Errorf("identity: migrating its database: %w", err)
	}
	s := &Service{db: db, cfg: cfg}
	if err := s.loadKey(ctx); err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user: compared so it costs the same"), cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("identity: dummy hash: %w", err)
	}
	s.dummy = dummy
	return s, nil
}

// loadKey reads the signing key, first inserting a new one unless a key is
// there already: of replicas starting together one insert wins and every
// replica reads the winner's key.
func (s *Service) loadKey(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("identity: generating the signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("identity: encoding the signing key: %w", err)
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO hitch_identity_keys (slot, kid, private_der, created_at) VALUES (1, ?, ?, ?)
		ON CONFLICT (slot) DO NOTHING`, thumbprint(&key.PublicKey), base64.StdEncoding.EncodeToString(der), s.cfg.Now().UnixMilli()); err != nil {
		return fmt.Errorf("identity: storing the signing key: %w", err)
	}
	var kid, stored string
	if err := s.db.QueryRow(ctx, `SELECT kid, private_der FROM hitch_identity_keys WHERE slot = 1`).Scan(&kid, &stored); err != nil {
		return fmt.Errorf("identity: reading the signing key: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(stored)
	if err != nil {
		return fmt.Errorf("identity: signing key in the database: %w", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(raw)
	if err != nil {
		return fmt.Errorf("identity: signing key in the database: %w", err)
	}
	ec, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return fmt.Errorf("identity: signing key in the database is a %T, expected a P-256 key", parsed)
	}
	s.key, s.kid = ec, kid
	s.jwks, err = json.Marshal(jwks{Keys: []jwk{publicJWK(&ec.PublicKey, kid)}})
	return err
}

// KeyID is the kid of the signing key.
func (s *Service) KeyID() string { return s.kid }

// PublicKey is the key tokens verify with.
func (s *Service) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

// Run deletes login failure counts whose window ended, every
// SweepInterval, until ctx ends; then it returns nil.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			cut := s.cfg.Now().Add(-s.cfg.FailureWindow).UnixMilli()
			if _, err := s.db.Exec(ctx, `DELETE FROM hitch_identity_failures WHERE since < ?`, cut); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("identity: sweeping login failures", "err", err)
			}
		}
	}
}

// user is a stored user.
type user struct {
	ID, Email, Name, Role, Hash string
}

var errDuplicate = errors.New("email already registered")

func (s *Service) insertUser(ctx context.Context, u user) error {
	_, err := s.db.Exec(ctx, `INSERT INTO hitch_identity_users (id, email, name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		u.ID, u.Email, u.Name, u.Role, u.Hash, s.cfg.Now().UnixMilli())
	if store.IsUniqueViolation(err) {
		return errDuplicate
	}
	return err
}

func (s *Service) userByEmail(ctx context.Context, email string) (user, bool, error) {
	u := user{Email: email}
	err := s.db.QueryRow(ctx, `SELECT id, name, role, password_hash FROM hitch_identity_users WHERE email = ?`, email).
		Scan(&u.ID, &u.Name, &u.Role, &u.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return u, false, nil
	}
	return u, err == nil, err
}

// lockedUntil returns when email may try again, or the zero time when it
// may now.
func (s *Service) lockedUntil(ctx context.Context, email string) (time.Time, error) {
	if s.cfg.MaxFailures < 0 {
		return time.Time{}, nil
	}
	var failures int
	var since int64
	err := s.db.QueryRow(ctx, `SELECT failures, since FROM hitch_identity_failures WHERE email = ?`, email).Scan(&failures, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	end := time.UnixMilli(since).Add(s.cfg.FailureWindow)
	if failures >= s.cfg.MaxFailures && s.cfg.Now().Before(end) {
		return end, nil
	}
	return time.Time{}, nil
}

// recordFailure counts a failed login of email, starting a new window when
// the last one ended.
func (s *Service) recordFailure(ctx context.Context, email string) error {
	if s.cfg.MaxFailures < 0 {
		return nil
	}
	now := s.cfg.Now().UnixMilli()
	cut := s.cfg.Now().Add(-s.cfg.FailureWindow).UnixMilli()
	_, err := s.db.Exec(ctx, `INSERT INTO hitch_identity_failures (email, failures, since) VALUES (?, 1, ?)
		ON CONFLICT (email) DO UPDATE SET
			failures = CASE WHEN hitch_identity_failures.since < ? THEN 1 ELSE hitch_identity_failures.failures + 1 END,
			since    = CASE WHEN hitch_identity_failures.since < ? THEN excluded.since ELSE hitch_identity_failures.since END`,
		email, now, cut, cut)
	return err
}

func (s *Service) clearFailures(ctx context.Context, email string) error {
	if s.cfg.MaxFailures < 0 {
		return nil
	}
	_, err := s.db.Exec(ctx, `DELETE FROM hitch_identity_failures WHERE email = ?`, email)
	return err
}

// newID returns a random user id: 32 hex digits.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jwk is one public key of a JWKS (RFC 7517, 7518 section 6.2).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

func coords(pub *ecdsa.PublicKey) (x, y string) {
	b, err := pub.Bytes() // 0x04 || X || Y, each 32 bytes
	if err != nil || len(b) != 65 {
		panic(fmt.Sprintf("identity: P-256 public key encoding: %v", err))
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(b[1:33]), enc.EncodeToString(b[33:])
}

func publicJWK(pub *ecdsa.PublicKey, kid string) jwk {
	x, y := coords(pub)
	return jwk{Kty: "EC", Crv: "P-256", X: x, Y: y, Kid: kid, Use: "sig", Alg: "ES256"}
}

// thumbprint is the key's RFC 7638 JWK thumbprint, its kid.
func thumbprint(pub *ecdsa.PublicKey) string {
	x, y := coords(pub)
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
