package breaker

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testclock"
)

type transition struct{ from, to State }

// newTest returns a breaker on a manual clock that records its transitions.
func newTest(t *testing.T, cfg Config) (*Breaker, *testclock.Clock, *[]transition) {
	t.Helper()
	clk := testclock.New()
	var trans []transition
	b, err := New(cfg, Options{
		Now:           clk.Now,
		OnStateChange: func(from, to State) { trans = append(trans, transition{from, to}) },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, clk, &trans
}

// record admits and records n requests, failing the first failures of them.
func record(t *testing.T, b *Breaker, n, failures int) {
	t.Helper()
	for i := range n {
		if err := b.Allow(); err != nil {
			t.Fatalf("request %d refused: %v", i, err)
		}
		b.Record(i >= failures)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Closed: "closed", Open: "open", HalfOpen: "half-open", State(9): "state(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config (defaults): %v", err)
	}
	err := Config{FailureRatio: 1.5, MinRequests: -1, Window: time.Millisecond, OpenFor: -time.Second, HalfOpenProbes: -2}.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"failure_ratio: 1.5", "min_requests: -1", "window: 1ms", "open_for: -1s", "half_open_probes: -2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (Config{FailureRatio: math.NaN()}).Validate(); err == nil {
		t.Error("NaN failure ratio accepted")
	}
	if _, err := New(Config{FailureRatio: -1}, Options{}); err == nil {
		t.Error("New accepted a bad config")
	}
}

func TestOpening(t *testing.T) {
	cfg := Config{FailureRatio: 0.5, MinRequests: 10}
	tests := []struct {
		name           string
		total, failing int
		want           State
	}{
		{"below volume", 9, 9, Closed},
		{"below ratio", 10, 4, Closed},
		{"at ratio and volume", 10, 5, Open},
		{"all failing", 10, 10, Open},
		{"above volume below ratio", 100, 49, Closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, trans := newTest(t, cfg)
			// Successes first so the breaker cannot open before the end.
			for i := range tt.total {
				if err := b.Allow(); err != nil {
					t.Fatalf("request %d refused: %v", i, err)
				}
				b.Record(i < tt.total-tt.failing)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("state = %v, want %v", got, tt.want)
			}
			if tt.want == Open {
				if len(*trans) != 1 || (*trans)[0] != (transition{Closed, Open}) {
					t.Errorf("transitions = %v, want [closed→open]", *trans)
				}
			}
		})
	}
}

func TestOpensAtMinRequestsExactly(t *testing.T) {
	b, _, _ := newTest(t, Config{MinRequests: 5, FailureRatio: 1})
	for i := range 4 {
		_ = b.Allow()
		b.Record(false)
		if b.State() != Closed {
			t.Fatalf("opened after %d failures, want 5", i+1)
		}
	}
	_ = b.Allow()
	b.Record(false)
	if b.State() != Open {
		t.Fatal("still closed after 5 failures")
	}
}

func TestWindowSlides(t *testing.T) {
	// Window 10s in 1s buckets.
	b, clk, _ := newTest(t, Config{MinRequests: 10, FailureRatio: 0.5, Window: 10 * time.Second})
	record(t, b, 9, 9) // 9 failures at t=0
	clk.Advance(10 * time.Second)
	// The old failures have left the window: 1 more failure is 1 of 1.
	record(t, b, 1, 1)
	if b.State() != Closed {
		t.Fatal("old failures still counted after the window passed")
	}

	// Failures 9s ago are still in the window.
	b, clk, _ = newTest(t, Config{MinRequests: 10, FailureRatio: 0.5, Window: 10 * time.Second})
	record(t, b, 9, 9)
	clk.Advance(9 * time.Second)
	record(t, b, 1, 1)
	if b.State() != Open {
		t.Fatal("failures within the window not counted")
	}
}

