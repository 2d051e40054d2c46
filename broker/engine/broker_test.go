package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/internal/testclock"
	"github.com/switchyard/switchyard/wal"
)

type env struct {
	t   *testing.T
	dir string
	clk *testclock.Clock
	b   *Broker
	cfg Config
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), clk: testclock.New()}
	e.cfg = Config{Dir: e.dir, TickInterval: broker.Duration(2 * time.Millisecond), CompactInterval: broker.Duration(time.Hour), Now: e.clk.Now}
	e.open()
	t.Cleanup(func() {
		if e.b != nil {
			e.b.Close()
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	b, err := Open(e.cfg)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.b = b
}

func (e *env) restart() {
	e.t.Helper()
	if err := e.b.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	e.open()
}

func (e *env) declare(name string, c broker.QueueConfig) {
	e.t.Helper()
	if err := e.b.Declare(name, c); err != nil {
		e.t.Fatalf("declare %s: %v", name, err)
	}
}

func (e *env) pub(q string, m broker.Message) broker.PublishResult {
	e.t.Helper()
	r, err := e.b.Publish(context.Background(), q, m, broker.PublishOptions{})
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	return r
}

func (e *env) recv(q string, max int) []broker.Delivery {
	e.t.Helper()
	d, err := e.b.Receive(context.Background(), q, broker.ReceiveOptions{Max: max})
	if err != nil {
		e.t.Fatalf("receive: %v", err)
	}
	return d
}

func (e *env) ack(q string, ds []broker.Delivery) broker.AckResult {
	e.t.Helper()
	var rs []string
	for _, d := range ds {
		rs = append(rs, d.Receipt)
	}
	r, err := e.b.Ack(context.Background(), q, rs)
	if err != nil {
		e.t.Fatalf("ack: %v", err)
	}
	return r
}

// waitFor polls cond (the broker's timers run on a real ticker).
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func bodies(ds []broker.Delivery) []string {
	var s []string
	for _, d := range ds {
		s = append(s, string(d.Body))
	}
	return s
}

func TestPublishReceiveAckRestart(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	for i := range 5 {
		e.pub("q", broker.Message{Body: []byte(fmt.Sprint(i)), Headers: map[string]string{"h": "v"}})
	}
	ds := e.recv("q", 3)
	if got := fmt.Sprint(bodies(ds)); got != "[0 1 2]" {
		t.Fatalf("received %s", got)
	}
	if ds[0].Headers["h"] != "v" || ds[0].Deliveries != 1 {
		t.Fatalf("delivery %+v", ds[0])
	}
	if r := e.ack("q", ds[:2]); r.Done != 2 || len(r.Failed) != 0 {
		t.Fatalf("ack %+v", r)
	}
	if r := e.ack("q", ds[:1]); r.Done != 0 || len(r.Failed) != 1 {
		t.Fatalf("second ack of the same receipt: %+v", r)
	}
	info, _ := e.b.Queue("q")
	if info.Depth != 2 || info.InFlight != 1 {
		t.Fatalf("info %+v", info)
	}
	e.restart()
	info, _ = e.b.Queue("q")
	if info.Depth != 3 || info.InFlight != 0 {
		t.Fatalf("after restart %+v", info)
	}
	ds = e.recv("q", 10)
	if got := fmt.Sprint(bodies(ds)); got != "[2 3 4]" {
		t.Fatalf("after restart received %s", got)
	}
	if ds[0].Deliveries != 2 {
		t.Fatalf("delivery count of redelivered message %d, want 2", ds[0].Deliveries)
	}
}

func TestVisibilityMaxDeliveriesDLQAndRedrive(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{VisibilityTimeout: broker.Duration(time.Second), MaxDeliveries: 2})
	e.pub("q", broker.Message{Body: []byte("poison"), Headers: map[string]string{"a": "b"}})
	for n := 1; n <= 2; n++ {
		ds := e.recv("q", 1)
		if len(ds) != 1 || ds[0].Deliveries != n {
			t.Fatalf("delivery %d: %+v", n, ds)
		}
		if again := e.recv("q", 1); len(again) != 0 {
			t.Fatal("in-flight message delivered twice")
		}
		e.clk.Advance(1100 * time.Millisecond)
		if n == 1 {
			e.waitFor("redelivery", func() bool { i, _ := e.b.Queue("q"); return i.Depth == 1 })
		}
	}
	e.waitFor("dead-lettering", func() bool { i, _ := e.b.Queue("q"); return i.DeadLettered == 1 })
	dl, _ := e.b.Receive(context.Background(), "q.dlq", broker.ReceiveOptions{Wait: 3 * time.Second})
	if len(dl) != 1 {
		t.Fatal("nothing in q.dlq")
	}
	h := dl[0].Headers
	if h[broker.HeaderDeadLetterReason] != "max_deliveries" || h[broker.HeaderOriginalQueue] != "q" || h[broker.HeaderDeliveries] != "2" || h["a"] != "b" {
		t.Fatalf("dead-letter headers %v", h)
	}
	if _, err := e.b.Nack(context.Background(), "q.dlq", []string{dl[0].Receipt}, 0); err != nil {
		t.Fatal(err)
	}
	e.restart() // the move survives a restart
	if i, _ := e.b.Queue("q"); i.DeadLettered != 1 || i.Depth != 0 {
		t.Fatalf("after restart %+v", i)
	}
	n, err := e.b.Redrive(context.Background(), "q")
	if err != nil || n != 1 {
		t.Fatalf("redrive %d %v", n, err)
	}
	ds := e.recv("q", 1)
	if len(ds) != 1 || string(ds[0].Body) != "poison" || ds[0].Deliveries != 1 || ds[0].Headers[broker.HeaderDeadLetterReason] != "" {
		t.Fatalf("redriven %+v", ds)
	}
	e.restart()
	if i, _ := e.b.Queue("q"); i.DeadLettered != 0 || i.Depth != 1 {
		t.Fatalf("after redrive+restart %+v", i)
	}
}

func TestNackDelayAndDelayedPublish(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	e.pub("q", broker.Message{Body: []byte("later"), Delay: 10 * time.Second})
	e.pub("q", broker.Message{Body: []byte("now")})
	if i, _ := e.b.Queue("q"); i.Delayed != 1 || i.Depth != 1 {
		t.Fatalf("info %+v", i)
	}
	ds := e.recv("q", 10)
	if fmt.Sprint(bodies(ds)) != "[now]" {
		t.Fatalf("got %v", bodies(ds))
	}
	if r, err := e.b.Nack(context.Background(), "q", []string{ds[0].Receipt}, 5*time.Second); err != nil || r.Done != 1 {
		t.Fatalf("nack %+v %v", r, err)
	}
	if got := e.recv("q", 10); len(got) != 0 {
		t.Fatalf("got %v before delays", bodies(got))
	}
	e.restart() // delays survive restart
	e.clk.Advance(6 * time.Second)
	e.waitFor("nacked message", func() bool { i, _ := e.b.Queue("q"); return i.Depth == 1 })
	if got := e.recv("q", 10); fmt.Sprint(bodies(got)) != "[now]" || got[0].Deliveries != 2 {
		t.Fatalf("got %v", got)
	}
	e.clk.Advance(5 * time.Second)
	e.waitFor("delayed message", func() bool { i, _ := e.b.Queue("q"); return i.Depth == 1 })
	if got := e.recv("q", 10); fmt.Sprint(bodies(got)) != "[later]" {
		t.Fatalf("got %v", bodies(got))
	}
}

func TestOrderingByKey(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	for _, m := range []struct{ k, b string }{{"a", "a1"}, {"b", "b1"}, {"a", "a2"}, {"", "n1"}, {"a", "a3"}, {"b", "b2"}} {
		e.pub("q", broker.Message{Key: m.k, Body: []byte(m.b)})
	}
	ds := e.recv("q", 10)
	if got := fmt.Sprint(bodies(ds)); got != "[a1 b1 n1]" {
		t.Fatalf("first receive %s", got)
	}
	// Nack a1: it must come back before a2.
	e.b.Nack(context.Background(), "q", []string{ds[0].Receipt}, 0)
	e.ack("q", ds[1:])
	ds = e.recv("q", 10)
	if got := fmt.Sprint(bodies(ds)); got != "[a1 b2]" {
		t.Fatalf("second receive %s", got)
	}
	e.ack("q", ds)
	ds = e.recv("q", 10)
	if got := fmt.Sprint(bodies(ds)); got != "[a2]" {
		t.Fatalf("third receive %s", got)
	}
	e.restart()
	ds = e.recv("q", 10)
	if got := fmt.Sprint(bodies(ds)); got != "[a2]" {
		t.Fatalf("after restart %s", got)
	}
}

func TestBackPressure(t *testing.T) {
	e := newEnv(t)
	e.declare("rej", broker.QueueConfig{MaxLength: 2})
	e.pub("rej", broker.Message{Body: []byte("1")})
	e.pub("rej", broker.Message{Body: []byte("2")})
	_, err := e.b.Publish(context.Background(), "rej", broker.Message{Body: []byte("3")}, broker.PublishOptions{})
	var full *broker.QueueFullError
	if !errors.As(err, &full) || full.Queue != "rej" || full.Limit != 2 {
		t.Fatalf("publish to full queue: %v", err)
	}

	e.declare("blk", broker.QueueConfig{MaxLength: 1, Overflow: broker.OverflowBlock, BlockTimeout: broker.Duration(5 * time.Second)})
	e.pub("blk", broker.Message{Body: []byte("1")})
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Publish(context.Background(), "blk", broker.Message{Body: []byte("2")}, broker.PublishOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("blocked publish returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	e.ack("blk", e.recv("blk", 1))
	if err := <-done; err != nil {
		t.Fatalf("unblocked publish: %v", err)
	}
	e.declare("blk", broker.QueueConfig{MaxLength: 1, Overflow: broker.OverflowBlock, BlockTimeout: broker.Duration(30 * time.Millisecond)})
	// The block timeout is measured on the broker clock's start and real time.
	if _, err := e.b.Publish(context.Background(), "blk", broker.Message{Body: []byte("3")}, broker.PublishOptions{}); !errors.As(err, &full) {
		t.Fatalf("blocked publish past timeout: %v", err)
	}

	e.declare("small", broker.QueueConfig{MaxMessageSize: 4})
	if _, err := e.b.Publish(context.Background(), "small", broker.Message{Body: []byte("12345")}, broker.PublishOptions{}); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := e.b.Publish(context.Background(), "nope", broker.Message{}, broker.PublishOptions{}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
}

func TestDedup(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{DedupWindow: broker.Duration(time.Minute)})
	r1 := e.pub("q", broker.Message{ID: "m-1", Body: []byte("x")})
	r2 := e.pub("q", broker.Message{ID: "m-1", Body: []byte("x")})
	if r1.Duplicate || !r2.Duplicate || r1.Seq != r2.Seq {
		t.Fatalf("r1 %+v r2 %+v", r1, r2)
	}
	e.restart()
	if r := e.pub("q", broker.Message{ID: "m-1", Body: []byte("x")}); !r.Duplicate || r.Seq != r1.Seq {
		t.Fatalf("after restart %+v", r)
	}
	e.clk.Advance(2 * time.Minute)
	if r := e.pub("q", broker.Message{ID: "m-1", Body: []byte("x")}); r.Duplicate {
		t.Fatalf("after window %+v", r)
	}
	if i, _ := e.b.Queue("q"); i.Depth != 2 {
		t.Fatalf("depth %d, want 2", i.Depth)
	}
}

func TestTTLAndRetention(t *testing.T) {
	e := newEnv(t)
	e.declare("ttl", broker.QueueConfig{MessageTTL: broker.Duration(time.Minute)})
	e.declare("ret", broker.QueueConfig{Retention: broker.Duration(time.Minute)})
	e.pub("ttl", broker.Message{Body: []byte("x")})
	e.pub("ttl", broker.Message{Body: []byte("long"), TTL: time.Hour})
	e.pub("ret", broker.Message{Body: []byte("y")})
	e.clk.Advance(2 * time.Minute)
	ds := e.recv("ttl", 10)
	if fmt.Sprint(bodies(ds)) != "[long]" {
		t.Fatalf("got %v", bodies(ds))
	}
	dl := e.recv("ttl.dlq", 10)
	if len(dl) != 1 || dl[0].Headers[broker.HeaderDeadLetterReason] != "expired" {
		t.Fatalf("dlq %+v", dl)
	}
	e.b.sweep(context.Background())
	if i, _ := e.b.Queue("ret"); i.Depth != 0 || i.DeadLettered != 0 {
		t.Fatalf("retention: %+v", i)
	}
	e.restart()
	if i, _ := e.b.Queue("ret"); i.Depth != 0 {
		t.Fatalf("retention after restart: %+v", i)
	}
}

func TestAutoAckAndNoWait(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	if _, err := e.b.Publish(context.Background(), "q", broker.Message{Body: []byte("ff")}, broker.PublishOptions{NoWait: true}); err != nil {
		t.Fatal(err)
	}
	ds, err := e.b.Receive(context.Background(), "q", broker.ReceiveOptions{Max: 5, AutoAck: true, Wait: 3 * time.Second})
	if err != nil || len(ds) != 1 || ds[0].Receipt != "" {
		t.Fatalf("auto-ack receive %+v %v", ds, err)
	}
	e.restart()
	if i, _ := e.b.Queue("q"); i.Depth != 0 {
		t.Fatalf("auto-acked message back: %+v", i)
	}
}

func TestLongPoll(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	go func() {
		time.Sleep(30 * time.Millisecond)
		e.b.Publish(context.Background(), "q", broker.Message{Body: []byte("x")}, broker.PublishOptions{})
	}()
	start := time.Now()
	ds, err := e.b.Receive(context.Background(), "q", broker.ReceiveOptions{Max: 1, Wait: 5 * time.Second})
	if err != nil || len(ds) != 1 || time.Since(start) > 4*time.Second {
		t.Fatalf("long poll %+v %v after %v", ds, err, time.Since(start))
	}
	ds, err = e.b.Receive(context.Background(), "q", broker.ReceiveOptions{Max: 1, Wait: 20 * time.Millisecond})
	if err != nil || len(ds) != 0 {
		t.Fatalf("empty long poll %+v %v", ds, err)
	}
}

func TestDeleteQueue(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	e.pub("q", broker.Message{Body: []byte("x")})
	if err := e.b.DeleteQueue("q"); err != nil {
		t.Fatal(err)
	}
	e.declare("q", broker.QueueConfig{})
	e.restart()
	if i, err := e.b.Queue("q"); err != nil || i.Depth != 0 {
		t.Fatalf("recreated queue %+v %v", i, err)
	}
	if err := e.b.DeleteQueue("zz"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatal(err)
	}
	if err := e.b.Declare("bad name", broker.QueueConfig{}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatal(err)
	}
	if err := e.b.Declare("q2", broker.QueueConfig{Overflow: "drop", MaxLength: -1}); !errors.Is(err, broker.ErrInvalid) {
		t.Fatal(err)
	}
}

func TestCompaction(t *testing.T) {
	lowerMinSegment(t)
	e := newEnv(t)
	e.cfg.SegmentBytes = 2048
	e.restart()
	e.declare("q", broker.QueueConfig{DedupWindow: broker.Duration(time.Minute)})
	for i := range 200 {
		e.pub("q", broker.Message{ID: fmt.Sprint(i), Body: []byte(fmt.Sprintf("message %d with some padding ..........", i))})
	}
	segs := func() int {
		ents, _ := os.ReadDir(filepath.Join(e.dir, "log"))
		n := 0
		for _, x := range ents {
			if filepath.Ext(x.Name()) == ".seg" {
				n++
			}
		}
		return n
	}
	before := segs()
	for {
		ds := e.recv("q", 50)
		if len(ds) == 0 {
			break
		}
		e.ack("q", ds)
	}
	e.b.compact()
	if after := segs(); after < before {
		t.Fatalf("segments %d -> %d: deleted publish records inside the dedup window", before, after)
	}
	e.restart()
	if r := e.pub("q", broker.Message{ID: "7", Body: []byte("again")}); !r.Duplicate {
		t.Fatal("producer id forgotten after restart")
	}
	e.clk.Advance(3 * time.Minute) // past every queue's window (q.dlq's default is 2m)
	e.b.compact()
	if after := segs(); after >= before || after > 2 {
		t.Fatalf("segments %d -> %d after everything was acked and the window passed", before, after)
	}
	e.pub("q", broker.Message{Body: []byte("survivor")})
	e.restart()
	if ds := e.recv("q", 10); fmt.Sprint(bodies(ds)) != "[survivor]" {
		t.Fatalf("after compaction+restart %v", bodies(ds))
	}
}

func TestConcurrentExactlyOnceAck(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	const producers, each = 4, 100
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := e.b.Publish(context.Background(), "q", broker.Message{Body: []byte(fmt.Sprintf("%d-%d", p, i))}, broker.PublishOptions{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	var mu sync.Mutex
	seen := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var cw sync.WaitGroup
	for range 4 {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for ctx.Err() == nil {
				ds, err := e.b.Receive(ctx, "q", broker.ReceiveOptions{Max: 10, Wait: 20 * time.Millisecond})
				if err != nil {
					return
				}
				var rs []string
				mu.Lock()
				for _, d := range ds {
					seen[string(d.Body)]++
					rs = append(rs, d.Receipt)
				}
				mu.Unlock()
				if len(rs) > 0 {
					if r, err := e.b.Ack(context.Background(), "q", rs); err != nil || r.Done != len(rs) {
						t.Errorf("ack %+v %v", r, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	e.waitFor("all consumed", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == producers*each })
	cancel()
	cw.Wait()
	var dup []string
	for k, n := range seen {
		if n != 1 {
			dup = append(dup, k)
		}
	}
	sort.Strings(dup)
	if len(dup) > 0 {
		t.Fatalf("delivered more than once: %v", dup)
	}
}

func TestEveryFsyncPolicy(t *testing.T) {
	for _, pol := range []string{"always", "batch", "interval:10ms", "never"} {
		t.Run(pol, func(t *testing.T) {
			p, err := wal.ParseSyncPolicy(pol)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t)
			e.cfg.Fsync = p
			e.restart()
			e.declare("q", broker.QueueConfig{})
			for i := range 5 {
				e.pub("q", broker.Message{Body: []byte(fmt.Sprint(i))})
			}
			e.ack("q", e.recv("q", 2))
			e.restart()
			if ds := e.recv("q", 10); fmt.Sprint(bodies(ds)) != "[2 3 4]" {
				t.Fatalf("got %v", bodies(ds))
			}
		})
	}
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(appendPublish(nil, &pubRecord{queue: 1, msgID: "id", key: "k", headers: map[string]string{"a": "b"}, body: []byte("x")}))
	f.Add(appendSeqs(nil, opNack, 3, 99, []uint64{1, 2, 300}))
	f.Add(encodeStreamRecord(nil, map[string]string{"a": "b"}, []byte("body")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, body, err := decodeStreamRecord(b); err == nil {
			if h2, body2, err := decodeStreamRecord(encodeStreamRecord(nil, h, body)); err != nil || len(h2) != len(h) || string(body2) != string(body) {
				t.Fatalf("stream record round trip: %v", err)
			}
		}
		if len(b) == 0 {
			return
		}
		switch b[0] {
		case opPublish:
			if r, err := decodePublish(b[1:]); err == nil {
				again := appendPublish(nil, &r)
				if r2, err := decodePublish(again[1:]); err != nil || r2.msgID != r.msgID || string(r2.body) != string(r.body) {
					t.Fatalf("round trip: %v", err)
				}
			}
		default:
			decodeSeqs(b[0], b[1:])
		}
	})
}

// With async_acks an ack is applied at once and still reaches the log:
// after a restart the acked messages stay gone. A redeclaration racing
// with acks must not race on the setting (run with -race).
func TestAsyncAcks(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{AsyncAcks: true})
	for i := range 4 {
		e.pub("q", broker.Message{Body: []byte(fmt.Sprint(i))})
	}
	ds := e.recv("q", 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if err := e.b.Declare("q", broker.QueueConfig{AsyncAcks: true, MaxDeliveries: 7}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	if r := e.ack("q", ds[:3]); r.Done != 3 || len(r.Failed) != 0 {
		t.Fatalf("ack %+v", r)
	}
	<-done
	if info, _ := e.b.Queue("q"); info.Depth != 0 || info.InFlight != 1 {
		t.Fatalf("after ack %+v", info)
	}
	e.restart()
	ds = e.recv("q", 10)
	if got := fmt.Sprint(bodies(ds)); got != "[3]" {
		t.Fatalf("after restart received %s, want only the unacked message", got)
	}
}

// A queue naming itself as its dead-letter queue would cycle a failing
// message forever; it is refused at declare time.
func TestQueueCannotDeadLetterIntoItself(t *testing.T) {
	e := newEnv(t)
	err := e.b.Declare("orders", broker.QueueConfig{DeadLetter: "orders"})
	if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), `dead_letter "orders"`) {
		t.Fatalf("got %v, want ErrInvalid naming dead_letter", err)
	}
	if _, err := e.b.Queue("orders"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("the refused queue exists: %v", err)
	}
	e.declare("orders", broker.QueueConfig{DeadLetter: "orders.failed"})
}

// TestRedriveKeepsWhatNamesNoQueue: kit/message's DeadLetter wrote a live
// topic subscription's dead letters to TOPIC.dlq, the dead-letter queue of
// a queue named TOPIC, with x-original-queue "topic:TOPIC". Redrive of
// that queue stopped at the first such message: the queue's own dead
// letters behind it never moved. Now it leaves those where they are
// (counted in a RedriveKeptError) and moves the others, every time, each
// once ("queue:NAME" is NAME).
func TestRedriveKeepsWhatNamesNoQueue(t *testing.T) {
	e := newEnv(t)
	e.declare("rides", broker.QueueConfig{})
	e.declare("rides.dlq", broker.QueueConfig{})
	for _, m := range []struct{ body, orig string }{{"a", "rides"}, {"t1", "topic:rides"}, {"b", "queue:rides"}, {"t2", "bogus name"}, {"c", ""}} {
		e.pub("rides.dlq", broker.Message{Body: []byte(m.body), Headers: map[string]string{broker.HeaderOriginalQueue: m.orig}})
	}
	for run := 1; run <= 7; run++ {
		n, err := e.b.Redrive(context.Background(), "rides")
		var kept *broker.RedriveKeptError
		want := 0
		if run == 1 {
			want = 3
		}
		if n != want || !errors.As(err, &kept) || !errors.Is(err, broker.ErrInvalid) || kept.Kept != 2 || kept.First != "topic:rides" || kept.DLQ != "rides.dlq" {
			t.Fatalf("redrive run %d: %d %v; want %d moved, 2 kept", run, n, err, want)
		}
		if run == 4 {
			e.restart()
		}
	}
	if i, _ := e.b.Queue("rides"); i.Depth != 3 {
		t.Fatalf("rides: %+v, want 3 messages", i)
	}
	ds := e.recv("rides.dlq", 10)
	got := map[string]int{}
	for _, d := range ds {
		got[string(d.Body)]++
		if d.Deliveries != 1 {
			t.Fatalf("kept %q: deliveries %d, want 1 (a redrive does not count one)", d.Body, d.Deliveries)
		}
	}
	if len(ds) != 2 || got["t1"] != 1 || got["t2"] != 1 {
		t.Fatalf("rides.dlq holds %v, want t1, t2 once each", got)
	}
}
