package cache

import "fmt"

// Policy selects which entry a full cache evicts.
type Policy int

const (
	// LRU evicts the least recently used entry: every hit moves an entry to
	// the front. The default; good when recent use predicts the next one.
	LRU Policy = iota
	// LFU evicts the least frequently used entry (ties: the oldest among
	// the least used). Keeps a stable hot set under a skewed workload, but
	// a count never decays, so yesterday's favourites can linger (the
	// notes' warning); pair it with a TTL.
	LFU
	// FIFO evicts the oldest inserted entry; hits change nothing. Cheapest
	// on hits; fits data whose use fades with age.
	FIFO
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case LRU:
		return "lru"
	case LFU:
		return "lfu"
	case FIFO:
		return "fifo"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// entry is one cached value. It sits in the index map and in one intrusive
// list: the recency/insertion list (LRU, FIFO) or its frequency bucket's
// list (LFU). Evicted entries are recycled to keep Set allocation-free in
// steady state.
type entry[V any] struct {
	key       string
	val       V
	size      int64
	expires   int64 // unix nanoseconds; 0: never
	refreshAt int64 // unix nanoseconds after which a read refreshes; 0: never
	neg       bool  // a cached "not found"
	prev      *entry[V]
	next      *entry[V]
	bucket    *bucket[V] // LFU only
}

// list is a circular doubly linked list with a sentinel; front is newest.
type list[V any] struct{ root entry[V] }

func (l *list[V]) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *list[V]) empty() bool { return l.root.next == &l.root }

func (l *list[V]) pushFront(e *entry[V]) {
	e.prev, e.next = &l.root, l.root.next
	l.root.next.prev = e
	l.root.next = e
}

func (l *list[V]) back() *entry[V] {
	if l.empty() {
		return nil
	}
	return l.root.prev
}

func unlink[V any](e *entry[V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// bucket holds the entries used freq times, in a list ordered by age.
// Buckets form an ascending list so the least used are found in O(1).
type bucket[V any] struct {
	freq       uint64
	items      list[V]
	prev, next *bucket[V]
}

// store is the bounded map behind a Cache: O(1) lookup, touch, insert and
// evict for every policy. Not safe for concurrent use: Cache locks it.
type store[V any] struct {
	policy   Policy
	maxBytes int64
	bytes    int64
	items    map[string]*entry[V]
	order    list[V]   // LRU, FIFO
	buckets  bucket[V] // LFU: sentinel of the ascending bucket list
	spareB   *bucket[V]
	spareE   *entry[V] // recycled entries, at most maxSpare
	nSpare   int
}

// maxSpare bounds the recycled entries kept for reuse: enough for a burst
// of evictions, never the memory of a once-large cache.
const maxSpare = 64

func (s *store[V]) init(p Policy, maxBytes int64) {
	s.policy, s.maxBytes = p, maxBytes
	s.items = make(map[string]*entry[V])
	s.order.init()
	s.buckets.next, s.buckets.prev = &s.buckets, &s.buckets
}

// touch records a hit on e.
func (s *store[V]) touch(e *entry[V]) {
	switch s.policy {
	case LRU:
		unlink(e)
		s.order.pushFront(e)
	case LFU:
		b := e.bucket
		nb := b.next
		if nb == &s.buckets || nb.freq != b.freq+1 {
			nb = s.newBucketAfter(b, b.freq+1)
		}
		unlink(e)
		nb.items.pushFront(e)
		e.bucket = nb
		if b.items.empty() {
			s.dropBucket(b)
		}
	}
}

func (s *store[V]) newBucketAfter(at *bucket[V], freq uint64) *bucket[V] {
	b := s.spareB
	if b != nil {
		s.spareB = b.next
	} else {
		b = new(bucket[V])
	}
	b.freq = freq
	b.items.init()
	b.prev, b.next = at, at.next
	at.next.prev = b
	at.next = b
	return b
}

func (s *store[V]) dropBucket(b *bucket[V]) {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, s.spareB
	s.spareB = b
}

// insert adds or replaces key. It returns how many entries it evicted to
// make room and whether the value was stored (false: larger than the
// whole cache).
func (s *store[V]) insert(key string, e entry[V]) (evicted int, stored bool) {
	if old, ok := s.items[key]; ok {
		s.removeEntry(old)
	}
	if e.size > s.maxBytes {
		return 0, false
	}
	for s.bytes+e.size > s.maxBytes {
		v := s.victim()
		if v == nil {
			break
		}
		s.removeEntry(v)
		evicted++
	}
	n := s.spareE
	if n != nil {
		s.spareE = n.next
		s.nSpare--
	} else {
		n = new(entry[V])
	}
	*n = e
	n.key = key
	s.items[key] = n
	s.bytes += n.size
	if s.policy == LFU {
		first := s.buckets.next
		if first == &s.buckets || first.freq != 1 {
			first = s.newBucketAfter(&s.buckets, 1)
		}
		first.items.pushFront(n)
		n.bucket = first
	} else {
		s.order.pushFront(n)
	}
	return evicted, true
}

// victim returns the entry the policy evicts next, or nil if empty.
func (s *store[V]) victim() *entry[V] {
	if s.policy == LFU {
		if b := s.buckets.next; b != &s.buckets {
			return b.items.back()
		}
		return nil
	}
	return s.order.back()
}

func (s *store[V]) removeEntry(e *entry[V]) {
	delete(s.items, e.key)
	s.bytes -= e.size
	b := e.bucket
	unlink(e)
	if b != nil && b.items.empty() {
		s.dropBucket(b)
	}
	var zero entry[V]
	*e = zero // drop references to key and value for the collector
	if s.nSpare < maxSpare {
		e.next = s.spareE
		s.spareE = e
		s.nSpare++
	}
}

// clear drops every entry (spares are released too).
func (s *store[V]) clear() {
	s.init(s.policy, s.maxBytes)
	s.bytes = 0
	s.spareB, s.spareE, s.nSpare = nil, nil, 0
}
