package sybroker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/message/sybroker"
)

// TestDeclareTopicKeepsBindings: declaring a topic through the kit (as
// every service does at start-up) creates it if missing and otherwise
// leaves it alone: the queues bound to it by others (switchyard hitch up,
// the broker's config file, the CLI) and its settings stay.
func TestDeclareTopicKeepsBindings(t *testing.T) {
	eng, addr := startEngine(t)
	if err := eng.Declare("audit", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := eng.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit"}, Buffer: 7}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := sybroker.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Declare(ctx, "topic:rides", message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	info, err := eng.Topic("rides")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Config.Queues, []string{"audit"}) || info.Config.Buffer != 7 {
		t.Fatalf("after the kit's Declare the topic is %+v, want queues [audit] and buffer 7 kept", info.Config)
	}
	// A missing topic is created.
	if err := b.Declare(ctx, "topic:fresh", message.DeclareOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Topic("fresh"); err != nil {
		t.Fatalf("declared topic: %v", err)
	}
}

// startEngine is startBroker with the engine, for checks behind the
// client's back.
func startEngine(t testing.TB) (*engine.Broker, string) {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	return b, serve(t, b)
}
