package edge

import (
	"container/list"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
)

// These simulators measure what a frequency-aware policy (S3-FIFO, Yang et
// al., SOSP 2023) gains over LRU on a skewed workload, with objects of one
// size and capacity in objects, beside the real Store (which evicts with
// S3-FIFO by bytes);
// docs/edge.md records the numbers
// (SWITCHYARD_MEASURE=1 go test -run EvictionPolicy -v ./edge).

type simCache interface{ get(k uint64) bool } // get reports a hit, and admits k on a miss

type lruSim struct {
	cap int
	l   list.List
	m   map[uint64]*list.Element
}

func newLRUSim(capacity int) *lruSim { return &lruSim{cap: capacity, m: map[uint64]*list.Element{}} }

func (c *lruSim) get(k uint64) bool {
	if e, ok := c.m[k]; ok {
		c.l.MoveToFront(e)
		return true
	}
	c.m[k] = c.l.PushFront(k)
	if c.l.Len() > c.cap {
		delete(c.m, c.l.Remove(c.l.Back()).(uint64))
	}
	return false
}

// s3fifoSim: a small FIFO (10%) that one-hit wonders leave quickly, a
// main FIFO with lazy promotion (a 2-bit frequency, reinsertion), and a
// ghost FIFO of keys recently evicted from the small queue.
type s3fifoSim struct {
	capSmall, capMain int
	small, main       list.List // of *s3obj, newest at the front
	ghost             list.List // of uint64
	objs              map[uint64]*s3obj
	ghosts            map[uint64]*list.Element
}

type s3obj struct {
	k      uint64
	freq   int
	inMain bool
	e      *list.Element
}

func newS3FIFOSim(capacity int) *s3fifoSim {
	small := max(1, capacity/10)
	return &s3fifoSim{capSmall: small, capMain: capacity - small, objs: map[uint64]*s3obj{}, ghosts: map[uint64]*list.Element{}}
}

func (c *s3fifoSim) get(k uint64) bool {
	if o, ok := c.objs[k]; ok {
		o.freq = min(o.freq+1, 3)
		return true
	}
	o := &s3obj{k: k}
	if g, ok := c.ghosts[k]; ok {
		c.ghost.Remove(g)
		delete(c.ghosts, k)
		for c.main.Len() >= c.capMain {
			c.evictMain()
		}
		o.inMain = true
		o.e = c.main.PushFront(o)
	} else {
		for c.small.Len() >= c.capSmall {
			c.evictSmall()
		}
		o.e = c.small.PushFront(o)
	}
	c.objs[k] = o
	return false
}

func (c *s3fifoSim) evictSmall() {
	o := c.small.Remove(c.small.Back()).(*s3obj)
	if o.freq > 1 {
		for c.main.Len() >= c.capMain {
			c.evictMain()
		}
		o.inMain, o.freq = true, 0
		o.e = c.main.PushFront(o)
		return
	}
	delete(c.objs, o.k)
	c.ghosts[o.k] = c.ghost.PushFront(o.k)
	if c.ghost.Len() > c.capMain {
		delete(c.ghosts, c.ghost.Remove(c.ghost.Back()).(uint64))
	}
}

func (c *s3fifoSim) evictMain() {
	for {
		o := c.main.Remove(c.main.Back()).(*s3obj)
		if o.freq > 0 {
			o.freq--
			o.e = c.main.PushFront(o)
			continue
		}
		delete(c.objs, o.k)
		return
	}
}

func hitRatio(c simCache, trace []uint64) float64 {
	hits := 0
	for _, k := range trace {
		if c.get(k) {
			hits++
		}
	}
	return float64(hits) / float64(len(trace))
}

// The simulators are right on traces small enough to follow by hand.
func TestPolicySimulators(t *testing.T) {
	lru := newLRUSim(2)
	var got []bool
	for _, k := range []uint64{1, 2, 1, 3, 2, 1} {
		got = append(got, lru.get(k))
	}
	if fmt.Sprint(got) != "[false false true false false false]" {
		t.Errorf("LRU: %v", got)
	}
	// S3-FIFO with capacity 10: small holds 1. A key seen twice while in
	// small is promoted to main; a one-hit wonder goes to the ghost list
	// and comes back straight into main.
	s := newS3FIFOSim(10)
	s.get(1)
	s.get(1)
	s.get(1) // freq 2
	s.get(2) // evicts 1 from small into main
	if o := s.objs[1]; o == nil || !o.inMain {
		t.Fatalf("1 not promoted: %+v", o)
	}
	s.get(3) // evicts 2 (seen once) to the ghost list
	if _, ok := s.objs[2]; ok || s.ghosts[2] == nil {
		t.Fatal("2 not ghosted")
	}
	if s.get(2) || !s.objs[2].inMain {
		t.Fatal("2 did not come back into main")
	}
}

// TestEvictionPolicyHitRatios measures LRU against S3-FIFO on Zipf
// traces (100,000 keys, 1,000,000 requests, the first 10% as warm-up).
func TestEvictionPolicyHitRatios(t *testing.T) {
	if os.Getenv("SWITCHYARD_MEASURE") == "" {
		t.Skip("a measurement of several seconds: SWITCHYARD_MEASURE=1 go test -run EvictionPolicy -v ./edge")
	}
	const keys, requests = 100_000, 1_000_000
	for _, s := range []float64{1.01, 1.1, 1.3} {
		r := rand.New(rand.NewPCG(1, 2))
		z := rand.NewZipf(r, s, 1, keys-1)
		trace := make([]uint64, requests)
		for i := range trace {
			trace[i] = z.Uint64()
		}
		for _, share := range []float64{0.001, 0.01, 0.1} {
			capacity := int(share * keys)
			l, f, st := newLRUSim(capacity), newS3FIFOSim(capacity), newStoreSim(capacity)
			hitRatio(l, trace[:requests/10])
			hitRatio(f, trace[:requests/10])
			hitRatio(st, trace[:requests/10])
			hl, hf, hs := hitRatio(l, trace[requests/10:]), hitRatio(f, trace[requests/10:]), hitRatio(st, trace[requests/10:])
			if hl <= 0 || hl >= 1 || hf <= 0 || hf >= 1 || hs <= 0 || hs >= 1 {
				t.Fatalf("hit ratios out of range: %v %v %v", hl, hf, hs)
			}
			t.Logf("zipf s=%.2f cache=%5.1f%% of keys: LRU %.4f  S3-FIFO %.4f  (%+.1f%% hits)  Store %.4f (%+.1f%%)",
				s, share*100, hl, hf, (hf-hl)/hl*100, hs, (hs-hl)/hl*100)
		}
	}
}

// storeSim runs a trace through the real Store (objects of 1000 bytes, a
// store of capacity objects), so its hit ratio can be set beside the
// simulators'.
type storeSim struct {
	s   *Store
	req *http.Request
	key []byte
}

func newStoreSim(capacity int) *storeSim {
	return &storeSim{s: NewStore(int64(capacity)*1000, 0), req: &http.Request{Header: http.Header{}}}
}

func (m *storeSim) get(k uint64) bool {
	m.key = strconv.AppendUint(m.key[:0], k, 10)
	if e, _ := m.s.lookup(m.key, m.req); e != nil {
		return true
	}
	m.s.insert(&entry{key: string(m.key), uri: string(m.key), status: 200, header: http.Header{}, size: 1000})
	return false
}
