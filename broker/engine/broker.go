// Package engine is switchyard's message broker itself: durable queues
// with competing consumers, acks, visibility timeouts, dead-letter queues,
// delays, TTLs, ordering by key, producer dedup and back pressure, topics
// and streams, all persisted through a write-ahead log (package wal), with
// Prometheus metrics. Its messages, settings and errors are the types of
// package broker; front ends (broker/httpapi, broker/native) serve an
// engine, clients (broker/client, broker/local) never import it.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/wal"
)

const metaName = "broker.json"

// meta is the durable catalogue of queues, replaced atomically on change.
type meta struct {
	NextID  uint32                        `json:"next_id"`
	Queues  map[string]metaQueue          `json:"queues"`
	Topics  map[string]broker.TopicConfig `json:"topics,omitempty"`
	Streams map[string]metaStream         `json:"streams,omitempty"`
}

type metaStream struct {
	ID     uint32              `json:"id"`
	Config broker.StreamConfig `json:"config"`
}

type metaQueue struct {
	ID     uint32             `json:"id"`
	Config broker.QueueConfig `json:"config"`
}

// Broker owns the log and the queues. It is safe for concurrent use.
type Broker struct {
	cfg  Config
	log  *wal.Log
	lock *wal.DirLock // held from Open to Close: one broker per data directory

	mu      sync.RWMutex
	queues  map[string]*queue
	byID    map[uint32]*queue
	topics  map[string]*topic
	streams map[string]*stream
	nextID  uint32
	closed  bool

	metaStreams map[string]metaStream // catalogue entries until opened
	metrics     *metrics              // nil unless Config.Metrics is set

	bufs   sync.Pool    // *[]byte record encoding buffers
	metaMu sync.Mutex   // serializes catalogue writes
	opMu   sync.RWMutex // moves hold it for reading, compaction for writing

	quit chan struct{}
	done chan struct{}
}

// Open opens the broker in cfg.Dir, replaying the log to rebuild every
// queue: messages that were in flight when the process stopped become
// visible again.
func Open(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("broker config: %w", err)
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	lock, err := wal.LockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	b, err := open(cfg, lock)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	return b, nil
}

func open(cfg Config, lock *wal.DirLock) (*Broker, error) {
	b := &Broker{
		lock:    lock,
		cfg:     cfg,
		queues:  make(map[string]*queue),
		byID:    make(map[uint32]*queue),
		topics:  make(map[string]*topic),
		streams: make(map[string]*stream),
		nextID:  1,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := b.loadMeta(); err != nil {
		return nil, err
	}
	if cfg.Metrics != nil {
		m, err := newMetrics(b, cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("registering broker metrics: %w", err)
		}
		b.metrics = m
	}
	l, err := wal.Open(filepath.Join(cfg.Dir, "log"), wal.Options{
		SegmentBytes:   cfg.SegmentBytes,
		Sync:           cfg.Fsync,
		Now:            cfg.Now,
		OnFsync:        b.metrics.fsyncHook(queueLogLabel),
		Preallocate:    cfg.Preallocate,
		OnVoid:         b.forgetVoided,
		MaxRecordBytes: maxRecordBytes,
		WriteHook:      cfg.WriteHook,
	})
	if err != nil {
		b.metrics.unregister()
		return nil, fmt.Errorf("opening log: %w", err)
	}
	b.log = l
	if err := b.replay(); err != nil {
		l.Close()
		b.metrics.unregister()
		return nil, err
	}
	if err := b.openStreams(); err != nil {
		l.Close()
		b.metrics.unregister()
		return nil, err
	}
	go b.loop()
	return b, nil
}

// Recovery reports what the log repair found on open.
func (b *Broker) Recovery() wal.Recovery { return b.log.Recovery() }

func (b *Broker) loadMeta() error {
	p := filepath.Join(b.cfg.Dir, metaName)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %q: %w", p, err)
	}
	var m meta
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("parsing %q: %w", p, err)
	}
	b.nextID = max(m.NextID, 1)
	for name, mq := range m.Queues {
		q := newQueue(name, mq.ID, mq.Config)
		b.queues[name] = q
		b.byID[mq.ID] = q
	}
	for name, tc := range m.Topics {
		b.topics[name] = &topic{name: name, cfg: tc.WithDefaults(), subs: make(map[*Subscription]struct{})}
	}
	b.metaStreams = m.Streams
	return nil
}

