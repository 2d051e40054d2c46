package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/internal/seglimit"
	"github.com/switchyard/switchyard/wal"
)

// TestDataDirLocked: a second broker on the same data directory is refused
// with an error naming the holder, and can open once the first closed.
func TestDataDirLocked(t *testing.T) {
	e := newEnv(t)
	_, err := Open(e.cfg)
	var le *wal.LockedError
	if !errors.As(err, &le) || !errors.Is(err, wal.ErrLocked) {
		t.Fatalf("second Open on the same directory: %v, want a *wal.LockedError", err)
	}
	if le.PID != os.Getpid() || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("error %q does not name the holder pid %d", err, os.Getpid())
	}
	e.restart() // Close releases the lock
	if _, err := Open(e.cfg); err == nil {
		t.Fatal("second Open after restart succeeded")
	}
}

// TestRedriveFailedMoveKeepsDeadLetters: a dead letter that cannot be moved
// (its x-original-queue names no valid queue) stays in the dead-letter
// queue, is not counted, and the redrive reports it (a RedriveKeptError
// naming the bad target); the messages before and after it move (before,
// those after it stayed: one bad message held up every redrive).
func TestRedriveFailedMoveKeepsDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	e.pub("q.dlq", broker.Message{Body: []byte("one"), Headers: map[string]string{broker.HeaderOriginalQueue: "q"}})
	e.pub("q.dlq", broker.Message{Body: []byte("bad"), Headers: map[string]string{broker.HeaderOriginalQueue: "no such/queue"}})
	e.pub("q.dlq", broker.Message{Body: []byte("three"), Headers: map[string]string{broker.HeaderOriginalQueue: "q"}})
	n, err := e.b.Redrive(context.Background(), "q")
	var kept *broker.RedriveKeptError
	if !errors.As(err, &kept) || kept.Kept != 1 || n != 2 {
		t.Fatalf("redrive: moved %d, err %v; want 2 moved and 1 kept", n, err)
	}
	if !strings.Contains(err.Error(), "no such/queue") {
		t.Fatalf("redrive error %q does not name the bad target", err)
	}
	check := func(when string) {
		t.Helper()
		qi, _ := e.b.Queue("q")
		if qi.Depth != 2 || qi.DeadLettered != 1 {
			t.Fatalf("%s: q depth %d, dead letters %d; want 2 and 1", when, qi.Depth, qi.DeadLettered)
		}
	}
	check("after the redrive")
	e.b.compact() // nothing still in the dead-letter queue may lose its record
	e.restart()
	check("after restart")
	ds := e.recv("q.dlq", 10)
	if got := strings.Join(bodies(ds), ","); got != "bad" {
		t.Fatalf("dead letters after restart %q, want bad", got)
	}
}

// TestDeadLetterOnFullDiskKeepsMessage: a message due for the dead-letter
// queue while the disk is full stays in its queue (the move record cannot
// be written) and is dead-lettered once space returns.
func TestDeadLetterOnFullDiskKeepsMessage(t *testing.T) {
	e := newEnv(t)
	var full atomic.Bool
	e.cfg.WriteHook = func(string, int64, int) error {
		if full.Load() {
			return syscall.ENOSPC
		}
		return nil
	}
	e.restart()
	e.declare("q", broker.QueueConfig{MaxDeliveries: 1})
	e.pub("q", broker.Message{Body: []byte("x")})
	ds := e.recv("q", 1)
	full.Store(true)
	if _, err := e.b.Publish(context.Background(), "q", broker.Message{Body: []byte("y")}, broker.PublishOptions{}); broker.ErrorCode(err) != broker.CodeStorageFull || !errors.Is(err, broker.ErrStorageFull) {
		t.Fatalf("publish on a full disk: %v, want storage_full", err)
	}
	if r, err := e.b.Nack(context.Background(), "q", []string{ds[0].Receipt}, 0); err != nil || r.Done != 1 {
		t.Fatalf("nack on a full disk: %+v %v", r, err)
	}
	qi, _ := e.b.Queue("q")
	if qi.Depth+qi.Delayed != 1 || qi.DeadLettered != 0 {
		t.Fatalf("after a failed dead-letter move: %+v, want the message still in q", qi)
	}
	full.Store(false)
	e.waitFor("space noticed", func() bool { return e.b.log.Full() == nil })
	e.clk.Advance(2 * deadLetterRetry)
	e.waitFor("dead-lettering", func() bool {
		e.recv("q", 1)
		qi, _ := e.b.Queue("q")
		return qi.DeadLettered == 1
	})
	e.restart()
	if qi, _ := e.b.Queue("q"); qi.Depth != 0 || qi.DeadLettered != 1 {
		t.Fatalf("after restart %+v", qi)
	}
}

