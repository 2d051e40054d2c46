package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// A publish route reaches a broker with users with the token of its
// broker: block (from the environment); with a token lacking the
// permission the client gets 502 and never the broker's words or the
// token.
func TestPublishRouteWithBrokerCredentials(t *testing.T) {
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for _, q := range []string{"orders", "audit"} {
		if err := b.Declare(q, broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	const token = "gateway-token-0123456789"
	sum := sha256.Sum256([]byte(token))
	a, err := access.New(access.Config{FailureDelay: -1, Users: map[string]access.User{
		"gateway": {Tokens: []string{"sha256:" + hex.EncodeToString(sum[:])}, Publish: []string{"queue:orders"}},
	}}, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewWithOptions(b, httpapi.Options{Auth: a}))
	t.Cleanup(srv.Close)
	t.Setenv("SY_TEST_BROKER_TOKEN", token)

	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
broker: { url: %q, token: env:SY_TEST_BROKER_TOKEN }
routes:
  - match: { path: /orders }
    publish: { queue: orders }
  - match: { path: /audit }
    publish: { queue: audit }
`, srv.URL))
	code, body, _ := do(t, "POST", gw.url+"/orders", strings.NewReader("book"))
	if code != 202 {
		t.Fatalf("publish with the broker token: %d %s", code, body)
	}
	ds, err := b.Receive(context.Background(), "orders", broker.ReceiveOptions{Max: 1, Wait: time.Second})
	if err != nil || len(ds) != 1 || string(ds[0].Body) != "book" {
		t.Fatalf("broker got %+v %v", ds, err)
	}
	code, body, _ = do(t, "POST", gw.url+"/audit", strings.NewReader("x"))
	if code != 502 || strings.Contains(body, token) || strings.Contains(body, "gateway") {
		t.Fatalf("publish to a queue the token may not: %d %s", code, body)
	}
}
