package engine

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestReadySetOrder drives a readySet and a sorted reference with the
// same random pushes (mostly ascending, some older), removals and pops:
// pop must always return the lowest seq present, and Len must agree.
func TestReadySetOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		r := newReadySet()
		var ref []*message // sorted by seq
		in := map[uint64]*message{}
		next := uint64(1)
		for op := 0; op < 5000; op++ {
			switch x := rng.IntN(10); {
			case x < 5: // a new publish, or an older message returning
				seq := next
				if x == 0 && next > 10 {
					seq = rng.Uint64N(next-1) + 1
				}
				if in[seq] != nil {
					continue
				}
				if seq == next {
					next++
				}
				m := &message{seq: seq, hidx: -1}
				r.push(m)
				in[seq] = m
				i, _ := slices.BinarySearchFunc(ref, seq, func(m *message, s uint64) int { return cmpU(m.seq, s) })
				ref = slices.Insert(ref, i, m)
			case x < 7 && len(ref) > 0: // removal from the middle (TTL, key, delete)
				i := rng.IntN(len(ref))
				r.remove(ref[i])
				delete(in, ref[i].seq)
				ref = slices.Delete(ref, i, i+1)
			default:
				got := r.pop()
				if len(ref) == 0 {
					if got != nil {
						t.Fatalf("round %d op %d: pop from an empty set gave seq %d", round, op, got.seq)
					}
					continue
				}
				if got != ref[0] {
					t.Fatalf("round %d op %d: pop gave seq %d, want %d", round, op, got.seq, ref[0].seq)
				}
				delete(in, got.seq)
				ref = ref[1:]
			}
			if r.Len() != len(ref) {
				t.Fatalf("round %d op %d: Len %d, want %d", round, op, r.Len(), len(ref))
			}
		}
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func BenchmarkReadySetDeepQueue(b *testing.B) {
	const depth = 100_000
	r := newReadySet()
	ms := make([]*message, depth+b.N)
	for i := range ms {
		ms[i] = &message{seq: uint64(i + 1), hidx: -1}
	}
	for _, m := range ms[:depth] {
		r.push(m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.pop()
		r.push(ms[depth+i])
	}
}

// BenchmarkReadyHeapDeepQueue is the same workload on the binary heap
// that readySet replaced, for comparison.
func BenchmarkReadyHeapDeepQueue(b *testing.B) {
	const depth = 100_000
	h := mheap{less: bySeq}
	ms := make([]*message, depth+b.N)
	for i := range ms {
		ms[i] = &message{seq: uint64(i + 1), hidx: -1}
	}
	for _, m := range ms[:depth] {
		heap.Push(&h, m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		heap.Pop(&h)
		heap.Push(&h, ms[depth+i])
	}
}
