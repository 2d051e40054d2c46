package discovery_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
)

// startRegistry serves an in-memory registry on 127.0.0.1:0.
func startRegistry(t *testing.T) (*registry.Registry, *discovery.Client) {
	t.Helper()
	r, err := registry.Open(registry.Config{ReapInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.Handler(r))
	t.Cleanup(func() { r.Close(); srv.Close() })
	c, err := discovery.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

// backend is a real HTTP server answering its name.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return s
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8500", "ftp://h:1", "http://", "http://h:1/?x=1"} {
		if _, err := discovery.NewClient(u, nil); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}

func TestLeaseHeartbeatsReregistersAndDeregisters(t *testing.T) {
	r, c := startRegistry(t)
	ctx := context.Background()
	l, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "a", Address: "127.0.0.1:9000",
		TTL: config.Duration(300 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	// Heartbeats keep it past several TTLs: its expiry keeps moving.
	first := r.Snapshot("rides").Instances[0].Expires
	waitFor(t, "a heartbeat", func() bool {
		s := r.Snapshot("rides")
		return len(s.Instances) == 1 && s.Instances[0].Expires.After(first)
	})
	if err := l.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// The registry forgets it (as after losing its state): the lease
	// registers it again, still draining.
	if err := r.Deregister("rides", "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-registration", func() bool {
		s := r.Snapshot("rides")
		return len(s.Instances) == 1 && s.Instances[0].State == discovery.StateDraining
	})
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s := r.Snapshot("rides"); len(s.Instances) != 0 {
		t.Fatalf("after Close: %+v", s.Instances)
	}
	if _, err := c.Heartbeat(ctx, "rides", "a"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("heartbeat after Close: %v, want ErrNotRegistered", err)
	}
	if _, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "b", Address: "nope"}); err == nil {
		t.Error("invalid registration accepted")
	}
}

