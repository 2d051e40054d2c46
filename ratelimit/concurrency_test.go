package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestConcurrency(t *testing.T) {
	c, err := NewConcurrency(2)
	if err != nil {
		t.Fatal(err)
	}
	if !c.TryAcquire() || !c.TryAcquire() {
		t.Fatal("refused below the limit")
	}
	if c.TryAcquire() {
		t.Error("admitted a third of max 2")
	}
	if c.InFlight() != 2 || c.Max() != 2 {
		t.Errorf("InFlight %d Max %d, want 2 2", c.InFlight(), c.Max())
	}
	c.Release()
	if !c.TryAcquire() {
		t.Error("refused after a release")
	}
	c.Release()
	c.Release()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("unpaired Release did not panic")
			}
		}()
		c.Release()
	}()
	if c.InFlight() != 0 {
		t.Errorf("InFlight %d after the panic, want 0", c.InFlight())
	}
	if _, err := NewConcurrency(0); err == nil {
		t.Error("max 0 accepted")
	}
}

func TestConcurrencyParallel(t *testing.T) {
	const max = 5
	c, _ := NewConcurrency(max)
	var cur, peak atomic.Int64
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 2000 {
				if !c.TryAcquire() {
					continue
				}
				admitted.Add(1)
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				cur.Add(-1)
				c.Release()
			}
		})
	}
	wg.Wait()
	if peak.Load() > max {
		t.Errorf("peak in flight %d, max %d", peak.Load(), max)
	}
	if admitted.Load() == 0 || c.InFlight() != 0 {
		t.Errorf("admitted %d, in flight at the end %d", admitted.Load(), c.InFlight())
	}
}

func BenchmarkConcurrency(b *testing.B) {
	c, _ := NewConcurrency(1 << 30)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.TryAcquire() {
				c.Release()
			}
		}
	})
}
