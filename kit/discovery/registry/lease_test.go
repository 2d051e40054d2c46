package registry

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testclock"
	"github.com/switchyard/switchyard/kit/discovery"
)

// TestLeaseOwnership: a live instance belongs to its registrant. Another
// caller with the same write rights (the service's registry token) can
// neither replace it with its own address, renew, drain nor deregister
// it: 409 lease_mismatch, without its lease or with a wrong one. The
// registrant, presenting the lease its registration returned, can; the
// lease survives a registry restart and is never listed; once the
// instance expired its id is free for a new registrant (a new lease).
// Before leases any caller replaced any instance of the service.
func TestLeaseOwnership(t *testing.T) {
	clk := testclock.New()
	dir := t.TempDir()
	ctx := context.Background()
	start := func() (*Registry, *discovery.Client) {
		r := open(t, Config{Dir: dir, Now: clk.Now})
		srv := httptest.NewServer(Handler(r))
		t.Cleanup(srv.Close)
		c, err := discovery.NewClient(srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r, c
	}
	r, c := start()
	own := reg("rides", "r-1", "10.0.0.1:80", 10*time.Second)
	in, err := c.RegisterOnce(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Lease) < 40 {
		t.Fatalf("registration answered lease %q, want a secret", in.Lease)
	}
	owner := c.WithLease(in.Lease)

	hijack := reg("rides", "r-1", "10.6.6.6:80", 10*time.Second)
	for name, other := range map[string]*discovery.Client{"no lease": c, "a wrong lease": c.WithLease("not-the-lease-at-all-0123456789abcdef")} {
		if _, err := other.RegisterOnce(ctx, hijack); !errors.Is(err, discovery.ErrLeaseMismatch) {
			t.Fatalf("re-register with %s: %v, want ErrLeaseMismatch", name, err)
		}
		if _, err := other.Heartbeat(ctx, "rides", "r-1"); !errors.Is(err, discovery.ErrLeaseMismatch) {
			t.Fatalf("heartbeat with %s: %v, want ErrLeaseMismatch", name, err)
		}
		if _, err := other.SetState(ctx, "rides", "r-1", discovery.StateDraining); !errors.Is(err, discovery.ErrLeaseMismatch) {
			t.Fatalf("drain with %s: %v, want ErrLeaseMismatch", name, err)
		}
		if err := other.Deregister(ctx, "rides", "r-1"); !errors.Is(err, discovery.ErrLeaseMismatch) {
			t.Fatalf("deregister with %s: %v, want ErrLeaseMismatch", name, err)
		}
		var ae *discovery.APIError
		if _, err := other.RegisterOnce(ctx, hijack); !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "lease_mismatch" {
			t.Fatalf("re-register with %s: %v, want 409 lease_mismatch", name, err)
		}
	}
	snap, err := c.Service(ctx, "rides", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Instances) != 1 || snap.Instances[0].Address != "10.0.0.1:80" || snap.Instances[0].State != discovery.StateUp {
		t.Fatalf("instances after the attempts: %+v", snap.Instances)
	}
	if snap.Instances[0].Lease != "" {
		t.Fatal("a listing carries the lease")
	}

	// The registrant renews, replaces (the lease stays) and drains.
	if _, err := owner.Heartbeat(ctx, "rides", "r-1"); err != nil {
		t.Fatal(err)
	}
	own.Tags = []string{"v2"}
	again, err := owner.RegisterOnce(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	if again.Lease != in.Lease {
		t.Fatalf("re-registration changed the lease")
	}
	if _, err := owner.SetState(ctx, "rides", "r-1", discovery.StateDraining); err != nil {
		t.Fatal(err)
	}

	// A restart keeps the ownership.
	r.Close()
	r, c = start()
	if _, err := c.RegisterOnce(ctx, hijack); !errors.Is(err, discovery.ErrLeaseMismatch) {
		t.Fatalf("re-register without the lease after a restart: %v, want ErrLeaseMismatch", err)
	}
	owner = c.WithLease(in.Lease)
	if _, err := owner.Heartbeat(ctx, "rides", "r-1"); err != nil {
		t.Fatalf("heartbeat with the lease after a restart: %v", err)
	}

	// Expired, the id is free: a new registrant gets a new lease, and the
	// old one's lease is refused.
	clk.Advance(11 * time.Second)
	r.Reap()
	in2, err := c.RegisterOnce(ctx, hijack)
	if err != nil {
		t.Fatalf("register of an expired id: %v", err)
	}
	if in2.Lease == "" || in2.Lease == in.Lease {
		t.Fatal("a new registrant got no new lease")
	}
	if _, err := owner.Heartbeat(ctx, "rides", "r-1"); !errors.Is(err, discovery.ErrLeaseMismatch) {
		t.Fatalf("the previous registrant's heartbeat: %v, want ErrLeaseMismatch", err)
	}
	if err := c.WithLease(in2.Lease).Deregister(ctx, "rides", "r-1"); err != nil {
		t.Fatal(err)
	}
}
