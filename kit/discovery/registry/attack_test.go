package registry

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/testclock"
	"github.com/switchyard/switchyard/kit/discovery"
)

// An instance id "." or ".." is a path segment the HTTP API cannot
// address (the mux cleans /instances/.. away), so such an instance,
// registered through the Go API, could never be renewed, drained or
// deregistered over HTTP. Both are refused like any other bad id.
func TestDotIDsRefused(t *testing.T) {
	r, srv := serve(t)
	for _, id := range []string{".", ".."} {
		if _, err := r.Register(reg("rides", id, "127.0.0.1:1", time.Minute)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "instance id") {
			t.Errorf("Register id %q = %v, want ErrInvalid naming the instance id", id, err)
		}
	}
	// What the HTTP API does with such a path: never this instance.
	code, _ := call(t, http.MethodDelete, srv.URL+"/v1/services/rides/instances/..", "")
	if code == http.StatusOK || code == http.StatusNoContent {
		t.Fatalf("DELETE /instances/.. answered %d", code)
	}
}

// Addresses no instance can have are refused: link-local (169.254.0.0/16
// holds cloud metadata services, 169.254.169.254), the unspecified
// address (0.0.0.0 dials this host) and multicast. Loopback and private
// addresses stay allowed (development, private networks).
func TestNonInstanceAddressesRefused(t *testing.T) {
	r := open(t, Config{})
	at := func(a string) discovery.Registration {
		return discovery.Registration{Service: "rides", ID: "a", Address: a, TTL: config.Duration(time.Minute)}
	}
	for _, a := range []string{"169.254.169.254:80", "[fe80::1%eth0]:80", "0.0.0.0:9901", "[::]:80", "224.0.0.1:80", "[::ffff:169.254.169.254]:80"} {
		if _, err := r.Register(at(a)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "address") {
			t.Errorf("Register address %q = %v, want ErrInvalid naming the address", a, err)
		}
	}
	for _, a := range []string{"127.0.0.1:80", "10.0.0.7:80", "[::1]:80", "rides-1.internal:80"} {
		if _, err := r.Register(at(a)); err != nil {
			t.Errorf("Register address %q: %v", a, err)
		}
	}
}

// TestNumericHostFormsRefused: the C resolver (getaddrinfo, which Go
// uses with GODEBUG=netdns=cgo, on macOS, and which non-Go callers of
// the registry use) reads inet_aton's forms: 2852039166, 0xa9fea9fe,
// 0251.0376.0251.0376 and 169.254.43518 are all 169.254.169.254, and
// 127.1 is 127.0.0.1. A forged registration used them to pass the
// link-local check as "host names". A host that is all numbers in those
// notations must be a plain dotted quad.
func TestNumericHostFormsRefused(t *testing.T) {
	r := open(t, Config{})
	at := func(a string) discovery.Registration {
		return discovery.Registration{Service: "rides", ID: "a", Address: a, TTL: config.Duration(time.Minute)}
	}
	for _, a := range []string{"2852039166:80", "0xa9fea9fe:80", "0XA9FEA9FE:80", "0251.0376.0251.0376:80", "169.254.43518:80",
		"169.254.169.254.:80", "0x7f.1:80", "127.1:80", "010.0.0.1:80", "0:80"} {
		if _, err := r.Register(at(a)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "address") {
			t.Errorf("Register address %q = %v, want ErrInvalid naming the address", a, err)
		}
	}
	for _, a := range []string{"10.0.0.7:80", "rides-1.internal:80", "cafe:80", "deadbeef.svc:80", "1e100.net:443", "x0:80", "0x.example:80"} {
		if _, err := r.Register(at(a)); err != nil {
			t.Errorf("Register address %q: %v", a, err)
		}
	}
}

