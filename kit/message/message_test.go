package message_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/retry"
)

func TestParseDest(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"orders", "queue:orders"},
		{"queue:orders", "queue:orders"},
		{"topic:rides.events", "topic:rides.events"},
		{"stream:audit-log_1", "stream:audit-log_1"},
	} {
		d, err := message.ParseDest(tc.in)
		if err != nil || d.String() != tc.want {
			t.Errorf("ParseDest(%q) = %v, %v; want %s", tc.in, d, err, tc.want)
		}
	}
	for _, bad := range []string{"", ":", "queue:", "bogus:x", "Queue:x", "queue:.x", "queue:-x", "queue:a b",
		"queue:a:b", "topic:a/b", "queue:" + strings.Repeat("x", 201), "queue:\x00", "stream:é"} {
		_, err := message.ParseDest(bad)
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "destination") {
			t.Errorf("ParseDest(%q): %v, want a broker.ErrInvalid naming the destination", bad, err)
		}
	}
}

func FuzzParseDest(f *testing.F) {
	for _, s := range []string{"orders", "queue:a", "topic:b.c", "stream:d", "x:y", ":", "queue:", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := message.ParseDest(s)
		if err != nil {
			if !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", s, err)
			}
			return
		}
		if !broker.ValidName(d.Name) {
			t.Fatalf("%q: accepted invalid name %q", s, d.Name)
		}
		// The canonical form parses to the same destination.
		if d2, err := message.ParseDest(d.String()); err != nil || d2 != d {
			t.Fatalf("%q: canonical %q parses to %v, %v", s, d.String(), d2, err)
		}
	})
}

// fakeAcker records how a delivery was settled.
type fakeAcker struct {
	mu    sync.Mutex
	acks  int
	nacks []time.Duration
}

func (a *fakeAcker) Ack(context.Context, *message.Delivery) error {
	a.mu.Lock()
	a.acks++
	a.mu.Unlock()
	return nil
}

func (a *fakeAcker) Nack(_ context.Context, _ *message.Delivery, d time.Duration) error {
	a.mu.Lock()
	a.nacks = append(a.nacks, d)
	a.mu.Unlock()
	return nil
}

func delivery(deliveries int, a message.Acker) *message.Delivery {
	return message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"},
		broker.Message{Body: []byte("b"), ID: "id-1", Headers: map[string]string{"h": "1"}}, deliveries, time.Time{}, a)
}

func TestRetry(t *testing.T) {
	calls := 0
	h := message.Retry(message.RetryConfig{Attempts: 3, Backoff: retry.Backoff{Base: time.Microsecond}})(
		func(context.Context, *message.Delivery) error { calls++; return errors.New("boom") })
	if err := h(context.Background(), delivery(1, &fakeAcker{})); err == nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want an error after 3", err, calls)
	}
	calls = 0
	h = message.Retry(message.RetryConfig{Attempts: 3})(
		func(context.Context, *message.Delivery) error {
			calls++
			return message.Permanent(errors.New("bad input"))
		})
	if err := h(context.Background(), delivery(1, &fakeAcker{})); !message.IsPermanent(err) || calls != 1 {
		t.Fatalf("permanent: err %v after %d calls, want 1 call", err, calls)
	}
}

// recorder is a Publisher that remembers what it was given.
type recorder struct {
	mu   sync.Mutex
	dest []string
	msgs []broker.Message
	err  error
}

func (r *recorder) Publish(_ context.Context, dest string, msgs ...broker.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	for _, m := range msgs {
		r.dest = append(r.dest, dest)
		r.msgs = append(r.msgs, m)
	}
	return nil
}

func TestDeadLetter(t *testing.T) {
	if _, err := message.DeadLetter(message.DeadLetterConfig{}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("nil publisher: %v", err)
	}
	var pub recorder
	mw, err := message.DeadLetter(message.DeadLetterConfig{Publisher: &pub, MaxDeliveries: 3})
	if err != nil {
		t.Fatal(err)
	}
	fail := mw(func(context.Context, *message.Delivery) error { return errors.New("boom") })
	d := delivery(2, &fakeAcker{})
	if err := fail(context.Background(), d); err == nil || len(pub.msgs) != 0 {
		t.Fatalf("below max: err %v, published %d", err, len(pub.msgs))
	}
	d = delivery(3, &fakeAcker{})
	if err := fail(context.Background(), d); err != nil {
		t.Fatalf("at max: %v, want nil (dead-lettered, acked)", err)
	}
	if len(pub.msgs) != 1 || pub.dest[0] != "queue:q.dlq" || pub.msgs[0].Headers["h"] != "1" ||
		pub.msgs[0].Headers[broker.HeaderDeliveries] != "3" || pub.msgs[0].Headers[broker.HeaderOriginalQueue] != "q" ||
		pub.msgs[0].Headers[broker.HeaderDeadLetterReason] != "boom" {
		t.Fatalf("dead letter: %v %+v", pub.dest, pub.msgs)
	}
	if _, ok := d.Headers[broker.HeaderDeliveries]; ok {
		t.Fatal("the delivery's own headers were modified")
	}
	// A failed dead-letter publish keeps the error: the message is nacked.
	pub.err = errors.New("broker down")
	if err := fail(context.Background(), delivery(5, &fakeAcker{})); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("failed dead-lettering: %v", err)
	}
}

