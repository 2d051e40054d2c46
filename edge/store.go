package edge

import (
	"container/list"
	"errors"
	"hash/maphash"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entryOverhead approximates the bytes an entry costs beyond its key,
// headers and body (structs, map and list slots).
const entryOverhead = 256

// entry is one stored response. It is immutable once stored: a 304 or a
// soft purge stores an updated copy.
type entry struct {
	key      string   // primary cache key
	uri      string   // target URI (see uriOf), the invalidation and purge index
	vary     []string // canonical names from the response's Vary
	varyVals []string // the storing request's values of those headers
	status   int
	header   http.Header // what is sent on a hit (Age and Cache-Status are added)
	body     []byte
	tags     []string // Surrogate-Key and Cache-Tag

	reqTime, respTime  time.Time
	initialAge         time.Duration // corrected_initial_age (RFC 9111 section 4.2.3)
	lifetime           time.Duration // freshness lifetime, jitter applied
	swr, sie           time.Duration // RFC 5861 windows
	noCache            bool          // every reuse is validated
	mustRevalidate     bool          // never served stale (must-/proxy-revalidate)
	sMaxAge            bool          // s-maxage implies proxy-revalidate against max-stale
	etag, lastModified string
	size               int64
	enc                *encodings // encoded variants; nil when not compressible

	elem   *list.Element // in Store.small or Store.main; guarded by Store.mu
	inMain bool          // elem is in Store.main; guarded by Store.mu
	freq   uint8         // hits since last looked at by eviction, at most 3; guarded by Store.mu
}

// age is the entry's current_age at now.
func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.respTime))
}

// matches reports whether the request selects this variant (RFC 9111
// section 4.1): each header named by Vary has the same value, after
// joining field lines and trimming whitespace.
func (e *entry) matches(r *http.Request) bool {
	for i, name := range e.vary {
		if normalizedHeader(r.Header, name) != e.varyVals[i] {
			return false
		}
	}
	return true
}

func normalizedHeader(h http.Header, name string) string {
	vs := h[name]
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return strings.TrimSpace(vs[0])
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strings.TrimSpace(v)
	}
	return strings.Join(parts, ", ")
}

// Stats are a store's counters since it was made.
type Stats struct {
	// Hits are requests answered from a fresh stored response.
	Hits int64 `json:"hits"`
	// Misses are requests forwarded to fill or validate an entry.
	Misses int64 `json:"misses"`
	// StaleServed are stale answers: stale-while-revalidate,
	// stale-if-error, a client's max-stale.
	StaleServed int64 `json:"stale_served"`
	// Revalidations are conditional requests sent for stale entries.
	Revalidations int64 `json:"revalidations"`
	// Coalesced are requests that waited for another's origin fetch.
	Coalesced int64 `json:"coalesced"`
	// Evictions are entries dropped to stay within memory.
	Evictions int64 `json:"evictions"`
	// Purged are entries purged (soft or hard).
	Purged int64 `json:"purged"`
	// Stored are responses stored.
	Stored int64 `json:"stored"`
	// Bytes and Entries are what the store holds now.
	Bytes   int64 `json:"bytes"`
	Entries int64 `json:"entries"`
	// The disk tier's: bytes and files held now, entries read back into
	// memory, files written, files found corrupt (and deleted), files
	// evicted to stay within size, writes skipped because the writer was
	// behind. Zero without a disk tier.
	DiskBytes     int64 `json:"disk_bytes,omitempty"`
	DiskEntries   int64 `json:"disk_entries,omitempty"`
	DiskLoads     int64 `json:"disk_loads,omitempty"`
	DiskWrites    int64 `json:"disk_writes,omitempty"`
	DiskCorrupt   int64 `json:"disk_corrupt,omitempty"`
	DiskEvictions int64 `json:"disk_evictions,omitempty"`
	DiskDropped   int64 `json:"disk_dropped,omitempty"`
}

