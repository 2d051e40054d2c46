// Package wal is a durable, append-only, segmented log with per-record
// checksums, a sparse index, size/age retention and group-commit fsync.
package wal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/internal/diskfull"
)

var (
	// ErrClosed is returned by operations on a closed log.
	ErrClosed = errors.New("wal: log closed")
	// ErrTooLarge is returned by Append for a payload above MaxRecordBytes.
	ErrTooLarge = errors.New("wal: record too large")
	// ErrNotFound is returned by Read for a sequence that is not in the log
	// (deleted by retention, or not written yet).
	ErrNotFound = errors.New("wal: sequence not in log")
	// ErrStop may be returned by a Scan callback to end the scan early
	// without error.
	ErrStop = errors.New("wal: stop scan")
	// ErrNoSpace is returned (wrapping the system's error, e.g.
	// syscall.ENOSPC) while the disk is full: a write of records failed for
	// lack of space. It is not sticky: records enqueued with Enqueue are
	// refused at once (and those of the failed write are voided: never
	// written, never readable), records enqueued with EnqueueKept or
	// EnqueueLazy are held in memory and written, in order, as soon as a
	// write succeeds again (the writer retries every RetryInterval).
	ErrNoSpace = diskfull.ErrNoSpace
	errEmpty   = errors.New("wal: empty payload (reserved for void records)")
)

const (
	metaName   = "wal.meta"
	metaFormat = 1
)

// Recovery describes what Open found and repaired.
type Recovery struct {
	Segments       int    // segment files opened
	FirstSeq       uint64 // first sequence in the log (0 if empty)
	LastSeq        uint64 // last intact sequence (0 if empty)
	TruncatedBytes int64  // bytes cut from the tail of the last segment; 0 if none
	TruncatedFile  string // the segment that was truncated
	TruncatedAt    int64  // offset where the cut was made
	Reason         string // why the tail was cut (the first bad record)
}

// maxSpareBuf bounds the batch buffer kept for the next batch.
const maxSpareBuf = 64 << 20

// batch is a group of records queued for one write (and one fsync).
type batch struct {
	buf  []byte
	recs []recMeta
	last uint64
	lazy bool          // holds a lazy record: a flush is armed for LazyDelay
	done chan struct{} // closed when the batch is written per the policy
	err  error         // set before done is closed
}

type recMeta struct {
	seq  uint64
	ts   int64
	end  int  // offset in buf just past the record
	keep bool // held and rewritten after a failed write (not voided)
}

// seqRange is an inclusive range of voided sequences.
type seqRange struct {
	from, to uint64
	err      error // why (wraps ErrNoSpace)
}

// maxVoidRanges bounds the memory of voided sequences (each failed write
// adds at most one range; refused records get no sequence).
const maxVoidRanges = 4096

