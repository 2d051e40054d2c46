package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/switchyard/switchyard/broker"
)

func topicQueues(t *testing.T, b *Broker, topic string) []string {
	t.Helper()
	info, err := b.Topic(topic)
	if err != nil {
		t.Fatal(err)
	}
	qs := slices.Clone(info.Config.Queues)
	slices.Sort(qs)
	return qs
}

// BindQueue and UnbindQueue change one binding, leave the others and the
// topic's settings, are idempotent, durable across a restart, and name
// what is missing.
func TestBindUnbind(t *testing.T) {
	e := newEnv(t)
	e.declare("audit", broker.QueueConfig{})
	e.declare("billing", broker.QueueConfig{})
	if err := e.b.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit"}, Buffer: 7}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		changed, err := e.b.BindQueue("rides", "billing", broker.BindOptions{})
		if err != nil || changed != want {
			t.Fatalf("bind #%d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	if qs := topicQueues(t, e.b, "rides"); !slices.Equal(qs, []string{"audit", "billing"}) {
		t.Fatalf("bound %v", qs)
	}
	res, err := e.b.PublishTopic(context.Background(), "rides", broker.Message{Body: []byte("x")}, broker.PublishOptions{})
	if err != nil || res.Queues != 2 {
		t.Fatalf("publish: %+v %v", res, err)
	}
	e.restart()
	info, _ := e.b.Topic("rides")
	if qs := topicQueues(t, e.b, "rides"); !slices.Equal(qs, []string{"audit", "billing"}) || info.Config.Buffer != 7 {
		t.Fatalf("after restart: %+v", info.Config)
	}
	for i, want := range []bool{true, false} {
		changed, err := e.b.UnbindQueue("rides", "audit")
		if err != nil || changed != want {
			t.Fatalf("unbind #%d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	e.restart()
	if qs := topicQueues(t, e.b, "rides"); !slices.Equal(qs, []string{"billing"}) {
		t.Fatalf("after unbind and restart: %v", qs)
	}
	if i, _ := e.b.Queue("audit"); i.Depth != 1 {
		t.Fatalf("unbinding took the queue's messages: depth %d", i.Depth)
	}

	// Missing things and bad names are clear errors.
	for _, c := range []struct {
		topic, queue string
		want         error
		says         string
	}{
		{"nosuch", "audit", broker.ErrNotFound, `topic "nosuch"`},
		{"rides", "nosuch", broker.ErrNotFound, `queue "nosuch"`},
		{"a b", "audit", broker.ErrInvalid, "topic name"},
		{"rides", "a\x00b", broker.ErrInvalid, "queue name"},
		{"rides", "", broker.ErrInvalid, "queue name"},
		{"rides", ".hidden", broker.ErrInvalid, "queue name"},
		{"rides", "a/b", broker.ErrInvalid, "queue name"},
		{"rides", "ü", broker.ErrInvalid, "queue name"},
		{"rides", strings.Repeat("q", 201), broker.ErrInvalid, "queue name"},
	} {
		_, err := e.b.BindQueue(c.topic, c.queue, broker.BindOptions{})
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("bind %q to %q: %v, want %v naming %s", c.queue, c.topic, err, c.want, c.says)
		}
	}
	if _, err := e.b.UnbindQueue("nosuch", "audit"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("unbind from a missing topic: %v", err)
	}
	if _, err := e.b.UnbindQueue("rides", "a b"); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("unbind a bad name: %v", err)
	}

	// CreateQueue makes the queue (and its dead-letter queue) in the bind.
	if changed, err := e.b.BindQueue("rides", "rides.g1", broker.BindOptions{CreateQueue: true}); err != nil || !changed {
		t.Fatalf("bind creating the queue: %v %v", changed, err)
	}
	e.restart()
	for _, q := range []string{"rides.g1", "rides.g1.dlq"} {
		if _, err := e.b.Queue(q); err != nil {
			t.Fatalf("queue made by the bind, after restart: %v", err)
		}
	}
	// A missing topic creates nothing.
	if _, err := e.b.BindQueue("nosuch", "stray", broker.BindOptions{CreateQueue: true}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("bind to a missing topic: %v", err)
	}
	if _, err := e.b.Queue("stray"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a failed bind left queue stray: %v", err)
	}
}

// Deleting a queue unbinds it: the topic's publishes go on to the others
// (before, every publish failed naming the deleted queue).
func TestDeleteQueueUnbinds(t *testing.T) {
	e := newEnv(t)
	e.declare("audit", broker.QueueConfig{})
	e.declare("billing", broker.QueueConfig{})
	if err := e.b.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit", "billing"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.DeleteQueue("audit"); err != nil {
		t.Fatal(err)
	}
	res, err := e.b.PublishTopic(context.Background(), "rides", broker.Message{Body: []byte("x")}, broker.PublishOptions{})
	if err != nil || res.Queues != 1 {
		t.Fatalf("publish after deleting a bound queue: %+v %v", res, err)
	}
	e.restart()
	if qs := topicQueues(t, e.b, "rides"); !slices.Equal(qs, []string{"billing"}) {
		t.Fatalf("after restart: %v", qs)
	}
}

// IfAbsent declares create what is missing and leave what exists alone.
func TestDeclareIfAbsent(t *testing.T) {
	e := newEnv(t)
	e.declare("audit", broker.QueueConfig{MaxDeliveries: 9})
	if err := e.b.DeclareTopic("rides", broker.TopicConfig{Queues: []string{"audit"}, Buffer: 7}); err != nil {
		t.Fatal(err)
	}
	if created, err := e.b.DeclareTopicIfAbsent("rides", broker.TopicConfig{}); err != nil || created {
		t.Fatalf("topic: %v %v", created, err)
	}
	if info, _ := e.b.Topic("rides"); info.Config.Buffer != 7 || len(info.Config.Queues) != 1 {
		t.Fatalf("existing topic changed: %+v", info.Config)
	}
	if created, err := e.b.DeclareIfAbsent("audit", broker.QueueConfig{}); err != nil || created {
		t.Fatalf("queue: %v %v", created, err)
	}
	if c, _ := e.b.QueueConfig("audit"); c.MaxDeliveries != 9 {
		t.Fatalf("existing queue changed: %+v", c)
	}
	if err := e.b.DeclareStream("s", broker.StreamConfig{MaxBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if created, err := e.b.DeclareStreamIfAbsent("s", broker.StreamConfig{}); err != nil || created {
		t.Fatalf("stream: %v %v", created, err)
	}
	if info, _ := e.b.Stream("s"); info.Config.MaxBytes != 1<<30 {
		t.Fatalf("existing stream changed: %+v", info.Config)
	}
	for _, f := range []func() (bool, error){
		func() (bool, error) { return e.b.DeclareTopicIfAbsent("t2", broker.TopicConfig{}) },
		func() (bool, error) { return e.b.DeclareIfAbsent("q2", broker.QueueConfig{}) },
		func() (bool, error) { return e.b.DeclareStreamIfAbsent("s2", broker.StreamConfig{}) },
	} {
		if created, err := f(); err != nil || !created {
			t.Fatalf("new: %v %v", created, err)
		}
	}
	if _, err := e.b.DeclareTopicIfAbsent("a b", broker.TopicConfig{}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
}

// Concurrent binds, unbinds and if-absent declares of one topic lose no
// binding: every queue bound and never unbound is bound at the end, in
// memory and after a restart. Run with -race.
func TestBindRaces(t *testing.T) {
	e := newEnv(t)
	const n = 40
	for i := range n {
		e.declare(fmt.Sprintf("q%02d", i), broker.QueueConfig{DeadLetter: broker.NoDeadLetter})
	}
	if err := e.b.DeclareTopic("t", broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := range n {
		q := fmt.Sprintf("q%02d", i)
		wg.Add(3)
		go func() {
			defer wg.Done()
			// Odd queues are bound, unbound and bound again; even ones
			// bound once.
			if _, err := e.b.BindQueue("t", q, broker.BindOptions{}); err != nil {
				errs <- err
			}
			if i%2 == 1 {
				if _, err := e.b.UnbindQueue("t", q); err != nil {
					errs <- err
				}
				if _, err := e.b.BindQueue("t", q, broker.BindOptions{}); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := e.b.DeclareTopicIfAbsent("t", broker.TopicConfig{}); err != nil {
				errs <- err
			}
		}()
		go func() {
			// Publishers range over the bindings while they change.
			defer wg.Done()
			if _, err := e.b.PublishTopic(ctx, "t", broker.Message{Body: []byte("x")}, broker.PublishOptions{NoWait: true}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("q%02d", i)
	}
	if qs := topicQueues(t, e.b, "t"); !slices.Equal(qs, want) {
		t.Fatalf("bound %v, want all %d", qs, n)
	}
	e.restart()
	if qs := topicQueues(t, e.b, "t"); !slices.Equal(qs, want) {
		t.Fatalf("after restart bound %v, want all %d", qs, n)
	}
}

// A bind storm is bounded: at most broker.MaxTopicQueues queues per topic
// (lowered here), and repeating a bind changes nothing.
func TestBindStormBounded(t *testing.T) {
	defer func(n int) { maxTopicQueues = n }(maxTopicQueues)
	maxTopicQueues = 8
	e := newEnv(t)
	if err := e.b.DeclareTopic("t", broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for i := range 20 {
		q := fmt.Sprintf("q%02d", i)
		e.declare(q, broker.QueueConfig{DeadLetter: broker.NoDeadLetter})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.b.BindQueue("t", q, broker.BindOptions{})
			if err != nil {
				if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "at most 8") {
					t.Errorf("bind over the limit: %v", err)
				}
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if qs := topicQueues(t, e.b, "t"); len(qs) != 8 || refused != 12 {
		t.Fatalf("bound %d (%v), refused %d: want 8 and 12", len(qs), qs, refused)
	}
	// Binding one already bound is still fine (idempotent) at the limit.
	q := topicQueues(t, e.b, "t")[0]
	if changed, err := e.b.BindQueue("t", q, broker.BindOptions{}); err != nil || changed {
		t.Fatalf("rebind at the limit: %v %v", changed, err)
	}
	// The declared limit is the constant.
	many := make([]string, broker.MaxTopicQueues+1)
	for i := range many {
		many[i] = "q00"
	}
	if err := e.b.DeclareTopic("t", broker.TopicConfig{Queues: many}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("declare over the limit: %v", err)
	}
}
