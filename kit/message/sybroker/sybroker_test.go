package sybroker_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/messagetest"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// startBroker runs a real broker (engine and native listener) on
// 127.0.0.1 until the test ends and returns its address.
func startBroker(t testing.TB) string {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, b)
}

// serve runs the native listener for b on 127.0.0.1 until the test ends
// (then closes b) and returns its address.
func serve(t testing.TB, b *engine.Broker) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		native.New(b, native.Options{}).Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done; b.Close() })
	return ln.Addr().String()
}

func TestSuite(t *testing.T) {
	addr := startBroker(t)
	messagetest.RunSuite(t, func(t *testing.T) messagetest.Backend {
		b, err := message.Open(context.Background(), "switchyard://"+addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.(*sybroker.Backend)
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"switchyard://", "switchyard://127.0.0.1:1/x", "nosuch://x", "://"} {
		if _, err := message.Open(ctx, u); err == nil {
			t.Errorf("Open(%q): no error", u)
		}
	}
}