// Log is an append-only segmented log. It is safe for concurrent use.
type Log struct {
	dir      string
	opts     Options
	recovery Recovery

	mu           sync.Mutex
	segs         []*segment // ascending; the last is the active segment
	next         uint64     // next sequence to assign
	lastTS       int64
	cur          *batch // accepting records
	inflight     *batch // being written by the flusher
	spare        *batch // recycled buffers
	durable      uint64 // records up to here satisfy the sync policy
	synced       uint64 // records up to here are fsynced
	written      uint64 // records up to here are written to the OS
	total        int64  // bytes in all segments
	err          error  // sticky write error
	full         error  // the disk is full (wraps ErrNoSpace); cleared by the next successful write
	retry        *batch // records held after a failed write, written before l.cur
	voids        []seqRange
	retentionErr error // last failure to delete a segment (not sticky)
	closed       bool

	prealloc bool // extend segment files ahead of their data (flusher only)

	maxAge   time.Duration // retention, from Options; see SetRetention
	maxBytes int64

	syncs    atomic.Uint64 // fsync calls on segment files
	unsynced atomic.Int64  // records written to the OS since the last fsync

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

// Open opens (creating if needed) the log in dir and recovers it: a torn or
// corrupt tail of the last segment is truncated and reported in Recovery; a
// corrupt record in an earlier segment fails Open with a *CorruptError.
func Open(dir string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("wal options: %w", err)
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating wal directory: %w", err)
	}
	if err := checkMeta(dir); err != nil {
		return nil, err
	}
	l := &Log{
		dir:      dir,
		opts:     opts,
		prealloc: opts.Preallocate > 0,
		maxAge:   opts.MaxAge,
		maxBytes: opts.MaxBytes,
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.cur = &batch{done: make(chan struct{})}
	go l.flusher()
	return l, nil
}

type metaFile struct {
	Format int `json:"format"`
}

func checkMeta(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if errors.Is(err, os.ErrNotExist) {
		data, _ := json.Marshal(metaFile{Format: metaFormat})
		return WriteFileAtomic(dir, metaName, data)
	}
	if err != nil {
		return fmt.Errorf("reading wal metadata: %w", err)
	}
	var m metaFile
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("parsing wal metadata %q: %w", filepath.Join(dir, metaName), err)
	}
	if m.Format != metaFormat {
		return fmt.Errorf("wal metadata %q: format %d, this build reads format %d", filepath.Join(dir, metaName), m.Format, metaFormat)
	}
	return nil
}

func (l *Log) recover() error {
	bases, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	if len(bases) == 0 {
		s, err := openSegment(l.dir, 1, true)
		if err != nil {
			return err
		}
		l.segs = []*segment{s}
		l.next = 1
		l.recovery = Recovery{Segments: 1}
		return SyncDir(l.dir)
	}
	for i, base := range bases {
		s, err := openSegment(l.dir, base, false)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		if i > 0 {
			prev := l.segs[i-1]
			if base != prev.last+1 {
				return &CorruptError{Path: s.path, Seq: prev.last + 1,
					Err: fmt.Errorf("%w: segment starts at sequence %d, previous segment ends at %d", errCorrupt, base, prev.last)}
			}
		}
		res, err := s.scan(l.opts.MaxRecordBytes, l.opts.IndexInterval)
		if err != nil {
			return err
		}
		s.alloc = res.fileLen
		if res.zeroTail && i < len(bases)-1 {
			// Sealing cuts the preallocated tail off; a crash came first.
			if err := s.f.Truncate(s.size); err != nil {
				return fmt.Errorf("truncating preallocated tail of sealed segment %q: %w", s.path, err)
			}
			if err := l.fsync(s.f); err != nil {
				return fmt.Errorf("fsyncing %q after truncation: %w", s.path, err)
			}
			s.alloc = s.size
		}
		if res.bad != nil {
			if i < len(bases)-1 {
				return &CorruptError{Path: s.path, Offset: res.badPos, Seq: s.last + 1, Err: res.bad}
			}
			// The last segment: a torn write leaves damage only at the end.
			// An intact record after the bad one means corruption, and
			// cutting would drop confirmed records: refuse, as for a
			// sealed segment.
			at, seq, ok, err := s.intactAfter(res.badPos, res.fileLen, s.last+1, l.opts.MaxRecordBytes)
			if err != nil {
				return err
			}
			if ok {
				return &CorruptError{Path: s.path, Offset: res.badPos, Seq: s.last + 1, Err: res.bad,
					Active: true, IntactAt: at, IntactSeq: seq}
			}
			if err := s.f.Truncate(res.badPos); err != nil {
				return fmt.Errorf("truncating torn tail of %q at %d: %w", s.path, res.badPos, err)
			}
			if err := l.fsync(s.f); err != nil {
				return fmt.Errorf("fsyncing %q after truncation: %w", s.path, err)
			}
			s.alloc = res.badPos
			l.recovery.TruncatedBytes = res.fileLen - res.badPos
			l.recovery.TruncatedFile = s.path
			l.recovery.TruncatedAt = res.badPos
			l.recovery.Reason = res.bad.Error()
		}
		l.total += s.size
	}
	act := l.segs[len(l.segs)-1]
	l.next = act.last + 1
	l.lastTS = act.lastTS
	l.durable, l.synced, l.written = act.last, act.last, act.last
	l.recovery.Segments = len(l.segs)
	l.recovery.FirstSeq, l.recovery.LastSeq = l.firstSeqLocked(), act.last
	return nil
}

