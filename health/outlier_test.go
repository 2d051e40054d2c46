package health

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/upstream"
)

func pool(n int) []*upstream.Target {
	ts := make([]*upstream.Target, n)
	for i := range ts {
		ts[i] = upstream.NewTarget(fmt.Sprintf("10.0.0.%d:80", i+1), i, 1)
	}
	return ts
}

var t0 = time.Unix(1_700_000_000, 0)

func TestOutlierConfigValidate(t *testing.T) {
	if err := (OutlierConfig{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	if err := (OutlierConfig{Ejection: 10 * time.Minute}).Validate(); err != nil {
		t.Errorf("ejection above the default cap: %v (the cap's default should follow)", err)
	}
	err := OutlierConfig{ConsecutiveFailures: -1, Ejection: -time.Second, MaxEjection: -2 * time.Second, MaxEjected: 1.01}.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"consecutive_failures: -1", "ejection: -1s", "max_ejection: -2s", "max_ejected: 101%"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (OutlierConfig{Ejection: time.Minute, MaxEjection: time.Second}).Validate(); err == nil {
		t.Error("max ejection below ejection accepted")
	}
	if _, err := NewOutlier(OutlierConfig{MaxEjected: -0.05}, nil); err == nil {
		t.Error("NewOutlier accepted a bad config")
	}
}

func observe(o *Outlier, tg *upstream.Target, failures int, now time.Time) (ejected int) {
	for range failures {
		if o.Observe(tg, true, now) {
			ejected++
		}
	}
	return ejected
}

func TestOutlierConsecutive(t *testing.T) {
	ts := pool(4)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 3, Ejection: 10 * time.Second}, ts)
	if err != nil {
		t.Fatal(err)
	}
	// Failures interrupted by a success do not eject.
	observe(o, ts[0], 2, t0)
	o.Observe(ts[0], false, t0)
	if observe(o, ts[0], 2, t0) != 0 || ts[0].Ejected(t0) {
		t.Fatal("ejected without 3 consecutive failures")
	}
	if !o.Observe(ts[0], true, t0) {
		t.Fatal("third consecutive failure did not eject")
	}
	if !ts[0].Ejected(t0) || ts[0].EjectedUntil() != t0.Add(10*time.Second) {
		t.Fatalf("ejected until %v, want %v", ts[0].EjectedUntil(), t0.Add(10*time.Second))
	}
	// Failures while ejected (requests in flight) do not eject again.
	if observe(o, ts[0], 10, t0.Add(time.Second)) != 0 || ts[0].Ejections() != 1 {
		t.Error("an ejected target was ejected again")
	}
	if ts[0].Ejected(t0.Add(10 * time.Second)) {
		t.Error("still ejected after the ejection time")
	}
	// Other targets are unaffected.
	if ts[1].Ejected(t0) {
		t.Error("another target ejected")
	}
}

func TestOutlierGrowingEjection(t *testing.T) {
	ts := pool(2)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 1, Ejection: 30 * time.Second, MaxEjection: 100 * time.Second}, ts)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for i, want := range []time.Duration{30 * time.Second, 60 * time.Second, 90 * time.Second, 100 * time.Second, 100 * time.Second} {
		if !o.Observe(ts[0], true, now) {
			t.Fatalf("ejection %d did not happen", i+1)
		}
		if got := ts[0].EjectedUntil().Sub(now); got != want {
			t.Errorf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		now = ts[0].EjectedUntil()
	}
}

func TestOutlierMaxEjectedPercent(t *testing.T) {
	tests := []struct {
		pool, percent, want int
	}{
		{10, 50, 5},
		{10, 10, 1},
		{10, 15, 1},
		{4, 10, 1}, // rounds down to 0, but one may always be ejected
		{2, 50, 1},
		{1, 50, 0}, // never eject the only target...
		{1, 99, 0},
		{1, 100, 1}, // ...unless told to
		{3, 100, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d targets at %d%%", tt.pool, tt.percent), func(t *testing.T) {
			ts := pool(tt.pool)
			o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 2, MaxEjected: config.Percent(float64(tt.percent) / 100)}, ts)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, tg := range ts {
				got += observe(o, tg, 2, t0)
			}
			if got != tt.want {
				t.Errorf("%d ejected, want %d", got, tt.want)
			}
		})
	}
}

