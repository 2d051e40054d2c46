package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the write-behind buffer's database
)

// Codec turns values into bytes and back, for the write-behind buffer and
// the Redis tier.
type Codec[V any] struct {
	Encode func(V) ([]byte, error)
	Decode func([]byte) (V, error)
}

// BytesCodec stores []byte values as they are.
func BytesCodec() Codec[[]byte] {
	return Codec[[]byte]{
		Encode: func(b []byte) ([]byte, error) { return b, nil },
		Decode: func(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil },
	}
}

// StringCodec stores string values as their bytes.
func StringCodec() Codec[string] {
	return Codec[string]{
		Encode: func(s string) ([]byte, error) { return []byte(s), nil },
		Decode: func(b []byte) (string, error) { return string(b), nil },
	}
}

// Write is one buffered write: a value to save, or a key to remove.
type Write[V any] struct {
	Key    string
	Value  V    // unset when Delete
	Delete bool // remove Key from the store
}

// BatchStore is a Store that can apply many writes at once (one
// transaction, one round trip). WriteBehind uses it when the Store has it.
type BatchStore[V any] interface {
	SaveBatch(ctx context.Context, writes []Write[V]) error
}

// ErrBufferFull is returned by WriteBehind.Set and Delete while
// MaxPending writes wait for the store.
var ErrBufferFull = errors.New("write-behind: buffer full")

// WriteBehindOptions configures a WriteBehind.
type WriteBehindOptions[V any] struct {
	// Path is the SQLite file of the durable buffer (created if absent).
	// One WriteBehind per file: it is opened with an exclusive lock.
	// Required.
	Path string
	// Codec encodes values into the buffer. Required.
	Codec Codec[V]
	// BatchSize is the most writes sent to the store in one flush
	// (one SaveBatch, or that many Save/Remove calls). Default 256.
	BatchSize int
	// FlushDelay is how long the flusher waits for a batch to fill after
	// the first write arrives. Default 20ms.
	FlushDelay time.Duration
	// MinBackoff and MaxBackoff bound the doubling wait between flush
	// retries while the store fails. Defaults 50ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// MaxPending bounds the writes buffered and not yet in the store;
	// beyond it Set fails with ErrBufferFull. Default 100000.
	MaxPending int
	// OnFlushError, if set, is called (from the flusher) with each failed
	// flush before it is retried.
	OnFlushError func(error)
}