// Recovery returns what Open found.
func (l *Log) Recovery() Recovery { return l.recovery }

// Dir returns the log directory.
func (l *Log) Dir() string { return l.dir }

func (l *Log) firstSeqLocked() uint64 {
	for _, s := range l.segs {
		if s.last >= s.base {
			return s.base
		}
	}
	return 0
}

// FirstSeq returns the oldest sequence still in the log, or 0 if empty.
func (l *Log) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstSeqLocked()
}

// LastSeq returns the newest sequence readable (written to the OS), or 0.
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written
}

// DurableSeq returns the sequence up to which records satisfy the sync
// policy (see Wait).
func (l *Log) DurableSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// Size returns the total size of all segments in bytes.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Err returns the sticky write error, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Enqueue assigns the next sequence to payload and queues it for writing
// without waiting. The payload is copied. Use Wait to wait for durability.
//
// While the disk is full (see ErrNoSpace) it fails at once, and a record
// whose write fails for lack of space is voided.
func (l *Log) Enqueue(payload []byte) (uint64, error) { return l.enqueue(payload, false, false) }

// EnqueueKept is Enqueue for a record that must not be voided by a full
// disk: while the disk is full it is accepted and held in memory (Wait
// returns ErrNoSpace), and written once space returns. For bookkeeping
// whose loss would be worse than holding it, like acks.
func (l *Log) EnqueueKept(payload []byte) (uint64, error) { return l.enqueue(payload, false, true) }

// Retry makes the writer try at once to write records held after the disk
// was full (it also retries every Options.RetryInterval).
func (l *Log) Retry() { l.kick() }

// Full returns the error of the failed write while the disk is full
// (wrapping ErrNoSpace), or nil.
func (l *Log) Full() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.full
}

// EnqueueLazy is Enqueue for a record nobody waits for at once: it does not
// start a write of its own but goes with the next one, started by another
// record or a Wait, or by itself after Options.LazyDelay at the latest.
// Bookkeeping records written after almost every operation (deliveries,
// acks answered before their fsync) then cost no extra write and fsync.
// A lazy record is kept like EnqueueKept's while the disk is full.
func (l *Log) EnqueueLazy(payload []byte) (uint64, error) { return l.enqueue(payload, true, true) }

func (l *Log) enqueue(payload []byte, lazy, keep bool) (uint64, error) {
	if len(payload) > l.opts.MaxRecordBytes {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), l.opts.MaxRecordBytes)
	}
	ts := l.opts.Now().UnixNano()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return 0, err
	}
	if l.full != nil && !keep {
		err := l.full
		l.mu.Unlock()
		return 0, err
	}
	if len(payload) == 0 {
		l.mu.Unlock()
		return 0, errEmpty
	}
	seq := l.next
	l.next++
	if ts < l.lastTS {
		ts = l.lastTS
	}
	l.lastTS = ts
	b := l.cur
	b.buf = appendRecord(b.buf, seq, ts, payload)
	b.recs = append(b.recs, recMeta{seq: seq, ts: ts, end: len(b.buf), keep: keep})
	b.last = seq
	if lazy {
		arm := !b.lazy
		b.lazy = true
		l.mu.Unlock()
		if arm {
			time.AfterFunc(l.opts.LazyDelay, l.kick)
		}
		return seq, nil
	}
	l.mu.Unlock()
	l.kick()
	return seq, nil
}

// kick wakes the flusher.
func (l *Log) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Append appends payload and waits until it is as durable as the sync
// policy promises: fsynced for always and batch, written to the operating
// system for interval and never. If ctx ends first the record may still be
// written; the returned error is then ctx.Err() together with the sequence.
func (l *Log) Append(ctx context.Context, payload []byte) (uint64, error) {
	seq, err := l.Enqueue(payload)
	if err != nil {
		return 0, err
	}
	return seq, l.Wait(ctx, seq)
}