func TestOutlierLimitFreesWhenEjectionEnds(t *testing.T) {
	ts := pool(2)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 1, Ejection: 10 * time.Second}, ts)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Observe(ts[0], true, t0) {
		t.Fatal("first target not ejected")
	}
	if o.Observe(ts[1], true, t0.Add(time.Second)) {
		t.Fatal("second target ejected beyond 50%")
	}
	if !o.Observe(ts[1], true, t0.Add(10*time.Second)) {
		t.Fatal("second target not ejected after the first came back")
	}
}

func TestOutlierUnknownTarget(t *testing.T) {
	ts := pool(3)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 1}, ts[:2])
	if err != nil {
		t.Fatal(err)
	}
	if o.Observe(ts[2], true, t0) || ts[2].Ejected(t0) {
		t.Error("a target outside the pool was ejected")
	}
	// A target whose Index does not match its position is still found.
	moved := upstream.NewTarget("10.0.0.9:80", 7, 1)
	o, err = NewOutlier(OutlierConfig{ConsecutiveFailures: 1}, []*upstream.Target{ts[0], moved})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Observe(moved, true, t0) {
		t.Error("target with a stale Index not ejected")
	}
}

func TestOutlierConcurrent(t *testing.T) {
	ts := pool(10)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 3, MaxEjected: 0.3}, ts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				tg := ts[(i+g)%len(ts)]
				o.Observe(tg, i%4 != 0, t0)
			}
		})
	}
	wg.Wait()
	n := 0
	for _, tg := range ts {
		if tg.Ejected(t0) {
			n++
		}
	}
	if n > 3 {
		t.Errorf("%d targets ejected, limit is 3", n)
	}
}

func TestOutlierNoAllocations(t *testing.T) {
	ts := pool(4)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 3}, ts)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		o.Observe(ts[i%4], i%3 == 0, t0)
		i++
	}); n != 0 {
		t.Errorf("Observe: %v allocs, want 0", n)
	}
}

func BenchmarkOutlierObserve(b *testing.B) {
	ts := pool(8)
	o, err := NewOutlier(OutlierConfig{}, ts)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			o.Observe(ts[i%len(ts)], i%20 == 0, now)
			i++
		}
	})
}

func TestOutlierEjectionDecays(t *testing.T) {
	ts := pool(2)
	o, err := NewOutlier(OutlierConfig{ConsecutiveFailures: 1, Ejection: 10 * time.Second, MaxEjection: time.Minute}, ts)
	if err != nil {
		t.Fatal(err)
	}
	eject := func(now time.Time) time.Duration {
		t.Helper()
		if !o.Observe(ts[0], true, now) {
			t.Fatalf("no ejection at %v", now.Sub(t0))
		}
		return ts[0].EjectedUntil().Sub(now)
	}
	now := t0
	for _, want := range []time.Duration{10, 20, 30} { // multiplier 1, 2, 3
		if got := eject(now); got != want*time.Second {
			t.Fatalf("ejection lasts %v, want %vs", got, want)
		}
		now = ts[0].EjectedUntil()
	}
	// 25s in service after the third ejection: two decay steps (3 -> 1),
	// so the next ejection uses multiplier 2.
	now = now.Add(25 * time.Second)
	if got := eject(now); got != 20*time.Second {
		t.Fatalf("after 25s in service: ejection lasts %v, want 20s", got)
	}
	// A long healthy stretch resets it to the base ejection.
	now = ts[0].EjectedUntil().Add(time.Hour)
	if got := eject(now); got != 10*time.Second {
		t.Fatalf("after an hour in service: ejection lasts %v, want 10s", got)
	}
	if ts[0].Ejections() != 5 {
		t.Fatalf("lifetime ejections %d, want 5", ts[0].Ejections())
	}
}
