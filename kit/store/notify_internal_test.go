package store

import (
	"context"
	"os"
	"testing"
	"time"
)

// A handle's listener skips the notifications the handle sent itself
// (their commits woke its waiters in process already) and passes on
// everyone else's: another handle's, and a plain NOTIFY's.
func TestListenerSkipsOwnEcho(t *testing.T) {
	url := os.Getenv("SWITCHYARD_TEST_POSTGRES")
	if url == "off" {
		t.Skip("SWITCHYARD_TEST_POSTGRES=off")
	}
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	channel := "sy_echo_test_" + newOrigin()[3:]
	wake, stop := a.Listen(channel)
	defer stop()
	// The listener's first wake-up (after LISTEN took effect).
	select {
	case <-wake:
	case <-ctx.Done():
		t.Fatal("no wake-up after LISTEN")
	}
	// a's own commit: signalled in process, then its echo is skipped.
	a.NotifyCommitted(channel)
	select {
	case <-wake:
	case <-ctx.Done():
		t.Fatal("no in-process wake-up")
	}
	for a.pgl.echoes.Load() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the handle's own notification never reached its listener")
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-wake:
		t.Fatal("the handle's own notification woke its waiters again")
	default:
	}
	// Another handle's notification and a plain NOTIFY wake a.
	for _, send := range []func() error{
		func() error { b.NotifyCommitted(channel); return nil },
		func() error { _, err := b.Exec(ctx, "SELECT pg_notify(?, '')", channel); return err },
	} {
		if err := send(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("another handle's notification did not wake the listener")
		}
	}
}
