package message

// SlabSize is how many values one Slab allocation holds. A slab stays in
// memory while any of its values is referenced: a handler keeping a
// delivery long after it returned keeps up to SlabSize-1 other settled
// messages' bodies with it, so slabs are small.
const SlabSize = 16

// Slab hands out new values of T, SlabSize per allocation instead of one
// each: the backends' deliveries (with their ackers) come from one. Values
// are never reused: one handed out stays its message's, whoever keeps it.
// Not safe for concurrent use: a subscription's callback (one goroutine)
// takes them.
type Slab[T any] struct {
	free []T
}

// Next returns a new zero T.
func (s *Slab[T]) Next() *T {
	if len(s.free) == 0 {
		s.free = make([]T, SlabSize)
	}
	v := &s.free[0]
	s.free = s.free[1:]
	return v
}