func TestPropagate(t *testing.T) {
	var pub recorder
	p := message.Propagate(&pub)
	h := message.Correlation()(func(ctx context.Context, d *message.Delivery) error {
		own := map[string]string{message.HeaderCorrelationID: "mine"}
		if err := p.Publish(ctx, "out", broker.Message{Body: []byte("1")}, broker.Message{Headers: own}); err != nil {
			return err
		}
		if len(own) != 1 {
			t.Error("caller's header map modified")
		}
		return nil
	})
	d := delivery(1, &fakeAcker{})
	d.Headers[message.HeaderTraceparent] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if err := h(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	m0, m1 := pub.msgs[0].Headers, pub.msgs[1].Headers
	if m0[message.HeaderTraceparent] != d.Headers[message.HeaderTraceparent] || m0[message.HeaderCorrelationID] != "id-1" ||
		m0[message.HeaderCausationID] != "id-1" || m1[message.HeaderCorrelationID] != "mine" {
		t.Fatalf("propagated: %v / %v", m0, m1)
	}
	// Without a Trace in ctx, messages pass untouched.
	pub.msgs = nil
	p.Publish(context.Background(), "out", broker.Message{})
	if pub.msgs[0].Headers != nil {
		t.Fatalf("headers added without a trace: %v", pub.msgs[0].Headers)
	}
}

func TestSettleOnce(t *testing.T) {
	a := &fakeAcker{}
	d := delivery(1, a)
	if err := d.Nack(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(context.Background()); !errors.Is(err, message.ErrSettled) {
		t.Fatalf("ack after nack: %v", err)
	}
	if a.acks != 0 || len(a.nacks) != 1 || a.nacks[0] != time.Second {
		t.Fatalf("acker saw %d acks, nacks %v", a.acks, a.nacks)
	}
}

// chanSub is a Subscriber fed from a channel, for router tests without a
// broker.
type chanSub chan *message.Delivery

func (c chanSub) Subscribe(ctx context.Context, source string, _ message.SubscribeOptions, deliver func(*message.Delivery)) error {
	if _, err := message.ParseDest(source); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d := <-c:
			deliver(d)
		}
	}
}

func TestRouterSettles(t *testing.T) {
	sub := make(chanSub)
	r, err := message.NewRouter(sub, message.RouterConfig{NackDelay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r.Handle("q", func(_ context.Context, d *message.Delivery) error {
		switch string(d.Body) {
		case "fail":
			return errors.New("boom")
		case "later":
			return message.RetryAfter(errors.New("busy"), 5*time.Second)
		case "self":
			return d.Nack(context.Background(), 7*time.Second)
		}
		return nil
	}, message.RouteOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	ackers := map[string]*fakeAcker{}
	for _, b := range []string{"ok", "fail", "later", "self"} {
		a := &fakeAcker{}
		ackers[b] = a
		sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"}, broker.Message{Body: []byte(b)}, 1, time.Time{}, a)
	}
	// Once the subscriber takes one more, the last was handed to a worker
	// (this one may be returned at shutdown).
	sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"}, broker.Message{Body: []byte("ok")}, 1, time.Time{}, &fakeAcker{})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Run waited for the handlers and their settling.
	if a := ackers["ok"]; a.acks != 1 || len(a.nacks) != 0 {
		t.Errorf("ok: %+v", a)
	}
	if a := ackers["fail"]; len(a.nacks) != 1 || a.nacks[0] != time.Minute {
		t.Errorf("fail: %+v", a)
	}
	if a := ackers["later"]; len(a.nacks) != 1 || a.nacks[0] != 5*time.Second {
		t.Errorf("later: %+v", a)
	}
	if a := ackers["self"]; len(a.nacks) != 1 || a.nacks[0] != 7*time.Second || a.acks != 0 {
		t.Errorf("self: %+v", a)
	}
}

func TestRouterConfigErrors(t *testing.T) {
	_, err := message.NewRouter(make(chanSub), message.RouterConfig{Concurrency: -1, ShutdownTimeout: -1})
	if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "concurrency") || !strings.Contains(err.Error(), "shutdown_timeout") {
		t.Fatalf("config errors: %v", err)
	}
	if _, err := message.NewRouter(nil, message.RouterConfig{}); err == nil {
		t.Fatal("nil subscriber accepted")
	}
	r, _ := message.NewRouter(make(chanSub), message.RouterConfig{})
	if err := r.Handle("stream:s", func(context.Context, *message.Delivery) error { return nil }, message.RouteOptions{}); err == nil {
		t.Fatal("stream without a group accepted")
	}
	if err := r.Handle("bad:x", nil, message.RouteOptions{}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("bad source: %v", err)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run with bad routes: no error")
	}
	r, _ = message.NewRouter(make(chanSub), message.RouterConfig{})
	if err := r.Run(context.Background()); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("Run without routes: %v", err)
	}
}

func TestOpenUnknownScheme(t *testing.T) {
	_, err := message.Open(context.Background(), "kafka://x:1")
	if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), `"kafka"`) {
		t.Fatalf("Open: %v", err)
	}
}

