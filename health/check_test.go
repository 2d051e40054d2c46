package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/upstream"
)

// waitFor polls cond every few milliseconds until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// run starts c.Run and stops it (waiting for its goroutines) at cleanup.
func run(t *testing.T, c *Checker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func targetOf(t *testing.T, url string) *upstream.Target {
	t.Helper()
	return upstream.NewTarget(strings.TrimPrefix(url, "http://"), 0, 1)
}

func TestCheckConfigValidate(t *testing.T) {
	if err := (CheckConfig{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	if err := (CheckConfig{Path: "/healthz?full=1", Interval: time.Second, Timeout: time.Second, ExpectStatus: [2]int{200, 200}, Host: "api.internal"}).Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	err := CheckConfig{
		Path: "healthz", Interval: -time.Second, Timeout: time.Minute,
		HealthyAfter: -1, UnhealthyAfter: -2, ExpectStatus: [2]int{400, 200}, Host: "a b",
	}.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		`path: "healthz"`, "interval: -1s", "timeout: 1m0s", "healthy_after: -1", "unhealthy_after: -2",
		"expect_status: 400-200", `host: "a b"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (CheckConfig{ExpectStatus: [2]int{200, 700}}).Validate(); err == nil {
		t.Error("status 700 accepted")
	}
	if _, err := NewChecker(CheckConfig{Path: "x"}, nil, CheckerOptions{}); err == nil {
		t.Error("NewChecker accepted a bad config")
	}
}

// flappy is a health endpoint whose status the test sets; it counts requests.
type flappy struct {
	status   atomic.Int32
	requests atomic.Int32
	host     atomic.Value // last Host header
}

func (f *flappy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.host.Store(r.Host)
	w.WriteHeader(int(f.status.Load()))
}

func TestHTTPCheckThresholds(t *testing.T) {
	srv := &flappy{}
	srv.status.Store(500)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	target := targetOf(t, ts.URL)

	// OnChange runs on the check goroutine right after the deciding check,
	// before the next one, so the server's count at that moment is exact.
	type change struct {
		healthy  bool
		requests int32
	}
	changes := make(chan change, 10)
	c, err := NewChecker(CheckConfig{Path: "/healthz", Interval: 20 * time.Millisecond, HealthyAfter: 2, UnhealthyAfter: 3, Host: "api.internal"},
		[]*upstream.Target{target}, CheckerOptions{
			OnChange: func(tg *upstream.Target, healthy bool) {
				changes <- change{healthy, srv.requests.Load()}
			},
		})
	if err != nil {
		t.Fatal(err)
	}
	if !target.Healthy() {
		t.Fatal("new target not healthy")
	}
	run(t, c)

	waitFor(t, "target unhealthy", func() bool { return !target.Healthy() })
	if ch := <-changes; ch.healthy || ch.requests != 3 {
		t.Errorf("change %+v, want unhealthy after exactly 3 checks", ch)
	}
	if h := srv.host.Load(); h != "api.internal" {
		t.Errorf("Host header %q, want api.internal", h)
	}

	n := srv.requests.Load()
	srv.status.Store(204)
	waitFor(t, "target healthy", target.Healthy)
	if ch := <-changes; !ch.healthy {
		t.Errorf("change %+v, want healthy", ch)
	} else if ch.requests != n+2 && ch.requests != n+1 {
		// A check counted before the switch may read the new status, so
		// the second passing check is request n+1 or n+2.
		t.Errorf("healthy at request %d, want %d (HealthyAfter 2 after request %d)", ch.requests, n+2, n)
	}
}

func TestHTTPCheckExactRecovery(t *testing.T) {
	// Start unhealthy against a passing server: exactly HealthyAfter checks.
	srv := &flappy{}
	srv.status.Store(200)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	target := targetOf(t, ts.URL)
	target.SetHealthy(false)
	var at atomic.Int32
	c, err := NewChecker(CheckConfig{Path: "/", Interval: 20 * time.Millisecond, HealthyAfter: 4},
		[]*upstream.Target{target}, CheckerOptions{
			OnChange: func(*upstream.Target, bool) { at.Store(srv.requests.Load()) },
		})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitFor(t, "target healthy", target.Healthy)
	waitFor(t, "OnChange", func() bool { return at.Load() != 0 })
	if n := at.Load(); n != 4 {
		t.Errorf("healthy after %d checks, want 4", n)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	ts := httptest.NewServer(http.RedirectHandler("/elsewhere", http.StatusFound))
	defer ts.Close()
	c, err := NewChecker(CheckConfig{Path: "/", ExpectStatus: [2]int{200, 299}}, nil, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(context.Background(), targetOf(t, ts.URL))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusFound {
		t.Fatalf("Check = %v, want a StatusError with 302", err)
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	})
	defer wg.Wait()
	defer ln.Close()

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	open := upstream.NewTarget(ln.Addr().String(), 0, 1)
	dead := upstream.NewTarget(closedAddr, 1, 1)
	var changes atomic.Int32
	c, err := NewChecker(CheckConfig{Interval: 20 * time.Millisecond, UnhealthyAfter: 2},
		[]*upstream.Target{open, dead}, CheckerOptions{
			OnChange: func(*upstream.Target, bool) { changes.Add(1) },
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background(), open); err != nil {
		t.Errorf("open port: %v", err)
	}
	if err := c.Check(context.Background(), dead); err == nil || !strings.Contains(err.Error(), closedAddr) {
		t.Errorf("closed port: %v, want an error naming %s", err, closedAddr)
	}
	run(t, c)
	waitFor(t, "closed port unhealthy", func() bool { return !dead.Healthy() })
	if !open.Healthy() {
		t.Error("open port marked unhealthy")
	}
	if n := changes.Load(); n != 1 {
		t.Errorf("OnChange called %d times, want 1", n)
	}
}

func TestSlowServerFails(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)
	target := targetOf(t, ts.URL)
	c, err := NewChecker(CheckConfig{Path: "/", Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, UnhealthyAfter: 1},
		[]*upstream.Target{target}, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Check(context.Background(), target); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Check took %v despite a 10ms timeout", d)
	}
	run(t, c)
	waitFor(t, "slow target unhealthy", func() bool { return !target.Healthy() })
}

func TestRunStopsPromptly(t *testing.T) {
	// A long interval: Run must not wait for the next check to return.
	ts := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ts.Close()
	c, err := NewChecker(CheckConfig{Path: "/", Interval: time.Hour}, []*upstream.Target{targetOf(t, ts.URL)}, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(10 * time.Millisecond) // let the first check run; not needed for correctness
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunEmptyPoolBlocks(t *testing.T) {
	c, err := NewChecker(CheckConfig{}, nil, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run on an empty pool = %v, want it to block until ctx is done", err)
	}
}

// TestOnCheckReportsEveryCheck: OnCheck sees each completed check with its
// duration and result, passing and failing alike.
func TestOnCheckReportsEveryCheck(t *testing.T) {
	srv := &flappy{}
	srv.status.Store(200)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	target := targetOf(t, ts.URL)
	var passes, fails atomic.Int32
	var badRTT atomic.Bool
	c, err := NewChecker(CheckConfig{Path: "/", Interval: 10 * time.Millisecond},
		[]*upstream.Target{target}, CheckerOptions{
			OnCheck: func(_ *upstream.Target, rtt time.Duration, err error) {
				if rtt <= 0 {
					badRTT.Store(true)
				}
				if err == nil {
					passes.Add(1)
				} else {
					fails.Add(1)
				}
			},
		})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitFor(t, "passing checks reported", func() bool { return passes.Load() >= 2 })
	srv.status.Store(503)
	waitFor(t, "failing checks reported", func() bool { return fails.Load() >= 2 })
	if badRTT.Load() {
		t.Error("OnCheck got a non-positive duration")
	}
}

// TestHTTPCheckTargetPath: CheckerOptions.Path gives a target its own
// check path, which goes to the target's address whatever it contains;
// "" keeps CheckConfig.Path; a path without a leading "/" fails the
// check and requests nothing.
func TestHTTPCheckTargetPath(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.URL.RequestURI())
		mu.Unlock()
	}))
	defer ts.Close()
	target := targetOf(t, ts.URL)
	own := ""
	c, err := NewChecker(CheckConfig{Path: "/healthz"}, nil, CheckerOptions{Path: func(*upstream.Target) string { return own }})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "/ready?deep=1", "//169.254.169.254/latest", "/@127.0.0.1:6379/"} {
		own = p
		if err := c.Check(context.Background(), target); err != nil {
			t.Fatalf("path %q: %v", p, err)
		}
	}
	own = "@127.0.0.1:6379/"
	if err := c.Check(context.Background(), target); err == nil {
		t.Fatal("a path without a leading / passed")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{target.Address + " /healthz", target.Address + " /ready?deep=1", target.Address + " //169.254.169.254/latest", target.Address + " /@127.0.0.1:6379/"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("requests %q, want %q", seen, want)
	}
}