func TestWatchSeesChanges(t *testing.T) {
	_, c := startRegistry(t)
	ctx := context.Background()
	w, err := c.Watch(ctx, "rides", discovery.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	next := func() discovery.ServiceSnapshot {
		t.Helper()
		select {
		case s := <-w.Updates():
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no update within 10s")
		}
		return discovery.ServiceSnapshot{}
	}
	if s := next(); len(s.Instances) != 0 {
		t.Fatalf("first set: %+v", s)
	}
	reg := discovery.Registration{Service: "rides", ID: "a", Address: "127.0.0.1:9000"}
	in, err := c.RegisterOnce(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithLease(in.Lease)
	if s := next(); len(s.Instances) != 1 || s.Instances[0].ID != "a" {
		t.Fatalf("after register: %+v", s)
	}
	if _, err := c.SetState(ctx, "rides", "a", discovery.StateDraining); err != nil {
		t.Fatal(err)
	}
	if s := next(); s.Instances[0].State != discovery.StateDraining {
		t.Fatalf("after drain: %+v", s)
	}
	if err := c.Deregister(ctx, "rides", "a"); err != nil {
		t.Fatal(err)
	}
	if s := next(); len(s.Instances) != 0 {
		t.Fatalf("after deregister: %+v", s)
	}
	if cur, ok := w.Current(); !ok || len(cur.Instances) != 0 {
		t.Errorf("Current = %+v, %v", cur, ok)
	}
	if _, err := c.Watch(ctx, "Bad Name", discovery.WatchOptions{}); err == nil {
		t.Error("watch of an invalid name accepted")
	}
}

func TestWatchKeepsLastSetWhileRegistryDown(t *testing.T) {
	r, err := registry.Open(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv := httptest.NewServer(registry.Handler(r))
	c, _ := discovery.NewClient(srv.URL, nil)
	if _, err := r.Register(discovery.Registration{Service: "rides", ID: "a", Address: "127.0.0.1:9000"}); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Watch(context.Background(), "rides", discovery.WatchOptions{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	defer w.Close()
	<-w.Ready()
	r.Close() // answers the waiting long-poll (503), then nothing listens
	srv.Close()
	waitFor(t, "a poll error", func() bool { return w.Err() != nil })
	if cur, _ := w.Current(); len(cur.Instances) != 1 {
		t.Fatalf("registry down: current set %+v, want the last known", cur)
	}
}

// TestTransportRoutesAroundKilledInstance: a client calling through
// discovery loses no idempotent request when an instance dies without
// deregistering, and stops trying it once its TTL runs out.
func TestTransportRoutesAroundKilledInstance(t *testing.T) {
	r, c := startRegistry(t)
	ctx := context.Background()
	a, b := backend(t, "a"), backend(t, "b")
	ttl := time.Second
	la, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "a", Address: addr(a), TTL: config.Duration(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: "b", Address: addr(b), TTL: config.Duration(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close(ctx)
	w, _ := c.Watch(ctx, "rides", discovery.WatchOptions{})
	defer w.Close()
	bal, err := discovery.NewBalancer(w, discovery.BalancerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	hc := &http.Client{Transport: &discovery.Transport{Balancer: bal}}
	waitFor(t, "both instances", func() bool { return len(bal.Targets()) == 2 })

	var failed, served atomic.Int64
	seen := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := hc.Get("http://rides/x")
				if err != nil {
					t.Logf("request failed: %v", err)
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				seen.Store(string(body), true)
				served.Add(1)
			}
		})
	}
	waitFor(t, "traffic on both", func() bool {
		_, okA := seen.Load("a")
		_, okB := seen.Load("b")
		return okA && okB
	})
	// Kill a: its server goes away and its heartbeats stop, no deregistration.
	killed := time.Now()
	la.Abandon()
	a.CloseClientConnections()
	a.Close()
	waitFor(t, "a removed after its TTL", func() bool { return len(bal.Targets()) == 1 })
	gone := time.Since(killed)
	before := served.Load()
	waitFor(t, "more traffic after removal", func() bool { return served.Load() > before+50 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d idempotent requests failed", failed.Load())
	}
	t.Logf("instance removed %v after the kill (TTL %v); %d requests served", gone, ttl, served.Load())
	if bal.Targets()[0].Address != addr(b) {
		t.Fatalf("remaining target %s", bal.Targets()[0].Address)
	}
	_ = r
}

func TestTransportNoInstance(t *testing.T) {
	_, c := startRegistry(t)
	w, _ := c.Watch(context.Background(), "empty", discovery.WatchOptions{})
	defer w.Close()
	bal, _ := discovery.NewBalancer(w, discovery.BalancerConfig{})
	defer bal.Close()
	_, err := (&http.Client{Transport: &discovery.Transport{Balancer: bal}}).Get("http://empty/")
	if !errors.Is(err, discovery.ErrNoInstance) {
		t.Fatalf("err = %v, want ErrNoInstance", err)
	}
	var ne net.Error
	_ = errors.As(err, &ne)
}

// TestRegisterAfterCrashWaitsOutTheOldLease: a process that crashed
// without deregistering left its instance live under a lease the next
// run does not have; Register with the same id waits until that
// registration expires (within its TTL) instead of failing, and the new
// Lease then owns the id: a holder of the old lease is refused.
func TestRegisterAfterCrashWaitsOutTheOldLease(t *testing.T) {
	_, c := startRegistry(t)
	ctx := context.Background()
	reg := discovery.Registration{Service: "rides", ID: "rides-0", Address: "10.0.0.1:80", TTL: config.Duration(300 * time.Millisecond)}
	first, err := c.RegisterOnce(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	// The crash: nobody renews or deregisters the first registration.
	if _, err := c.RegisterOnce(ctx, reg); !errors.Is(err, discovery.ErrLeaseMismatch) {
		t.Fatalf("RegisterOnce over a live instance without its lease: %v, want ErrLeaseMismatch", err)
	}
	l, err := c.Register(ctx, reg)
	if err != nil {
		t.Fatalf("Register after a crash: %v", err)
	}
	if _, err := c.WithLease(first.Lease).Heartbeat(ctx, "rides", "rides-0"); !errors.Is(err, discovery.ErrLeaseMismatch) {
		t.Fatalf("the crashed run's lease: %v, want ErrLeaseMismatch", err)
	}
	if err := l.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Service(ctx, "rides", 0, 0)
	if err != nil || len(snap.Instances) != 0 {
		t.Fatalf("after Close: %+v %v", snap.Instances, err)
	}
	// An id another live process holds is not waited for forever.
	if _, err := c.RegisterOnce(ctx, reg); err != nil {
		t.Fatal(err)
	}
	other := reg
	other.TTL = config.Duration(time.Hour)
	keep, err := c.Register(ctx, reg) // waits out the 300ms registration
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close(ctx)
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Register(cctx, other); !errors.Is(err, discovery.ErrLeaseMismatch) {
		t.Fatalf("Register over a live, renewed instance: %v, want ErrLeaseMismatch once ctx ends", err)
	}
}
