package svc

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/message"
)

// needsFanOut reports whether the bus at url has topics that are live only
// (no queues bound to them), so that Hitch's durable fan-out must be done
// by the publisher: NATS JetStream (kit/message/jetstream), whose topics are
// core NATS subjects.
func needsFanOut(url string) bool {
	return strings.HasPrefix(url, "nats://") || strings.HasPrefix(url, "tls://")
}

// declareQueues declares every queue of hitch.Bindings on a bus that needs
// it (JetStream streams), with the settings hitch up gives its broker.
func declareQueues(ctx context.Context, bus message.Backend) error {
	d, ok := bus.(message.Declarer)
	if !ok {
		return fmt.Errorf("the message bus cannot declare queues")
	}
	for _, qs := range hitch.Bindings {
		for _, q := range qs {
			if err := d.Declare(ctx, "queue:"+q, message.DeclareOptions{Visibility: 15 * time.Second, MaxDeliveries: 100}); err != nil {
				return fmt.Errorf("declaring queue %s: %w", q, err)
			}
		}
	}
	return nil
}

// fanOut is a bus whose topic publishes also go, durably, to the queues
// hitch.Bindings binds to the topic, before the live topic itself: what
// switchyard's broker does natively with bound queues. Each queue's dedup
// window drops the copies a re-publish (an outbox relay that crashed after
// some queues took the message) sends again.
type fanOut struct {
	message.Backend
	bindings map[string][]string
}

func (f fanOut) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	if d, err := message.ParseDest(dest); err == nil && d.Kind == message.Topic {
		for _, q := range f.bindings[d.Name] {
			if err := f.Backend.Publish(ctx, "queue:"+q, msgs...); err != nil {
				return fmt.Errorf("publishing to %s, bound to topic %s: %w", q, d.Name, err)
			}
		}
	}
	return f.Backend.Publish(ctx, dest, msgs...)
}
