package edge

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
)

func storeEntry(key string, size int64) *entry {
	return &entry{key: key, uri: key, status: 200, header: http.Header{}, size: size}
}

func hit(s *Store, key string) bool {
	e, _ := s.lookup([]byte(key), &http.Request{Header: http.Header{}})
	return e != nil
}

// A scan of objects asked for once (a crawler, a backup) does not flush
// the objects the cache's users keep asking for: they were hit, so they
// moved to the main queue, and the scan's objects leave through the small
// queue. Under LRU the scan would have evicted every one of them.
func TestEvictionResistsScans(t *testing.T) {
	s := NewStore(100*1000, 0) // 100 objects of 1000 bytes
	for i := 0; i < 50; i++ {
		s.insert(storeEntry(fmt.Sprintf("hot%d", i), 1000))
	}
	for i := 0; i < 50; i++ {
		if !hit(s, fmt.Sprintf("hot%d", i)) {
			t.Fatalf("hot%d missing before the scan", i)
		}
	}
	for i := 0; i < 1000; i++ { // ten times the cache, each once
		s.insert(storeEntry(fmt.Sprintf("scan%d", i), 1000))
	}
	for i := 0; i < 50; i++ {
		if !hit(s, fmt.Sprintf("hot%d", i)) {
			t.Errorf("hot%d evicted by a one-time scan", i)
		}
	}
	if st := s.Stats(); st.Bytes > 100*1000 {
		t.Fatalf("store over its bound: %d bytes", st.Bytes)
	}
}

// A key evicted from the small queue without a hit and stored again soon
// after (the ghost list remembers it) goes straight to the main queue.
func TestEvictionGhostAdmitsToMain(t *testing.T) {
	s := NewStore(10*1000, 0)
	s.insert(storeEntry("again", 1000))
	for i := 0; i < 20; i++ {
		s.insert(storeEntry(fmt.Sprintf("filler%d", i), 1000))
	}
	if hit(s, "again") {
		t.Fatal("'again' should have been evicted from the small queue")
	}
	s.insert(storeEntry("again", 1000))
	s.mu.Lock()
	e := s.keys["again"][0]
	inMain := e.inMain
	s.mu.Unlock()
	if !inMain {
		t.Fatal("a key remembered by the ghost list was admitted to the small queue")
	}
}

// Whatever the sequence of stores, hits, growths and removals, the store
// stays within its bytes, and its queues' bookkeeping adds up.
func TestEvictionBookkeeping(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewStore(64<<10, 0)
	for i := 0; i < 20000; i++ {
		k := fmt.Sprintf("k%d", int(rng.ExpFloat64()*200))
		switch rng.IntN(10) {
		case 0, 1, 2, 3:
			s.insert(storeEntry(k, 1+rng.Int64N(8<<10)))
		case 4:
			s.mu.Lock()
			var e *entry
			if vs := s.keys[k]; len(vs) > 0 {
				e = vs[0]
			}
			s.mu.Unlock()
			if e != nil {
				s.grow(e, rng.Int64N(2<<10))
			}
		case 5:
			s.mu.Lock()
			if vs := s.keys[k]; len(vs) > 0 {
				s.removeLocked(vs[0])
			}
			s.mu.Unlock()
		default:
			hit(s, k)
		}
		if i%97 == 0 || i == 19999 {
			checkQueues(t, s)
		}
	}
}

func checkQueues(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var total, small int64
	n := 0
	for el := s.small.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if e.inMain || e.elem != el {
			t.Fatalf("small queue entry %s: inMain %v", e.key, e.inMain)
		}
		small += e.size
		n++
	}
	total = small
	for el := s.main.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if !e.inMain || e.elem != el || e.freq > 3 {
			t.Fatalf("main queue entry %s: inMain %v freq %d", e.key, e.inMain, e.freq)
		}
		total += e.size
		n++
	}
	keyed := 0
	for _, vs := range s.keys {
		keyed += len(vs)
	}
	if total != s.bytes || small != s.smallBytes || keyed != n || s.bytes > s.maxBytes {
		t.Fatalf("bytes %d (queues %d), small %d (queue %d), entries %d keyed %d, max %d",
			s.bytes, total, s.smallBytes, small, n, keyed, s.maxBytes)
	}
}
