// Package messagetest is the contract suite every kit/message backend
// passes: RunSuite(t, newBackend) publishes, consumes, acks, nacks,
// delays, dead-letters, orders by key (where promised), shuts a router
// down gracefully and cancels, against a real server.
package messagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

// Backend is what the suite tests: a backend that declares destinations
// and says what it promises beyond the contract.
type Backend interface {
	message.Backend
	message.Declarer
	Features() message.Features
}

// wait bounds every wait of the suite: a condition not met by then fails.
const wait = 15 * time.Second

// RunSuite runs the contract suite. newBackend returns a backend for one
// subtest, connected to a server the test started (or shares); it closes
// it with t.Cleanup. The suite names what it declares uniquely and deletes
// it at the end, so backends may share a server with other tests.
func RunSuite(t *testing.T, newBackend func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend, n *names)
	}{
		{"PublishConsume", testPublishConsume},
		{"Nack", testNack},
		{"Delay", testDelay},
		{"DeadLetter", testDeadLetter},
		{"VisibilityDeadLetter", testVisibilityDeadLetter},
		{"Redrive", testRedrive},
		{"RedriveKeeps", testRedriveKeeps},
		{"DeadLetterLiveTopic", testDeadLetterLiveTopic},
		{"RedriveMaxRepeated", testRedriveMaxRepeated},
		{"TTL", testTTL},
		{"Dedup", testDedup},
		{"KeyOrder", testKeyOrder},
		// Concurrency 1 runs handlers on the subscription's goroutine,
		// more hands messages over to worker goroutines: both ways.
		{"RouterMiddleware", withConcurrency(testRouterMiddleware, 4)},
		{"RouterMiddlewareInline", withConcurrency(testRouterMiddleware, 1)},
		{"RouterShutdown", withConcurrency(testRouterShutdown, 2)},
		{"RouterShutdownInline", withConcurrency(testRouterShutdown, 1)},
		{"RouterKeptDeliveries", withConcurrency(testRouterKeptDeliveries, 4)},
		{"RouterKeptDeliveriesInline", withConcurrency(testRouterKeptDeliveries, 1)},
		{"RouterShutdownTimeout", withConcurrency(testRouterShutdownTimeout, 0)},
		{"RouterShutdownTimeoutInline", withConcurrency(testRouterShutdownTimeout, 1)},
		{"Cancel", testCancel},
		{"Topic", testTopic},
		{"TopicGroup", testTopicGroup},
		{"TopicGroupNames", testTopicGroupNames},
		{"StreamGroup", testStreamGroup},
		{"Errors", testErrors},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			tc.fn(t, b, newNames(t, b))
		})
	}
}

// withConcurrency runs a router test with RouterConfig.Concurrency c.
func withConcurrency(fn func(t *testing.T, b Backend, n *names, c int), c int) func(t *testing.T, b Backend, n *names) {
	return func(t *testing.T, b Backend, n *names) { fn(t, b, n, c) }
}

// names hands out unique destination names and deletes them at the end.
type names struct {
	t      *testing.T
	b      Backend
	prefix string
}

func newNames(t *testing.T, b Backend) *names {
	var r [4]byte
	rand.Read(r[:])
	return &names{t: t, b: b, prefix: "mt-" + hex.EncodeToString(r[:]) + "-" + strings.ToLower(strings.ReplaceAll(t.Name()[strings.LastIndexByte(t.Name(), '/')+1:], "_", "-"))}
}

// declare declares kind:prefix-suffix and deletes it (and a queue's
// dead-letter queue) when the test ends.
func (n *names) declare(kind, suffix string, opts message.DeclareOptions) string {
	n.t.Helper()
	dest := kind + ":" + n.prefix + "-" + suffix
	if err := n.b.Declare(context.Background(), dest, opts); err != nil {
		n.t.Fatalf("declare %s: %v", dest, err)
	}
	n.t.Cleanup(func() {
		ctx := context.Background()
		n.b.Delete(ctx, dest)
		if kind == "queue" {
			n.b.Delete(ctx, dest+".dlq") // may not exist
		}
	})
	return dest
}

// sub is a running subscription feeding a channel.
type sub struct {
	ch     chan *message.Delivery
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func subscribe(t *testing.T, b Backend, source string, opts message.SubscribeOptions) *sub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sub{ch: make(chan *message.Delivery, 1000), cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- b.Subscribe(ctx, source, opts, func(d *message.Delivery) {
			select {
			case s.ch <- d:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *sub) stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(wait):
		}
	})
}

func (s *sub) next(t *testing.T) *message.Delivery {
	t.Helper()
	select {
	case d := <-s.ch:
		return d
	case err := <-s.done:
		t.Fatalf("subscription ended: %v", err)
	case <-time.After(wait):
		t.Fatalf("no message within %s", wait)
	}
	return nil
}

func publish(t *testing.T, b Backend, dest string, msgs ...broker.Message) {
	t.Helper()
	if err := b.Publish(context.Background(), dest, msgs...); err != nil {
		t.Fatalf("publish to %s: %v", dest, err)
	}
}

func ack(t *testing.T, d *message.Delivery) {
	t.Helper()
	if err := d.Ack(context.Background()); err != nil {
		t.Fatalf("ack %q: %v", d.Body, err)
	}
}

func body(s string) broker.Message { return broker.Message{Body: []byte(s)} }

