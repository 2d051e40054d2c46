package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// newAuthBroker is a real broker whose HTTP API has users: "app"
// (password "app-password", publish and consume orders) and a token
// (consume orders only).
func newAuthBroker(t *testing.T) *testBroker {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Declare("orders", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("app-password"), bcrypt.MinCost)
	sum := sha256.Sum256([]byte("reader-token-0123456789"))
	a, err := access.New(access.Config{FailureDelay: -1, Users: map[string]access.User{
		"app":    {PasswordHash: string(h), Publish: []string{"queue:orders"}, Consume: []string{"queue:orders"}},
		"reader": {Tokens: []string{"sha256:" + hex.EncodeToString(sum[:])}, Consume: []string{"queue:orders"}},
	}}, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewWithOptions(b, httpapi.Options{Auth: a}))
	t.Cleanup(func() { srv.Close(); b.Close() })
	return &testBroker{t: t, b: b, addr: strings.TrimPrefix(srv.URL, "http://")}
}

// The CLI takes credentials from the environment (or files), never a
// password flag; without them the broker's 401 is shown.
func TestCLICredentialsFromEnv(t *testing.T) {
	tb := newAuthBroker(t)
	r := tb.run("", "publish", "orders", "hello")
	if r.code != 1 || !strings.Contains(r.err.Error(), "unauthorized") {
		t.Fatalf("no credentials: exit %d %v", r.code, r.err)
	}
	t.Setenv(EnvUser, "app")
	t.Setenv(EnvPassword, "app-password")
	tb.must("", "publish", "orders", "hello")

	t.Setenv(EnvUser, "")
	t.Setenv(EnvPassword, "")
	t.Setenv(EnvToken, "reader-token-0123456789")
	out := tb.must("", "receive", "orders", "--json").out
	if !strings.Contains(out, `"body":"hello"`) {
		t.Fatalf("receive with the token: %s", out)
	}
	r = tb.run("", "publish", "orders", "x")
	if r.code != 1 || !strings.Contains(r.err.Error(), `forbidden: user "reader" has no publish permission on queue "orders"`) {
		t.Fatalf("reader publish: exit %d %v", r.code, r.err)
	}

	// A token file wins over the environment; --user needs a password.
	t.Setenv(EnvToken, "")
	tf := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tf, []byte("wrong-token-0123456789\n"), 0o600)
	if r := tb.run("", "ls", "--token-file", tf); r.code != 1 || !strings.Contains(r.err.Error(), "invalid token") {
		t.Fatalf("wrong token file: exit %d %v", r.code, r.err)
	}
	if r := tb.run("", "ls", "--user", "app"); r.code != 2 || !strings.Contains(r.errOut, `user "app" has no password: set $SWITCHYARD_BROKER_PASSWORD or --password-file`) {
		t.Fatalf("--user without a password: exit %d %s", r.code, r.errOut)
	}
	pf := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pf, []byte("app-password\n"), 0o600)
	if out := tb.must("", "ls", "queues", "--user", "app", "--password-file", pf).out; !strings.Contains(out, "orders") {
		t.Fatalf("ls as app: %s", out)
	}
}
