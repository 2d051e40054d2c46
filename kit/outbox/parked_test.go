package outbox_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// A message above the queue's max_message_size used to stop the relay at
// its row for good, and everything behind it; now it is parked with the
// broker's error and the rest goes on, and Redrive publishes it once the
// limit is raised.
func TestParkTooLarge(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		b, addr := startBroker(t)
		if err := b.Declare("small", broker.QueueConfig{MaxMessageSize: 200}); err != nil {
			t.Fatal(err)
		}
		if err := b.Declare("other", broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		conn, err := client.Dial(ctx, addr, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		prepare(t, db)
		var (
			mu     sync.Mutex
			parked []*outbox.ParkedError
		)
		r, _ := runRelay(t, db, outbox.NewBroker(conn), outbox.RelayOptions{PollInterval: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			OnError: func(err error) {
				var pe *outbox.ParkedError
				if errors.As(err, &pe) {
					mu.Lock()
					parked = append(parked, pe)
					mu.Unlock()
				}
			}})
		big := strings.Repeat("x", 300)
		err = db.InTx(ctx, func(tx *store.Tx) error {
			for _, m := range []struct{ dest, id, body string }{
				{"small", "a", "first"}, {"small", "big", big}, {"small", "c", "third"}, {"other", "d", big},
			} {
				if err := outbox.Add(ctx, tx, m.dest, broker.Message{ID: m.id, Key: "k", Body: []byte(m.body)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		receive := func(q string, want int) []string {
			var ids []string
			waitFor(t, 10*time.Second, "messages in "+q, func() bool {
				ds, _ := b.Receive(ctx, q, broker.ReceiveOptions{Max: 10, AutoAck: true})
				for _, d := range ds {
					ids = append(ids, d.MsgID)
				}
				return len(ids) >= want
			})
			return ids
		}
		if got := receive("small", 2); strings.Join(got, ",") != "a,c" {
			t.Fatalf("small got %v, want a,c (the too-large message parked, the one behind it published)", got)
		}
		if got := receive("other", 1); got[0] != "d" {
			t.Fatalf("other got %v", got)
		}
		waitFor(t, 10*time.Second, "the parked count", func() bool { return r.Stats().Parked == 1 })
		if st := r.Stats(); st.Reads < st.Rounds || st.Reads == 0 {
			t.Fatalf("stats %+v: fewer reads than published rounds", st)
		}
		mu.Lock()
		if len(parked) != 1 || parked[0].MsgID != "big" || parked[0].Dest != "small" || !errors.Is(parked[0], broker.ErrTooLarge) {
			t.Fatalf("OnError heard %v", parked)
		}
		mu.Unlock()
		ps, err := outbox.Parked(ctx, db, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].MsgID != "big" || ps[0].Size != 300 || ps[0].Key != "k" || !strings.Contains(ps[0].Error, "too large") {
			t.Fatalf("parked: %+v", ps)
		}
		waitFor(t, 10*time.Second, "an empty sy_outbox (published rows deleted, the parked one moved)", func() bool {
			var left int
			err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_outbox").Scan(&left)
			return err == nil && left == 0
		})
		// Raise the limit, redrive: published with its own id.
		if err := b.Declare("small", broker.QueueConfig{MaxMessageSize: 1000}); err != nil {
			t.Fatal(err)
		}
		if n, err := outbox.Redrive(ctx, db); err != nil || n != 1 {
			t.Fatalf("redrive: %d, %v", n, err)
		}
		if got := receive("small", 1); got[0] != "big" {
			t.Fatalf("after redrive small got %v", got)
		}
		if ps, err := outbox.Parked(ctx, db, 0); err != nil || len(ps) != 0 {
			t.Fatalf("parked after redrive: %+v, %v", ps, err)
		}
		if n, err := outbox.Discard(ctx, db, 12345); err != nil || n != 0 {
			t.Fatalf("discard of nothing: %d, %v", n, err)
		}
	})
}
