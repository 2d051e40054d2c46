package client

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// statuser is implemented by the clients that can look up a message.
type statuser interface {
	Client
	Status(ctx context.Context, queue string, seq uint64) (broker.MessageStatus, error)
}

var (
	_ statuser = (*HTTP)(nil)
)

func TestStatus(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	srv := httptest.NewServer(httpapi.New(b))
	defer srv.Close()
	if err := b.Declare("st", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]statuser{"embedded": newLocal(b), "http": &HTTP{Base: srv.URL}} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			res, err := c.Publish(ctx, "st", broker.Message{Body: []byte("x"), ID: "s-" + name})
			if err != nil {
				t.Fatal(err)
			}
			seq := res[0].Seq
			check := func(want broker.MessageState) {
				t.Helper()
				st, err := c.Status(ctx, "st", seq)
				if err != nil || st.State != want || st.Seq != seq || st.Queue != "st" {
					t.Fatalf("status %+v %v, want %s", st, err, want)
				}
			}
			check(broker.StateReady)
			ds, err := c.Receive(ctx, "st", broker.ReceiveOptions{})
			if err != nil || len(ds) != 1 {
				t.Fatalf("receive %v %v", ds, err)
			}
			check(broker.StateInFlight)
			if _, err := c.Ack(ctx, "st", ds[0].Receipt); err != nil {
				t.Fatal(err)
			}
			check(broker.StateAcked)
			if _, err := c.Status(ctx, "nope", seq); !errors.Is(err, broker.ErrNotFound) {
				t.Fatalf("unknown queue: %v", err)
			}
		})
	}
}
