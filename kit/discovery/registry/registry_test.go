package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/testclock"
	"github.com/switchyard/switchyard/kit/discovery"
)

func reg(service, id, addr string, ttl time.Duration) discovery.Registration {
	return discovery.Registration{Service: service, ID: id, Address: addr, TTL: config.Duration(ttl),
		Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}, HealthURL: "http://" + addr + "/healthz"}
}

func open(t *testing.T, cfg Config) *Registry {
	t.Helper()
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = time.Hour // tests reap by hand
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func ids(s discovery.ServiceSnapshot) string {
	var out []string
	for _, in := range s.Instances {
		out = append(out, in.ID+"="+string(in.State))
	}
	return strings.Join(out, ",")
}

func TestLifecycle(t *testing.T) {
	clk := testclock.New()
	r := open(t, Config{Now: clk.Now})
	if _, err := r.Register(reg("rides", "a", "127.0.0.1:1", 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(reg("rides", "b", "127.0.0.1:2", 3*time.Second)); err != nil {
		t.Fatal(err)
	}
	s := r.Snapshot("rides")
	if ids(s) != "a=up,b=up" || s.Index != 2 {
		t.Fatalf("snapshot = %s index %d", ids(s), s.Index)
	}
	clk.Advance(2 * time.Second)
	if _, err := r.Heartbeat("rides", "b"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second) // b renewed at +2s for 3s: alive until +5s
	if n := r.Reap(); n != 0 {
		t.Fatalf("reaped %d at +4s", n)
	}
	if r.Snapshot("rides").Index != 2 {
		t.Error("a heartbeat changed the index")
	}
	if _, err := r.SetState("rides", "a", discovery.StateDraining); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if n := r.Reap(); n != 1 {
		t.Fatalf("reaped %d at +5s, want 1 (b)", n)
	}
	s = r.Snapshot("rides")
	if ids(s) != "a=draining" || s.Index != 4 {
		t.Fatalf("after expiry: %s index %d", ids(s), s.Index)
	}
	if _, err := r.Heartbeat("rides", "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("heartbeat of expired instance: %v, want ErrNotFound", err)
	}
	if err := r.Deregister("rides", "a"); err != nil {
		t.Fatal(err)
	}
	if s := r.Snapshot("rides"); len(s.Instances) != 0 || s.Index != 0 {
		t.Errorf("after deregister: %+v", s)
	}
	if len(r.Services()) != 0 {
		t.Errorf("services = %+v", r.Services())
	}
}

func TestRejectsBadRegistrations(t *testing.T) {
	r := open(t, Config{})
	cases := []struct {
		reg  discovery.Registration
		want string
	}{
		{reg("Rides", "a", "127.0.0.1:1", time.Second), "service name"},
		{reg("rides", "a b", "127.0.0.1:1", time.Second), "instance id"},
		{reg("rides", "a", "127.0.0.1", time.Second), "expected host:port"},
		{reg("rides", "a", "127.0.0.1:0", time.Second), "expected 1-65535"},
		{reg("rides", "a", "exa mple:80", time.Second), "host"},
		{reg("rides", "a", "127.0.0.1:1", time.Millisecond), "ttl"},
		{reg("rides", "a", "127.0.0.1:1", 2*time.Hour), "ttl"},
		{discovery.Registration{Service: "rides", ID: "a", Address: "h:1", HealthURL: "ftp://x"}, "health_url"},
		{discovery.Registration{Service: "rides", ID: "a", Address: "h:1", Tags: []string{"a\x00"}}, "tags[0]"},
		{discovery.Registration{Service: "rides", ID: "a", Address: "h:1", Meta: map[string]string{"": "x"}}, "meta key"},
	}
	for _, c := range cases {
		_, err := r.Register(c.reg)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Register(%+v) = %v, want ErrInvalid mentioning %q", c.reg, err, c.want)
		}
	}
	if _, err := r.SetState("rides", "a", "sleeping"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad state: %v", err)
	}
}

func TestMaxInstances(t *testing.T) {
	r := open(t, Config{MaxInstances: 1})
	if _, err := r.Register(reg("a", "1", "h:1", time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(reg("b", "1", "h:1", time.Second)); !errors.Is(err, ErrFull) {
		t.Fatalf("second instance: %v, want ErrFull", err)
	}
	if _, err := r.Register(reg("a", "1", "h:2", time.Second)); err != nil {
		t.Fatalf("replacing within the cap: %v", err)
	}
	if len(r.Services()) != 1 {
		t.Errorf("a refused registration left a service behind: %+v", r.Services())
	}
}

func TestWaitWakesOnChange(t *testing.T) {
	r := open(t, Config{})
	got := make(chan discovery.ServiceSnapshot, 1)
	go func() {
		s, _ := r.Wait(context.Background(), "rides", 0)
		got <- s
	}()
	if _, err := r.Register(reg("other", "x", "h:1", time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(reg("rides", "a", "h:1", time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if ids(s) != "a=up" {
			t.Fatalf("woke with %s", ids(s))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the service changed")
	}
	// A timed-out wait returns the unchanged snapshot.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := r.Wait(ctx, "rides", r.Snapshot("rides").Index)
	if err != nil || ids(s) != "a=up" {
		t.Fatalf("cancelled wait = %s, %v", ids(s), err)
	}
	// Close releases waiters.
	done := make(chan error, 1)
	go func() {
		_, err := r.Wait(context.Background(), "rides", s.Index)
		done <- err
	}()
	r.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait across Close: %v", err)
	}
}

// TestRestartKeepsRemainingTTL: instances survive a restart with the TTL
// they had left when the registry stopped, however long it was down.
func TestRestartKeepsRemainingTTL(t *testing.T) {
	dir := t.TempDir()
	clk := testclock.New()
	r1 := open(t, Config{Dir: dir, Now: clk.Now})
	if _, err := r1.Register(reg("rides", "a", "127.0.0.1:1", 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.Register(reg("rides", "b", "127.0.0.1:2", 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.SetState("rides", "a", discovery.StateDraining); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := r1.Heartbeat("rides", "b"); err != nil { // b: 2s left
		t.Fatal(err)
	}
	clk.Advance(time.Second) // a: 8s left, b: 1s left
	index := r1.Snapshot("rides").Index
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Hour) // down for an hour
	r2 := open(t, Config{Dir: dir, Now: clk.Now})
	s := r2.Snapshot("rides")
	if ids(s) != "a=draining,b=up" || s.Index < index {
		t.Fatalf("after restart: %s index %d (was %d)", ids(s), s.Index, index)
	}
	if left := s.Instances[0].Expires.Sub(clk.Now()); left != 8*time.Second {
		t.Errorf("a has %v left, want 8s", left)
	}
	if s.Instances[0].Meta["zone"] != "a" || s.Instances[0].Tags[0] != "v1" {
		t.Errorf("registration not restored: %+v", s.Instances[0])
	}
	clk.Advance(time.Second)
	if n := r2.Reap(); n != 1 {
		t.Fatalf("reaped %d one second after restart, want 1 (b)", n)
	}
	// A change after the restart gets a larger index than any before it.
	if _, err := r2.Register(reg("rides", "c", "127.0.0.1:3", 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if r2.Snapshot("rides").Index <= index {
		t.Error("index went backwards across the restart")
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	// Deregistered and expired instances stay gone.
	r3 := open(t, Config{Dir: dir, Now: clk.Now})
	if got := ids(r3.Snapshot("rides")); got != "a=draining,c=up" {
		t.Fatalf("third start: %s", got)
	}
}

func TestBackgroundReap(t *testing.T) {
	r := open(t, Config{ReapInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Register(reg("rides", "a", "h:1", discovery.MinTTL)); err != nil {
		t.Fatal(err)
	}
	s := r.Snapshot("rides")
	for len(s.Instances) > 0 {
		var err error
		if s, err = r.Wait(ctx, "rides", s.Index); err != nil || ctx.Err() != nil {
			t.Fatalf("instance not reaped: %v %v", err, ctx.Err())
		}
	}
}

func TestMaxWatchers(t *testing.T) {
	r := open(t, Config{MaxWatchers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	go func() {
		close(started)
		r.Wait(ctx, "rides", 0)
	}()
	<-started
	deadline := time.Now().Add(10 * time.Second)
	for r.watchers.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("first watcher never waited")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := r.Wait(ctx, "rides", 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("second watcher: %v, want ErrBusy", err)
	}
}
