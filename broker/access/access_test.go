package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
)

func TestPatterns(t *testing.T) {
	for _, c := range []struct {
		pat, kind, name string
		want            bool
	}{
		{"*", Queue, "anything", true},
		{"*", Stream, "x", true},
		{"orders.*", Queue, "orders.eu", true},
		{"orders.*", Queue, "orders", false},
		{"orders*", Queue, "orders", true},
		{"queue:orders", Queue, "orders", true},
		{"queue:orders", Topic, "orders", false},
		{"stream:pay*", Stream, "payments", true},
		{"stream:pay*", Queue, "payments", false},
		{"orders", Queue, "orders.eu", false},
	} {
		p, err := parsePattern(c.pat)
		if err != nil {
			t.Fatalf("%q: %v", c.pat, err)
		}
		if got := p.match(c.kind, c.name); got != c.want {
			t.Errorf("%q matches %s %q: %v, want %v", c.pat, c.kind, c.name, got, c.want)
		}
	}
	for _, bad := range []string{"", "queue:", "a*b", "**", "bucket:x", "a b", "x/y"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range []string{"*", "queue:orders.*", "a*b", "stream:", ":", "topic:x*"} {
		f.Add(s, "queue", "orders.eu")
	}
	f.Fuzz(func(t *testing.T, pat, kind, name string) {
		p, err := parsePattern(pat)
		if err != nil {
			return
		}
		// "*" patterns only ever widen: the exact name of a pattern
		// without * matches itself.
		if !p.prefix && p.kind != "" && !p.match(p.kind, p.name) {
			t.Fatalf("%q does not match its own name", pat)
		}
		if p.prefix && p.name == "" && (p.kind == "" || p.kind == kind) && !p.match(kind, name) {
			t.Fatalf("%q does not match %s %q", pat, kind, name)
		}
	})
}

func newAuth(t *testing.T, c Config, now func() time.Time) *Authenticator {
	t.Helper()
	a, err := New(c, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Tokens from env: and file:, or their sum; the same token twice is
// refused; a short one too.
func TestTokens(t *testing.T) {
	t.Setenv("SY_ACCESS_TOKEN", "env-token-0123456789")
	file := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(file, []byte("file-token-0123456789\n"), 0o600)
	sum := sha256.Sum256([]byte("sum-token-0123456789"))
	a := newAuth(t, Config{FailureDelay: -1, Users: map[string]User{
		"e": {Tokens: []string{"env:SY_ACCESS_TOKEN"}},
		"f": {Tokens: []string{"file:" + file}},
		"s": {Tokens: []string{"sha256:" + hex.EncodeToString(sum[:])}},
	}}, nil)
	for tok, user := range map[string]string{"env-token-0123456789": "e", "file-token-0123456789": "f", "sum-token-0123456789": "s"} {
		p, err := a.Token(context.Background(), "ip", tok)
		if err != nil || p.Name != user || p.Via != "token" {
			t.Errorf("token of %s: %v %v", user, p, err)
		}
	}
	if _, err := a.Token(context.Background(), "ip", "nope"); !errors.Is(err, broker.ErrUnauthorized) || strings.Contains(err.Error(), "nope") {
		t.Errorf("wrong token: %v", err)
	}
	_, err := New(Config{Users: map[string]User{"a": {Tokens: []string{"env:SY_ACCESS_TOKEN"}}, "b": {Tokens: []string{"env:SY_ACCESS_TOKEN"}}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), `users.b.tokens[0]: the same token as user "a"'s`) {
		t.Errorf("shared token: %v", err)
	}
	t.Setenv("SY_SHORT", "short")
	if _, err := New(Config{Users: map[string]User{"a": {Tokens: []string{"env:SY_SHORT"}}}}, Options{}); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short token: %v", err)
	}
}

// The failure delay grows with an address's recent failures, per
// address, and forgets them after a minute (an injected clock).
func TestFailureDelay(t *testing.T) {
	now := time.Unix(1000, 0)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	a := newAuth(t, Config{FailureDelay: time.Second, Users: map[string]User{"u": {PasswordHash: string(h)}}}, func() time.Time { return now })
	for i, want := range []time.Duration{1, 2, 3} {
		if got := a.FailureDelayFor("10.0.0.1"); got != want*time.Second {
			t.Fatalf("failure %d: delay %s, want %ss", i+1, got, want)
		}
	}
	if got := a.FailureDelayFor("10.0.0.2"); got != time.Second {
		t.Fatalf("another address: %s", got)
	}
	for i := 0; i < 20; i++ {
		a.FailureDelayFor("10.0.0.1")
	}
	if got := a.FailureDelayFor("10.0.0.1"); got != 10*time.Second {
		t.Fatalf("capped: %s", got)
	}
	now = now.Add(2 * time.Minute)
	if got := a.FailureDelayFor("10.0.0.1"); got != time.Second {
		t.Fatalf("after a quiet minute: %s", got)
	}
	// A right password after failures is not delayed (and is remembered).
	for i := 0; i < 2; i++ {
		if p, err := a.Password(context.Background(), "10.0.0.1", "u", "pw"); err != nil || p.Name != "u" {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the delay ends with the caller
	if _, err := a.Password(ctx, "10.0.0.1", "u", "bad"); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("bad password: %v", err)
	}
}

func TestPermissions(t *testing.T) {
	a := newAuth(t, Config{FailureDelay: -1, Users: map[string]User{
		"w": {Tokens: []string{"sha256:" + strings.Repeat("ab", 32)}, Publish: []string{"queue:orders.*"}, Manage: []string{"topic:*"}},
	}}, nil)
	st := a.st.Load()
	p := a.as(st, st.users["w"], "token", string(st.users["w"].tokens[0][:]))
	if err := p.Check(Publish, Queue, "orders.eu"); err != nil {
		t.Fatal(err)
	}
	err := p.Check(Consume, Queue, "orders.eu")
	var fe *broker.ForbiddenError
	if !errors.As(err, &fe) || err.Error() != `forbidden: user "w" has no consume permission on queue "orders.eu"` {
		t.Fatalf("consume: %v", err)
	}
	if err := p.CheckAll(Manage); err == nil {
		t.Fatal("manage on topics only is not manage on everything")
	}
	if err := p.CheckBinding([]string{"orders.eu", "audit"}); err == nil || !strings.Contains(err.Error(), `queue "audit"`) {
		t.Fatalf("binding: %v", err)
	}
	if !p.Sees(Topic, "x") || p.Sees(Stream, "x") {
		t.Fatal("Sees")
	}
	var open *Principal
	if open.Check(Manage, Queue, "x") != nil || open.CheckAll(Manage) != nil {
		t.Fatal("an open broker allows everything")
	}
}

func tokenRef(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Reload swaps the users: a logged-in principal takes the new
// permissions on its next check; a removed user, a removed token and a
// changed password hash revoke the principals that used them; a bad
// config keeps the old users whole.
func TestReload(t *testing.T) {
	ctx := context.Background()
	h1, _ := bcrypt.GenerateFromPassword([]byte("password-one"), bcrypt.MinCost)
	h2, _ := bcrypt.GenerateFromPassword([]byte("password-two"), bcrypt.MinCost)
	c := Config{FailureDelay: -1, Users: map[string]User{
		"w":    {PasswordHash: string(h1), Publish: []string{"queue:orders.*"}},
		"r":    {Tokens: []string{tokenRef("reader-token-one-0123"), tokenRef("reader-token-two-0123")}, Consume: []string{"queue:orders.*"}},
		"gone": {Tokens: []string{tokenRef("gone-token-0123456789")}, Consume: []string{"*"}},
	}}
	a := newAuth(t, c, nil)
	w, err := a.Password(ctx, "ip", "w", "password-one")
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := a.Token(ctx, "ip", "reader-token-one-0123")
	r2, _ := a.Token(ctx, "ip", "reader-token-two-0123")
	g, _ := a.Token(ctx, "ip", "gone-token-0123456789")
	if r1 == nil || r2 == nil || g == nil {
		t.Fatal("logins")
	}
	if w.Check(Publish, Queue, "audit") == nil {
		t.Fatal("w publishes to audit before the reload")
	}

	// A bad file: nothing changes, and the error names the key.
	bad := Config{Users: map[string]User{"w": {PasswordHash: "plain", Publish: []string{"*"}}}}
	if err := a.Reload(bad); err == nil || !strings.Contains(err.Error(), "users.w.password_hash") {
		t.Fatalf("bad reload: %v", err)
	}
	missing := Config{Users: map[string]User{"w": {Tokens: []string{"env:SY_NOT_SET_ANYWHERE"}}}}
	if err := a.Reload(missing); err == nil || !strings.Contains(err.Error(), `users.w.tokens[0]: environment variable "SY_NOT_SET_ANYWHERE" is not set`) {
		t.Fatalf("unreadable secret: %v", err)
	}
	if a.Generation() != 0 || w.Check(Publish, Queue, "orders.eu") != nil || g.Revoked() != nil {
		t.Fatal("a refused reload changed the users")
	}

	c2 := Config{FailureDelay: -1, Users: map[string]User{
		"w": {PasswordHash: string(h1), Publish: []string{"queue:orders.*", "queue:audit"}},
		"r": {Tokens: []string{tokenRef("reader-token-two-0123")}, Consume: []string{"queue:orders.eu"}},
	}}
	if err := a.Reload(c2); err != nil {
		t.Fatal(err)
	}
	if a.Generation() != 1 {
		t.Fatalf("generation %d", a.Generation())
	}
	if err := w.Check(Publish, Queue, "audit"); err != nil {
		t.Fatalf("w after the grant: %v", err)
	}
	if err := r2.Check(Consume, Queue, "orders.us"); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("r narrowed to orders.eu, consumes orders.us: %v", err)
	}
	if err := r2.Check(Consume, Queue, "orders.eu"); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Principal{"removed token": r1, "removed user": g} {
		err := p.Check(Consume, Queue, "orders.eu")
		if !errors.Is(err, broker.ErrUnauthorized) || p.Revoked() == nil || !strings.Contains(err.Error(), "revoked by a reload") {
			t.Errorf("%s: %v", name, err)
		}
		if p.Sees(Queue, "orders.eu") || p.CheckAll(Consume) == nil {
			t.Errorf("%s still sees", name)
		}
	}
	if _, err := a.Token(ctx, "ip", "reader-token-one-0123"); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("removed token logs in: %v", err)
	}

	// A new password hash revokes the old password's sessions, and the
	// remembered old password no longer logs in.
	c3 := c2
	c3.Users = map[string]User{"w": {PasswordHash: string(h2), Publish: []string{"*"}}, "r": c2.Users["r"]}
	if err := a.Reload(c3); err != nil {
		t.Fatal(err)
	}
	if w.Revoked() == nil {
		t.Fatal("w's session survived its password's change")
	}
	if _, err := a.Password(ctx, "ip", "w", "password-one"); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("old password: %v", err)
	}
	w2, err := a.Password(ctx, "ip", "w", "password-two")
	if err != nil || w2.Check(Publish, Stream, "x") != nil {
		t.Fatalf("new password: %v", err)
	}
	if r2.Revoked() != nil {
		t.Fatal("r's kept token was revoked")
	}
}

// Checks race a stream of reloads: each sees one generation whole.
func TestReloadConcurrent(t *testing.T) {
	tok := "racing-token-0123456789"
	mk := func(pat string) Config {
		return Config{FailureDelay: -1, Users: map[string]User{"u": {Tokens: []string{tokenRef(tok)}, Publish: []string{pat}, Consume: []string{pat}}}}
	}
	a := newAuth(t, mk("queue:a"), nil)
	p, _ := a.Token(context.Background(), "ip", tok)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			pat := "queue:a"
			if i%2 == 1 {
				pat = "queue:b"
			}
			if err := a.Reload(mk(pat)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		g := p.current()
		pa := len(g.perms[Publish]) == 1 && g.perms[Publish][0].name == g.perms[Consume][0].name
		if !pa {
			t.Fatal("a grant mixes two generations")
		}
	}
}
