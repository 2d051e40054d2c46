package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openWB(t *testing.T, c Layer[[]byte], s Store[[]byte], path string, mod func(*WriteBehindOptions[[]byte])) *WriteBehind[[]byte] {
	t.Helper()
	o := WriteBehindOptions[[]byte]{Path: path, Codec: BytesCodec(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	w, err := OpenWriteBehind(c, s, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestWriteBehindFlushesInBatches(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLStore(t, filepath.Join(dir, "store.db"))
	c := newT(t, Options[[]byte]{})
	// The store is down while the writes arrive and the buffer is closed
	// and reopened before it comes back, so the replay sends them all in
	// one batch, each key's repeats collapsed to its newest.
	down := errors.New("down")
	s.fail.Store(&down)
	big := func(o *WriteBehindOptions[[]byte]) { o.BatchSize = 200 }
	w := openWB(t, c, s, filepath.Join(dir, "buf.db"), big)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if err := w.Set(ctx, fmt.Sprintf("g%d-%d", g, i%5), fmt.Appendf(nil, "%d", i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	w.Delete(ctx, "g0-0")
	if v, err := w.Get(ctx, "g1-4"); string(v) != "24" || err != nil {
		t.Fatalf("read-your-writes before the flush: %q %v", v, err)
	}
	if _, err := w.Get(ctx, "g0-0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("buffered delete: %v", err)
	}
	w.Close()
	s.fail.Store(nil)
	w = openWB(t, c, s, filepath.Join(dir, "buf.db"), big)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := s.all(t)
	if len(got) != 19 || got["g3-0"] != "20" || got["g2-4"] != "24" || got["g0-0"] != "" {
		t.Fatalf("store after flush: %v", got)
	}
	if w.Pending() != 0 {
		t.Fatalf("pending %d after flush", w.Pending())
	}
	if n := s.saves.Load(); n != 20 {
		t.Fatalf("%d writes reached the store for 101 buffered writes to 20 keys, want 20", n)
	}
	// Flushed values are cached: reads need no store.
	loads := s.loads.Load()
	if v, err := w.Get(ctx, "g2-4"); string(v) != "24" || err != nil || s.loads.Load() != loads {
		t.Fatalf("read after flush: %q %v, store loads %d -> %d", v, err, loads, s.loads.Load())
	}
}

func TestWriteBehindRetriesAndReplays(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLStore(t, filepath.Join(dir, "store.db"))
	boom := errors.New("store unreachable")
	s.fail.Store(&boom)
	c := newT(t, Options[[]byte]{})
	failures := make(chan error, 100)
	w := openWB(t, c, s, filepath.Join(dir, "buf.db"), func(o *WriteBehindOptions[[]byte]) {
		o.OnFlushError = func(err error) {
			select {
			case failures <- err:
			default:
			}
		}
	})
	for i := range 10 {
		if err := w.Set(ctx, fmt.Sprint("k", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the flusher retried at least once
		if err := <-failures; !errors.Is(err, boom) {
			t.Fatalf("flush error %v", err)
		}
	}
	// Close with the store down: the writes stay in the buffer.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(s.all(t)) != 0 {
		t.Fatal("the failing store got writes")
	}
	s.fail.Store(nil)
	w2 := openWB(t, newT(t, Options[[]byte]{}), s, filepath.Join(dir, "buf.db"), nil)
	if w2.Pending() != 10 {
		t.Fatalf("replayed %d pending writes, want 10", w2.Pending())
	}
	if err := w2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.all(t); len(got) != 10 {
		t.Fatalf("store after replay: %v", got)
	}
	if err := w.Set(ctx, "late", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("set after close: %v", err)
	}
}

func TestWriteBehindBufferFullAndExclusive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := &mapStore{}
	s.setFail(errors.New("down"))
	w := openWB(t, newT(t, Options[[]byte]{}), s, filepath.Join(dir, "buf.db"), func(o *WriteBehindOptions[[]byte]) { o.MaxPending = 3 })
	for i := range 3 {
		if err := w.Set(ctx, fmt.Sprint(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Set(ctx, "x", nil); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("fourth write with MaxPending 3: %v", err)
	}
	// A second writer on the same buffer would flush the same writes twice.
	if w2, err := OpenWriteBehind(Layer[[]byte](newT(t, Options[[]byte]{})), Store[[]byte](s), WriteBehindOptions[[]byte]{Path: filepath.Join(dir, "buf.db"), Codec: BytesCodec()}); err == nil {
		w2.Close()
		t.Fatal("a second WriteBehind opened a buffer in use")
	}
	if _, err := OpenWriteBehind[[]byte](nil, nil, WriteBehindOptions[[]byte]{}); err == nil || !strings.Contains(err.Error(), "path: required") || !strings.Contains(err.Error(), "codec") {
		t.Fatalf("empty options: %v", err)
	}
}

// The crash test: a child process (this test binary, re-executed) makes
// acknowledged writes and is SIGKILLed at a random moment, several times;
// after a last child drains the buffer, the store must hold, for every
// key, the last acknowledged write or a later one.

const crashEnv = "KIT_CACHE_CRASH_CHILD"

func TestWriteBehindCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("run by TestWriteBehindSurvivesSIGKILL")
	}
	dir := os.Getenv(crashEnv + "_DIR")
	round, _ := strconv.Atoi(os.Getenv(crashEnv + "_ROUND"))
	s := openSQLStore(t, filepath.Join(dir, "store.db"))
	c := newT(t, Options[[]byte]{})
	w := openWB(t, c, s, filepath.Join(dir, "buf.db"), func(o *WriteBehindOptions[[]byte]) { o.BatchSize = 16 })
	ctx := context.Background()
	if mode == "drain" {
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		fmt.Println("drained")
		return
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("g%d-k%02d", g, i%40)
				if err := w.Set(ctx, key, fmt.Appendf(nil, "%d.%09d", round, i)); err != nil {
					t.Error(err)
					return
				}
				out.Lock()
				fmt.Fprintf(os.Stdout, "ack %s %d.%09d\n", key, round, i)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestWriteBehindSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	dir := t.TempDir()
	lastAck := map[string]string{} // key -> newest acknowledged value ("round.seq", sortable)
	run := func(mode string, round int, killAfter int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriteBehindCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+mode, crashEnv+"_DIR="+dir, crashEnv+"_ROUND="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		acks, drained := 0, false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "ack":
				if f[2] > lastAck[f[1]] {
					lastAck[f[1]] = f[2]
				}
				acks++
				if acks == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			case len(f) == 1 && f[0] == "drained":
				drained = true
			}
		}
		err = cmd.Wait()
		if mode == "drain" {
			if err != nil || !drained {
				t.Fatalf("drain child: %v (drained %v)", err, drained)
			}
			return
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want killed by SIGKILL", round, err)
		}
		t.Logf("round %d: killed after %d acknowledged writes", round, acks)
	}
	for round := 1; round <= 3; round++ {
		run("write", round, 30+rand.IntN(300))
	}
	run("drain", 0, 0)

	s := openSQLStore(t, filepath.Join(dir, "store.db"))
	got := s.all(t)
	for key, want := range lastAck {
		if got[key] < want {
			t.Errorf("%s: store has %q, the last acknowledged write was %q", key, got[key], want)
		}
	}
	if len(lastAck) == 0 {
		t.Fatal("no acknowledged writes")
	}
	t.Logf("%d keys checked", len(lastAck))
}