func TestOpenToHalfOpenToClosed(t *testing.T) {
	b, clk, trans := newTest(t, Config{MinRequests: 1, FailureRatio: 1, OpenFor: 5 * time.Second, HalfOpenProbes: 3})
	record(t, b, 1, 1)

	err := b.Allow()
	var oe *OpenError
	if !errors.Is(err, ErrOpen) || !errors.As(err, &oe) {
		t.Fatalf("Allow while open = %v, want *OpenError wrapping ErrOpen", err)
	}
	if got := oe.RetryAfter(); got != 5*time.Second {
		t.Errorf("RetryAfter = %v, want 5s", got)
	}
	if !strings.Contains(err.Error(), "retry after 5s") {
		t.Errorf("error %q does not say when to retry", err)
	}
	clk.Advance(4 * time.Second)
	if got := oe.RetryAfter(); got != time.Second {
		t.Errorf("RetryAfter after 4s = %v, want 1s", got)
	}
	if err := b.Allow(); err == nil {
		t.Fatal("admitted before OpenFor passed")
	}
	clk.Advance(time.Second)

	// Half-open: three probes, the fourth refused.
	for i := range 3 {
		if err := b.Allow(); err != nil {
			t.Fatalf("probe %d refused: %v", i, err)
		}
	}
	if b.State() != HalfOpen {
		t.Fatalf("state = %v, want half-open", b.State())
	}
	err = b.Allow()
	if !errors.Is(err, ErrOpen) || !errors.As(err, &oe) || oe.RetryAfter() != 0 {
		t.Fatalf("fourth probe: %v, want ErrOpen with RetryAfter 0", err)
	}
	b.Record(true)
	b.Record(true)
	if b.State() != HalfOpen {
		t.Fatal("closed before all probes succeeded")
	}
	b.Record(true)
	if b.State() != Closed {
		t.Fatalf("state = %v after all probes succeeded, want closed", b.State())
	}
	want := []transition{{Closed, Open}, {Open, HalfOpen}, {HalfOpen, Closed}}
	if !equal(*trans, want) {
		t.Errorf("transitions = %v, want %v", *trans, want)
	}
	// The window was reset: one failure (1 of 1) reopens with MinRequests 1,
	// so check a fresh success does not.
	record(t, b, 1, 0)
	if b.State() != Closed {
		t.Error("success reopened the breaker")
	}
}

func TestProbeFailureReopens(t *testing.T) {
	b, clk, trans := newTest(t, Config{MinRequests: 1, FailureRatio: 1, OpenFor: time.Second, HalfOpenProbes: 2})
	record(t, b, 1, 1)
	clk.Advance(time.Second)
	if err := b.Allow(); err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	b.Record(false)
	if b.State() != Open {
		t.Fatalf("state = %v after failed probe, want open", b.State())
	}
	var oe *OpenError
	if err := b.Allow(); !errors.As(err, &oe) || oe.RetryAfter() != time.Second {
		t.Fatalf("Allow after reopen = %v, want a full OpenFor to wait", err)
	}
	want := []transition{{Closed, Open}, {Open, HalfOpen}, {HalfOpen, Open}}
	if !equal(*trans, want) {
		t.Errorf("transitions = %v, want %v", *trans, want)
	}
}

func TestRecordWhileOpenIgnored(t *testing.T) {
	b, clk, _ := newTest(t, Config{MinRequests: 1, FailureRatio: 1, OpenFor: time.Second, HalfOpenProbes: 1})
	record(t, b, 1, 1)
	b.Record(true) // late outcome of a request admitted while closed
	if b.State() != Open {
		t.Fatal("late success closed an open breaker")
	}
	clk.Advance(time.Second)
	b.Record(true) // late success, no probe admitted yet
	if b.State() != HalfOpen {
		t.Fatalf("state = %v, want half-open: a success without a probe must not close", b.State())
	}
}

func TestLostProbesDoNotWedge(t *testing.T) {
	b, clk, _ := newTest(t, Config{MinRequests: 1, FailureRatio: 1, OpenFor: time.Second, HalfOpenProbes: 1})
	record(t, b, 1, 1)
	clk.Advance(time.Second)
	if err := b.Allow(); err != nil { // probe whose Record never comes
		t.Fatal(err)
	}
	if err := b.Allow(); err == nil {
		t.Fatal("second probe admitted")
	}
	clk.Advance(time.Second)
	if err := b.Allow(); err != nil {
		t.Fatalf("no new probe after a lost one: %v", err)
	}
}

