package health

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	var r Registry // zero value ready
	if r.Alive("a:1", t0) {
		t.Fatal("unknown address alive")
	}
	if got := r.Expired(t0); len(got) != 0 {
		t.Fatalf("Expired on empty registry = %v", got)
	}
	if revived, err := r.Beat("a:1", 10*time.Second, t0); err != nil || !revived {
		t.Fatalf("first Beat = %v, %v; want revived", revived, err)
	}
	if revived, _ := r.Beat("a:1", 10*time.Second, t0.Add(5*time.Second)); revived {
		t.Error("renewal reported as revived")
	}
	if _, err := r.Beat("b:1", 3*time.Second, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Beat("c:1", 3*time.Second, t0); err != nil {
		t.Fatal(err)
	}

	now := t0.Add(3 * time.Second) // b and c expire exactly now
	if !r.Alive("a:1", now) || r.Alive("b:1", now) {
		t.Errorf("at +3s: a alive %v (want true), b alive %v (want false)", r.Alive("a:1", now), r.Alive("b:1", now))
	}
	if got := r.Addresses(now); !slices.Equal(got, []string{"a:1"}) {
		t.Errorf("Addresses = %v, want [a:1]", got)
	}
	if got := r.Expired(now); !slices.Equal(got, []string{"b:1", "c:1"}) {
		t.Errorf("Expired = %v, want [b:1 c:1]", got)
	}
	if got := r.Expired(now); len(got) != 0 {
		t.Errorf("second Expired = %v, want none (reported once)", got)
	}
	// a was renewed at +5s for 10s: alive until +15s.
	if !r.Alive("a:1", t0.Add(14*time.Second)) || r.Alive("a:1", t0.Add(15*time.Second)) {
		t.Error("renewal did not extend the TTL to +15s")
	}
	// A heartbeat after expiry (not yet reaped) revives.
	if revived, _ := r.Beat("a:1", time.Second, t0.Add(20*time.Second)); !revived {
		t.Error("beat after expiry not reported as revived")
	}
	if !r.Remove("a:1") || r.Remove("a:1") || r.Alive("a:1", t0.Add(20*time.Second)) {
		t.Error("Remove did not forget the address exactly once")
	}
}

func TestRegistryBeatErrors(t *testing.T) {
	var r Registry
	_, err := r.Beat("", -time.Second, t0)
	if err == nil {
		t.Fatal("bad beat accepted")
	}
	for _, want := range []string{`address ""`, "ttl -1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if len(r.Addresses(t0)) != 0 {
		t.Error("bad beat registered")
	}
}

func TestRegistryConcurrent(t *testing.T) {
	var r Registry
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				addr := string(rune('a'+g)) + ":1"
				_, _ = r.Beat(addr, 5*time.Millisecond, now)
				r.Alive(addr, now)
				r.Expired(now)
				r.Addresses(now)
			}
		})
	}
	wg.Wait()
}