// TestChangeWakesOnlyItsWatchers: a flood of registrations on one
// service must not wake the long-polls of every other service. Before,
// one registry-wide channel woke every waiting watcher on every change,
// and each took the registry lock and copied its service's instances:
// with MaxWatchers (10,000) long-polls parked, every registration of an
// attacker's throwaway service cost 10,000 wake-ups and snapshots.
func TestChangeWakesOnlyItsWatchers(t *testing.T) {
	r := open(t, Config{})
	const watchers, flood = 50, 100
	done := make(chan discovery.ServiceSnapshot, watchers)
	for range watchers {
		go func() {
			s, _ := r.Wait(context.Background(), "quiet", 0)
			done <- s
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.parked.Load() != watchers {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d watchers parked", r.parked.Load(), watchers)
		}
		time.Sleep(time.Millisecond)
	}
	for i := range flood {
		if _, err := r.Register(reg("busy", strconv.Itoa(i), "10.0.0.1:80", time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Register(reg("quiet", "q", "10.0.0.2:80", time.Minute)); err != nil {
		t.Fatal(err)
	}
	for range watchers {
		if s := <-done; ids(s) != "q=up" {
			t.Fatalf("a quiet watcher woke with %q", ids(s))
		}
	}
	if n := r.wakeups.Load(); n != watchers {
		t.Fatalf("%d wake-ups for %d watchers of a service that changed once (%d changes elsewhere)", n, watchers, flood)
	}
}

// TestMaxBytes: MaxInstances alone let 10,000 registrations of 64 KiB
// each (64 metadata values of 1 KiB) hold 640 MiB, copied again for
// every watcher's answer. The registry caps the bytes its instances
// hold; a replacement or removal gives its bytes back.
func TestMaxBytes(t *testing.T) {
	r := open(t, Config{MaxBytes: 1 << 20})
	fat := func(id string) discovery.Registration {
		g := reg("rides", id, "10.0.0.1:80", time.Minute)
		g.Meta = map[string]string{}
		for k := range 60 {
			g.Meta["k"+strconv.Itoa(k)] = strings.Repeat("v", 1000)
		}
		return g
	}
	n := 0
	var err error
	for ; n < 100; n++ {
		if _, err = r.Register(fat(strconv.Itoa(n))); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) || n < 10 || n > 17 {
		t.Fatalf("%d fat registrations taken before %v; want ErrFull after about 16 (1 MiB)", n, err)
	}
	// Replacing one by a thin registration frees room for another fat one.
	if _, err := r.Register(reg("rides", "0", "10.0.0.1:80", time.Minute)); err != nil {
		t.Fatalf("thin replacement: %v", err)
	}
	if _, err := r.Register(fat("new")); err != nil {
		t.Fatalf("fat after a thin replacement: %v", err)
	}
	if err := r.Deregister("rides", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(fat("new2")); err != nil {
		t.Fatalf("fat after a deregistration: %v", err)
	}
	if _, err := r.Register(fat("new3")); !errors.Is(err, ErrFull) {
		t.Fatalf("over the cap again: %v, want ErrFull", err)
	}
}

// TestRestartAfterClockWentBack: a registry whose clock ran ahead (a
// day, here) and was corrected while it was down stored expiries a day in
// the future; after the restart its instances lived a day past their
// TTL, routed to though nothing heartbeated them. No instance may have
// more than its TTL left after a restart.
func TestRestartAfterClockWentBack(t *testing.T) {
	dir := t.TempDir()
	clk := testclock.New()
	clk.Advance(24 * time.Hour) // running a day ahead
	r1 := open(t, Config{Dir: dir, Now: clk.Now})
	if _, err := r1.Register(reg("rides", "a", "127.0.0.1:1", 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(-24 * time.Hour) // corrected while down
	r2 := open(t, Config{Dir: dir, Now: clk.Now})
	s := r2.Snapshot("rides")
	if len(s.Instances) != 1 {
		t.Fatalf("after restart: %s", ids(s))
	}
	if left := s.Instances[0].Expires.Sub(clk.Now()); left > 30*time.Second {
		t.Fatalf("instance has %v left after the restart, more than its 30s TTL", left)
	}
	clk.Advance(31 * time.Second)
	if n := r2.Reap(); n != 1 {
		t.Fatalf("reaped %d one TTL after the restart, want 1", n)
	}
}

// FuzzPollParams: the long-poll query (?index=N&wait=D) never panics; an
// accepted one waits only with an index, and then at most MaxWait.
func FuzzPollParams(f *testing.F) {
	for _, q := range []string{"", "index=3", "index=3&wait=30s", "wait=1s", "index=-1", "index=18446744073709551616", "index=1&wait=-5s",
		"index=1&wait=9999999h", "index=1&index=2", "index=1&wait=0.5ms", "index=%zz", "index=1&wait=1e9"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req, err := http.NewRequest(http.MethodGet, "http://registry/v1/services/rides", nil)
		if err != nil {
			return
		}
		req.URL.RawQuery = q
		index, wait, err := pollParams(req)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("pollParams(%q): %v is not ErrInvalid", q, err)
			}
			return
		}
		if wait < 0 || wait > MaxWait || wait > 0 && req.URL.Query().Get("index") == "" {
			t.Fatalf("pollParams(%q) = %d, %v", q, index, wait)
		}
	})
}
