package broker

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

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
// queue, is not counted, and the redrive reports the error; the messages
// before it move, those after it stay.
func TestRedriveFailedMoveKeepsDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.declare("q", QueueConfig{})
	e.pub("q.dlq", Message{Body: []byte("one"), Headers: map[string]string{HeaderOriginalQueue: "q"}})
	e.pub("q.dlq", Message{Body: []byte("bad"), Headers: map[string]string{HeaderOriginalQueue: "no such/queue"}})
	e.pub("q.dlq", Message{Body: []byte("three"), Headers: map[string]string{HeaderOriginalQueue: "q"}})
	n, err := e.b.Redrive(context.Background(), "q")
	if err == nil || n != 1 {
		t.Fatalf("redrive: moved %d, err %v; want 1 moved and an error", n, err)
	}
	if !strings.Contains(err.Error(), "no such/queue") {
		t.Fatalf("redrive error %q does not name the bad target", err)
	}
	check := func(when string) {
		t.Helper()
		qi, _ := e.b.Queue("q")
		if qi.Depth != 1 || qi.DeadLettered != 2 {
			t.Fatalf("%s: q depth %d, dead letters %d; want 1 and 2", when, qi.Depth, qi.DeadLettered)
		}
	}
	check("after the redrive")
	e.b.compact() // nothing still in the dead-letter queue may lose its record
	e.restart()
	check("after restart")
	ds := e.recv("q.dlq", 10)
	if got := strings.Join(bodies(ds), ","); got != "bad,three" {
		t.Fatalf("dead letters after restart %q, want bad,three", got)
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
	e.declare("q", QueueConfig{MaxDeliveries: 1})
	e.pub("q", Message{Body: []byte("x")})
	ds := e.recv("q", 1)
	full.Store(true)
	if _, err := e.b.Publish(context.Background(), "q", Message{Body: []byte("y")}, PublishOptions{}); ErrorCode(err) != CodeStorageFull || !errors.Is(err, ErrStorageFull) {
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
	e.clk.Add(2 * deadLetterRetry)
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