// Wait blocks until the record seq is as durable as the sync policy
// promises (see Append), the log fails (the write error is returned) or ctx
// ends. While the disk is full it returns the ErrNoSpace error at once for
// a record not yet written; for a voided record, always.
func (l *Log) Wait(ctx context.Context, seq uint64) error {
	for {
		l.mu.Lock()
		if v := l.voidLocked(seq); v != nil {
			l.mu.Unlock()
			return fmt.Errorf("record %d not written, voided: %w", seq, v)
		}
		if seq <= l.durable {
			l.mu.Unlock()
			return nil
		}
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return err
		}
		var b *batch
		switch {
		case l.inflight != nil && seq <= l.inflight.last:
			b = l.inflight
		case l.full != nil:
			err := l.full
			l.mu.Unlock()
			return err
		case seq <= l.cur.last:
			b = l.cur
		default:
			l.mu.Unlock()
			if l.closed {
				return ErrClosed
			}
			return fmt.Errorf("wal: waiting for sequence %d: not appended (next is %d)", seq, l.next)
		}
		lazy := b.lazy
		l.mu.Unlock()
		if lazy {
			l.kick() // a waiter does not wait for LazyDelay
		}
		select {
		case <-b.done:
			if b.err != nil && !errors.Is(b.err, ErrNoSpace) {
				return b.err
			}
			// Out of space: this record may have been written before the
			// failure, voided or held; look again.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Voided reports whether the record seq was voided by a full disk (see
// ErrNoSpace): it will never be readable.
func (l *Log) Voided(seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.voidLocked(seq) != nil
}

// voidLocked returns why seq was voided, or nil if it was not.
func (l *Log) voidLocked(seq uint64) error {
	for i := len(l.voids) - 1; i >= 0; i-- {
		if r := l.voids[i]; seq >= r.from && seq <= r.to {
			return r.err
		}
	}
	return nil
}

// Sync fsyncs everything written so far, whatever the policy.
func (l *Log) Sync(ctx context.Context) error {
	l.mu.Lock()
	target := l.next - 1
	l.mu.Unlock()
	if err := l.Wait(ctx, target); err != nil {
		return err
	}
	l.mu.Lock()
	act := l.segs[len(l.segs)-1]
	written := l.written
	l.mu.Unlock()
	if err := l.fsync(act.f); err != nil {
		return l.fail(fmt.Errorf("fsyncing %q: %w", act.path, err))
	}
	l.mu.Lock()
	if written > l.synced {
		l.synced = written
	}
	l.mu.Unlock()
	return nil
}

// fail records a sticky error and returns it.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
	return l.err
}

// Close writes and fsyncs everything queued, stops the flusher and closes
// the files. It returns the sticky write error, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	l.mu.Lock()
	err := l.err
	if err == nil && l.retry != nil && len(l.retry.recs) > 0 {
		err = fmt.Errorf("closing with %d records held in memory, not written: %w", len(l.retry.recs), l.full)
	}
	l.mu.Unlock()
	if err == nil || errors.Is(err, ErrNoSpace) {
		act := l.segs[len(l.segs)-1]
		if terr := l.trimAlloc(act); terr != nil {
			err = terr
		} else if serr := l.fsync(act.f); serr != nil {
			err = fmt.Errorf("fsyncing %q on close: %w", act.path, serr)
		}
	}
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, s := range l.segs {
		if err := s.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// flusher is the single writer: it takes the queued batch, writes it
// (rotating segments as needed) without holding the lock, fsyncs per policy
// and wakes the waiters. It exits when Close is called, after draining.
func (l *Log) flusher() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.Sync.Mode == SyncInterval {
		t := time.NewTicker(l.opts.Sync.Interval)
		defer t.Stop()
		tick = t.C
	}
	ret := time.NewTicker(l.opts.RetentionInterval)
	defer ret.Stop()
	retry := time.NewTicker(l.opts.RetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-l.wake:
			l.flushOnce()
		case <-retry.C:
			l.mu.Lock()
			held := l.retry != nil
			l.mu.Unlock()
			if held {
				l.flushOnce()
			}
		case <-tick:
			l.syncActive()
		case <-ret.C:
			l.applyRetention()
		case <-l.quit:
			l.flushOnce()
			return
		}
	}
}

