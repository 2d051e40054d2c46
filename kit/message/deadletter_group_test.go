package message_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// recordPubSub delivers msgs once from any source and records what is
// published, headers included.
type recordPubSub struct {
	onePubSub
	mu   sync.Mutex
	sent map[string][]broker.Message
	got  chan struct{}
}

func (p *recordPubSub) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent[dest] = append(p.sent[dest], msgs...)
	select {
	case p.got <- struct{}{}:
	default:
	}
	return nil
}

func (p *recordPubSub) Subscribe(ctx context.Context, source string, opts message.SubscribeOptions, deliver func(*message.Delivery)) error {
	src, _ := message.ParseDest(source)
	for _, m := range p.msgs {
		deliver(message.NewDelivery(src, m, 1, time.Now(), p))
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestDeadLetterOfTopicGroup: a durable topic group's poison message is
// its group's, as both backends dead-letter it themselves: to queue
// TOPIC.GROUP.dlq, x-original-queue TOPIC.GROUP (what Redrive moves it
// back to, that group alone). Before, the DeadLetter middleware sent
// every group's poison messages to queue TOPIC.dlq, which is the
// dead-letter queue of an unrelated queue named TOPIC (or missing, and the
// message came back forever), with x-original-queue "topic:TOPIC", which
// Redrive refuses (and which, were it followed, would hand the message
// again to every group of the topic).
func TestDeadLetterOfTopicGroup(t *testing.T) {
	ps := &recordPubSub{sent: map[string][]broker.Message{}, got: make(chan struct{}, 1)}
	ps.msgs = []broker.Message{{Body: []byte("poison"), ID: "m-1"}}
	dl, err := message.DeadLetter(message.DeadLetterConfig{Publisher: ps, MaxDeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := message.NewRouter(ps, message.RouterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r.Use(dl)
	var group string
	r.Handle("topic:rides", func(ctx context.Context, d *message.Delivery) error {
		group = d.Group
		return errors.New("cannot bill this ride")
	}, message.RouteOptions{Group: "billing"})
	runUntilDeadLettered(t, r, ps.got)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if group != "billing" {
		t.Fatalf("Delivery.Group %q, want billing (RouteOptions.Group)", group)
	}
	ms := ps.sent["queue:rides.billing.dlq"]
	if len(ms) != 1 || len(ps.sent) != 1 {
		t.Fatalf("dead letters went to %v, want only queue:rides.billing.dlq", ps.sent)
	}
	if o := ms[0].Headers[broker.HeaderOriginalQueue]; o != "rides.billing" {
		t.Fatalf("x-original-queue %q, want rides.billing (the group's queue)", o)
	}
}

// TestDeadLetterOfLiveTopic: a live topic subscription's (no group)
// poison message goes to queue TOPIC.-topic.dlq (DeadLetterQueue), with
// x-original-queue "topic:TOPIC". Before, it went to queue:TOPIC.dlq,
// the dead-letter queue of a queue that happens to be named TOPIC, where
// its redrive then stopped at it (see TestRedriveKeepsWhatItCannotMove).
// A stream's go to STREAM.-stream.dlq alike.
func TestDeadLetterOfLiveTopic(t *testing.T) {
	for _, tc := range []struct{ source, dlq string }{
		{"topic:rides", "queue:rides.-topic.dlq"},
		{"stream:rides", "queue:rides.-stream.dlq"},
		{"queue:rides", "queue:rides.dlq"},
	} {
		ps := &recordPubSub{sent: map[string][]broker.Message{}, got: make(chan struct{}, 1)}
		ps.msgs = []broker.Message{{Body: []byte("poison"), ID: "m-1"}}
		dl, err := message.DeadLetter(message.DeadLetterConfig{Publisher: ps, MaxDeliveries: 1})
		if err != nil {
			t.Fatal(err)
		}
		r, err := message.NewRouter(ps, message.RouterConfig{})
		if err != nil {
			t.Fatal(err)
		}
		r.Use(dl)
		var opts message.RouteOptions
		if strings.HasPrefix(tc.source, "stream:") {
			opts.Group = "g"
		}
		r.Handle(tc.source, func(ctx context.Context, d *message.Delivery) error { return errors.New("no") }, opts)
		runUntilDeadLettered(t, r, ps.got)
		ps.mu.Lock()
		ms := ps.sent[tc.dlq]
		if len(ms) != 1 || len(ps.sent) != 1 {
			t.Errorf("%s: dead letters went to %v, want only %s", tc.source, ps.sent, tc.dlq)
		} else if o, want := ms[0].Headers[broker.HeaderOriginalQueue], strings.TrimPrefix(tc.source, "queue:"); o != want {
			t.Errorf("%s: x-original-queue %q, want %q", tc.source, o, want)
		}
		ps.mu.Unlock()
	}
}

// runUntilDeadLettered runs r until got receives (a dead letter was
// published; at most 10 s), then stops it.
func runUntilDeadLettered(t *testing.T, r *message.Router, got <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatal("nothing dead-lettered within 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
