package balance

import (
	"fmt"
	"testing"
)

func TestRingMovesOnlyTakenKeys(t *testing.T) {
	three, err := NewRing([]string{"a", "b", "c"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	four, err := NewRing([]string{"a", "b", "c", "d"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	moved, perOwner := 0, map[string]int{}
	for i := range n {
		k := fmt.Sprintf("key-%d", i)
		before, after := three.OwnerName(k), four.OwnerName(k)
		perOwner[after]++
		if before != after {
			moved++
			if after != "d" {
				t.Fatalf("%s moved from %s to %s: only the new member may take keys", k, before, after)
			}
		}
	}
	// About a quarter moves to d; each member holds about a quarter.
	if moved < n/5 || moved > n*3/10 {
		t.Fatalf("%d of %d keys moved, want about %d", moved, n, n/4)
	}
	for name, c := range perOwner {
		if c < n/5 || c > n*3/10 {
			t.Errorf("%s owns %d of %d keys", name, c, n)
		}
	}
}

func TestRingRejects(t *testing.T) {
	for _, c := range []struct {
		names   []string
		weights []int
	}{{nil, nil}, {[]string{"a", "a"}, nil}, {[]string{""}, nil}, {[]string{"a"}, []int{0}}, {[]string{"a", "b"}, []int{1}}} {
		if _, err := NewRing(c.names, c.weights, 0); err == nil {
			t.Errorf("NewRing(%q, %v) accepted", c.names, c.weights)
		}
	}
}

func BenchmarkRingOwner(b *testing.B) {
	r, _ := NewRing([]string{"a", "b", "c", "d", "e", "f", "g", "h"}, nil, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Owner("user-12345")
	}
}
