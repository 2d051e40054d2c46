package inbox_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
)

// startBroker runs a real broker (engine and native TCP server) in this
// process until the test ends and returns it with its address. Child
// processes the test kills connect to it over TCP; the broker survives
// their deaths.
func startBroker(t testing.TB) (*engine.Broker, string) {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
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
	return b, ln.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