// WithDefaults returns o with zero fields set to their defaults.
func (o WriteBehindOptions[V]) WithDefaults() WriteBehindOptions[V] {
	if o.BatchSize == 0 {
		o.BatchSize = 256
	}
	if o.FlushDelay == 0 {
		o.FlushDelay = 20 * time.Millisecond
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.MaxPending == 0 {
		o.MaxPending = 100_000
	}
	return o
}

// Validate reports every problem in o at once.
func (o WriteBehindOptions[V]) Validate() error {
	var errs []error
	if o.Path == "" {
		errs = append(errs, errors.New("path: required (the buffer's SQLite file)"))
	}
	if o.Codec.Encode == nil || o.Codec.Decode == nil {
		errs = append(errs, errors.New("codec: Encode and Decode are required"))
	}
	if o.BatchSize < 0 || o.MaxPending < 0 || o.FlushDelay < 0 || o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff {
		errs = append(errs, fmt.Errorf("batch size %d, max pending %d, flush delay %s, backoff %s..%s: must not be negative, min backoff <= max",
			o.BatchSize, o.MaxPending, o.FlushDelay, o.MinBackoff, o.MaxBackoff))
	}
	return errors.Join(errs...)
}

// The buffer's schema. seq orders writes (AUTOINCREMENT: never reused, so
// order survives a buffer that empties). A row is deleted only after the
// store has its write.
const behindSchema = `CREATE TABLE IF NOT EXISTS write_behind (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	key TEXT NOT NULL,
	del INTEGER NOT NULL,
	val BLOB
)`

// WriteBehind acknowledges a write once it is committed to a durable local
// buffer (SQLite, WAL mode, synchronous=FULL: fsynced before Set returns),
// and a background flusher applies buffered writes to the store in batches,
// in write order, retrying with backoff while the store fails. Nothing
// acknowledged is lost if the process dies: the next OpenWriteBehind on
// the same file replays the buffer. Delivery to the store is at least
// once (a batch is re-sent if the process dies between the store's
// commit and the buffer's cleanup), which is harmless for Save/Remove of
// whole values.
//
// Reads see writes still in the buffer (read-your-writes in this process);
// other replicas see them once flushed. Safe for concurrent use.
type WriteBehind[V any] struct {
	cache Layer[V]
	store Store[V]
	opts  WriteBehindOptions[V]
	db    *sql.DB

	reqs      chan *appendReq
	kick      chan struct{}
	quit      chan struct{}
	wg        sync.WaitGroup // committer and flusher
	appending sync.WaitGroup // appends accepted before Close

	commits atomic.Uint64 // buffer transactions (group commits) so far

	mu       sync.Mutex
	pending  map[string]pendingWrite[V] // newest unflushed write per key
	npending int                        // unflushed rows
	lastSeq  int64                      // newest acknowledged
	flushed  int64                      // every seq <= flushed is in the store
	progress chan struct{}              // closed and replaced when flushed moves
	closed   bool
}

type pendingWrite[V any] struct {
	seq int64
	w   Write[V]
}

type appendReq struct {
	key  string
	del  bool
	val  []byte
	seq  int64
	err  error
	done chan struct{}
}

// OpenWriteBehind opens (or creates) the buffer at opts.Path, replays the
// writes a previous process left in it and starts the flusher. Close stops
// it.
func OpenWriteBehind[V any](cache Layer[V], store Store[V], opts WriteBehindOptions[V]) (*WriteBehind[V], error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("write-behind options: %w", err)
	}
	opts = opts.WithDefaults()
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "locking_mode(EXCLUSIVE)", "busy_timeout(1000)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+opts.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("write-behind: opening buffer %s: %w", opts.Path, err)
	}
	db.SetMaxOpenConns(1) // one connection holds the exclusive lock for the buffer's life
	w := &WriteBehind[V]{
		cache: cache, store: store, opts: opts, db: db,
		reqs: make(chan *appendReq, 1024), kick: make(chan struct{}, 1), quit: make(chan struct{}),
		pending: make(map[string]pendingWrite[V]), progress: make(chan struct{}),
	}
	if err := w.replay(); err != nil {
		db.Close()
		return nil, err
	}
	w.wg.Add(2)
	go w.committer()
	go w.flusher()
	return w, nil
}