func (l *Log) syncActive() {
	l.mu.Lock()
	if l.err != nil || l.synced == l.written {
		l.mu.Unlock()
		return
	}
	act := l.segs[len(l.segs)-1]
	written := l.written
	l.mu.Unlock()
	if err := l.fsync(act.f); err != nil {
		l.fail(fmt.Errorf("fsyncing %q: %w", act.path, err))
		return
	}
	l.mu.Lock()
	if written > l.synced {
		l.synced = written
	}
	l.mu.Unlock()
}

func (l *Log) flushOnce() {
	// Let appenders that are already runnable queue their records first, so
	// that they share this write and fsync (matters most with few Ps).
	runtime.Gosched()
	l.mu.Lock()
	b := l.cur
	r := l.retry
	if len(b.recs) == 0 && r == nil {
		l.mu.Unlock()
		return
	}
	nb := l.spare
	l.spare = nil
	if nb == nil {
		nb = &batch{}
	}
	nb.done = make(chan struct{})
	l.cur = nb
	l.inflight = b
	w := b // what is written: the held records first, then b's
	if r != nil {
		l.retry = nil
		w = r.merge(b)
		if b.last == 0 {
			b.last = w.last // so that Wait finds the held records in flight
		}
	}
	err := l.err
	l.mu.Unlock()

	if err == nil {
		err = l.writeBatch(w)
		var ns *noSpaceError
		switch {
		case errors.As(err, &ns):
			err = l.noSpace(w, ns)
		case err != nil:
			err = l.fail(err)
		}
	}
	l.mu.Lock()
	if err == nil {
		l.durable = w.last
		l.full = nil
	}
	l.inflight = nil
	l.mu.Unlock()
	b.err = err
	close(b.done)

	// Recycle the buffers: waiters only look at done and err. Big ones
	// too: with large records a batch is megabytes, and a fresh buffer
	// for each (grown by doubling) costs a page fault per 4 KiB touched.
	rb := &batch{buf: b.buf[:0], recs: b.recs[:0]}
	if cap(rb.buf) > maxSpareBuf {
		rb.buf = nil
	}
	l.mu.Lock()
	l.spare = rb
	l.mu.Unlock()
}

// merge returns a new batch holding r's records, then b's.
func (r *batch) merge(b *batch) *batch {
	w := &batch{buf: append(r.buf, b.buf...), recs: r.recs, last: max(r.last, b.last)}
	off := len(r.buf)
	for _, m := range b.recs {
		m.end += off
		w.recs = append(w.recs, m)
	}
	return w
}

// noSpaceError is a write that failed for lack of space: records [from:]
// of the batch were not written; seg holds a partial write from pos on.
type noSpaceError struct {
	from int
	seg  *segment
	pos  int64
	err  error
}