func TestForceClose(t *testing.T) {
	b, _, trans := newTest(t, Config{MinRequests: 1, FailureRatio: 1})
	record(t, b, 1, 1)
	b.ForceClose()
	if b.State() != Closed {
		t.Fatal("ForceClose did not close")
	}
	if err := b.Allow(); err != nil {
		t.Fatalf("refused after ForceClose: %v", err)
	}
	b.Record(true)
	b.ForceClose() // already closed: no transition
	want := []transition{{Closed, Open}, {Open, Closed}}
	if !equal(*trans, want) {
		t.Errorf("transitions = %v, want %v", *trans, want)
	}
}

func TestNoAllocations(t *testing.T) {
	b, clk, _ := newTest(t, Config{MinRequests: 1_000_000})
	if n := testing.AllocsPerRun(1000, func() {
		if b.Allow() == nil {
			b.Record(false)
		}
		clk.Advance(time.Millisecond)
	}); n != 0 {
		t.Errorf("closed Allow+Record: %v allocs, want 0", n)
	}
	b, _, _ = newTest(t, Config{MinRequests: 1, FailureRatio: 1})
	record(t, b, 1, 1)
	if n := testing.AllocsPerRun(1000, func() { _ = b.Allow() }); n != 0 {
		t.Errorf("open Allow: %v allocs, want 0", n)
	}
}

func TestConcurrent(t *testing.T) {
	var mu sync.Mutex
	last := Closed
	b, err := New(Config{MinRequests: 10, OpenFor: time.Millisecond, HalfOpenProbes: 2, Window: 50 * time.Millisecond}, Options{
		OnStateChange: func(from, to State) {
			mu.Lock()
			defer mu.Unlock()
			if from != last {
				t.Errorf("transition from %v, but last state was %v", from, last)
			}
			last = to
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				if b.Allow() == nil {
					b.Record((i+g)%3 != 0) // a third fail: below 0.5
				}
				if g == 0 && i%1000 == 0 {
					b.ForceClose()
				}
				_ = b.State()
			}
		})
	}
	wg.Wait()
}

func equal(a, b []transition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkAllowRecord(b *testing.B) {
	br, err := New(Config{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if br.Allow() == nil {
			br.Record(i%10 != 0)
		}
	}
}

func BenchmarkAllowRecordParallel(b *testing.B) {
	br, err := New(Config{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if br.Allow() == nil {
				br.Record(i%10 != 0)
			}
			i++
		}
	})
}

func BenchmarkAllowOpen(b *testing.B) {
	br, err := New(Config{MinRequests: 1, FailureRatio: 1, OpenFor: time.Hour}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	_ = br.Allow()
	br.Record(false)
	b.ReportAllocs()
	for b.Loop() {
		_ = br.Allow()
	}
}

// BenchmarkAllowRecordFixedClock measures the breaker without the cost of
// reading the clock (time.Now is 20-60 ns depending on the clock source).
func BenchmarkAllowRecordFixedClock(b *testing.B) {
	now := time.Now()
	br, err := New(Config{}, Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if br.Allow() == nil {
			br.Record(i%10 != 0)
		}
	}
}

// Release counts nothing: a closed breaker does not open however many
// requests are released, and a released half-open probe frees its slot.
func TestReleaseCountsNothing(t *testing.T) {
	b, clk, _ := newTest(t, Config{MinRequests: 3, FailureRatio: 0.6, OpenFor: time.Second, HalfOpenProbes: 1})
	for range 10 {
		if err := b.Allow(); err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	record(t, b, 3, 1) // 1 failure of 3: below the ratio, as if the releases never happened
	if b.State() != Closed {
		t.Fatalf("state = %v after releases and 1/3 failures, want closed", b.State())
	}
	record(t, b, 2, 2) // now 3 of 5 failed
	if b.State() != Open {
		t.Fatalf("state = %v, want open", b.State())
	}
	clk.Advance(time.Second)
	if err := b.Allow(); err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if err := b.Allow(); err == nil {
		t.Fatal("second probe admitted with half_open_probes 1")
	}
	b.Release()
	if err := b.Allow(); err != nil {
		t.Fatalf("probe after a released probe refused: %v", err)
	}
	b.Record(true)
	if b.State() != Closed {
		t.Fatalf("state = %v after the probe succeeded, want closed", b.State())
	}
}
