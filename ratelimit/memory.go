package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// MemoryConfig configures a Memory store. The zero value means every
// default.
type MemoryConfig struct {
	// MaxKeys bounds the number of keys kept, whatever the number of
	// distinct clients: memory is about 125 bytes per key plus the key's
	// own bytes (measured on amd64 at 1M keys: ~125 MB plus keys). Keys
	// are spread over 64 shards of MaxKeys/64 each, so a shard may evict
	// while the store as a whole holds slightly fewer than MaxKeys. At
	// least 1. Default DefaultMaxKeys (1,000,000).
	MaxKeys int
}

// DefaultMaxKeys is the default MemoryConfig.MaxKeys.
const DefaultMaxKeys = 1_000_000

// WithDefaults returns c with zero fields set to their defaults.
func (c MemoryConfig) WithDefaults() MemoryConfig {
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	return c
}

// Validate reports the problems of c (after defaults).
func (c MemoryConfig) Validate() error {
	c = c.WithDefaults()
	if c.MaxKeys < 1 {
		return fmt.Errorf("memory store max keys %d: expected at least 1", c.MaxKeys)
	}
	return nil
}

// Memory is a Store that keeps state in this process: one GCRA timestamp or
// one quota counter per key, in 64 mutex-guarded shards. Safe for
// concurrent use; Allow for a key already present allocates nothing.
//
// Memory is bounded: when a shard is full, inserting a key evicts first
// keys that no longer carry state (a GCRA bucket that is full again, a
// quota whose window has ended: forgetting those changes no decision), and
// otherwise a key not used recently. Recency is tracked the CLOCK (second
// chance) way: a use sets a bit on the key, and eviction sweeps the shard
// in slot order, clearing bits and taking the first key whose bit was
// clear, looking at most evictScan keys per insertion so that an
// insertion's cost is bounded.
//
// Evicting a key that still had state is a loss of fairness in the
// client's favour: that key starts again with a full bucket or an empty
// quota. It only happens when more than MaxKeys keys are active at once,
// and it falls on keys not used since the sweep last passed them, so a key
// in steady use keeps its state. A flood of distinct keys (spoofed or
// rotating IPv6 addresses) can, however, reset the state of quiet keys;
// pair per-client limits with a coarser one (per route, per /64 prefix)
// that such a flood cannot evict.
type Memory struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

var _ Store = (*Memory)(nil)

// evictScan is how many keys, in clock order, an insertion into a full
// shard examines.
const evictScan = 16

// shard is one lock's worth of keys: a map from key to a slot in ents.
type shard struct {
	mu   sync.Mutex
	idx  map[string]int32
	ents []entry
	free []int32 // free slots in ents
	hand int     // next slot the eviction sweep examines
	max  int     // capacity of this shard
	_    [64]byte
}

// entry is the state of one key; a free slot has used == false.
type entry struct {
	key  string
	used bool // the slot holds a key
	ref  bool // used since the sweep last passed
	kind Kind
	// until is when the entry stops carrying state: the TAT (KindRate) or
	// the end of the window (KindQuota), Unix nanoseconds.
	until int64
	start int64 // KindQuota: start of the counted window
	count int   // KindQuota: requests counted in that window
}

// NewMemory returns an empty Memory store.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := 64
	if cfg.MaxKeys < 64*64 {
		n = 1 // small stores: one shard keeps the cap exact
	}
	m := &Memory{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range m.shards {
		m.shards[i].idx = make(map[string]int32)
		m.shards[i].max = cfg.MaxKeys / n
	}
	return m, nil
}

// Allow implements Store. It never returns ErrUnavailable.
func (m *Memory) Allow(_ context.Context, key string, lim Limit, now time.Time) (Decision, error) {
	key = compactKey(key)
	iv, err := checkLimit(lim)
	if err != nil {
		return Decision{}, err
	}
	t := now.UnixNano()
	s := &m.shards[maphash.String(m.seed, key)&m.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	var e *entry
	if i, ok := s.idx[key]; ok {
		e = &s.ents[i]
		e.ref = true
		if e.kind != lim.Kind { // key reused for another kind: start over
			*e = entry{key: e.key, used: true, ref: true, kind: lim.Kind, until: t, start: -1}
		}
	} else {
		e = s.insertLocked(key, lim.Kind, t)
	}
	if lim.Kind == KindQuota {
		d, start, count, ok := fixedWindow(e.start, e.count, t, lim)
		if ok {
			e.start, e.count, e.until = start, count, start+int64(lim.Rate.Per)
		}
		return d, nil
	}
	d, tat, ok := gcra(e.until, t, iv, lim)
	if ok {
		e.until = tat
	}
	return d, nil
}

// Len returns the number of keys held, at most MaxKeys.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.idx)
		s.mu.Unlock()
	}
	return n
}

// insertLocked adds key with no state (until = now), evicting first if the
// shard is full. A new key's ref bit is clear: it has been used once, not
// again.
func (s *shard) insertLocked(key string, kind Kind, now int64) *entry {
	if len(s.idx) >= s.max {
		s.evictLocked(now)
	}
	var i int32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		s.ents = append(s.ents, entry{})
		i = int32(len(s.ents) - 1)
	}
	s.ents[i] = entry{key: key, used: true, kind: kind, until: now, start: -1}
	s.idx[key] = i
	return &s.ents[i]
}

// evictLocked frees at least one slot. It sweeps evictScan slots from the
// hand: every stateless key there is evicted; if there is none, the first
// key whose ref bit was clear; if every bit was set (they are cleared on
// the way), the key at the start of the sweep.
func (s *shard) evictLocked(now int64) {
	first, victim, removed := -1, -1, false
	for n := 0; n < evictScan; n++ {
		i := s.hand
		if s.hand++; s.hand >= len(s.ents) {
			s.hand = 0
		}
		e := &s.ents[i]
		if !e.used {
			continue
		}
		switch {
		case e.until <= now:
			s.removeLocked(i)
			removed = true
		case e.ref:
			e.ref = false
		case victim < 0:
			victim = i
		}
		if first < 0 && e.used {
			first = i
		}
	}
	if removed {
		return
	}
	if victim < 0 {
		victim = first
	}
	if victim >= 0 {
		s.removeLocked(victim)
	}
}

// removeLocked forgets the key in slot i and frees the slot.
func (s *shard) removeLocked(i int) {
	delete(s.idx, s.ents[i].key)
	s.ents[i] = entry{} // drop the key so its bytes can be collected
	s.free = append(s.free, int32(i))
}

// maxKeyLen is the longest key a store keeps as it is.
const maxKeyLen = 128

// compactKey returns key, or for a key longer than maxKeyLen (keys come
// from request headers: up to the server's header limit) its first 64
// bytes, "#" and the hex SHA-256 of all of it: a store holding its
// maximum of keys then holds at most about maxKeyLen bytes for each.
// Compacted keys are 129 bytes long, so they never equal a key kept as
// it is.
func compactKey(key string) string {
	if len(key) <= maxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return key[:64] + "#" + hex.EncodeToString(sum[:])
}