// Store is a cache's memory tier, shared by every route that names the
// cache. It is bounded by bytes and evicts with S3-FIFO (Yang et al.,
// SOSP 2023): new entries enter a small FIFO holding about a tenth of the
// bytes; one that was hit before it reaches the small queue's end moves to
// the main FIFO, the others leave (most objects are never asked for again)
// and their keys are remembered in a ghost list, so one that comes back
// soon goes straight to main. The main FIFO gives an entry hit since it was
// last looked at another round instead of evicting it. A hit only bumps a
// small counter: no list is reordered on the hit path. Safe for concurrent
// use.
type Store struct {
	maxBytes  int64
	maxObject int64

	mu          sync.Mutex
	bytes       int64
	small, main list.List // of *entry, newest at the front (S3-FIFO's S and M)
	smallBytes  int64     // bytes of the entries in small
	ghost       ghostList // keys recently evicted from small (S3-FIFO's G)
	seed        maphash.Seed
	keys        map[string][]*entry
	uris        map[string]map[*entry]struct{}
	tags        map[string]map[*entry]struct{}

	flights map[string]*flight
	revals  map[string]struct{} // keys with a background revalidation running

	disk *diskTier // nil without a disk tier

	hits, misses, stale, revalidations, coalesced, evictions, purged, stored atomic.Int64
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Memory bounds the memory tier in bytes (required).
	Memory int64
	// MaxObject is the largest response stored (DefaultMaxObject when 0).
	MaxObject int64
	// Disk, when set, adds the disk tier: every stored entry is also
	// written to Disk.Path (write-through), entries evicted from memory
	// are read back from there, and the files survive restarts.
	Disk *Disk
}

// OpenStore makes a store, opening its disk tier (and rebuilding the
// disk index from the files there) when o.Disk is set. Close it.
func OpenStore(o StoreOptions) (*Store, error) {
	s := NewStore(o.Memory, o.MaxObject)
	if o.Disk != nil {
		if o.Disk.Path == "" || o.Disk.Size <= 0 {
			return nil, errors.New("disk tier: path and a positive size are required")
		}
		d, err := openDisk(o.Disk.Path, int64(o.Disk.Size))
		if err != nil {
			return nil, err
		}
		s.disk = d
	}
	return s, nil
}

// Close stops the disk tier's writer after it wrote what was queued.
// The memory tier needs no closing.
func (s *Store) Close() error {
	if s.disk != nil {
		s.disk.close()
	}
	return nil
}

// NewStore makes a memory tier holding at most maxBytes, storing
// responses of at most maxObject bytes (DefaultMaxObject when 0).
func NewStore(maxBytes, maxObject int64) *Store {
	if maxObject <= 0 {
		maxObject = DefaultMaxObject
	}
	return &Store{
		maxBytes: maxBytes, maxObject: min(maxObject, maxBytes),
		keys: map[string][]*entry{}, uris: map[string]map[*entry]struct{}{}, tags: map[string]map[*entry]struct{}{},
		flights: map[string]*flight{}, revals: map[string]struct{}{}, seed: maphash.MakeSeed(),
	}
}

// MaxObject is the largest response body the store keeps, in bytes.
func (s *Store) MaxObject() int64 { return s.maxObject }

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	b, n := s.bytes, int64(s.small.Len()+s.main.Len())
	s.mu.Unlock()
	st := Stats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), StaleServed: s.stale.Load(),
		Revalidations: s.revalidations.Load(), Coalesced: s.coalesced.Load(),
		Evictions: s.evictions.Load(), Purged: s.purged.Load(), Stored: s.stored.Load(),
		Bytes: b, Entries: n,
	}
	if d := s.disk; d != nil {
		st.DiskBytes, st.DiskEntries = d.stats()
		st.DiskLoads, st.DiskWrites, st.DiskCorrupt = d.loads.Load(), d.writes.Load(), d.corrupt.Load()
		st.DiskEvictions, st.DiskDropped = d.evictions.Load(), d.dropped.Load()
	}
	return st
}

