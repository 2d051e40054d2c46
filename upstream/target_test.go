package upstream

import (
	"testing"
	"time"
)

func TestAvailability(t *testing.T) {
	now := time.Unix(1000, 0)
	tg := NewTarget("h:1", 0, 0)
	if tg.Weight() != 1 || !tg.Available(now) {
		t.Fatalf("new target: weight %d available %v", tg.Weight(), tg.Available(now))
	}
	tg.SetHealthy(false)
	if tg.Available(now) {
		t.Fatal("unhealthy target available")
	}
	tg.SetHealthy(true)
	tg.SetDraining(true)
	if tg.Available(now) {
		t.Fatal("draining target available")
	}
	tg.SetDraining(false)
	tg.Eject(now.Add(time.Second))
	if tg.Available(now) || !tg.Ejected(now) || tg.Ejections() != 1 {
		t.Fatal("ejected target available")
	}
	if !tg.Available(now.Add(time.Second)) {
		t.Fatal("ejection did not end")
	}
	if changed := tg.SetHealthy(true); changed {
		t.Fatal("SetHealthy reported a change that did not happen")
	}
}

func TestPeakEWMA(t *testing.T) {
	now := time.Unix(1000, 0)
	tg := NewTarget("h:1", 0, 1)
	if tg.Cost() != 0 {
		t.Fatal("a target without samples must cost nothing, so it gets tried")
	}
	tg.ObserveLatency(now, 10*time.Millisecond)
	tg.ObserveLatency(now, 50*time.Millisecond) // a peak replaces the average at once
	if got := tg.LatencyEWMA(); got != 50*time.Millisecond {
		t.Fatalf("after a peak: %v", got)
	}
	tg.ObserveLatency(now.Add(10*time.Second), 10*time.Millisecond) // decays with e^-1 over the time constant
	got := tg.LatencyEWMA()
	if got < 24*time.Millisecond || got > 26*time.Millisecond {
		t.Fatalf("decayed average %v, want about 10 + 40/e = 24.7ms", got)
	}
	tg.Begin()
	if c := tg.Cost(); c < float64(2*got)-4 || c > float64(2*got)+4 {
		t.Fatalf("cost with one in flight %v, want 2x the average", c)
	}
	tg.Done(true)
	if tg.InFlight() != 0 || tg.Requests() != 1 || tg.Failures() != 1 {
		t.Fatalf("counters: %d %d %d", tg.InFlight(), tg.Requests(), tg.Failures())
	}
}

func TestTried(t *testing.T) {
	var s Tried
	if s.Has(0) {
		t.Fatal("empty set has 0")
	}
	for i := 1; i <= 3; i++ {
		s.Add(i)
	}
	if !s.Has(2) || s.Has(4) || s.Len() != 3 {
		t.Fatalf("set %+v", s)
	}
	for i := 10; i < 20; i++ { // overflow forgets the oldest
		s.Add(i)
	}
	if s.Has(1) || !s.Has(19) {
		t.Fatalf("after overflow: has 1 %v, has 19 %v", s.Has(1), s.Has(19))
	}
}

func TestCarryStateFrom(t *testing.T) {
	now := time.Unix(1000, 0)
	old := NewTarget("h:1", 3, 5)
	old.SetDraining(true)
	old.SetHealthy(false)
	old.Eject(now.Add(time.Minute))
	old.ObserveLatency(now, time.Millisecond)
	old.Begin()
	nt := NewTarget("h:1", 0, 2)
	nt.CarryStateFrom(old)
	if !nt.Draining() || nt.Healthy() || !nt.Ejected(now) || nt.Ejections() != 1 || nt.LatencyEWMA() != time.Millisecond {
		t.Fatal("state not carried over")
	}
	if nt.Weight() != 2 || nt.InFlight() != 0 || nt.Index != 0 {
		t.Fatal("weight, counters or index carried over")
	}
}
