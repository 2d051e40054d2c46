package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
)

// binder is what both clients offer: bind, unbind, queue info and the
// if-absent topic declare.
type binder interface {
	BindQueue(ctx context.Context, topic, queue string, opts broker.BindOptions) (bool, error)
	UnbindQueue(ctx context.Context, topic, queue string) (bool, error)
	DeclareTopic(ctx context.Context, name string, cfg broker.TopicConfig) error
	DeclareTopicIfAbsent(ctx context.Context, name string, cfg broker.TopicConfig) error
	Close() error
}

// Binding a queue to a topic sends it every message of the topic: over
// HTTP and native alike it needs manage on the topic and publish on the
// queue, and manage on the queue too to create it (?create=1). A
// publish-only or consume-only user binds nothing and creates nothing,
// whether or not the binding or the queue exists; an operator can.
func TestBindPermissions(t *testing.T) {
	tok := func(s string) string { h := sha256.Sum256([]byte(s)); return "sha256:" + hex.EncodeToString(h[:]) }
	users := fmt.Sprintf(`    topicmgr:
      tokens: [%s]
      manage: [topic:orders.*]
      consume: [queue:orders.*]
    binder:
      tokens: [%s]
      manage: [topic:orders.*]
      publish: [queue:orders.*]
`, tok("topicmgr-token-0123456789"), tok("binder-token-0123456789"))
	httpAddr, nativeAddr := startBroker(t, Options{ConfigFile: authConfig(t, users, "")})
	ctx := testCtx(t)

	creds := map[string]client.Credentials{
		"writer":   {User: "writer", Password: writerPass},
		"reader":   {Token: readerToken},
		"topicmgr": {Token: "topicmgr-token-0123456789"},
		"binder":   {Token: "binder-token-0123456789"},
		"ops":      {Token: "ops-token-0123456789"},
	}
	dial := map[string]func(t *testing.T, user string) binder{
		"http": func(t *testing.T, user string) binder {
			return &client.HTTP{Base: "http://" + httpAddr, Credentials: creds[user]}
		},
		"native": func(t *testing.T, user string) binder {
			c, err := client.Dial(ctx, nativeAddr, client.Options{Credentials: creds[user]})
			if err != nil {
				t.Fatalf("%s logs in: %v", user, err)
			}
			return c
		},
	}
	// ops sees every queue's state, through the HTTP client.
	ops := &client.HTTP{Base: "http://" + httpAddr, Credentials: creds["ops"]}
	bound := func(t *testing.T, queue string) bool {
		t.Helper()
		info, err := ops.TopicInfo(ctx, "orders.events")
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range info.Config.Queues {
			if q == queue {
				return true
			}
		}
		return false
	}
	exists := func(t *testing.T, queue string) bool {
		t.Helper()
		_, err := ops.QueueInfo(ctx, queue)
		if err != nil && !errors.Is(err, broker.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	for _, proto := range []string{"http", "native"} {
		t.Run(proto, func(t *testing.T) {
			// orders.eu starts bound (by ops), so that unbinding has
			// something to take away.
			if _, err := ops.BindQueue(ctx, "orders.events", "orders.eu", broker.BindOptions{}); err != nil {
				t.Fatal(err)
			}
			newQ := "orders." + proto + "new"
			for _, tc := range []struct {
				user, op, queue string
				create          bool
				want            string // the refusal, "" when allowed
			}{
				{"writer", "bind", "orders.eu", false, `forbidden: user "writer" has no manage permission on topic "orders.events"`},
				{"writer", "bind", newQ, true, `forbidden: user "writer" has no manage permission on topic "orders.events"`},
				{"writer", "unbind", "orders.eu", false, `forbidden: user "writer" has no manage permission on topic "orders.events"`},
				{"reader", "bind", "orders.eu", false, `forbidden: user "reader" has no manage permission on topic "orders.events"`},
				{"reader", "bind", newQ, true, `forbidden: user "reader" has no manage permission on topic "orders.events"`},
				{"reader", "unbind", "orders.eu", false, `forbidden: user "reader" has no manage permission on topic "orders.events"`},
				// Manage on the topic is not enough: the queue's messages
				// would come from someone without publish on it.
				{"topicmgr", "bind", "audit", false, `forbidden: user "topicmgr" has no publish permission on queue "audit"`},
				{"topicmgr", "bind", newQ, true, `forbidden: user "topicmgr" has no publish permission on queue "` + newQ + `"`},
				{"topicmgr", "declare", "audit", false, `forbidden: user "topicmgr" has no publish permission on queue "audit"`},
				{"topicmgr", "declare-if-absent", "audit", false, `forbidden: user "topicmgr" has no publish permission on queue "audit"`},
				// Publish on the queue, but creating it needs manage on it.
				{"binder", "bind", newQ, true, `forbidden: user "binder" has no manage permission on queue "` + newQ + `"`},
				{"binder", "bind", "audit", false, `forbidden: user "binder" has no publish permission on queue "audit"`},
				{"binder", "unbind", "orders.eu", false, ""},
				{"binder", "bind", "orders.eu", false, ""},
				// The owner of a topic may drop any binding of it, as a
				// declare of its whole list may.
				{"topicmgr", "unbind", "orders.eu", false, ""},
				{"ops", "bind", newQ, true, ""},
				{"ops", "unbind", newQ, false, ""},
			} {
				wasBound, existed := bound(t, tc.queue), exists(t, tc.queue)
				c := dial[proto](t, tc.user)
				var err error
				switch tc.op {
				case "bind":
					_, err = c.BindQueue(ctx, "orders.events", tc.queue, broker.BindOptions{CreateQueue: tc.create})
				case "unbind":
					_, err = c.UnbindQueue(ctx, "orders.events", tc.queue)
				case "declare":
					err = c.DeclareTopic(ctx, "orders.events", broker.TopicConfig{Queues: []string{tc.queue}})
				case "declare-if-absent":
					err = c.DeclareTopicIfAbsent(ctx, "orders.events", broker.TopicConfig{Queues: []string{tc.queue}})
				}
				c.Close()
				what := fmt.Sprintf("%s %s %s (create %v)", tc.user, tc.op, tc.queue, tc.create)
				if tc.want != "" {
					if !errors.Is(err, broker.ErrForbidden) || err.Error() != tc.want {
						t.Fatalf("%s: %v, want %q", what, err, tc.want)
					}
					if bound(t, tc.queue) != wasBound || exists(t, tc.queue) != existed {
						t.Fatalf("%s was refused but changed the broker: bound %v -> %v, queue exists %v -> %v",
							what, wasBound, bound(t, tc.queue), existed, exists(t, tc.queue))
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if got := bound(t, tc.queue); got != (tc.op == "bind") {
					t.Fatalf("%s: bound %v after it", what, got)
				}
				if tc.create && !exists(t, tc.queue) {
					t.Fatalf("%s: the queue was not created", what)
				}
			}
		})
	}
}
