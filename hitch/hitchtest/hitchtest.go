// Package hitchtest starts the real things Hitch's service tests need: a
// switchyard broker (engine and native listener, in this process) declared
// with Hitch's topics and bound queues, and a per-test SQLite or PostgreSQL
// database per service.
package hitchtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/message"
	_ "github.com/switchyard/switchyard/kit/message/sybroker" // the switchyard:// scheme
)

// Broker is a running test broker.
type Broker struct {
	Engine *engine.Broker
	Addr   string // native protocol address, host:port
	URL    string // "switchyard://" + Addr, for message.Open
}

// StartBroker runs a broker with Hitch's topology until the test ends.
// Queues get a short visibility timeout (2 s) so a test that kills a
// consumer sees its messages again quickly.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if err := DeclareTopology(b, broker.QueueConfig{VisibilityTimeout: broker.Duration(2 * time.Second)}); err != nil {
		b.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		native.New(b, native.Options{}).Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done; b.Close() })
	return &Broker{Engine: b, Addr: ln.Addr().String(), URL: "switchyard://" + ln.Addr().String()}
}

// DeclareTopology declares every queue of hitch.Bindings (with qc) and then
// each topic bound to its queues.
func DeclareTopology(b *engine.Broker, qc broker.QueueConfig) error {
	for _, queues := range hitch.Bindings {
		for _, q := range queues {
			if err := b.Declare(q, qc); err != nil {
				return err
			}
		}
	}
	for topic, queues := range hitch.Bindings {
		if err := b.DeclareTopic(topic, broker.TopicConfig{Queues: queues}); err != nil {
			return err
		}
	}
	return nil
}

// Open connects a message backend to the broker, closed when the test ends.
func (b *Broker) Open(t testing.TB) message.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := message.Open(ctx, b.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