// lookup returns the variant of key the request selects, and whether
// the key has any variant at all. A variant found only on disk is read
// back into memory.
func (s *Store) lookup(key []byte, r *http.Request) (*entry, bool) {
	s.mu.Lock()
	vs := s.keys[string(key)] // no allocation
	for _, e := range vs {
		if e.matches(r) {
			if e.freq < 3 {
				e.freq++
			}
			s.mu.Unlock()
			return e, true
		}
	}
	known := len(vs) > 0
	s.mu.Unlock()
	if s.disk == nil {
		return nil, known
	}
	e := s.disk.load(string(key), r)
	if e == nil {
		return nil, known
	}
	s.insertFrom(e, false)
	return e, true
}

// insert stores e, replacing the variant with the same Vary values, and
// evicts (S3-FIFO) until the store is within bounds.
func (s *Store) insert(e *entry) bool { return s.insertFrom(e, true) }

// insertFrom inserts e, writing it to the disk tier too when toDisk.
func (s *Store) insertFrom(e *entry, toDisk bool) bool {
	if e.size > s.maxBytes { // max_object bounds bodies, checked by the callers
		return false
	}
	if toDisk && s.disk != nil {
		s.disk.put(e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.keys[e.key]
	for _, old := range vs {
		if sameVariant(old, e) {
			s.removeLocked(old)
			break
		}
	}
	if vs = s.keys[e.key]; len(vs) >= MaxVariants {
		s.removeLocked(vs[0])
		s.evictions.Add(1)
	}
	s.admitLocked(e, s.ghost.take(s.ghostHash(e.key)))
	s.keys[e.key] = append(s.keys[e.key], e)
	addIndex(s.uris, e.uri, e)
	for _, t := range e.tags {
		addIndex(s.tags, t, e)
	}
	s.bytes += e.size
	s.stored.Add(1)
	s.evictLocked()
	return true
}

func sameVariant(a, b *entry) bool {
	if len(a.vary) != len(b.vary) {
		return false
	}
	for i := range a.vary {
		if a.vary[i] != b.vary[i] || a.varyVals[i] != b.varyVals[i] {
			return false
		}
	}
	return true
}

func addIndex(m map[string]map[*entry]struct{}, k string, e *entry) {
	set := m[k]
	if set == nil {
		set = map[*entry]struct{}{}
		m[k] = set
	}
	set[e] = struct{}{}
}

func delIndex(m map[string]map[*entry]struct{}, k string, e *entry) {
	if set := m[k]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// removeLocked drops e; the caller holds s.mu.
func (s *Store) removeLocked(e *entry) {
	if e.elem == nil {
		return
	}
	if e.inMain {
		s.main.Remove(e.elem)
	} else {
		s.small.Remove(e.elem)
		s.smallBytes -= e.size
	}
	e.elem = nil
	vs := s.keys[e.key]
	for i, v := range vs {
		if v == e {
			vs = append(vs[:i:i], vs[i+1:]...)
			break
		}
	}
	if len(vs) == 0 {
		delete(s.keys, e.key)
	} else {
		s.keys[e.key] = vs
	}
	delIndex(s.uris, e.uri, e)
	for _, t := range e.tags {
		delIndex(s.tags, t, e)
	}
	s.bytes -= e.size
}

// grow charges n more bytes to a stored entry (an encoded variant) and
// evicts to stay within bounds.
func (s *Store) grow(e *entry, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.elem == nil {
		return
	}
	e.size += n
	s.bytes += n
	if !e.inMain {
		s.smallBytes += n
	}
	s.evictLocked()
}

// admitLocked puts a new entry at the front of the small queue, or of the
// main queue when its key was evicted from small recently (ghost) or
// toMain is otherwise set; the caller holds s.mu and accounts its bytes.
func (s *Store) admitLocked(e *entry, toMain bool) {
	e.freq, e.inMain = 0, toMain
	if toMain {
		e.elem = s.main.PushFront(e)
		return
	}
	e.elem = s.small.PushFront(e)
	s.smallBytes += e.size
}

// evictLocked evicts until the store is within its bound (S3-FIFO); the
// caller holds s.mu. From the small queue while it holds more than its
// tenth of the bytes (or main is empty): its oldest entry moves to main if
// it was hit, else it is evicted and its key remembered in the ghost list.
// Otherwise from main: its oldest entry gets another round (at the front,
// one hit fewer) if it was hit, else it is evicted. Every step moves,
// demotes or evicts, and an entry is demoted at most 3 times per round, so
// the loop ends.
func (s *Store) evictLocked() {
	for s.bytes > s.maxBytes && s.small.Len()+s.main.Len() > 0 {
		if s.main.Len() == 0 || s.smallBytes > s.maxBytes/10 {
			old := s.small.Back().Value.(*entry)
			if old.freq > 0 {
				s.small.Remove(old.elem)
				s.smallBytes -= old.size
				old.freq, old.inMain = 0, true
				old.elem = s.main.PushFront(old)
				continue
			}
			s.ghost.add(s.ghostHash(old.key), s.small.Len()+s.main.Len())
			s.removeLocked(old)
			s.evictions.Add(1)
			continue
		}
		old := s.main.Back().Value.(*entry)
		if old.freq > 0 {
			old.freq--
			s.main.MoveToFront(old.elem)
			continue
		}
		s.removeLocked(old)
		s.evictions.Add(1)
	}
}

func (s *Store) ghostHash(key string) uint64 { return maphash.String(s.seed, key) }

// ghostList remembers the hashes of keys evicted from the small queue: a
// FIFO ring as long as the cache holds entries (at least 64), with a count
// per hash for lookups. Guarded by Store.mu.
type ghostList struct {
	ring  []uint64
	next  int
	count map[uint64]int32
}

// add remembers h, forgetting the oldest hash once the ring holds limit.
func (g *ghostList) add(h uint64, limit int) {
	limit = max(limit, 64)
	if g.count == nil {
		g.count = map[uint64]int32{}
	}
	if len(g.ring) < limit {
		g.ring = append(g.ring, h)
	} else {
		g.next %= len(g.ring)
		old := g.ring[g.next]
		if g.count[old]--; g.count[old] <= 0 {
			delete(g.count, old)
		}
		g.ring[g.next] = h
		g.next++
	}
	g.count[h]++
}

// take reports whether h is remembered. It stays in the ring until it
// ages out, but no longer counts.
func (g *ghostList) take(h uint64) bool {
	if g.count[h] > 0 {
		delete(g.count, h)
		return true
	}
	return false
}

// replace swaps old for its updated copy (after a 304 or a soft purge)
// if old is still stored.
func (s *Store) replace(old, updated *entry) {
	s.mu.Lock()
	stored := old.elem != nil
	s.mu.Unlock()
	if stored {
		s.insert(updated)
	}
}

// PurgeMode says what a purge does to the entries it matches.
type PurgeMode int

const (
	// Hard removes the entries.
	Hard PurgeMode = iota
	// Soft marks them stale: they are revalidated before reuse, and
	// stale-while-revalidate and stale-if-error still apply.
	Soft
)

// drop removes e from memory and disk (it became uncacheable).
func (s *Store) drop(e *entry) {
	s.mu.Lock()
	s.removeLocked(e)
	s.mu.Unlock()
	if s.disk != nil {
		s.disk.remove(fileName(e.key, e.vary, e.varyVals))
	}
}

// purgeLocked purges the matched entries, whose files (with those of
// entries only on disk, onDisk) the caller already deleted; a soft
// purge writes the stale copies back. It returns the entries purged in
// either tier. The caller holds s.mu.
func (s *Store) purgeLocked(matched []*entry, mode PurgeMode, onDisk []string) int {
	n := len(matched)
	if len(onDisk) > 0 {
		inMem := make(map[string]bool, len(matched))
		for _, e := range matched {
			inMem[fileName(e.key, e.vary, e.varyVals)] = true
		}
		for _, name := range onDisk {
			if !inMem[name] {
				n++
			}
		}
	}
	for _, e := range matched {
		s.removeLocked(e)
		if mode == Soft {
			c := *e
			c.lifetime = 0
			c.initialAge = max(c.initialAge, 1) // stale from now on
			c.respTime = time.Now()
			s.admitLocked(&c, e.inMain)
			s.keys[c.key] = append(s.keys[c.key], &c)
			addIndex(s.uris, c.uri, &c)
			for _, t := range c.tags {
				addIndex(s.tags, t, &c)
			}
			s.bytes += c.size
			if s.disk != nil {
				s.disk.put(&c)
			}
		}
	}
	s.purged.Add(int64(n))
	return n
}

func collect(set map[*entry]struct{}) []*entry {
	out := make([]*entry, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	return out
}

// PurgeURL purges every entry (all keys and variants) stored for the
// target URI host+path?query, e.g. "example.com/a/b?x=1". The host is
// case-insensitive. It returns the number of entries purged.
func (s *Store) PurgeURL(uri string, mode PurgeMode) int {
	uri = normalizeURI(uri)
	var onDisk []string
	if s.disk != nil {
		onDisk = s.disk.purgeURI(uri)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.purgeLocked(collect(s.uris[uri]), mode, onDisk)
}

// PurgePrefix purges every entry whose target URI starts with prefix
// ("example.com/static/").
func (s *Store) PurgePrefix(prefix string, mode PurgeMode) int {
	prefix = normalizeURI(prefix)
	var onDisk []string
	if s.disk != nil {
		onDisk = s.disk.purge(func(m *diskMeta) bool { return strings.HasPrefix(m.uri, prefix) })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var matched []*entry
	for u, set := range s.uris {
		if strings.HasPrefix(u, prefix) {
			for e := range set {
				matched = append(matched, e)
			}
		}
	}
	return s.purgeLocked(matched, mode, onDisk)
}

// PurgeTag purges every entry whose response carried tag in its
// Surrogate-Key or Cache-Tag header.
func (s *Store) PurgeTag(tag string, mode PurgeMode) int {
	var onDisk []string
	if s.disk != nil {
		onDisk = s.disk.purge(func(m *diskMeta) bool { return slices.Contains(m.tags, tag) })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.purgeLocked(collect(s.tags[tag]), mode, onDisk)
}

// invalidate removes every entry stored for uri (RFC 9111 section 4.4).
func (s *Store) invalidate(uri string) {
	if s.disk != nil {
		s.disk.purgeURI(uri)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := range s.uris[uri] {
		s.removeLocked(e)
	}
}

// normalizeURI accepts "http://Host/p", "//host/p" or "host/p" and
// returns "host/p" with the host lowercased.
func normalizeURI(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	u = strings.TrimPrefix(u, "//")
	host, rest, _ := strings.Cut(u, "/")
	if rest == "" && !strings.Contains(u, "/") {
		return strings.ToLower(host)
	}
	return strings.ToLower(host) + "/" + rest
}

// EntryInfo describes one stored entry for inspection.
type EntryInfo struct {
	Key      string      `json:"key"`
	URI      string      `json:"uri"`
	Status   int         `json:"status"`
	Header   http.Header `json:"header"`
	Vary     []string    `json:"vary,omitempty"`
	VaryVals []string    `json:"vary_values,omitempty"`
	Tags     []string    `json:"tags,omitempty"`
	Size     int64       `json:"size"`
	Age      float64     `json:"age_seconds"`
	TTL      float64     `json:"ttl_seconds"` // remaining freshness; negative when stale
	Stored   time.Time   `json:"stored"`
}

// Inspect describes the entries stored for a target URI (see PurgeURL),
// at most limit of them.
func (s *Store) Inspect(uri string, limit int) []EntryInfo {
	uri = normalizeURI(uri)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []EntryInfo
	for e := range s.uris[uri] {
		if len(out) >= limit {
			break
		}
		age := e.age(now)
		out = append(out, EntryInfo{
			Key: strings.ReplaceAll(e.key, "\x00", " "), URI: e.uri, Status: e.status, Header: e.header.Clone(),
			Vary: e.vary, VaryVals: e.varyVals, Tags: e.tags, Size: e.size,
			Age: age.Seconds(), TTL: (e.lifetime - age).Seconds(), Stored: e.respTime,
		})
	}
	return out
}