// heldAcker is an AsyncAcker whose acks are answered only once released,
// as a broker's during a slow fsync; after release at once.
type heldAcker struct {
	mu       sync.Mutex
	pending  []func(error)
	acked    int
	released bool
}

func (a *heldAcker) Ack(context.Context, *message.Delivery) error { return errors.New("want AckAsync") }
func (a *heldAcker) Nack(context.Context, *message.Delivery, time.Duration) error {
	return errors.New("unexpected nack")
}

func (a *heldAcker) AckAsync(_ *message.Delivery, done func(error)) {
	a.mu.Lock()
	if !a.released {
		a.pending = append(a.pending, done)
		a.mu.Unlock()
		return
	}
	a.acked++
	a.mu.Unlock()
	done(nil)
}

// release answers the acks held so far, and the next ones at once.
func (a *heldAcker) release() {
	a.mu.Lock()
	p := a.pending
	a.pending, a.acked, a.released = nil, a.acked+len(p), true
	a.mu.Unlock()
	for _, done := range p {
		done(nil)
	}
}

// TestRouterHandlesThroughSlowAcks: while acks wait for the backend (a
// switchyard fsync), the handlers go on for 4 x Prefetch messages, the
// backends' bound on unsettled messages. With a window of Prefetch they
// stopped after Prefetch, and on switchyard each batched ack request
// carried half the window; with 3 x Prefetch (until credit12i) the router
// stopped before the backend's bound.
func TestRouterHandlesThroughSlowAcks(t *testing.T) {
	for _, conc := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			const prefetch = 8
			sub := make(chanSub)
			r, err := message.NewRouter(sub, message.RouterConfig{Prefetch: prefetch, Concurrency: conc})
			if err != nil {
				t.Fatal(err)
			}
			var handled atomic.Int64
			r.Handle("q", func(context.Context, *message.Delivery) error { handled.Add(1); return nil }, message.RouteOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			a := &heldAcker{}
			const n = 4 * prefetch
			deadline := time.After(20 * time.Second)
			for i := range n {
				select {
				case sub <- message.NewDelivery(message.Dest{Kind: message.Queue, Name: "q"}, broker.Message{}, 1, time.Time{}, a):
				case <-deadline:
					t.Fatalf("the router took %d messages with every ack held; want %d", i, n)
				}
			}
			for handled.Load() < n {
				select {
				case <-deadline:
					t.Fatalf("handled %d messages with every ack held; want %d", handled.Load(), n)
				case <-time.After(time.Millisecond):
				}
			}
			// Shutdown waits for the acks in progress.
			cancel()
			a.release()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.acked != n {
				t.Fatalf("%d acked, want %d", a.acked, n)
			}
		})
	}
}

// TestDeliveriesDoNotShareHeaders: a handler writing to one header-less
// delivery's Headers must not change another's.
func TestDeliveriesDoNotShareHeaders(t *testing.T) {
	src := message.Dest{Kind: message.Queue, Name: "q"}
	a := message.NewDelivery(src, broker.Message{Body: []byte("a")}, 1, time.Time{}, &fakeAcker{})
	b := message.NewDelivery(src, broker.Message{Body: []byte("b")}, 1, time.Time{}, &fakeAcker{})
	a.Headers["tenant"] = "a"
	if len(b.Headers) != 0 {
		t.Fatalf("a write to one delivery's headers reached another: %v", b.Headers)
	}
}