// lowerMinSegment lets a test use tiny segments (retention tests).
func lowerMinSegment(t *testing.T) {
	old := seglimit.Min
	seglimit.Min = 256
	t.Cleanup(func() { seglimit.Min = old })
}

// TestSettingLimits: tiny segments and absurd durations are refused with
// an error naming the key and the bounds.
func TestSettingLimits(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		err  error
		want string
	}{
		{e.b.DeclareStream("s", broker.StreamConfig{SegmentBytes: 1}), "segment_bytes 1: must be between 1048576 (1 MiB) and 1 GiB"},
		{e.b.DeclareStream("s", broker.StreamConfig{MaxAge: broker.Duration(100 * 365 * 24 * time.Hour)}), "max_age"},
		{e.b.Declare("q", broker.QueueConfig{VisibilityTimeout: broker.Duration(999999 * time.Hour)}), "visibility_timeout 999999h0m0s: must be between 0 and 12h0m0s"},
		{e.b.Declare("q", broker.QueueConfig{BlockTimeout: broker.Duration(time.Hour)}), "block_timeout"},
		{e.b.Declare("q", broker.QueueConfig{DedupWindow: broker.Duration(30 * 24 * time.Hour)}), "dedup_window"},
		{e.b.Declare("q", broker.QueueConfig{MessageTTL: broker.Duration(999999 * time.Hour)}), "message_ttl"},
		{e.b.Declare("q", broker.QueueConfig{Retention: broker.Duration(999999 * time.Hour)}), "retention"},
		{Config{Dir: "x", SegmentBytes: 4096}.Validate(), "segment_bytes 4096"},
	} {
		if !errors.Is(c.err, broker.ErrInvalid) && !strings.Contains(fmt.Sprint(c.err), "segment_bytes") {
			t.Errorf("%v: want ErrInvalid", c.err)
		}
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("error %v, want it to contain %q", c.err, c.want)
		}
	}
	e.declare("q", broker.QueueConfig{})
	e.pub("q", broker.Message{Body: []byte("x")})
	if _, err := e.b.Receive(context.Background(), "q", broker.ReceiveOptions{Visibility: 999999 * time.Hour}); !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "visibility") {
		t.Errorf("receive with visibility 999999h: %v, want ErrInvalid naming visibility", err)
	}
	if _, err := e.b.Publish(context.Background(), "q", broker.Message{Body: []byte("x"), Delay: 999999 * time.Hour}, broker.PublishOptions{}); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("publish with delay 999999h: %v, want ErrInvalid", err)
	}
}

