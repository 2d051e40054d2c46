package httpapi

import (
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

// TestStorageFull: with the disk full (ENOSPC injected into the log's
// writes) a publish is answered 507 storage_full and not stored, while
// receive, ack and nack keep working so that consumers can drain; once
// space returns the broker accepts publishes again by itself, and after a
// restart everything confirmed is there and everything acked is gone.
func TestStorageFull(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	cfg := engine.Config{Dir: dir, TickInterval: broker.Duration(5 * time.Millisecond),
		WriteHook: func(path string, off int64, n int) error {
			if full.Load() {
				return fmt.Errorf("injected: %w", syscall.ENOSPC)
			}
			return nil
		}}
	b, err := engine.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(b))
	defer srv.Close()
	c := &client{t: t, base: srv.URL}
	if st := c.do("PUT", "/v1/queues/q", "", nil, nil); st != 200 {
		t.Fatalf("declare: %d", st)
	}
	pub := func(id string) (int, errAnswer) {
		var e errAnswer
		st := c.do("POST", "/v1/queues/q/messages", id, map[string]string{"Msg-Id": id}, &e)
		return st, e
	}
	for _, id := range []string{"a", "b", "c"} {
		if st, e := pub(id); st != 201 {
			t.Fatalf("publish %s: %d %+v", id, st, e)
		}
	}
	full.Store(true)
	for range 2 { // the write that fails, then the fast refusal
		if st, e := pub("d"); st != 507 || e.Code != "storage_full" {
			t.Fatalf("publish on a full disk: %d %+v, want 507 storage_full", st, e)
		}
	}
	var ds []broker.ReceivedMessage
	if st := c.do("POST", "/v1/queues/q/receive?max=3", "", nil, &ds); st != 200 || len(ds) != 3 {
		t.Fatalf("receive on a full disk: %d %+v", st, ds)
	}
	var res broker.AckResult
	body := fmt.Sprintf(`{"receipts":[%q,%q]}`, ds[0].Receipt, ds[1].Receipt)
	if st := c.do("POST", "/v1/queues/q/ack", body, nil, &res); st != 200 || res.Done != 2 {
		t.Fatalf("ack on a full disk: %d %+v", st, res)
	}
	if st := c.do("POST", "/v1/queues/q/nack", fmt.Sprintf(`{"receipts":[%q]}`, ds[2].Receipt), nil, &res); st != 200 || res.Done != 1 {
		t.Fatalf("nack on a full disk: %d %+v", st, res)
	}
	full.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, e := pub("d")
		if st == 201 {
			break
		}
		if st != 507 || time.Now().After(deadline) {
			t.Fatalf("publish after space returned: %d %+v", st, e)
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Close()
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	b, err = engine.Open(engine.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.Receive(t.Context(), "q", broker.ReceiveOptions{Max: 10, AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, d := range got {
		bodies = append(bodies, string(d.Body))
	}
	if fmt.Sprint(bodies) != "[c d]" {
		t.Fatalf("after restart the queue holds %v, want [c d] (a, b acked; d stored once)", bodies)
	}
}
