package svc

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

type recordingBus struct {
	message.Backend
	dests []string
	fail  string
}

func (r *recordingBus) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	if dest == r.fail {
		return errors.New("down")
	}
	r.dests = append(r.dests, dest)
	return nil
}

// A topic publish goes to every bound queue first, then to the live topic;
// a failed queue publish fails the whole publish (the outbox retries, and
// the queues' dedup windows drop the copies).
func TestFanOut(t *testing.T) {
	rec := &recordingBus{}
	f := fanOut{Backend: rec, bindings: map[string][]string{"t": {"a", "b"}}}
	if err := f.Publish(context.Background(), "topic:t", broker.Message{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(context.Background(), "queue:x", broker.Message{ID: "2"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"queue:a", "queue:b", "topic:t", "queue:x"}; !reflect.DeepEqual(rec.dests, want) {
		t.Fatalf("published to %v, want %v", rec.dests, want)
	}
	rec.fail, rec.dests = "queue:b", nil
	if err := f.Publish(context.Background(), "topic:t", broker.Message{ID: "3"}); err == nil {
		t.Fatal("a failed bound queue did not fail the publish")
	}
	if !needsFanOut("nats://127.0.0.1:4222") || needsFanOut("switchyard://127.0.0.1:7400") {
		t.Fatal("needsFanOut")
	}
}