func (e *noSpaceError) Error() string { return e.err.Error() }
func (e *noSpaceError) Unwrap() error { return e.err }

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// noSpace handles a write of w that failed for lack of space: it cuts the
// partial write off, makes the records written before it durable, voids
// the failed records that may be voided and holds the others (and the void
// records) for the next write. It returns the error for the batch's
// waiters (wrapping ErrNoSpace), or a sticky error if the repair failed.
func (l *Log) noSpace(w *batch, ns *noSpaceError) error {
	if err := ns.seg.f.Truncate(ns.pos); err != nil {
		return l.fail(fmt.Errorf("cutting a partial write off %q at %d after %v: %w", ns.seg.path, ns.pos, ns.err, err))
	}
	ns.seg.alloc = ns.pos
	if ns.from > 0 && (l.opts.Sync.Mode == SyncBatch || l.opts.Sync.Mode == SyncAlways) {
		if err := l.fsync(ns.seg.f); err != nil {
			return l.fail(fmt.Errorf("fsyncing %q: %w", ns.seg.path, err))
		}
	}
	r := &batch{}
	var voided []uint64
	for i := ns.from; i < len(w.recs); i++ {
		m := w.recs[i]
		if m.keep {
			r.buf = append(r.buf, w.buf[w.recStart(i):m.end]...)
		} else {
			r.buf = appendRecord(r.buf, m.seq, m.ts, nil)
			voided = append(voided, m.seq)
		}
		r.recs = append(r.recs, recMeta{seq: m.seq, ts: m.ts, end: len(r.buf), keep: true})
		r.last = m.seq
	}
	full := fmt.Errorf("%w: %w", ErrNoSpace, ns.err)
	l.mu.Lock()
	l.retry = r
	l.full = full
	if ns.from > 0 {
		l.durable = w.recs[ns.from-1].seq
		l.written = l.durable
		l.synced = max(l.synced, l.durable)
	}
	for _, seq := range voided {
		if n := len(l.voids); n > 0 && l.voids[n-1].to+1 == seq && l.voids[n-1].err == full {
			l.voids[n-1].to = seq
			continue
		}
		l.voids = append(l.voids, seqRange{seq, seq, full})
	}
	if n := len(l.voids); n > maxVoidRanges {
		l.voids = append(l.voids[:0], l.voids[n-maxVoidRanges:]...)
	}
	l.mu.Unlock()
	if len(voided) > 0 && l.opts.OnVoid != nil {
		l.opts.OnVoid(voided)
	}
	return full
}

// writeBatch writes b to the active segment, rotating when a segment would
// exceed SegmentBytes, and fsyncs per policy. Only the flusher calls it.
func (l *Log) writeBatch(b *batch) error {
	l.mu.Lock()
	act := l.segs[len(l.segs)-1]
	size := act.size
	l.mu.Unlock()

	mode := l.opts.Sync.Mode
	from := 0 // first record not yet written
	for i := range b.recs {
		if size > 0 && size+int64(b.recs[i].end-b.recStart(from)) > l.opts.SegmentBytes {
			if _, err := l.writeChunk(act, b, from, i, size); err != nil {
				return l.writeErr(err, from, act, size)
			}
			from = i
			l.mu.Lock()
			size = act.size
			l.mu.Unlock()
			next, err := l.rotate(act, b.recs[i].seq)
			if err != nil {
				return l.writeErr(err, from, act, size)
			}
			act, size = next, 0
		}
		if mode == SyncAlways {
			n, err := l.writeChunk(act, b, from, i+1, size)
			if err != nil {
				return l.writeErr(err, from, act, size)
			}
			if err := l.fsync(act.f); err != nil {
				return fmt.Errorf("fsyncing %q: %w", act.path, err)
			}
			size += n
			from = i + 1
		}
	}
	if from < len(b.recs) {
		if _, err := l.writeChunk(act, b, from, len(b.recs), size); err != nil {
			return l.writeErr(err, from, act, size)
		}
	}
	if mode == SyncBatch {
		if err := l.fsync(act.f); err != nil {
			return fmt.Errorf("fsyncing %q: %w", act.path, err)
		}
	}
	l.mu.Lock()
	l.written = b.last
	if mode == SyncBatch || mode == SyncAlways {
		l.synced = b.last
	}
	l.mu.Unlock()
	return nil
}

// writeErr returns err, as a *noSpaceError if it is a lack of space
// (records [from:] of the batch not written, a partial write in s at pos).
func (l *Log) writeErr(err error, from int, s *segment, pos int64) error {
	if isNoSpace(err) {
		return &noSpaceError{from: from, seg: s, pos: pos, err: err}
	}
	return err
}

// recStart returns the buffer offset where record i starts.
func (b *batch) recStart(i int) int {
	if i == 0 {
		return 0
	}
	return b.recs[i-1].end
}