// TestReadParamsNameTheBadOne: a receive, read or fetch parameter out of
// range is named with the value given and its own bound, and the ones
// that are fine are not blamed.
func TestReadParamsNameTheBadOne(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{})
	if err := e.b.DeclareStream("s", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	recv := func(o broker.ReceiveOptions) error { _, err := e.b.Receive(ctx, "q", o); return err }
	read := func(o broker.ReadOptions) error { _, err := e.b.Read(ctx, "s", 0, o); return err }
	fetch := func(o broker.ReadOptions) error { _, err := e.b.Fetch(ctx, "s", "g", o); return err }
	for _, c := range []struct {
		err       error
		want, not []string
	}{
		{recv(broker.ReceiveOptions{Visibility: 999999 * time.Hour}), []string{"visibility 999999h0m0s", "at most 12h0m0s"}, []string{"max", "wait"}},
		{recv(broker.ReceiveOptions{Max: 5000}), []string{"max 5000", "1 to 1000"}, []string{"visibility", "wait"}},
		{recv(broker.ReceiveOptions{Wait: -time.Second, Visibility: -time.Second}), []string{"wait -1s", "visibility -1s", "must not be negative"}, []string{"max"}},
		{read(broker.ReadOptions{Max: 20000}), []string{"max 20000", "1 to 10000"}, []string{"wait"}},
		{fetch(broker.ReadOptions{Wait: -time.Second}), []string{"wait -1s", "must not be negative"}, []string{"max"}},
	} {
		if !errors.Is(c.err, broker.ErrInvalid) {
			t.Errorf("%v: want ErrInvalid", c.err)
			continue
		}
		msg := strings.TrimPrefix(c.err.Error(), broker.ErrInvalid.Error())
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q lacks %q", msg, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(msg, n) {
				t.Errorf("error %q blames %q, which was fine", msg, n)
			}
		}
	}
}

// TestMaxMessageSizeCountsEverything: max_message_size counts id, key,
// headers and body, for queues, topics and streams.
func TestMaxMessageSizeCountsEverything(t *testing.T) {
	e := newEnv(t)
	e.declare("q", broker.QueueConfig{MaxMessageSize: 10})
	if err := e.b.DeclareStream("s", broker.StreamConfig{MaxMessageSize: 10}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.DeclareTopic("t", broker.TopicConfig{MaxMessageSize: 10}); err != nil {
		t.Fatal(err)
	}
	fits := broker.Message{Body: []byte("12345"), ID: "ab", Key: "c", Headers: map[string]string{"d": "e"}}  // 10
	over := broker.Message{Body: []byte("12345"), ID: "ab", Key: "c", Headers: map[string]string{"d": "ef"}} // 11
	ctx := context.Background()
	if _, err := e.b.Publish(ctx, "q", fits, broker.PublishOptions{}); err != nil {
		t.Fatalf("queue, 10 bytes: %v", err)
	}
	if _, err := e.b.Publish(ctx, "q", over, broker.PublishOptions{}); !errors.Is(err, broker.ErrTooLarge) || !strings.Contains(err.Error(), "11 bytes") {
		t.Fatalf("queue, 11 bytes: %v", err)
	}
	if _, err := e.b.Append(ctx, "s", over); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("stream, 11 bytes: %v", err)
	}
	if _, err := e.b.PublishTopic(ctx, "t", over, broker.PublishOptions{}); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("topic, 11 bytes: %v", err)
	}
}

// TestLargestMessageEndToEnd: a message of the largest max_message_size
// (64 MiB) goes through the queue log and comes back after a restart.
func TestLargestMessageEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB message")
	}
	e := newEnv(t)
	e.declare("big", broker.QueueConfig{MaxMessageSize: broker.MaxMessageSizeLimit})
	body := make([]byte, broker.MaxMessageSizeLimit-9)
	for i := range body {
		body[i] = byte(i * 7)
	}
	msg := broker.Message{Body: body, ID: "id", Key: "k", Headers: map[string]string{"ab": "cdef"}} // exactly 64 MiB
	if msg.Size() != broker.MaxMessageSizeLimit {
		t.Fatalf("size %d", msg.Size())
	}
	e.pub("big", msg)
	e.restart()
	ds := e.recv("big", 1)
	if len(ds) != 1 || !bytes.Equal(ds[0].Body, body) {
		t.Fatalf("64 MiB message did not come back intact")
	}
}
