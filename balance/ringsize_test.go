package balance

import (
	"testing"

	"github.com/switchyard/switchyard/upstream"
)

// TestRingSizeBoundedWithLargeWeights: weights up to the config's bound
// (1000000) must not grow the consistent-hash ring past maxRingSize (plus
// one point per target); before, a total weight above maxRingSize kept
// one point per unit of weight: 16 bytes x total weight.
func TestRingSizeBoundedWithLargeWeights(t *testing.T) {
	ts := []*upstream.Target{
		upstream.NewTarget("10.0.0.1:80", 0, 1_000_000),
		upstream.NewTarget("10.0.0.2:80", 1, 1_000_000),
		upstream.NewTarget("10.0.0.3:80", 2, 1),
	}
	r := buildRing(ts, DefaultVirtualNodes)
	if n := len(r.points); n > maxRingSize+len(ts) {
		t.Fatalf("ring has %d points, want at most %d", n, maxRingSize+len(ts))
	}
	owned := make([]int, len(ts))
	for _, o := range r.owners {
		owned[o]++
	}
	if owned[2] < 1 || owned[0] < 1000*owned[2]/2 {
		t.Fatalf("points per target %v do not follow the weights", owned)
	}
}
