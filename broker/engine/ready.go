package engine

import "container/heap"

// readySet holds a queue's ready messages in publish (seq) order. Most
// become ready in that order (new publishes), and those go to a FIFO with
// O(1) push and pop; the others (returned after a nack or a visibility
// timeout, released by their key, due after a delay) go to a heap by seq.
// Pop takes the lower seq of the two heads. A binary heap alone costs
// O(log n) pointer-chasing comparisons per delivery on a deep queue
// (measured: 6% of a consume benchmark's CPU in heap.down).
//
// A message's hidx is its index in fifo when inFifo, else in the heap.
// Not safe for concurrent use: the queue's lock guards it.
type readySet struct {
	fifo []*message // fifo[head:] ascending by seq; nil marks a removed entry
	head int
	live int    // non-nil entries in fifo[head:]
	last uint64 // seq of the newest fifo entry
	heap mheap  // by seq
}

func newReadySet() readySet { return readySet{heap: mheap{less: bySeq}} }

// Len returns the number of ready messages.
func (r *readySet) Len() int { return r.live + r.heap.Len() }

// push adds m.
func (r *readySet) push(m *message) {
	if r.live == 0 {
		r.reset()
	}
	if len(r.fifo) == r.head || m.seq > r.last {
		m.inFifo, m.hidx = true, len(r.fifo)
		r.fifo = append(r.fifo, m)
		r.live++
		r.last = m.seq
		return
	}
	m.inFifo = false
	heap.Push(&r.heap, m)
}

// peek returns the ready message with the lowest seq, or nil.
func (r *readySet) peek() *message {
	for r.head < len(r.fifo) && r.fifo[r.head] == nil {
		r.head++
	}
	var f *message
	if r.head < len(r.fifo) {
		f = r.fifo[r.head]
	}
	h := r.heap.peek()
	if f == nil || (h != nil && h.seq < f.seq) {
		return h
	}
	return f
}

// pop removes and returns the ready message with the lowest seq, or nil.
func (r *readySet) pop() *message {
	m := r.peek()
	if m != nil {
		r.remove(m)
	}
	return m
}

// remove takes m, which must be in the set, out of it.
func (r *readySet) remove(m *message) {
	if !m.inFifo {
		heap.Remove(&r.heap, m.hidx)
		return
	}
	r.fifo[m.hidx] = nil
	m.inFifo, m.hidx = false, -1
	r.live--
	if r.live == 0 {
		r.reset()
	} else if r.head > 1024 && r.head > len(r.fifo)/2 {
		r.compact()
	}
}

// reset empties the FIFO, dropping a large backing array.
func (r *readySet) reset() {
	if cap(r.fifo) > 1<<16 {
		r.fifo = nil
	} else {
		clear(r.fifo)
		r.fifo = r.fifo[:0]
	}
	r.head, r.live = 0, 0
}

// compact moves the FIFO's live part to the front of its array.
func (r *readySet) compact() {
	n := 0
	for _, m := range r.fifo[r.head:] {
		if m != nil {
			m.hidx = n
			r.fifo[n] = m
			n++
		}
	}
	clear(r.fifo[n:])
	r.fifo = r.fifo[:n]
	r.head = 0
}
