package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/broker/native"
)

func openBroker(t *testing.T, dir string) *engine.Broker {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: dir, TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve runs a native server for b on addr ("127.0.0.1:0" for any) until
// the returned stop is called.
func serve(t testing.TB, b *engine.Broker, addr string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		native.New(b, native.Options{}).Serve(ctx, ln)
	}()
	return ln.Addr().String(), func() { cancel(); <-done }
}

// contract is the suite every Client implementation passes.
func contract(t *testing.T, c Client, b *engine.Broker) {
	ctx := context.Background()
	if err := b.Declare("c", broker.QueueConfig{MaxLength: 100, MaxMessageSize: 1000}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Publish(ctx, "c", broker.Message{Body: []byte("a"), ID: "id-a", Key: "k", Headers: map[string]string{"h": "1"}},
		broker.Message{Body: []byte("b")}, broker.Message{Body: []byte("c")})
	if err != nil || len(res) != 3 || res[0].Seq == 0 || res[0].Duplicate {
		t.Fatalf("publish batch: %+v %v", res, err)
	}
	if r, err := c.Publish(ctx, "c", broker.Message{Body: []byte("a"), ID: "id-a"}); err != nil || !r[0].Duplicate || r[0].Seq != res[0].Seq {
		t.Fatalf("duplicate: %+v %v", r, err)
	}
	ds, err := c.Receive(ctx, "c", broker.ReceiveOptions{Max: 10})
	if err != nil || len(ds) != 3 || string(ds[0].Body) != "a" || ds[0].MsgID != "id-a" || ds[0].Key != "k" || ds[0].Headers["h"] != "1" || ds[0].Deliveries != 1 {
		t.Fatalf("receive: %+v %v", ds, err)
	}
	if r, err := c.Ack(ctx, "c", ds[0].Receipt, ds[1].Receipt); err != nil || r.Done != 2 {
		t.Fatalf("ack: %+v %v", r, err)
	}
	if r, err := c.Nack(ctx, "c", 0, ds[2].Receipt); err != nil || r.Done != 1 {
		t.Fatalf("nack: %+v %v", r, err)
	}
	if r, err := c.Ack(ctx, "c", ds[2].Receipt); err != nil || len(r.Failed) != 1 {
		t.Fatalf("stale ack: %+v %v", r, err)
	}
	ds, err = c.Receive(ctx, "c", broker.ReceiveOptions{Max: 10, Wait: time.Second})
	if err != nil || len(ds) != 1 || ds[0].Deliveries != 2 {
		t.Fatalf("redelivery: %+v %v", ds, err)
	}
	if _, err := c.Publish(ctx, "nope", broker.Message{}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
	if _, err := c.Publish(ctx, "c", broker.Message{Body: make([]byte, 1001)}); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	b.Declare("tiny", broker.QueueConfig{MaxLength: 1})
	c.Publish(ctx, "tiny", broker.Message{Body: []byte("1")})
	var full *broker.QueueFullError
	if _, err := c.Publish(ctx, "tiny", broker.Message{Body: []byte("2")}); !errors.As(err, &full) || full.Limit != 1 || full.Queue != "tiny" {
		t.Fatalf("full: %v", err)
	}
	// Exactly-once processing: a duplicate delivery is acked, not handled.
	var store MemoryStore
	b.Declare("once", broker.QueueConfig{DedupWindow: -1})
	c.Publish(ctx, "once", broker.Message{ID: "pay-1", Body: []byte("x")}, broker.Message{ID: "pay-1", Body: []byte("x")})
	handled := 0
	n, err := ProcessOnce(ctx, c, &store, "once", broker.ReceiveOptions{Max: 10}, func(context.Context, broker.Delivery) error { handled++; return nil })
	if err != nil || n != 1 || handled != 1 {
		t.Fatalf("ProcessOnce: n=%d handled=%d %v", n, handled, err)
	}
	if i, _ := b.Queue("once"); i.Depth+i.InFlight != 0 {
		t.Fatalf("duplicate not acked: %+v", i)
	}
}

func TestContractEmbedded(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	contract(t, newLocal(b), b)
}

func TestContractNative(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	contract(t, c, b)
}

func TestContractHTTP(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	srv := httptest.NewServer(httpapi.New(b))
	defer srv.Close()
	c := &HTTP{Base: srv.URL}
	defer c.Close()
	contract(t, c, b)
}

func TestPipelinedPublishAndSubscribeWithCredit(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	b.Declare("s", broker.QueueConfig{})
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := c.Publish(ctx, "s", broker.Message{Body: []byte(fmt.Sprintf("%d-%d", w, i))}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	sctx, cancel := context.WithCancel(ctx)
	seen := map[string]bool{}
	err = c.Subscribe(sctx, "s", SubscribeOptions{Credit: 16}, func(d broker.Delivery) {
		seen[string(d.Body)] = true
		if _, err := c.Ack(ctx, "s", d.Receipt); err != nil {
			t.Error(err)
		}
		if len(seen) == workers*each {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || len(seen) != workers*each {
		t.Fatalf("subscribe: %v, %d messages", err, len(seen))
	}
	if i, _ := b.Queue("s"); i.Depth+i.InFlight != 0 {
		t.Fatalf("left over %+v", i)
	}
}

func TestReconnect(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	b.Declare("r", broker.QueueConfig{})
	addr, stop := serve(t, b, "127.0.0.1:0")
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "r", broker.Message{Body: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	stop()
	b.Close()
	// While the broker is down, a publish fails (connection lost) or, once
	// the client noticed, keeps redialling until its context ends.
	dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Publish(dctx, "r", broker.Message{Body: []byte("x")})
	dcancel()
	if err == nil {
		t.Fatal("publish to a stopped broker succeeded")
	}
	b = openBroker(t, dir)
	defer b.Close()
	_, stop = serve(t, b, addr)
	defer stop()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Publish(tctx, "r", broker.Message{Body: []byte("2")}); err != nil {
		t.Fatalf("publish after reconnect: %v", err)
	}
	ds, _ := c.Receive(ctx, "r", broker.ReceiveOptions{Max: 10})
	if len(ds) != 2 {
		t.Fatalf("got %d messages after restart, want 2", len(ds))
	}
}

func TestConsumeBoundsUnackedAndPipelinesAcks(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	b.Declare("c", broker.QueueConfig{})
	addr, stop := serve(t, b, "127.0.0.1:0")
	defer stop()
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n, limit = 500, 16
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = broker.Message{Body: []byte(fmt.Sprint(i))}
	}
	if _, err := c.Publish(ctx, "c", msgs...); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := map[string]int{}
	acked, maxInFlight := 0, 0
	err = c.Consume(cctx, "c", ConsumeOptions{MaxUnacked: limit, AckBatch: 4}, func(d broker.Delivery) error {
		i, _ := b.Queue("c")
		maxInFlight = max(maxInFlight, i.InFlight)
		seen[string(d.Body)]++
		if strings.HasSuffix(string(d.Body), "7") && d.Deliveries == 1 {
			return errors.New("fails the first time") // nacked, redelivered
		}
		acked++
		if acked == n {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("consume: %v", err)
	}
	if len(seen) != n || acked != n {
		t.Fatalf("saw %d distinct messages, acked %d, want %d", len(seen), acked, n)
	}
	if seen["7"] != 2 || seen["8"] != 1 {
		t.Fatalf("deliveries of 7 and 8: %d, %d; want 2 (nacked once) and 1", seen["7"], seen["8"])
	}
	if maxInFlight > limit {
		t.Fatalf("%d messages in flight at once, MaxUnacked is %d", maxInFlight, limit)
	}
	// Consume returned after the acks it sent were answered.
	if i, _ := b.Queue("c"); i.Depth+i.InFlight != 0 {
		t.Fatalf("left over %+v", i)
	}
	if err := c.Consume(ctx, "nope", ConsumeOptions{}, func(broker.Delivery) error { return nil }); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("consume of a missing queue: %v, want ErrNotFound", err)
	}
}
