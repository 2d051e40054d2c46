package jetstream_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/jetstream"
	"github.com/switchyard/switchyard/kit/message/messagetest"
)

// natsURL is the NATS server with JetStream the tests use; the suite
// names its streams uniquely and deletes them.
func natsURL(t testing.TB) string {
	u := os.Getenv("SWITCHYARD_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := jetstream.Dial(ctx, u)
	if err != nil {
		t.Fatalf("NATS JetStream at %s (set SWITCHYARD_NATS_URL): %v", u, err)
	}
	if _, err := b.JetStream().AccountInfo(ctx); err != nil {
		t.Fatalf("NATS at %s has no JetStream: %v", u, err)
	}
	b.Close()
	return u
}

func TestSuite(t *testing.T) {
	u := natsURL(t)
	messagetest.RunSuite(t, func(t *testing.T) messagetest.Backend {
		b, err := message.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.(*jetstream.Backend)
	})
}