// openStreams opens the streams listed in the catalogue.
func (b *Broker) openStreams() error {
	for name, ms := range b.metaStreams {
		s, err := b.openStream(name, ms.ID, ms.Config)
		if err != nil {
			for _, o := range b.streams {
				o.close()
			}
			return err
		}
		b.streams[name] = s
	}
	b.metaStreams = nil
	return nil
}

// saveMetaLocked writes the catalogue. Caller holds b.mu.
func (b *Broker) saveMetaLocked() error {
	m := meta{NextID: b.nextID, Queues: make(map[string]metaQueue, len(b.queues))}
	for name, q := range b.queues {
		m.Queues[name] = metaQueue{ID: q.id, Config: q.cfg}
	}
	if len(b.topics) > 0 {
		m.Topics = make(map[string]broker.TopicConfig, len(b.topics))
		for name, t := range b.topics {
			m.Topics[name] = t.cfg
		}
	}
	if len(b.streams) > 0 {
		m.Streams = make(map[string]metaStream, len(b.streams))
		for name, s := range b.streams {
			m.Streams[name] = metaStream{ID: s.id, Config: s.cfg}
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b.metaMu.Lock()
	defer b.metaMu.Unlock()
	if err := wal.WriteFileAtomic(b.cfg.Dir, metaName, data); err != nil {
		return fmt.Errorf("saving queue catalogue: %w", err)
	}
	return nil
}

// replay rebuilds the queues from the log.
func (b *Broker) replay() error {
	now := b.cfg.Now().UnixNano()
	err := b.log.Scan(0, func(r wal.Record) error {
		if len(r.Payload) == 0 {
			return fmt.Errorf("replaying log record %d: %w: empty", r.Seq, errBadRecord)
		}
		if err := b.apply(r.Seq, r.Payload[0], r.Payload[1:], now); err != nil {
			return fmt.Errorf("replaying log record %d: %w", r.Seq, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return nil
}

// apply replays one record. Records naming deleted queues are skipped.
func (b *Broker) apply(seq uint64, op byte, body []byte, now int64) error {
	switch op {
	case opPublish:
		r, err := decodePublish(body)
		if err != nil {
			return err
		}
		if src := b.byID[r.fromQueue]; src != nil {
			if m := src.msgs[r.fromSeq]; m != nil {
				src.retireLocked(m, now, b.moveOutcome(&r))
			}
		}
		q := b.byID[r.queue]
		if q == nil {
			return nil
		}
		m := newMessage(seq, &r)
		if q.expiredByRetention(m, now) {
			return nil
		}
		q.insertLocked(m, now)
		if now-r.publishedAt <= int64(q.cfg.DedupWindow) {
			q.rememberLocked(r.msgID, seq, r.publishedAt)
		}
	case opAck, opDeliver, opNack:
		qid, at, seqs, err := decodeSeqs(op, body)
		if err != nil {
			return err
		}
		q := b.byID[qid]
		if q == nil {
			return nil
		}
		for _, s := range seqs {
			m := q.msgs[s]
			if m == nil {
				continue
			}
			switch op {
			case opAck:
				q.retireLocked(m, now, acked) // also a replayed drop: it was logged as an ack
			case opDeliver:
				m.deliveries++
			case opNack:
				if m.state == stReady || m.state == stDelayed {
					q.unheapLocked(m)
					m.availableAt = at
					q.placeLocked(m, now)
				} else {
					m.availableAt = at
				}
			}
		}
	default:
		return fmt.Errorf("%w: unknown operation %d", errBadRecord, op)
	}
	return nil
}

func newMessage(seq uint64, r *pubRecord) *message {
	return &message{
		seq:         seq,
		msgID:       r.msgID,
		key:         r.key,
		headers:     r.headers,
		body:        r.body,
		publishedAt: r.publishedAt,
		expiresAt:   r.expiresAt,
		availableAt: r.availableAt,
		hidx:        -1,
	}
}

// Close stops the background work and closes the log (fsyncing it).
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return broker.ErrClosed
	}
	b.closed = true
	for _, q := range b.queues {
		q.mu.Lock()
		q.gone = broker.ErrClosed
		q.signalReadyLocked()
		q.signalSpaceLocked()
		q.mu.Unlock()
	}
	for _, t := range b.topics {
		t.endAll(broker.ErrClosed)
	}
	var errs []error
	for name, s := range b.streams {
		if err := s.close(); err != nil {
			errs = append(errs, fmt.Errorf("closing stream %q: %w", name, err))
		}
	}
	b.mu.Unlock()
	close(b.quit)
	<-b.done
	if err := b.log.Close(); err != nil {
		errs = append(errs, err)
	}
	b.metrics.unregister()
	if err := b.lock.Unlock(); err != nil {
		errs = append(errs, fmt.Errorf("releasing data directory lock: %w", err))
	}
	return errors.Join(errs...)
}

// loop runs timers: delays, visibility timeouts, TTL sweeps, dedup pruning
// and log compaction. It exits on Close.
func (b *Broker) loop() {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.TickInterval.Std())
	defer tick.Stop()
	compact := time.NewTicker(b.cfg.CompactInterval.Std())
	defer compact.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.quit
		cancel()
	}()
	for {
		select {
		case <-b.quit:
			return
		case <-tick.C:
			b.tick(ctx)
		case <-compact.C:
			b.sweep(ctx)
			b.compact()
		}
	}
}

func (b *Broker) queueList() []*queue {
	b.mu.RLock()
	defer b.mu.RUnlock()
	qs := make([]*queue, 0, len(b.queues))
	for _, q := range b.queues {
		qs = append(qs, q)
	}
	return qs
}

func (b *Broker) tick(ctx context.Context) {
	now := b.cfg.Now().UnixNano()
	durable := b.log.DurableSeq()
	b.opMu.RLock()
	defer b.opMu.RUnlock()
	var dead []deadMsg
	for _, q := range b.queueList() {
		q.mu.Lock()
		q.promoteLocked(durable, now, nil)
		dead = q.tickLocked(now, dead)
		q.mu.Unlock()
	}
	if len(dead) > 0 {
		b.deadLetter(ctx, dead)
	}
}

func (b *Broker) sweep(ctx context.Context) {
	now := b.cfg.Now().UnixNano()
	b.opMu.RLock()
	defer b.opMu.RUnlock()
	var dead []deadMsg
	for _, q := range b.queueList() {
		q.mu.Lock()
		q.pruneDedupLocked(now)
		dead = q.sweepLocked(now, dead)
		q.mu.Unlock()
	}
	if len(dead) > 0 {
		b.deadLetter(ctx, dead)
	}
}

// compact deletes log segments that hold no live message. It finds the
// oldest record still needed with every operation held off (b.opMu), then
// deletes files with them running again: later operations only need
// records at or above that point, and unlinking a 64 MiB segment can take
// milliseconds (more with online discard).
func (b *Broker) compact() {
	if low := b.compactPoint(); low > 0 {
		if n, _ := b.log.DeleteBefore(low); n > 0 && b.log.Full() != nil {
			b.log.Retry() // space was freed: try the held records now
		}
	}
}

// forgetVoided drops the pending messages whose publish or move records
// were voided by a full disk (wal.Options.OnVoid): they will never be
// durable, so they must never become visible. Publishers waiting for them
// get the error; NoWait publishers lose them (at-most-once).
func (b *Broker) forgetVoided(seqs []uint64) {
	void := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		void[s] = true
	}
	for _, q := range b.queueList() {
		q.mu.Lock()
		for i := 0; i < len(q.pending); {
			if m := q.pending[i]; void[m.seq] {
				q.forgetPendingLocked(i)
				continue
			}
			i++
		}
		q.mu.Unlock()
	}
}

// compactPoint returns the lowest sequence the broker still needs.
func (b *Broker) compactPoint() uint64 {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	low := b.log.DurableSeq() + 1
	var window time.Duration
	for _, q := range b.queueList() {
		q.mu.Lock()
		if s := q.minSeqLocked(); s != 0 && s < low {
			low = s
		}
		window = max(window, q.cfg.DedupWindow.Std())
		q.mu.Unlock()
	}
	// Keep the publish records of the dedup window, even of consumed
	// messages, so that producer ids are still recognised after a restart.
	if window > 0 {
		if s, err := b.log.SeqAtTime(b.cfg.Now().Add(-window)); err == nil && s < low {
			low = s
		}
	}
	return low
}

// Declare creates the queue or updates its settings. A dead-letter queue
// it names is created with default settings if missing.
func (b *Broker) Declare(name string, cfg broker.QueueConfig) error {
	_, err := b.declare(name, cfg, false)
	return err
}

// DeclareIfAbsent creates the queue with cfg (and its dead-letter queue)
// if it does not exist and leaves an existing one as it is. created says
// which.
func (b *Broker) DeclareIfAbsent(name string, cfg broker.QueueConfig) (created bool, err error) {
	return b.declare(name, cfg, true)
}

func (b *Broker) declare(name string, cfg broker.QueueConfig, ifAbsent bool) (bool, error) {
	if !broker.ValidName(name) {
		return false, fmt.Errorf("%w: queue name %q", broker.ErrInvalid, name)
	}
	if err := cfg.Validate(); err != nil {
		return false, fmt.Errorf("%w: queue %q: %w", broker.ErrInvalid, name, err)
	}
	if cfg.DeadLetter == name {
		// A message over max_deliveries would go round forever.
		return false, fmt.Errorf("%w: queue %q: dead_letter %q: a queue cannot be its own dead-letter queue (use %q to drop instead)",
			broker.ErrInvalid, name, name, broker.NoDeadLetter)
	}
	full := cfg.WithDefaults(name)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, broker.ErrClosed
	}
	q, exists := b.queues[name]
	if exists && ifAbsent {
		return false, nil
	}
	if exists {
		q.mu.Lock()
		q.cfg = full
		q.signalSpaceLocked()
		q.mu.Unlock()
	} else {
		b.addQueueLocked(name, cfg)
	}
	if dl := full.DeadLetter; dl != broker.NoDeadLetter && b.queues[dl] == nil {
		b.addQueueLocked(dl, broker.QueueConfig{})
	}
	return !exists, b.saveMetaLocked()
}

