package client

import (
	"context"
	"errors"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

func TestAdminQueueContract(t *testing.T) {
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ctx := context.Background()
		if err := c.DeclareQueue(ctx, "orders", broker.QueueConfig{MaxLength: 1}); err != nil {
			t.Fatalf("declare: %v", err)
		}
		if _, err := c.Publish(ctx, "orders", broker.Message{Body: []byte("1")}); err != nil {
			t.Fatalf("publish after declare: %v", err)
		}
		var full *broker.QueueFullError
		if _, err := c.Publish(ctx, "orders", broker.Message{Body: []byte("2")}); !errors.As(err, &full) {
			t.Fatalf("publish over max_length 1: %v", err)
		}
		// Redeclaring replaces the settings.
		if err := c.DeclareQueue(ctx, "orders", broker.QueueConfig{MaxLength: 2, MaxDeliveries: 7}); err != nil {
			t.Fatalf("redeclare: %v", err)
		}
		if _, err := c.Publish(ctx, "orders", broker.Message{Body: []byte("2")}); err != nil {
			t.Fatalf("publish after raising max_length: %v", err)
		}
		if cfg, err := b.QueueConfig("orders"); err != nil || cfg.MaxLength != 2 || cfg.MaxDeliveries != 7 {
			t.Fatalf("settings after redeclare: %+v %v", cfg, err)
		}
		for _, tc := range []struct {
			name string
			cfg  broker.QueueConfig
		}{
			{"negative max_deliveries", broker.QueueConfig{MaxDeliveries: -1}},
			{"unknown overflow", broker.QueueConfig{Overflow: "sometimes"}},
		} {
			if err := c.DeclareQueue(ctx, "orders", tc.cfg); !errors.Is(err, broker.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
			}
		}
		if err := c.DeclareQueue(ctx, "-orders", broker.QueueConfig{}); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("invalid name: %v, want ErrInvalid", err)
		}
		if cfg, _ := b.QueueConfig("orders"); cfg.MaxDeliveries != 7 {
			t.Fatalf("invalid declares changed the settings: %+v", cfg)
		}
		if err := c.DeleteQueue(ctx, "orders"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := c.Publish(ctx, "orders", broker.Message{Body: []byte("3")}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("publish after delete: %v", err)
		}
		if err := c.DeleteQueue(ctx, "orders"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestAdminTopicContract(t *testing.T) {
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ctx := context.Background()
		if err := c.DeclareTopic(ctx, "events", broker.TopicConfig{}); err != nil {
			t.Fatalf("declare: %v", err)
		}
		if res, err := c.PublishTopic(ctx, "events", broker.Message{Body: []byte("1")}); err != nil || len(res) != 1 || res[0].Queues != 0 {
			t.Fatalf("publish after declare: %+v %v", res, err)
		}
		// Redeclaring with a bound queue applies at once.
		if err := c.DeclareQueue(ctx, "audit", broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
		if err := c.DeclareTopic(ctx, "events", broker.TopicConfig{Queues: []string{"audit"}}); err != nil {
			t.Fatalf("redeclare: %v", err)
		}
		if res, err := c.PublishTopic(ctx, "events", broker.Message{Body: []byte("2")}); err != nil || len(res) != 1 || res[0].Queues != 1 {
			t.Fatalf("publish after redeclare: %+v %v", res, err)
		}
		if err := c.DeclareTopic(ctx, "events", broker.TopicConfig{Buffer: -1}); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("negative buffer: %v, want ErrInvalid", err)
		}
		if err := c.DeleteTopic(ctx, "events"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := c.PublishTopic(ctx, "events", broker.Message{Body: []byte("3")}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("publish after delete: %v", err)
		}
		if err := c.DeleteTopic(ctx, "events"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestAdminStreamContract(t *testing.T) {
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ctx := context.Background()
		if err := c.DeclareStream(ctx, "log", broker.StreamConfig{MaxMessageSize: 10}); err != nil {
			t.Fatalf("declare: %v", err)
		}
		if offs, err := c.Append(ctx, "log", broker.Message{Body: []byte("short")}); err != nil || len(offs) != 1 {
			t.Fatalf("append after declare: %v %v", offs, err)
		}
		long := broker.Message{Body: []byte("longer than ten bytes")}
		if _, err := c.Append(ctx, "log", long); !errors.Is(err, broker.ErrTooLarge) {
			t.Fatalf("append over max_message_size: %v", err)
		}
		// The message size limit of a redeclare applies at once.
		if err := c.DeclareStream(ctx, "log", broker.StreamConfig{MaxMessageSize: 100}); err != nil {
			t.Fatalf("redeclare: %v", err)
		}
		if _, err := c.Append(ctx, "log", long); err != nil {
			t.Fatalf("append after raising max_message_size: %v", err)
		}
		if err := c.DeclareStream(ctx, "log", broker.StreamConfig{MaxBytes: -1}); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("negative max_bytes: %v, want ErrInvalid", err)
		}
		if err := c.DeleteStream(ctx, "log"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := c.Append(ctx, "log", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("append after delete: %v", err)
		}
		if err := c.DeleteStream(ctx, "log"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

// Every client binds and unbinds one queue alike: the others stay,
// repeats report no change, missing things are broker.ErrNotFound.
func TestAdminBindContract(t *testing.T) {
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ctx := context.Background()
		for _, q := range []string{"audit", "billing"} {
			if err := c.DeclareQueue(ctx, q, broker.QueueConfig{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.DeclareTopic(ctx, "rides", broker.TopicConfig{Queues: []string{"audit"}}); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			bind    bool
			queue   string
			create  bool
			changed bool
		}{
			{true, "billing", false, true},
			{true, "billing", false, false},
			{false, "audit", false, true},
			{false, "audit", false, false},
			{true, "rides.g1", true, true},
		}
		for i, s := range steps {
			var changed bool
			var err error
			if s.bind {
				changed, err = c.BindQueue(ctx, "rides", s.queue, broker.BindOptions{CreateQueue: s.create})
			} else {
				changed, err = c.UnbindQueue(ctx, "rides", s.queue)
			}
			if err != nil || changed != s.changed {
				t.Fatalf("step %d %+v: changed %v, %v", i, s, changed, err)
			}
		}
		if info, _ := b.Topic("rides"); len(info.Config.Queues) != 2 || info.Config.Queues[0] != "billing" || info.Config.Queues[1] != "rides.g1" {
			t.Fatalf("bound %v", info.Config.Queues)
		}
		if _, err := c.BindQueue(ctx, "nope", "audit", broker.BindOptions{}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("missing topic: %v", err)
		}
		if _, err := c.BindQueue(ctx, "rides", "nope", broker.BindOptions{}); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("missing queue: %v", err)
		}
		if _, err := c.UnbindQueue(ctx, "rides", "a b"); !errors.Is(err, broker.ErrInvalid) {
			t.Fatalf("bad name: %v", err)
		}
	})
}

// The if-absent declares of every client (embedded, native, HTTP) create what is
// missing and leave what exists (settings, bound queues) as it is.
func TestAdminDeclareIfAbsent(t *testing.T) {
	type ifAbsent interface {
		DeclareQueueIfAbsent(ctx context.Context, name string, cfg broker.QueueConfig) error
		DeclareTopicIfAbsent(ctx context.Context, name string, cfg broker.TopicConfig) error
	}
	eachClient(t, func(t *testing.T, c pubsubClient, b *engine.Broker) {
		ia, ok := c.(ifAbsent)
		if !ok {
			t.Fatalf("%T has no if-absent declares", c)
		}
		ctx := context.Background()
		if err := ia.DeclareQueueIfAbsent(ctx, "orders", broker.QueueConfig{MaxLength: 3}); err != nil {
			t.Fatal(err)
		}
		if err := ia.DeclareQueueIfAbsent(ctx, "orders", broker.QueueConfig{MaxLength: 9}); err != nil {
			t.Fatal(err)
		}
		if cfg, err := b.QueueConfig("orders"); err != nil || cfg.MaxLength != 3 {
			t.Fatalf("settings after a second if-absent declare: %+v %v, want max_length 3", cfg, err)
		}
		if err := ia.DeclareTopicIfAbsent(ctx, "rides", broker.TopicConfig{Queues: []string{"orders"}}); err != nil {
			t.Fatal(err)
		}
		if err := ia.DeclareTopicIfAbsent(ctx, "rides", broker.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
		if info, err := b.Topic("rides"); err != nil || len(info.Config.Queues) != 1 {
			t.Fatalf("bindings after a second if-absent declare: %+v %v", info.Config, err)
		}
		if err := ia.DeclareQueueIfAbsent(ctx, "a?b", broker.QueueConfig{}); !errors.Is(err, broker.ErrInvalid) {
			t.Fatalf("a name with '?': %v, want ErrInvalid", err)
		}
		if _, err := b.QueueConfig("a"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("a name with '?' declared a queue %q: %v", "a", err)
		}
	})
}