func (w *WriteBehind[V]) replay() error {
	ctx := context.Background()
	if _, err := w.db.ExecContext(ctx, behindSchema); err != nil {
		return fmt.Errorf("write-behind: creating buffer table in %s: %w", w.opts.Path, err)
	}
	rows, err := w.db.QueryContext(ctx, `SELECT seq, key, del, val FROM write_behind ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("write-behind: reading buffer %s: %w", w.opts.Path, err)
	}
	defer rows.Close()
	for rows.Next() {
		pw, err := w.scan(rows)
		if err != nil {
			return err
		}
		w.pending[pw.w.Key] = pw
		w.npending++
		w.lastSeq = pw.seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("write-behind: reading buffer %s: %w", w.opts.Path, err)
	}
	if w.npending > 0 {
		w.flushed = 0
	} else {
		w.flushed = w.lastSeq
	}
	return nil
}

func (w *WriteBehind[V]) scan(rows *sql.Rows) (pendingWrite[V], error) {
	var pw pendingWrite[V]
	var raw []byte
	if err := rows.Scan(&pw.seq, &pw.w.Key, &pw.w.Delete, &raw); err != nil {
		return pw, fmt.Errorf("write-behind: reading buffer row: %w", err)
	}
	if !pw.w.Delete {
		v, err := w.opts.Codec.Decode(raw)
		if err != nil {
			return pw, fmt.Errorf("write-behind: decoding buffered value of %q (seq %d): %w", pw.w.Key, pw.seq, err)
		}
		pw.w.Value = v
	}
	return pw, nil
}

// Set buffers v for key durably, then returns: the store gets it later.
func (w *WriteBehind[V]) Set(ctx context.Context, key string, v V) error {
	raw, err := w.opts.Codec.Encode(v)
	if err != nil {
		return fmt.Errorf("write-behind: encoding value of %q: %w", key, err)
	}
	return w.append(ctx, Write[V]{Key: key, Value: v}, raw)
}

// Delete buffers the removal of key durably, then returns.
func (w *WriteBehind[V]) Delete(ctx context.Context, key string) error {
	return w.append(ctx, Write[V]{Key: key, Delete: true}, nil)
}

func (w *WriteBehind[V]) append(ctx context.Context, wr Write[V], raw []byte) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("write-behind: writing %q: %w", wr.Key, ErrClosed)
	}
	if w.npending >= w.opts.MaxPending {
		w.mu.Unlock()
		return fmt.Errorf("write-behind: writing %q: %d writes wait for the store: %w", wr.Key, w.npending, ErrBufferFull)
	}
	w.npending++ // reserved; given back if the append fails
	w.appending.Add(1)
	w.mu.Unlock()
	defer w.appending.Done()

	r := &appendReq{key: wr.Key, del: wr.Delete, val: raw, done: make(chan struct{})}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		w.unreserve()
		return fmt.Errorf("write-behind: writing %q: %w", wr.Key, ctx.Err())
	}
	<-r.done // the committer always answers; the commit is not cancellable half-way
	if r.err != nil {
		w.unreserve()
		return fmt.Errorf("write-behind: writing %q to the buffer: %w", wr.Key, r.err)
	}
	w.mu.Lock()
	if cur, ok := w.pending[wr.Key]; !ok || cur.seq < r.seq {
		w.pending[wr.Key] = pendingWrite[V]{seq: r.seq, w: wr}
	}
	w.lastSeq = max(w.lastSeq, r.seq)
	w.mu.Unlock()
	// The buffer, not the cache, answers reads until the flush: an older
	// cached value must go. The flusher caches the value once stored.
	w.cache.Invalidate(ctx, wr.Key)
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

func (w *WriteBehind[V]) unreserve() {
	w.mu.Lock()
	w.npending--
	w.mu.Unlock()
}

// committer appends queued writes to the buffer, many per transaction
// (group commit: one fsync for every write that arrived meanwhile).
func (w *WriteBehind[V]) committer() {
	defer w.wg.Done()
	batch := make([]*appendReq, 0, 256)
	for {
		select {
		case r := <-w.reqs:
			batch = append(batch[:0], r)
		case <-w.quit:
			return // Close waited for every accepted append
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		w.commit(batch)
	}
}

func (w *WriteBehind[V]) commit(batch []*appendReq) {
	err := func() error {
		tx, err := w.db.Begin()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st, err := tx.Prepare(`INSERT INTO write_behind (key, del, val) VALUES (?, ?, ?) RETURNING seq`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range batch {
			if err := st.QueryRow(r.key, r.del, r.val).Scan(&r.seq); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	w.commits.Add(1)
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

// flusher sends buffered writes to the store, oldest first, in batches.
func (w *WriteBehind[V]) flusher() {
	defer w.wg.Done()
	// Close cancels a store call in progress rather than wait on a hung store.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-w.quit
		cancel()
	}()
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			if !w.sleep(backoff) {
				return
			}
		}
		n, err := w.flushOnce(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return // closing
		case err != nil:
			if w.opts.OnFlushError != nil {
				w.opts.OnFlushError(err)
			}
			backoff = min(max(2*backoff, w.opts.MinBackoff), w.opts.MaxBackoff)
			continue
		case n == w.opts.BatchSize:
			backoff = 0
			continue // more is waiting
		}
		backoff = 0
		select {
		case <-w.quit:
			return
		case <-w.kick:
			// Let a batch gather unless one is already full.
			if !w.sleep(w.opts.FlushDelay) {
				return
			}
		}
	}
}

// sleep waits d; false if Close came first.
func (w *WriteBehind[V]) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.quit:
		return false
	}
}

// flushOnce moves up to BatchSize of the oldest buffered writes to the
// store and returns how many it moved.
func (w *WriteBehind[V]) flushOnce(ctx context.Context) (int, error) {
	rows, err := w.db.QueryContext(ctx, `SELECT seq, key, del, val FROM write_behind ORDER BY seq LIMIT ?`, w.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("write-behind: reading buffer: %w", err)
	}
	var batch []pendingWrite[V]
	for rows.Next() {
		pw, err := w.scan(rows)
		if err != nil {
			rows.Close()
			return 0, err
		}
		batch = append(batch, pw)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("write-behind: reading buffer: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	// Keep only each key's newest write, in the order of those writes.
	last := make(map[string]int, len(batch))
	for i, pw := range batch {
		last[pw.w.Key] = i
	}
	writes := make([]Write[V], 0, len(last))
	kept := make([]pendingWrite[V], 0, len(last))
	for i, pw := range batch {
		if last[pw.w.Key] == i {
			writes = append(writes, pw.w)
			kept = append(kept, pw)
		}
	}
	if err := w.apply(ctx, writes); err != nil {
		return 0, fmt.Errorf("write-behind: flushing %d writes to the store: %w", len(writes), err)
	}
	upto := batch[len(batch)-1].seq
	if _, err := w.db.ExecContext(ctx, `DELETE FROM write_behind WHERE seq <= ?`, upto); err != nil {
		return 0, fmt.Errorf("write-behind: trimming buffer after a flush: %w", err)
	}
	w.mu.Lock()
	var toCache []Write[V]
	for _, pw := range kept {
		if cur, ok := w.pending[pw.w.Key]; ok && cur.seq == pw.seq {
			delete(w.pending, pw.w.Key)
			toCache = append(toCache, pw.w)
		}
	}
	w.mu.Unlock()
	// Cache what is now stored before Flush's waiters hear of it.
	for _, wr := range toCache {
		if wr.Delete {
			w.cache.Invalidate(ctx, wr.Key)
		} else {
			w.cache.Put(ctx, wr.Key, wr.Value)
		}
	}
	w.mu.Lock()
	w.npending -= len(batch)
	w.flushed = upto
	close(w.progress)
	w.progress = make(chan struct{})
	w.mu.Unlock()
	return len(batch), nil
}

func (w *WriteBehind[V]) apply(ctx context.Context, writes []Write[V]) error {
	if bs, ok := w.store.(BatchStore[V]); ok {
		return bs.SaveBatch(ctx, writes)
	}
	for _, wr := range writes {
		var err error
		if wr.Delete {
			err = w.store.Remove(ctx, wr.Key)
		} else {
			err = w.store.Save(ctx, wr.Key, wr.Value)
		}
		if err != nil {
			return fmt.Errorf("key %q: %w", wr.Key, err)
		}
	}
	return nil
}

// Get returns key's value: a write still in the buffer first, then the
// cache, loading misses from the store.
func (w *WriteBehind[V]) Get(ctx context.Context, key string) (V, error) {
	w.mu.Lock()
	pw, ok := w.pending[key]
	w.mu.Unlock()
	if ok {
		if pw.w.Delete {
			var zero V
			return zero, ErrNotFound
		}
		return pw.w.Value, nil
	}
	return w.cache.GetOrLoad(ctx, key, w.store.Load)
}

// Pending returns how many acknowledged writes wait for the store.
func (w *WriteBehind[V]) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.npending
}

// Flush waits until every write acknowledged before the call is in the
// store, or ctx ends.
func (w *WriteBehind[V]) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.lastSeq
	for w.flushed < target && w.npending > 0 {
		ch := w.progress
		w.mu.Unlock()
		select {
		case w.kick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("write-behind: flush: %w", ctx.Err())
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	return nil
}

// Close stops the flusher (cancelling a store call in progress) and closes
// the buffer. Writes not yet flushed stay in the buffer for the next
// OpenWriteBehind; call Flush first to drain them.
func (w *WriteBehind[V]) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	w.appending.Wait()
	close(w.quit)
	w.wg.Wait()
	return w.db.Close()
}