func testPublishConsume(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	publish(t, b, q,
		broker.Message{Body: []byte("a"), ID: "id-a", Key: "k", Headers: map[string]string{"h": "1"}},
		body("b"), body("c"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	got := map[string]*message.Delivery{}
	for range 3 {
		d := s.next(t)
		got[string(d.Body)] = d
	}
	a := got["a"]
	if a == nil || got["b"] == nil || got["c"] == nil {
		t.Fatalf("got %v, want a, b and c", got)
	}
	if a.ID != "id-a" || a.Key != "k" || a.Headers["h"] != "1" || a.Deliveries != 1 || a.Source.String() != q {
		t.Fatalf("message a: %+v", a)
	}
	if got["b"].Headers == nil {
		t.Fatal("headers nil")
	}
	for _, d := range got {
		ack(t, d)
	}
	if err := a.Ack(context.Background()); !errors.Is(err, message.ErrSettled) {
		t.Fatalf("second ack: %v, want ErrSettled", err)
	}
	// Acked messages do not come back: after a new subscription, the
	// next message is a new one.
	s.stop()
	publish(t, b, q, body("d"))
	s = subscribe(t, b, q, message.SubscribeOptions{})
	if d := s.next(t); string(d.Body) != "d" || d.Deliveries != 1 {
		t.Fatalf("after acks got %q (deliveries %d), want d", d.Body, d.Deliveries)
	} else {
		ack(t, d)
	}
}

func testNack(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	publish(t, b, q, body("x"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	d := s.next(t)
	if err := d.Nack(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	d = s.next(t)
	if string(d.Body) != "x" || d.Deliveries != 2 {
		t.Fatalf("redelivery: %q deliveries %d, want x, 2", d.Body, d.Deliveries)
	}
	// A nack with a delay holds the message back at least that long.
	start := time.Now()
	if err := d.Nack(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d = s.next(t)
	if el := time.Since(start); el < 300*time.Millisecond || d.Deliveries != 3 {
		t.Fatalf("delayed redelivery after %s with deliveries %d, want >= 300ms and 3", el, d.Deliveries)
	}
	ack(t, d)
}

func testDelay(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	start := time.Now()
	publish(t, b, q, broker.Message{Body: []byte("late"), Delay: 500 * time.Millisecond})
	publish(t, b, q, body("now"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	d := s.next(t)
	if string(d.Body) != "now" {
		t.Fatalf("first message %q, want now (late is delayed)", d.Body)
	}
	ack(t, d)
	d = s.next(t)
	if string(d.Body) != "late" || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("got %q after %s, want late after >= 500ms", d.Body, time.Since(start))
	}
	ack(t, d)
}

func testDeadLetter(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{MaxDeliveries: 3})
	publish(t, b, q, broker.Message{Body: []byte("poison"), Headers: map[string]string{"h": "1"}})
	s := subscribe(t, b, q, message.SubscribeOptions{})
	for i := 1; i <= 3; i++ {
		d := s.next(t)
		if d.Deliveries != i {
			t.Fatalf("delivery %d says %d", i, d.Deliveries)
		}
		if err := d.Nack(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	dlq := subscribe(t, b, q+".dlq", message.SubscribeOptions{})
	d := dlq.next(t)
	name := strings.TrimPrefix(q, "queue:")
	if string(d.Body) != "poison" || d.Headers["h"] != "1" || d.Headers[broker.HeaderOriginalQueue] != name ||
		d.Headers[broker.HeaderDeadLetterReason] != "max_deliveries" || d.Headers[broker.HeaderDeliveries] != "3" {
		t.Fatalf("dead letter: %q %v", d.Body, d.Headers)
	}
	ack(t, d)
	// Nothing more arrives on the source: the next message is new.
	publish(t, b, q, body("fine"))
	if d := s.next(t); string(d.Body) != "fine" {
		t.Fatalf("after dead-lettering got %q (deliveries %d), want fine", d.Body, d.Deliveries)
	} else {
		ack(t, d)
	}
}

func testDedup(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	publish(t, b, q, broker.Message{Body: []byte("once"), ID: "dup-1"})
	publish(t, b, q, broker.Message{Body: []byte("once"), ID: "dup-1"})
	publish(t, b, q, body("after"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	var got []string
	for range 2 {
		d := s.next(t)
		got = append(got, string(d.Body))
		ack(t, d)
	}
	if fmt.Sprint(got) != "[once after]" {
		t.Fatalf("got %v, want [once after]", got)
	}
}

func testKeyOrder(t *testing.T, b Backend, n *names) {
	if !b.Features().KeyOrder {
		t.Skip("backend does not promise key order")
	}
	q := n.declare("queue", "q", message.DeclareOptions{})
	const perKey = 20
	keys := []string{"a", "b", "c"}
	var msgs []broker.Message
	for i := range perKey {
		for _, k := range keys {
			msgs = append(msgs, broker.Message{Key: k, Body: fmt.Appendf(nil, "%s-%03d", k, i)})
		}
	}
	publish(t, b, q, msgs...)
	var (
		mu       sync.Mutex
		seen     = map[string][]string{}
		inFlight = map[string]int{}
		total    int
		all      = make(chan struct{})
	)
	r, err := message.NewRouter(b, message.RouterConfig{Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(q, func(ctx context.Context, d *message.Delivery) error {
		mu.Lock()
		inFlight[d.Key]++
		if inFlight[d.Key] > 1 {
			t.Errorf("two messages of key %q handled at once", d.Key)
		}
		mu.Unlock()
		// Let other handlers run while this one holds its key.
		for range 3 {
			time.Sleep(0)
		}
		mu.Lock()
		inFlight[d.Key]--
		seen[d.Key] = append(seen[d.Key], string(d.Body))
		total++
		if total == len(msgs) {
			close(all)
		}
		mu.Unlock()
		return nil
	}, message.RouteOptions{})
	runRouter(t, r, all)
	for _, k := range keys {
		for i, m := range seen[k] {
			if want := fmt.Sprintf("%s-%03d", k, i); m != want {
				t.Fatalf("key %s: message %d is %s, want %s (order %v)", k, i, m, want, seen[k])
			}
		}
	}
}

// testRouterKeptDeliveries: a handler may keep its *Delivery after it
// returned (the router acked it): the delivery stays that message's,
// whatever the backend or router does with later messages (a pool that
// reused deliveries would hand a kept one's Body, ID and Headers to
// another message, and its Ack would settle that one), and settling it
// again is ErrSettled.
func testRouterKeptDeliveries(t *testing.T, b Backend, n *names, conc int) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	const total = 100 // several of any batch or slab a backend hands out
	msgs := make([]broker.Message, total)
	for i := range msgs {
		v := strconv.Itoa(i)
		msgs[i] = broker.Message{Body: []byte("body-" + v), ID: "id-" + v, Headers: map[string]string{"n": v}}
	}
	publish(t, b, q, msgs...)
	r, err := message.NewRouter(b, message.RouterConfig{Concurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		kept = map[*message.Delivery]string{} // the delivery, its number
	)
	all := make(chan struct{})
	r.Handle(q, func(_ context.Context, d *message.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := kept[d]; dup {
			t.Errorf("delivery %p (%q) handed out twice", d, d.Body)
		}
		kept[d] = d.Headers["n"]
		if len(kept) == total {
			close(all)
		}
		return nil
	}, message.RouteOptions{})
	runRouter(t, r, all) // Run returns once the acks were done
	seen := map[string]bool{}
	for d, v := range kept {
		if string(d.Body) != "body-"+v || d.ID != "id-"+v || d.Headers["n"] != v || seen[v] {
			t.Fatalf("kept delivery of message %s now reads body %q, id %q, headers %v (or came twice)", v, d.Body, d.ID, d.Headers)
		}
		seen[v] = true
		if !d.Settled() {
			t.Fatalf("kept delivery of message %s not settled", v)
		}
		if err := d.Ack(context.Background()); !errors.Is(err, message.ErrSettled) {
			t.Fatalf("ack of kept delivery %s after the router acked it: %v, want ErrSettled", v, err)
		}
		if err := d.Nack(context.Background(), 0); !errors.Is(err, message.ErrSettled) {
			t.Fatalf("nack of kept delivery %s after the router acked it: %v, want ErrSettled", v, err)
		}
	}
	// Every message was acked once: nothing comes back.
	publish(t, b, q, body("last"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	if d := s.next(t); string(d.Body) != "last" {
		t.Fatalf("after the router acked %d messages got %q (deliveries %d), want last", total, d.Body, d.Deliveries)
	} else {
		ack(t, d)
	}
}

// runRouter runs r until until is closed, then shuts it down.
func runRouter(t *testing.T, r *message.Router, until <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-until:
	case err := <-done:
		cancel()
		t.Fatalf("router stopped early: %v", err)
	case <-time.After(wait):
		cancel()
		<-done
		t.Fatalf("condition not met within %s", wait)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("router: %v", err)
	}
}

func testRouterMiddleware(t *testing.T, b Backend, n *names, conc int) {
	q := n.declare("queue", "in", message.DeclareOptions{MaxDeliveries: 20})
	out := n.declare("queue", "out", message.DeclareOptions{})
	poison := n.declare("queue", "poison", message.DeclareOptions{})
	publish(t, b, q,
		broker.Message{Body: []byte("ok"), ID: "m-1", Headers: map[string]string{
			message.HeaderTraceparent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			message.HeaderCorrelationID: "corr-7"}},
		broker.Message{Body: []byte("flaky"), ID: "m-2"},
		broker.Message{Body: []byte("bad"), ID: "m-3"})
	dl, err := message.DeadLetter(message.DeadLetterConfig{Publisher: b, MaxDeliveries: 2,
		Dest: func(message.Dest) string { return poison }})
	if err != nil {
		t.Fatal(err)
	}
	var (
		calls   sync.Map // body -> *atomic.Int32
		events  atomic.Int32
		timeout atomic.Bool
	)
	r, err := message.NewRouter(b, message.RouterConfig{Concurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	r.Use(message.Metrics(func(message.Event) { events.Add(1) }), dl, message.Correlation(),
		message.Retry(message.RetryConfig{Attempts: 2}), message.Timeout(5*time.Second))
	pub := message.Propagate(b)
	r.Handle(q, func(ctx context.Context, d *message.Delivery) error {
		c, _ := calls.LoadOrStore(string(d.Body), new(atomic.Int32))
		k := c.(*atomic.Int32).Add(1)
		if _, ok := ctx.Deadline(); ok {
			timeout.Store(true)
		}
		switch string(d.Body) {
		case "flaky":
			if k == 1 {
				return errors.New("transient")
			}
		case "bad":
			return errors.New("always fails")
		}
		return pub.Publish(ctx, out, broker.Message{Body: append([]byte("re:"), d.Body...)})
	}, message.RouteOptions{})
	outSub := subscribe(t, b, out, message.SubscribeOptions{})
	poisonSub := subscribe(t, b, poison, message.SubscribeOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	got := map[string]*message.Delivery{}
	for range 2 {
		d := outSub.next(t)
		got[string(d.Body)] = d
		ack(t, d)
	}
	okOut := got["re:ok"]
	if okOut == nil || got["re:flaky"] == nil {
		t.Fatalf("published from handlers: %v", got)
	}
	if okOut.Headers[message.HeaderCorrelationID] != "corr-7" ||
		okOut.Headers[message.HeaderTraceparent] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" ||
		okOut.Headers[message.HeaderCausationID] != "m-1" {
		t.Fatalf("propagated headers: %v", okOut.Headers)
	}
	if c := got["re:flaky"].Headers[message.HeaderCorrelationID]; c != "m-2" {
		t.Fatalf("correlation id of a message without one: %q, want its id m-2", c)
	}
	d := poisonSub.next(t)
	if string(d.Body) != "bad" || d.Headers[broker.HeaderDeliveries] != "2" ||
		!strings.Contains(d.Headers[broker.HeaderDeadLetterReason], "always fails") {
		t.Fatalf("dead letter %q %v", d.Body, d.Headers)
	}
	ack(t, d)
	// Retry ran the handler twice per delivery: bad was delivered twice.
	c, _ := calls.Load("bad")
	if k := c.(*atomic.Int32).Load(); k != 4 {
		t.Fatalf("bad handled %d times, want 4 (2 deliveries x 2 attempts)", k)
	}
	// The metrics hook (outermost) hears the last run just after the
	// dead-letter publish inside it.
	for deadline := time.Now().Add(wait); events.Load() < 4 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if events.Load() < 4 || !timeout.Load() {
		t.Fatalf("metrics events %d, timeout seen %v", events.Load(), timeout.Load())
	}
}

func testRouterShutdown(t *testing.T, b Backend, n *names, conc int) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	publish(t, b, q, body("slow"))
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	r, err := message.NewRouter(b, message.RouterConfig{Concurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(q, func(ctx context.Context, d *message.Delivery) error {
		if string(d.Body) != "slow" {
			return fmt.Errorf("unexpected %q", d.Body)
		}
		close(started)
		<-release
		finished.Store(true)
		return nil
	}, message.RouteOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("handler not started")
	}
	cancel()
	// Run waits for the handler in flight (this is a chance for a wrong
	// router to return early, never a reason for a right one to fail).
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a handler in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Run returned before the handler finished")
	}
	// The in-flight message was acked, and the router took nothing new.
	publish(t, b, q, body("after"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	if d := s.next(t); string(d.Body) != "after" || d.Deliveries != 1 {
		t.Fatalf("after shutdown got %q (deliveries %d), want after", d.Body, d.Deliveries)
	} else {
		ack(t, d)
	}
}

func testRouterShutdownTimeout(t *testing.T, b Backend, n *names, conc int) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	publish(t, b, q, body("stuck"))
	started := make(chan struct{})
	var sawCancel atomic.Bool
	r, err := message.NewRouter(b, message.RouterConfig{ShutdownTimeout: 100 * time.Millisecond, NackDelay: time.Millisecond, Concurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(q, func(ctx context.Context, d *message.Delivery) error {
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		return ctx.Err()
	}, message.RouteOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, message.ErrShutdownTimeout) {
			t.Fatalf("Run: %v, want ErrShutdownTimeout", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after its shutdown timeout")
	}
	// The handler's ctx was cancelled and its message comes back.
	s := subscribe(t, b, q, message.SubscribeOptions{})
	d := s.next(t)
	if string(d.Body) != "stuck" || d.Deliveries != 2 || !sawCancel.Load() {
		t.Fatalf("got %q deliveries %d, handler saw cancel %v", d.Body, d.Deliveries, sawCancel.Load())
	}
	ack(t, d)
}

func testCancel(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Publish(ctx, q, body("x")); err == nil {
		// A backend may have sent it before looking at ctx; that is
		// allowed, but it must then be there.
		s := subscribe(t, b, q, message.SubscribeOptions{})
		ack(t, s.next(t))
		s.stop()
	}
	if err := b.Subscribe(ctx, q, message.SubscribeOptions{}, func(*message.Delivery) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a cancelled ctx: %v", err)
	}
	// A running subscription ends with its ctx.
	ctx, cancel = context.WithCancel(context.Background())
	got := make(chan *message.Delivery, 1)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(ctx, q, message.SubscribeOptions{}, func(d *message.Delivery) { got <- d })
	}()
	publish(t, b, q, body("y"))
	var d *message.Delivery
	select {
	case d = <-got:
	case <-time.After(wait):
		t.Fatal("no message")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe after cancel: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Subscribe did not return after cancel")
	}
	// A message taken before the end can still be settled.
	ack(t, d)
}

func testTopic(t *testing.T, b Backend, n *names) {
	tp := n.declare("topic", "t", message.DeclareOptions{})
	s := subscribe(t, b, tp, message.SubscribeOptions{})
	// The subscription is live some time after Subscribe starts: publish
	// until one arrives, then a marked one.
	deadline := time.Now().Add(wait)
	for {
		publish(t, b, tp, body("ping"))
		select {
		case d := <-s.ch:
			ack(t, d)
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("topic subscription never received")
			}
			continue
		}
		break
	}
	publish(t, b, tp, broker.Message{Body: []byte("hello"), Headers: map[string]string{"h": "v"}})
	for {
		d := s.next(t)
		if string(d.Body) == "ping" {
			continue
		}
		if string(d.Body) != "hello" || d.Headers["h"] != "v" || d.Source.String() != tp {
			t.Fatalf("topic message %q %v", d.Body, d.Headers)
		}
		if err := d.Nack(context.Background(), 0); err != nil {
			t.Fatalf("topic nack: %v", err)
		}
		break
	}
}

func testErrors(t *testing.T, b Backend, n *names) {
	ctx := context.Background()
	if err := b.Publish(ctx, "queue:"+n.prefix+"-missing", body("x")); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("publish to a missing queue: %v, want broker.ErrNotFound", err)
	}
	for _, bad := range []string{"", "queue:", "bogus:x", "queue:.x", "queue:a b", "queue:a*"} {
		if err := b.Publish(ctx, bad, body("x")); !errors.Is(err, broker.ErrInvalid) {
			t.Fatalf("publish to %q: %v, want broker.ErrInvalid", bad, err)
		}
		if err := b.Subscribe(ctx, bad, message.SubscribeOptions{}, func(*message.Delivery) {}); !errors.Is(err, broker.ErrInvalid) {
			t.Fatalf("subscribe to %q: %v, want broker.ErrInvalid", bad, err)
		}
	}
}

func testStreamGroup(t *testing.T, b Backend, n *names) {
	ctx := context.Background()
	st := n.declare("stream", "s", message.DeclareOptions{})
	publish(t, b, st, body("s1"), body("s2"))
	if err := b.Subscribe(ctx, st, message.SubscribeOptions{}, func(*message.Delivery) {}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("stream without a group: %v, want broker.ErrInvalid", err)
	}
	s := subscribe(t, b, st, message.SubscribeOptions{Group: "g1"})
	d1, d2 := s.next(t), s.next(t)
	if string(d1.Body) != "s1" || string(d2.Body) != "s2" || d1.Deliveries != 1 {
		t.Fatalf("got %q %q (deliveries %d), want s1 s2 in order", d1.Body, d2.Body, d1.Deliveries)
	}
	ack(t, d1)
	if err := d2.Nack(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// s2 comes again (a backend may bring s1 again with it: at least once).
	for {
		d := s.next(t)
		if string(d.Body) == "s1" {
			ack(t, d)
			continue
		}
		if string(d.Body) != "s2" || d.Deliveries != 2 {
			t.Fatalf("redelivery %q deliveries %d, want s2, 2", d.Body, d.Deliveries)
		}
		ack(t, d)
		break
	}
	publish(t, b, st, body("s3"))
	if d := s.next(t); string(d.Body) != "s3" {
		t.Fatalf("after acks got %q, want s3", d.Body)
	} else {
		ack(t, d)
	}
	// Another group reads the stream from the start, on its own.
	g2 := subscribe(t, b, st, message.SubscribeOptions{Group: "g2"})
	if d := g2.next(t); string(d.Body) != "s1" || d.Deliveries != 1 {
		t.Fatalf("second group got %q (deliveries %d), want s1", d.Body, d.Deliveries)
	}
}

func testRedrive(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{MaxDeliveries: 1})
	publish(t, b, q, broker.Message{Body: []byte("again"), ID: "r-1", Headers: map[string]string{"h": "1"}})
	s := subscribe(t, b, q, message.SubscribeOptions{})
	if err := s.next(t).Nack(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	// The message reaches the dead-letter queue (possibly after Redrive
	// starts waiting: Idle covers the gap).
	moved, err := message.Redrive(context.Background(), b, q+".dlq", message.RedriveOptions{Idle: 2 * time.Second, Max: 1})
	if err != nil || moved != 1 {
		t.Fatalf("Redrive: %d, %v; want 1", moved, err)
	}
	d := s.next(t)
	if string(d.Body) != "again" || d.Deliveries != 1 || d.Headers["h"] != "1" || d.Headers[broker.HeaderDeadLetterReason] != "" ||
		!strings.HasPrefix(d.ID, "r-1#redrive-") {
		t.Fatalf("redriven: %q deliveries %d id %q headers %v", d.Body, d.Deliveries, d.ID, d.Headers)
	}
	ack(t, d)
	if moved, err := message.Redrive(context.Background(), b, q+".dlq", message.RedriveOptions{Idle: 100 * time.Millisecond}); err != nil || moved != 0 {
		t.Fatalf("second Redrive: %d, %v; want 0", moved, err)
	}
}

// A dead-letter queue holding, among a queue's own dead letters, ones a
// live topic subscription wrote there (x-original-queue "topic:NAME", as
// the DeadLetter middleware did before it sent them to TOPIC.-topic.dlq):
// Redrive moves the queue's back and keeps the topic's, each exactly once,
// whatever how often it runs (more than the dead-letter queue's
// MaxDeliveries, after which a message handed out that often is dropped);
// RedriveOptions.To moves the topic's where the user says. Before, Redrive
// stopped at the first topic message: the queue's messages behind it never
// moved, and the fifth run dropped it.
func testRedriveKeeps(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	// A message handed to Redrive as it stops waits for the visibility
	// timeout: 1s here.
	dlq := n.declare("queue", "q.dlq", message.DeclareOptions{Visibility: time.Second})
	other := n.declare("queue", "other", message.DeclareOptions{})
	name := strings.TrimPrefix(q, "queue:")
	dead := func(body, orig string) broker.Message {
		return broker.Message{Body: []byte(body), ID: "id-" + body, Headers: map[string]string{
			broker.HeaderOriginalQueue: orig, broker.HeaderDeadLetterReason: "boom", broker.HeaderDeliveries: "5", "h": body}}
	}
	publish(t, b, dlq, dead("a", name), dead("t1", "topic:"+name), dead("b", name), dead("t2", "topic:"+name), dead("c", name))
	for run := 1; run <= 7; run++ {
		moved, err := message.Redrive(context.Background(), b, dlq, message.RedriveOptions{Idle: 500 * time.Millisecond})
		var nr *message.NotRedrivenError
		if run == 1 {
			if moved != 3 || !errors.As(err, &nr) || nr.Kept != 2 || nr.Origins["topic:"+name] != 2 || !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("Redrive: moved %d, %v; want 3 moved and 2 kept", moved, err)
			}
			continue
		}
		// Again: what it meets of the two it keeps again.
		if moved != 0 || (err != nil && (!errors.As(err, &nr) || nr.Kept > 2 || nr.Origins["topic:"+name] != nr.Kept)) {
			t.Fatalf("Redrive run %d: moved %d, %v; want 0 moved, at most 2 kept", run, moved, err)
		}
	}
	s := subscribe(t, b, q, message.SubscribeOptions{})
	publish(t, b, q, body("end"))
	if got := readUntil(t, s, "end"); len(got) != 3 || got["a"] != 1 || got["b"] != 1 || got["c"] != 1 {
		t.Fatalf("queue got %v, want a, b, c once each", got)
	}
	for moved, run := 0, 1; moved < 2; run++ {
		m, err := message.Redrive(context.Background(), b, dlq, message.RedriveOptions{To: other, Idle: 3 * time.Second})
		if err != nil || run > 5 {
			t.Fatalf("Redrive To %s, run %d: moved %d (%d before), %v; want 2 in all", other, run, m, moved, err)
		}
		moved += m
	}
	o := subscribe(t, b, other, message.SubscribeOptions{})
	publish(t, b, other, body("end"))
	got := map[string]int{}
	for {
		d := o.next(t)
		ack(t, d)
		if string(d.Body) == "end" {
			break
		}
		got[string(d.Body)]++
		if d.Headers[broker.HeaderOriginalQueue] != "" || d.Headers[message.HeaderRedriveKept] != "" || d.Headers["h"] != string(d.Body) ||
			!strings.HasPrefix(d.ID, "id-"+string(d.Body)+"#redrive-") || strings.Contains(d.ID, "#kept-") {
			t.Fatalf("redriven %q: id %q headers %v", d.Body, d.ID, d.Headers)
		}
	}
	if len(got) != 2 || got["t1"] != 1 || got["t2"] != 1 {
		t.Fatalf("%s got %v, want t1, t2 once each", other, got)
	}
	if moved, err := message.Redrive(context.Background(), b, dlq, message.RedriveOptions{Idle: 300 * time.Millisecond}); moved != 0 || err != nil {
		t.Fatalf("Redrive of the emptied %s: %d, %v", dlq, moved, err)
	}
}

// A live topic subscription's poison message, through the DeadLetter
// middleware, lands in queue TOPIC.-topic.dlq (message.DeadLetterQueue),
// which nobody declared: the middleware declares it. Before, its dead
// letters went to TOPIC.dlq, queue TOPIC's; where that did not exist
// the publish failed, the nack of a live topic message did nothing, and
// the message was gone.
func testDeadLetterLiveTopic(t *testing.T, b Backend, n *names) {
	tp := n.declare("topic", "t", message.DeclareOptions{})
	src, err := message.ParseDest(tp)
	if err != nil {
		t.Fatal(err)
	}
	dlq := "queue:" + message.DeadLetterQueue(src, "")
	t.Cleanup(func() { b.Delete(context.Background(), dlq) })
	dl, err := message.DeadLetter(message.DeadLetterConfig{Publisher: b, MaxDeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := message.NewRouter(b, message.RouterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan string, 100)
	// Outside DeadLetter: heard once the dead letter was published.
	r.Use(func(next message.Handler) message.Handler {
		return func(ctx context.Context, d *message.Delivery) error {
			err := next(ctx, d)
			if err != nil {
				t.Errorf("dead-lettering %q: %v", d.Body, err)
			}
			failed <- string(d.Body)
			return err
		}
	}, dl)
	r.Handle(tp, func(ctx context.Context, d *message.Delivery) error {
		return errors.New("poison")
	}, message.RouteOptions{Concurrency: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	// Publish until the route's live subscription got one.
	deadline := time.Now().Add(wait)
	var first string
	for i := 0; first == ""; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the topic route got nothing")
		}
		publish(t, b, tp, broker.Message{Body: fmt.Appendf(nil, "p%d", i), ID: fmt.Sprintf("p-%d", i)})
		select {
		case first = <-failed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	s := subscribe(t, b, dlq, message.SubscribeOptions{})
	d := s.next(t)
	if string(d.Body) != first || d.Headers[broker.HeaderOriginalQueue] != tp || d.Headers[broker.HeaderDeadLetterReason] != "poison" {
		t.Fatalf("dead letter %q %v, want %q from %s", d.Body, d.Headers, first, tp)
	}
	ack(t, d)
}

// Redrive with Max, run again and again until the dead-letter queue is
// empty, moves every message exactly once. Before, each run took up to 64
// messages and handed back those beyond Max: every run counted a delivery
// of the messages behind, and the dead-letter queue (MaxDeliveries 5, no
// dead-letter queue of its own) dropped them at the fifth. (A message
// handed to a run as it stops waits for the visibility timeout: 1s here.)
func testRedriveMaxRepeated(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	dlq := n.declare("queue", "q.dlq", message.DeclareOptions{Visibility: time.Second})
	name := strings.TrimPrefix(q, "queue:")
	const total = 8
	for i := range total {
		publish(t, b, dlq, broker.Message{Body: fmt.Appendf(nil, "m%d", i), ID: fmt.Sprintf("id-%d", i),
			Headers: map[string]string{broker.HeaderOriginalQueue: name}})
	}
	moved := 0
	for run := 1; moved < total; run++ {
		if run > 3*total {
			t.Fatalf("%d runs moved %d of %d messages", run-1, moved, total)
		}
		m, err := message.Redrive(context.Background(), b, dlq, message.RedriveOptions{Max: 1, Idle: 5 * time.Second})
		if err != nil || m > 1 {
			t.Fatalf("Redrive run %d: moved %d, %v; want at most 1", run, m, err)
		}
		moved += m
	}
	s := subscribe(t, b, q, message.SubscribeOptions{})
	publish(t, b, q, body("end"))
	if got := readUntil(t, s, "end"); len(got) != total {
		t.Fatalf("queue got %v, want %d messages once each", got, total)
	} else {
		for k, c := range got {
			if c != 1 {
				t.Fatalf("%s arrived %d times", k, c)
			}
		}
	}
}

func testTTL(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{})
	publish(t, b, q, broker.Message{Body: []byte("stale"), TTL: 100 * time.Millisecond})
	// Let it expire unconsumed (a backend may notice at delivery time).
	time.Sleep(150 * time.Millisecond)
	publish(t, b, q, body("fresh"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	if d := s.next(t); string(d.Body) != "fresh" {
		t.Fatalf("got %q, want fresh (stale expired)", d.Body)
	} else {
		ack(t, d)
	}
	dlq := subscribe(t, b, q+".dlq", message.SubscribeOptions{})
	d := dlq.next(t)
	if string(d.Body) != "stale" || d.Headers[broker.HeaderDeadLetterReason] != "expired" {
		t.Fatalf("dead letter %q %v, want stale, expired", d.Body, d.Headers)
	}
	ack(t, d)
}

// A message whose consumer never settles it comes back after the
// visibility timeout, and is dead-lettered once that happened
// MaxDeliveries times.
func testVisibilityDeadLetter(t *testing.T, b Backend, n *names) {
	q := n.declare("queue", "q", message.DeclareOptions{MaxDeliveries: 2, Visibility: 300 * time.Millisecond})
	publish(t, b, q, body("lost"))
	s := subscribe(t, b, q, message.SubscribeOptions{})
	for i := 1; i <= 2; i++ {
		if d := s.next(t); string(d.Body) != "lost" || d.Deliveries != i {
			t.Fatalf("delivery %d: %q deliveries %d", i, d.Body, d.Deliveries)
		} // not settled: the visibility timeout brings it back
	}
	dlq := subscribe(t, b, q+".dlq", message.SubscribeOptions{})
	d := dlq.next(t)
	if string(d.Body) != "lost" || d.Headers[broker.HeaderDeadLetterReason] != "max_deliveries" || d.Headers[broker.HeaderDeliveries] != "2" {
		t.Fatalf("dead letter %q %v", d.Body, d.Headers)
	}
	ack(t, d)
}

// waitLive publishes pings to topic tp until s receives a message: then
// s's subscription (live, or a durable group's consumer) exists. Other
// subscribers of tp get pings too; readUntil skips them.
func waitLive(t *testing.T, b Backend, tp string, s *sub) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		publish(t, b, tp, body("ping"))
		select {
		case d := <-s.ch:
			ack(t, d)
			return
		case err := <-s.done:
			t.Fatalf("subscription to %s ended: %v", tp, err)
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("subscription to %s never received", tp)
			}
		}
	}
}

// readUntil acks and counts the messages of s by body until one is end
// (pings not counted).
func readUntil(t *testing.T, s *sub, end string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for {
		d := s.next(t)
		ack(t, d)
		switch b := string(d.Body); b {
		case end:
			return got
		case "ping":
		default:
			got[b]++
		}
	}
}

// A topic subscription with a group is durable: the group keeps what is
// published while no member runs, each group gets every message, the
// members of a group share them; without a group it is live only.
func testTopicGroup(t *testing.T, b Backend, n *names) {
	if !b.Features().DurableTopicGroups {
		t.Skip("backend has no durable topic groups")
	}
	const count = 20
	tp := n.declare("topic", "t", message.DeclareOptions{})
	// Groups outlive their subscriptions; where a backend keeps a group
	// in a queue (switchyard), deleting it removes the group.
	t.Cleanup(func() {
		for _, g := range []string{"g1", "g2"} {
			q := "queue:" + message.TopicGroupQueue(strings.TrimPrefix(tp, "topic:"), g)
			n.b.Delete(context.Background(), q)
			n.b.Delete(context.Background(), q+".dlq")
		}
	})
	g1 := subscribe(t, b, tp, message.SubscribeOptions{Group: "g1"})
	waitLive(t, b, tp, g1)
	g2 := subscribe(t, b, tp, message.SubscribeOptions{Group: "g2"})
	waitLive(t, b, tp, g2)
	live := subscribe(t, b, tp, message.SubscribeOptions{})
	waitLive(t, b, tp, live)
	g1.stop()
	live.stop()

	var msgs []broker.Message
	for i := range count {
		msgs = append(msgs, broker.Message{Body: fmt.Appendf(nil, "m-%02d", i), Headers: map[string]string{"i": fmt.Sprint(i)}})
	}
	publish(t, b, tp, msgs...)
	publish(t, b, tp, body("end"))
	check := func(who string, got map[string]int) {
		t.Helper()
		if len(got) != count {
			t.Fatalf("%s got %d distinct messages, want %d: %v", who, len(got), count, got)
		}
		for i := range count {
			if k := got[fmt.Sprintf("m-%02d", i)]; k != 1 {
				t.Fatalf("%s got m-%02d %d times, want once: %v", who, i, k, got)
			}
		}
	}
	// g2 ran throughout; g1 was down and gets them on its return.
	check("group g2 (running)", readUntil(t, g2, "end"))
	g1 = subscribe(t, b, tp, message.SubscribeOptions{Group: "g1"})
	check("group g1 (restarted)", readUntil(t, g1, "end"))

	// The live subscriber without a group missed them for good.
	live = subscribe(t, b, tp, message.SubscribeOptions{})
	waitLive(t, b, tp, live)
	publish(t, b, tp, body("live-end"))
	if got := readUntil(t, live, "live-end"); len(got) != 0 {
		t.Fatalf("live subscriber got %v published while it was down", got)
	}

	// Two members of g1 share its messages: each once across the group.
	g1b := subscribe(t, b, tp, message.SubscribeOptions{Group: "g1"})
	var shared []broker.Message
	for i := range 2 * count {
		shared = append(shared, body(fmt.Sprintf("s-%02d", i)))
	}
	publish(t, b, tp, shared...)
	got := map[string]int{}
	var per [2]int
	deadline := time.After(wait)
	for len(got) < 2*count {
		var d *message.Delivery
		select {
		case d = <-g1.ch:
			per[0]++
		case d = <-g1b.ch:
			per[1]++
		case <-deadline:
			t.Fatalf("group g1's two members got %d of %d: %v", len(got), 2*count, got)
		}
		ack(t, d)
		if bd := string(d.Body); strings.HasPrefix(bd, "s-") {
			if got[bd]++; got[bd] > 1 {
				t.Fatalf("group g1 got %s twice", bd)
			}
		}
	}
	t.Logf("group g1's members took %d and %d messages (with pings)", per[0], per[1])
	// g2 got every one of them.
	publish(t, b, tp, body("end2"))
	got = readUntil(t, g2, "end2")
	delete(got, "live-end") // published in the live phase, after g2's end
	if len(got) != 2*count {
		t.Fatalf("group g2 got %d distinct of %d shared-phase messages: %v", len(got), 2*count, got)
	}
	for k, v := range got {
		if v != 1 {
			t.Fatalf("group g2 got %s %d times, want once", k, v)
		}
	}

	// A nack redelivers to the group, as a queue's.
	publish(t, b, tp, body("again"))
	d := g2.next(t)
	if string(d.Body) != "again" || d.Deliveries != 1 || d.Source.String() != tp {
		t.Fatalf("group g2 got %q (deliveries %d, source %s), want again, 1, %s", d.Body, d.Deliveries, d.Source, tp)
	}
	if err := d.Nack(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if d := g2.next(t); string(d.Body) != "again" || d.Deliveries != 2 {
		t.Fatalf("group g2 redelivery %q deliveries %d, want again, 2", d.Body, d.Deliveries)
	} else {
		ack(t, d)
	}
}

// Group names of topics are checked alike on every backend (they name a
// NATS consumer and the queue TOPIC.GROUP).
func testTopicGroupNames(t *testing.T, b Backend, n *names) {
	ctx := context.Background()
	tp := n.declare("topic", "t", message.DeclareOptions{})
	long := strings.Repeat("g", message.MaxTopicGroupLen+1)
	for _, g := range []string{"a b", "a.b", "a*", ">", "a>", "-a", "a\x00b", "ü", "a/b", long} {
		err := b.Subscribe(ctx, tp, message.SubscribeOptions{Group: g}, func(*message.Delivery) {})
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "durable group") {
			t.Fatalf("topic group %q: %v, want broker.ErrInvalid naming the durable group", g, err)
		}
	}
	// TOPIC.GROUP.dlq must be a queue name (200 characters).
	bigTopic := "topic:" + n.prefix + "-" + strings.Repeat("x", 190-len(n.prefix))
	if err := b.Subscribe(ctx, bigTopic, message.SubscribeOptions{Group: "group"}, func(*message.Delivery) {}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatalf("topic %d characters long with group: %v, want broker.ErrInvalid", len(bigTopic), err)
	}
	if !b.Features().DurableTopicGroups {
		return
	}
	// A durable group needs the topic declared (its storage).
	err := b.Subscribe(ctx, "topic:"+n.prefix+"-undeclared", message.SubscribeOptions{Group: "g"}, func(*message.Delivery) {})
	if !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("durable group of an undeclared topic: %v, want broker.ErrNotFound", err)
	}
}