// writeChunk writes records [from, upto) of b at offset pos of segment s,
// then publishes them to readers. It returns the bytes written.
func (l *Log) writeChunk(s *segment, b *batch, from, upto int, pos int64) (int64, error) {
	if upto <= from {
		return 0, nil
	}
	start, end := b.recStart(from), b.recs[upto-1].end
	l.preallocate(s, pos+int64(end-start))
	if h := l.opts.WriteHook; h != nil {
		if err := h(s.path, pos, end-start); err != nil {
			_, _ = s.f.WriteAt(b.buf[start:start+(end-start)/2], pos) // a partial write
			return 0, fmt.Errorf("writing %q at offset %d: %w", s.path, pos, err)
		}
	}
	if _, err := s.f.WriteAt(b.buf[start:end], pos); err != nil {
		return 0, fmt.Errorf("writing %q at offset %d: %w", s.path, pos, err)
	}
	l.mu.Lock()
	for i := from; i < upto; i++ {
		r := b.recs[i]
		rs := b.recStart(i)
		s.addRecordLocked(r.seq, r.ts, pos+int64(rs-start), int64(r.end-rs), l.opts.IndexInterval)
	}
	l.written = b.recs[upto-1].seq
	l.total += int64(end - start)
	l.mu.Unlock()
	l.unsynced.Add(int64(upto - from))
	return int64(end - start), nil
}

// rotate seals act (fsyncing it unless the policy is never) and starts a new
// segment whose first record will be base.
func (l *Log) rotate(act *segment, base uint64) (*segment, error) {
	if err := l.trimAlloc(act); err != nil {
		return nil, err
	}
	if l.opts.Sync.Mode != SyncNever {
		if err := l.fsync(act.f); err != nil {
			return nil, fmt.Errorf("fsyncing %q before rotation: %w", act.path, err)
		}
	}
	s, err := openSegment(l.dir, base, true)
	if err != nil {
		return nil, err
	}
	if err := SyncDir(l.dir); err != nil {
		s.f.Close()
		return nil, err
	}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	l.applyRetention()
	return s, nil
}

// preallocate makes sure s's file is at least need bytes long, extending it
// by Options.Preallocate at a time (up to the segment size) so that most
// writes land in space that already belongs to the file. Only the flusher
// calls it. Failure is not an error: the write that follows grows the
// file itself (and fails, if the disk is full).
func (l *Log) preallocate(s *segment, need int64) {
	if !l.prealloc || need <= s.alloc {
		return
	}
	end := max(need, min(s.alloc+l.opts.Preallocate, l.opts.SegmentBytes))
	err := fallocate(s.f, s.alloc, end-s.alloc)
	switch {
	case err == nil:
		s.alloc = end
	case errors.Is(err, errors.ErrUnsupported):
		l.prealloc = false
	}
}

// trimAlloc cuts the preallocated zeros off the end of s's file, so that a
// sealed segment, or the active one after Close, holds only its records.
// Only the flusher calls it, or Close after the flusher stopped.
func (l *Log) trimAlloc(s *segment) error {
	l.mu.Lock()
	size := s.size
	l.mu.Unlock()
	if s.alloc <= size {
		return nil
	}
	if err := s.f.Truncate(size); err != nil {
		return fmt.Errorf("truncating preallocated tail of %q at %d: %w", s.path, size, err)
	}
	s.alloc = size
	return nil
}

func (l *Log) fsync(f *os.File) error {
	l.syncs.Add(1)
	if l.opts.OnFsync == nil {
		l.unsynced.Store(0)
		return f.Sync()
	}
	// Records written while this fsync runs are counted by the next one.
	records := l.unsynced.Swap(0)
	start := time.Now()
	if err := f.Sync(); err != nil {
		return err
	}
	l.opts.OnFsync(time.Since(start), int(records))
	return nil
}

// Syncs returns how many fsyncs the log has issued on segment files.
func (l *Log) Syncs() uint64 { return l.syncs.Load() }