func (b *Broker) addQueueLocked(name string, cfg broker.QueueConfig) *queue {
	q := newQueue(name, b.nextID, cfg)
	b.nextID++
	b.queues[name] = q
	b.byID[q.id] = q
	return q
}

// DeleteQueue deletes a queue and its messages, and unbinds it from every
// topic it was bound to (in the same catalogue write: a topic never names
// a deleted queue). Waiting consumers and publishers get ErrNotFound.
func (b *Broker) DeleteQueue(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[name]
	if !ok {
		return fmt.Errorf("queue %q: %w", name, broker.ErrNotFound)
	}
	delete(b.queues, name)
	delete(b.byID, q.id)
	undo := b.unbindEverywhereLocked(name)
	if err := b.saveMetaLocked(); err != nil {
		b.queues[name] = q
		b.byID[q.id] = q
		undo()
		return err
	}
	q.mu.Lock()
	q.gone = fmt.Errorf("queue %q deleted: %w", name, broker.ErrNotFound)
	q.signalReadyLocked()
	q.signalSpaceLocked()
	q.mu.Unlock()
	return nil
}

func (b *Broker) queue(name string) (*queue, error) { return lookup(b, b.queues, "queue", name) }

// lookup finds a queue, topic or stream by name under the broker's lock:
// ErrClosed once the broker closed, ErrNotFound naming kind when absent.
func lookup[T any](b *Broker, m map[string]T, kind, name string) (T, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var zero T
	if b.closed {
		return zero, broker.ErrClosed
	}
	v, ok := m[name]
	if !ok {
		return zero, fmt.Errorf("%s %q: %w", kind, name, broker.ErrNotFound)
	}
	return v, nil
}

// Queue returns the queue's settings and counts.
func (b *Broker) Queue(name string) (broker.QueueInfo, error) {
	q, err := b.queue(name)
	if err != nil {
		return broker.QueueInfo{}, err
	}
	q.mu.Lock()
	info := broker.QueueInfo{
		Name:     name,
		Config:   q.cfg,
		InFlight: q.inflight.Len(),
		Delayed:  q.delayed.Len(),
	}
	info.Depth = len(q.msgs) + len(q.pending) - info.InFlight - info.Delayed
	dl := q.cfg.DeadLetter
	q.mu.Unlock()
	if dl != broker.NoDeadLetter {
		if d, err := b.queue(dl); err == nil {
			d.mu.Lock()
			info.DeadLettered = len(d.msgs) + len(d.pending)
			d.mu.Unlock()
		}
	}
	return info, nil
}

// Queues lists the queue names, sorted.
func (b *Broker) Queues() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	names := make([]string, 0, len(b.queues))
	for n := range b.queues {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// QueueConfig returns the queue's settings, defaults filled in.
func (b *Broker) QueueConfig(name string) (broker.QueueConfig, error) {
	q, err := b.queue(name)
	if err != nil {
		return broker.QueueConfig{}, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg, nil
}
