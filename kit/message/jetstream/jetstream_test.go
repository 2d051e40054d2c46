package jetstream_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
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

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"nats://", "nats://127.0.0.1:4222/x"} {
		if _, err := message.Open(ctx, u); err == nil {
			t.Errorf("Open(%q): no error", u)
		}
	}
	// Nothing listens on port 1: a clear error, not a hang.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := message.Open(ctx, "nats://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open of a closed port: %v", err)
	}
}

// A message above the stream's size limit is broker.ErrTooLarge, as on
// switchyard's broker, so the outbox relay parks it instead of retrying
// it for ever.
func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	b, err := jetstream.Dial(ctx, natsURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q := "queue:toolarge-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	if err := b.Declare(ctx, q, message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	defer b.Delete(ctx, q)
	stream := "SYQ_" + strings.TrimPrefix(q, "queue:")
	s, err := b.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 100
	if _, err := b.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	big := broker.Message{Body: make([]byte, 300)}
	for _, msgs := range [][]broker.Message{{big}, {{Body: []byte("ok")}, big}} {
		if err := b.Publish(ctx, q, msgs...); !errors.Is(err, broker.ErrTooLarge) {
			t.Fatalf("publishing %d messages, one of 300 bytes, to a stream of max_msg_size 100: %v, want broker.ErrTooLarge", len(msgs), err)
		}
	}
	if err := b.Publish(ctx, q, broker.Message{Body: []byte("small")}); err != nil {
		t.Fatal(err)
	}
}
