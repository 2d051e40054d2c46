package edge

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The disk tier keeps a copy of every stored entry in a file of its own
// (write-through, by a background writer), so what memory evicts is
// still on disk and everything survives a restart. A file is
//
//	"SYE1" | meta length u32 | body length u64 | CRC-32C of meta+body u32 | meta (JSON) | body
//
// The index (key, URI, tags, Vary values, size of each file) lives in
// memory and is rebuilt from the files' headers and metadata at start;
// a file whose header, metadata or length is wrong is deleted then, and
// one whose checksum fails is deleted when it is read, never served.

const (
	diskMagic    = "SYE1"
	diskHeadLen  = 4 + 4 + 8 + 4
	diskExt      = ".sye"
	diskMaxMeta  = 1 << 20
	diskQueueLen = 256
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// diskRecord is an entry's metadata as written to disk.
type diskRecord struct {
	Key            string        `json:"key"`
	URI            string        `json:"uri"`
	Vary           []string      `json:"vary,omitempty"`
	VaryVals       []string      `json:"vary_values,omitempty"`
	Status         int           `json:"status"`
	Header         http.Header   `json:"header"`
	Tags           []string      `json:"tags,omitempty"`
	ReqTime        time.Time     `json:"req_time"`
	RespTime       time.Time     `json:"resp_time"`
	InitialAge     time.Duration `json:"initial_age"`
	Lifetime       time.Duration `json:"lifetime"`
	SWR            time.Duration `json:"swr"`
	SIE            time.Duration `json:"sie"`
	NoCache        bool          `json:"no_cache,omitempty"`
	MustRevalidate bool          `json:"must_revalidate,omitempty"`
	SMaxAge        bool          `json:"s_maxage,omitempty"`
	ETag           string        `json:"etag,omitempty"`
	LastModified   string        `json:"last_modified,omitempty"`
	Compressible   bool          `json:"compressible,omitempty"`
}

// diskMeta is the index's view of one file.
type diskMeta struct {
	name           string
	key, uri       string
	vary, varyVals []string
	tags           []string
	size           int64
	seq            uint64 // the write this meta waits for (or got)
	written        bool   // the file holds this seq
	elem           *list.Element
}

func (m *diskMeta) matches(r *http.Request) bool {
	for i, name := range m.vary {
		if normalizedHeader(r.Header, name) != m.varyVals[i] {
			return false
		}
	}
	return true
}

// diskTier is a Store's second tier.
type diskTier struct {
	dir string
	max int64

	mu     sync.Mutex
	bytes  int64
	lru    list.List // of *diskMeta, most recently used at the front
	byName map[string]*diskMeta
	byKey  map[string][]*diskMeta
	byURI  map[string]map[*diskMeta]struct{}
	seq    uint64
	closed bool

	queue chan diskJob
	wg    sync.WaitGroup
	once  sync.Once

	loads, writes, corrupt, evictions, dropped atomic.Int64
}

type diskJob struct {
	e   *entry
	seq uint64
}

// fileName names the file of one variant: the same key and Vary values
// always map to the same file, so an update overwrites it.
func fileName(key string, vary, varyVals []string) string {
	h := sha256.New()
	h.Write([]byte(key))
	for i := range vary {
		h.Write([]byte{0})
		h.Write([]byte(vary[i]))
		h.Write([]byte{1})
		h.Write([]byte(varyVals[i]))
	}
	return hex.EncodeToString(h.Sum(nil)[:16]) + diskExt
}

// openDisk opens (creating) dir, rebuilds the index from its files and
// starts the writer.
func openDisk(dir string, max int64) (*diskTier, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("disk tier: %w", err)
	}
	d := &diskTier{
		dir: dir, max: max,
		byName: map[string]*diskMeta{}, byKey: map[string][]*diskMeta{}, byURI: map[string]map[*diskMeta]struct{}{},
		queue: make(chan diskJob, diskQueueLen),
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("disk tier: %w", err)
	}
	type found struct {
		m   *diskMeta
		mod time.Time
	}
	var all []found
	for _, de := range des {
		name := de.Name()
		if !de.Type().IsRegular() {
			continue
		}
		if strings.Contains(name, ".tmp-") { // an interrupted write (or another process's current one)
			if info, err := de.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				_ = os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		if !strings.HasSuffix(name, diskExt) {
			continue
		}
		m, mod, err := d.readMeta(name)
		if err != nil {
			d.corrupt.Add(1)
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		all = append(all, found{m, mod})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	for _, f := range all {
		f.m.elem = d.lru.PushBack(f.m)
		d.index(f.m)
		d.bytes += f.m.size
	}
	d.mu.Lock()
	d.evictLocked()
	d.mu.Unlock()
	d.wg.Add(1)
	go d.writer()
	return d, nil
}

// readMeta reads a file's header and metadata and checks its length.
func (d *diskTier) readMeta(name string) (*diskMeta, time.Time, error) {
	f, err := os.Open(filepath.Join(d.dir, name))
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	var head [diskHeadLen]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return nil, time.Time{}, fmt.Errorf("header: %w", err)
	}
	metaLen, bodyLen, err := parseHead(head[:])
	if err != nil {
		return nil, time.Time{}, err
	}
	if st.Size() != diskHeadLen+int64(metaLen)+int64(bodyLen) {
		return nil, time.Time{}, fmt.Errorf("length %d, header says %d", st.Size(), diskHeadLen+int64(metaLen)+int64(bodyLen))
	}
	mb := make([]byte, metaLen)
	if _, err := io.ReadFull(f, mb); err != nil {
		return nil, time.Time{}, err
	}
	var rec diskRecord
	if err := json.Unmarshal(mb, &rec); err != nil {
		return nil, time.Time{}, fmt.Errorf("metadata: %w", err)
	}
	if len(rec.Vary) != len(rec.VaryVals) || fileName(rec.Key, rec.Vary, rec.VaryVals) != name {
		return nil, time.Time{}, errors.New("metadata does not match the file name")
	}
	return &diskMeta{name: name, key: rec.Key, uri: rec.URI, vary: rec.Vary, varyVals: rec.VaryVals, tags: rec.Tags, size: st.Size(), written: true}, st.ModTime(), nil
}

func parseHead(head []byte) (metaLen uint32, bodyLen uint64, err error) {
	if string(head[:4]) != diskMagic {
		return 0, 0, errors.New("bad magic")
	}
	metaLen = binary.BigEndian.Uint32(head[4:8])
	bodyLen = binary.BigEndian.Uint64(head[8:16])
	if metaLen == 0 || metaLen > diskMaxMeta || bodyLen > 1<<40 {
		return 0, 0, errors.New("bad lengths")
	}
	return metaLen, bodyLen, nil
}

func (d *diskTier) index(m *diskMeta) {
	d.byName[m.name] = m
	d.byKey[m.key] = append(d.byKey[m.key], m)
	set := d.byURI[m.uri]
	if set == nil {
		set = map[*diskMeta]struct{}{}
		d.byURI[m.uri] = set
	}
	set[m] = struct{}{}
}

// removeLocked drops m from the index and deletes its file.
func (d *diskTier) removeLocked(m *diskMeta) {
	if d.byName[m.name] != m {
		return
	}
	delete(d.byName, m.name)
	vs := d.byKey[m.key]
	for i, v := range vs {
		if v == m {
			vs = append(vs[:i:i], vs[i+1:]...)
			break
		}
	}
	if len(vs) == 0 {
		delete(d.byKey, m.key)
	} else {
		d.byKey[m.key] = vs
	}
	if set := d.byURI[m.uri]; set != nil {
		delete(set, m)
		if len(set) == 0 {
			delete(d.byURI, m.uri)
		}
	}
	d.lru.Remove(m.elem)
	d.bytes -= m.size
	if m.written {
		_ = os.Remove(filepath.Join(d.dir, m.name))
	}
}

func (d *diskTier) evictLocked() {
	for d.bytes > d.max && d.lru.Len() > 0 {
		d.removeLocked(d.lru.Back().Value.(*diskMeta))
		d.evictions.Add(1)
	}
}

// put queues e to be written (replacing its variant's file). When the
// writer is behind, the entry is not written (it stays in memory).
func (d *diskTier) put(e *entry) {
	name := fileName(e.key, e.vary, e.varyVals)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if old := d.byName[name]; old != nil {
		d.removeLocked(old)
	}
	d.seq++
	m := &diskMeta{name: name, key: e.key, uri: e.uri, vary: e.vary, varyVals: e.varyVals, tags: e.tags, size: e.size, seq: d.seq}
	select {
	case d.queue <- diskJob{e: e, seq: d.seq}:
	default:
		d.dropped.Add(1)
		return
	}
	m.elem = d.lru.PushFront(m)
	d.index(m)
	d.bytes += m.size
	d.evictLocked()
}

// writer writes queued entries: to a temporary file, renamed over the
// variant's file only if the index still wants this write (a purge or a
// newer write in between wins).
func (d *diskTier) writer() {
	defer d.wg.Done()
	for job := range d.queue {
		d.write(job)
	}
}

func (d *diskTier) write(job diskJob) {
	e := job.e
	rec := diskRecord{
		Key: e.key, URI: e.uri, Vary: e.vary, VaryVals: e.varyVals, Status: e.status, Header: e.header, Tags: e.tags,
		ReqTime: e.reqTime, RespTime: e.respTime, InitialAge: e.initialAge, Lifetime: e.lifetime, SWR: e.swr, SIE: e.sie,
		NoCache: e.noCache, MustRevalidate: e.mustRevalidate, SMaxAge: e.sMaxAge, ETag: e.etag, LastModified: e.lastModified,
		Compressible: e.enc != nil,
	}
	mb, err := json.Marshal(rec)
	if err != nil || len(mb) > diskMaxMeta {
		d.forget(fileName(e.key, e.vary, e.varyVals), job.seq)
		return
	}
	head := make([]byte, diskHeadLen)
	copy(head, diskMagic)
	binary.BigEndian.PutUint32(head[4:8], uint32(len(mb)))
	binary.BigEndian.PutUint64(head[8:16], uint64(len(e.body)))
	crc := crc32.Update(crc32.Update(0, crcTable, mb), crcTable, e.body)
	binary.BigEndian.PutUint32(head[16:20], crc)
	name := fileName(e.key, e.vary, e.varyVals)
	tmp := filepath.Join(d.dir, name+".tmp-"+strconv.FormatUint(job.seq, 10))
	err = writeFile(tmp, head, mb, e.body)
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.byName[name]
	if err != nil || m == nil || m.seq != job.seq {
		_ = os.Remove(tmp)
		if err != nil && m != nil && m.seq == job.seq {
			d.removeLocked(m)
		}
		return
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, name)); err != nil {
		_ = os.Remove(tmp)
		d.removeLocked(m)
		return
	}
	m.written = true
	size := int64(diskHeadLen + len(mb) + len(e.body))
	d.bytes += size - m.size
	m.size = size
	d.writes.Add(1)
	d.evictLocked()
}

func writeFile(path string, parts ...[]byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// forget drops the index entry of name if it still waits for seq.
func (d *diskTier) forget(name string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m := d.byName[name]; m != nil && m.seq == seq {
		d.removeLocked(m)
	}
}

// load reads the variant of key the request selects, verifying it; a
// corrupt file is deleted and nil returned.
func (d *diskTier) load(key string, r *http.Request) *entry {
	d.mu.Lock()
	var m *diskMeta
	for _, v := range d.byKey[key] {
		if v.written && v.matches(r) {
			m = v
			break
		}
	}
	if m == nil {
		d.mu.Unlock()
		return nil
	}
	d.lru.MoveToFront(m.elem)
	name, seq := m.name, m.seq
	d.mu.Unlock()
	e, err := d.read(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil // purged or replaced while we read
	}
	if err != nil {
		d.corrupt.Add(1)
		d.forget(name, seq)
		return nil
	}
	d.loads.Add(1)
	return e
}

// read reads and verifies one file.
func (d *diskTier) read(name string) (*entry, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		return nil, err
	}
	if len(b) < diskHeadLen {
		return nil, errors.New("truncated")
	}
	metaLen, bodyLen, err := parseHead(b[:diskHeadLen])
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != diskHeadLen+int64(metaLen)+int64(bodyLen) {
		return nil, errors.New("truncated")
	}
	rest := b[diskHeadLen:]
	if crc32.Checksum(rest, crcTable) != binary.BigEndian.Uint32(b[16:20]) {
		return nil, errors.New("bad checksum")
	}
	var rec diskRecord
	if err := json.Unmarshal(rest[:metaLen], &rec); err != nil {
		return nil, err
	}
	if len(rec.Vary) != len(rec.VaryVals) || rec.Header == nil {
		return nil, errors.New("bad metadata")
	}
	e := &entry{
		key: rec.Key, uri: rec.URI, vary: rec.Vary, varyVals: rec.VaryVals, status: rec.Status, header: rec.Header,
		body: rest[metaLen:], tags: rec.Tags, reqTime: rec.ReqTime, respTime: rec.RespTime,
		initialAge: rec.InitialAge, lifetime: rec.Lifetime, swr: rec.SWR, sie: rec.SIE,
		noCache: rec.NoCache, mustRevalidate: rec.MustRevalidate, sMaxAge: rec.SMaxAge,
		etag: rec.ETag, lastModified: rec.LastModified,
	}
	if rec.Compressible {
		e.enc = &encodings{}
	}
	e.computeSize()
	return e, nil
}

// remove deletes the files of the given names.
func (d *diskTier) remove(names ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range names {
		if m := d.byName[n]; m != nil {
			d.removeLocked(m)
		}
	}
}

// purge deletes every file whose meta match selects, returning their names.
func (d *diskTier) purge(match func(*diskMeta) bool) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, m := range d.byName {
		if match(m) {
			names = append(names, m.name)
			d.removeLocked(m)
		}
	}
	return names
}

// purgeURI deletes the files stored for uri.
func (d *diskTier) purgeURI(uri string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for m := range d.byURI[uri] {
		names = append(names, m.name)
		d.removeLocked(m)
	}
	return names
}

// close stops the writer after it wrote what is queued.
func (d *diskTier) close() {
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		close(d.queue)
		d.mu.Unlock()
		d.wg.Wait()
	})
}

func (d *diskTier) stats() (bytes, entries int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bytes, int64(len(d.byName))
}
