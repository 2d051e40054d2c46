package sybroker_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/message"
)

// The adapter logs in with the credentials of its URL
// (switchyard://user:pass@host:port); a wrong password is refused, and
// never shown in the error.
func TestURLCredentials(t *testing.T) {
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Declare("jobs", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("worker-pass"), bcrypt.MinCost)
	a, err := access.New(access.Config{FailureDelay: -1, Users: map[string]access.User{
		"worker": {PasswordHash: string(h), Publish: []string{"queue:jobs"}, Consume: []string{"queue:jobs"}},
	}}, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); native.New(b, native.Options{Auth: a}).Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; b.Close() })
	addr := ln.Addr().String()

	mb, err := message.Open(ctx, "switchyard://worker:worker-pass@"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := mb.Publish(ctx, "queue:jobs", broker.Message{Body: []byte("job 1")}); err != nil {
		t.Fatalf("publish with URL credentials: %v", err)
	}
	if err := mb.Publish(ctx, "queue:other", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("publish to a queue the user may not: %v", err)
	}

	short, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	_, err = message.Open(short, "switchyard://worker:hunter2@"+addr)
	if !errors.Is(err, broker.ErrUnauthorized) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("wrong password: %v", err)
	}
	_, err = message.Open(short, "switchyard://worker:hunter2@"+addr+"?colour=blue")
	if err == nil || !strings.Contains(err.Error(), `unknown parameter "colour"`) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unknown parameter: %v", err)
	}
	// Without credentials: the first request gets the broker's refusal.
	anon, err := message.Open(short, "switchyard://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if err := anon.Publish(short, "queue:jobs", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrUnauthorized) || !strings.Contains(err.Error(), "the first frame must be Auth") {
		t.Fatalf("publish without credentials: %v", err)
	}
}
