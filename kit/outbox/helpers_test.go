package outbox_test

import (
	"context"
	"net"
	"sync"
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

// recorder is a Publisher that remembers what it was given.
type recorder struct {
	mu    sync.Mutex
	msgs  map[string][]broker.Message // by destination, in publish order
	count map[string]int              // publishes per message id
	fail  func(dest string) error     // optional: fail publishes
}

func newRecorder() *recorder {
	return &recorder{msgs: map[string][]broker.Message{}, count: map[string]int{}}
}

func (r *recorder) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(dest); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		r.msgs[dest] = append(r.msgs[dest], m)
		r.count[m.ID]++
	}
	return nil
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.count {
		n += c
	}
	return n
}

func (r *recorder) get(dest string) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Message(nil), r.msgs[dest]...)
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
