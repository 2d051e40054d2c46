package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/wal"
)

// Stream record payload: header count (uvarint), (name, value) strings as
// in queue records, then the body.

type stream struct {
	name string
	id   uint32
	cfg  broker.StreamConfig
	dir  string
	log  *wal.Log

	commitMu sync.Mutex // serializes writes of groups.json
	mu       sync.Mutex
	notify   chan struct{} // closed on append
	groups   map[string]uint64
	deleted  bool
	base     uint64 // the last durable offset when opened (appends since = DurableSeq - base)

	tooLarge atomic.Uint64 // appends refused above max_message_size
}

const groupsFile = "groups.json"

func (b *Broker) streamDir(id uint32) string {
	return filepath.Join(b.cfg.Dir, "streams", strconv.FormatUint(uint64(id), 10))
}

// openStream opens (creating) a stream's log and committed offsets.
func (b *Broker) openStream(name string, id uint32, cfg broker.StreamConfig) (*stream, error) {
	cfg = cfg.WithDefaults()
	dir := b.streamDir(id)
	l, err := wal.Open(dir, wal.Options{
		SegmentBytes:   cfg.SegmentBytes,
		Sync:           b.cfg.Fsync,
		MaxAge:         cfg.MaxAge.Std(),
		MaxBytes:       cfg.MaxBytes,
		MaxRecordBytes: maxRecordBytes, // not the stream's limit: that may be lowered after large messages were stored
		Now:            b.cfg.Now,
		OnFsync:        b.metrics.fsyncHook(streamLogLabel(name)),
		WriteHook:      b.cfg.WriteHook,
	})
	if err != nil {
		return nil, fmt.Errorf("opening stream %q: %w", name, err)
	}
	s := &stream{name: name, id: id, cfg: cfg, dir: dir, log: l, notify: make(chan struct{}), groups: map[string]uint64{},
		base: l.DurableSeq()}
	data, err := os.ReadFile(filepath.Join(dir, groupsFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		l.Close()
		return nil, fmt.Errorf("reading consumer groups of stream %q: %w", name, err)
	default:
		if err := json.Unmarshal(data, &s.groups); err != nil {
			l.Close()
			return nil, fmt.Errorf("parsing %q: %w", filepath.Join(dir, groupsFile), err)
		}
	}
	return s, nil
}

// DeclareStream creates a stream or updates its settings. An update
// applies retention (max_age, max_bytes) and max_message_size at once;
// segment_bytes applies from the next restart.
func (b *Broker) DeclareStream(name string, cfg broker.StreamConfig) error {
	_, err := b.declareStream(name, cfg, false)
	return err
}

// DeclareStreamIfAbsent creates the stream with cfg if it does not exist
// and leaves an existing one as it is. created says which.
func (b *Broker) DeclareStreamIfAbsent(name string, cfg broker.StreamConfig) (created bool, err error) {
	return b.declareStream(name, cfg, true)
}

func (b *Broker) declareStream(name string, cfg broker.StreamConfig, ifAbsent bool) (bool, error) {
	if !broker.ValidName(name) {
		return false, fmt.Errorf("%w: stream name %q", broker.ErrInvalid, name)
	}
	if err := cfg.Validate(); err != nil {
		return false, fmt.Errorf("%w: stream %q: %w", broker.ErrInvalid, name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, broker.ErrClosed
	}
	if s, ok := b.streams[name]; ok {
		if ifAbsent {
			return false, nil
		}
		cfg = cfg.WithDefaults()
		s.mu.Lock()
		s.cfg = cfg
		s.mu.Unlock()
		if err := b.saveMetaLocked(); err != nil {
			return false, err
		}
		return false, s.log.SetRetention(cfg.MaxAge.Std(), cfg.MaxBytes)
	}
	s, err := b.openStream(name, b.nextID, cfg)
	if err != nil {
		return false, err
	}
	b.nextID++
	b.streams[name] = s
	return true, b.saveMetaLocked()
}

// DeleteStream deletes a stream and its data.
func (b *Broker) DeleteStream(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.streams[name]
	if !ok {
		return fmt.Errorf("stream %q: %w", name, broker.ErrNotFound)
	}
	delete(b.streams, name)
	if err := b.saveMetaLocked(); err != nil {
		return err
	}
	s.close()
	b.metrics.forgetLog(streamLogLabel(name))
	return os.RemoveAll(s.dir)
}

func (s *stream) close() error {
	s.mu.Lock()
	s.deleted = true
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return s.log.Close()
}

func (b *Broker) stream(name string) (*stream, error) { return lookup(b, b.streams, "stream", name) }

// Stream returns a stream's settings and positions.
func (b *Broker) Stream(name string) (broker.StreamInfo, error) {
	s, err := b.stream(name)
	if err != nil {
		return broker.StreamInfo{}, err
	}
	s.mu.Lock()
	groups := make(map[string]uint64, len(s.groups))
	for g, o := range s.groups {
		groups[g] = o
	}
	cfg := s.cfg
	s.mu.Unlock()
	return broker.StreamInfo{Name: name, Config: cfg, FirstOffset: s.log.FirstSeq(), LastOffset: s.log.DurableSeq(),
		Bytes: s.log.Size(), Groups: groups}, nil
}

// Append appends a message to a stream and returns its offset once durable.
func (b *Broker) Append(ctx context.Context, name string, msg broker.Message) (uint64, error) {
	s, err := b.stream(name)
	if err != nil {
		return 0, err
	}
	s.mu.Lock() // a redeclaration may change the limit concurrently
	limit := s.cfg.MaxMessageSize
	s.mu.Unlock()
	if n := msg.Size(); n > limit {
		s.tooLarge.Add(1)
		return 0, fmt.Errorf("%w: %d bytes (id, key, headers and body), stream %q accepts at most %d", broker.ErrTooLarge, n, name, limit)
	}
	bp := b.getBuf()
	buf := encodeStreamRecord((*bp)[:0], msg.Headers, msg.Body)
	off, err := s.log.Append(ctx, buf)
	*bp = buf
	b.putBuf(bp)
	if err != nil {
		return 0, fmt.Errorf("appending to stream %q: %w", name, err)
	}
	s.wake()
	return off, nil
}

// AppendBatch appends msgs in order (their Headers and Body; other fields
// are not stored) and returns their offsets once all are durable: the
// batch costs one group commit. Every body is checked against the stream's
// max_message_size before any is written. On a write error or when ctx
// ends, some of the messages may be stored.
func (b *Broker) AppendBatch(ctx context.Context, name string, msgs []broker.Message) ([]uint64, error) {
	s, err := b.stream(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	limit := s.cfg.MaxMessageSize
	s.mu.Unlock()
	for i := range msgs {
		if n := msgs[i].Size(); n > limit {
			s.tooLarge.Add(1)
			return nil, fmt.Errorf("message %d of %d: %w: %d bytes (id, key, headers and body), stream %q accepts at most %d",
				i, len(msgs), broker.ErrTooLarge, n, name, limit)
		}
	}
	offs := make([]uint64, len(msgs))
	bp := b.getBuf()
	for i := range msgs {
		buf := encodeStreamRecord((*bp)[:0], msgs[i].Headers, msgs[i].Body)
		off, err := s.log.Enqueue(buf) // copies buf
		*bp = buf
		if err != nil {
			b.putBuf(bp)
			return nil, fmt.Errorf("appending message %d of %d to stream %q: %w", i, len(msgs), name, err)
		}
		offs[i] = off
	}
	b.putBuf(bp)
	if len(offs) == 0 {
		return offs, nil
	}
	// Records become durable in offset order: waiting for the last covers
	// the batch.
	if err := s.log.Wait(ctx, offs[len(offs)-1]); err != nil {
		return nil, fmt.Errorf("appending to stream %q: %w", name, err)
	}
	s.wake()
	return offs, nil
}

// wake tells waiting readers that messages were appended.
func (s *stream) wake() {
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

func encodeStreamRecord(b []byte, headers map[string]string, body []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(headers)))
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, headers[k])
	}
	return append(b, body...)
}

func decodeStreamRecord(p []byte) (map[string]string, []byte, error) {
	d := decoder{b: p}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %d headers in %d bytes", errBadRecord, n, len(d.b))
	}
	var h map[string]string
	if d.err == nil && n > 0 {
		h = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.str()
			h[k] = d.str()
		}
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	return h, append([]byte(nil), d.b...), nil
}

// Read returns up to opts.Max messages with offset >= from (from older than
// the first retained offset starts at the first), waiting up to opts.Wait
// if there is none yet.
func (b *Broker) Read(ctx context.Context, name string, from uint64, opts broker.ReadOptions) ([]broker.StreamMessage, error) {
	s, err := b.stream(name)
	if err != nil {
		return nil, err
	}
	if opts.Max <= 0 {
		opts.Max = 100
	}
	switch {
	case opts.Max > 10000 && opts.Wait < 0:
		return nil, fmt.Errorf("%w: max %d: expected 1 to 10000; wait %s: must not be negative", broker.ErrInvalid, opts.Max, opts.Wait)
	case opts.Max > 10000:
		return nil, fmt.Errorf("%w: max %d: expected 1 to 10000", broker.ErrInvalid, opts.Max)
	case opts.Wait < 0:
		return nil, fmt.Errorf("%w: wait %s: must not be negative", broker.ErrInvalid, opts.Wait)
	}
	var expired <-chan time.Time
	if opts.Wait > 0 {
		t := time.NewTimer(opts.Wait)
		defer t.Stop()
		expired = t.C
	}
	for {
		s.mu.Lock()
		notify, deleted := s.notify, s.deleted
		s.mu.Unlock()
		if deleted {
			return nil, fmt.Errorf("stream %q: %w", name, broker.ErrNotFound)
		}
		out, err := s.read(from, opts.Max)
		if err != nil || len(out) > 0 || expired == nil {
			return out, err
		}
		select {
		case <-notify:
		case <-expired:
			return out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *stream) read(from uint64, max int) ([]broker.StreamMessage, error) {
	durable := s.log.DurableSeq()
	var out []broker.StreamMessage
	err := s.log.Scan(from, func(r wal.Record) error {
		if r.Seq > durable {
			return wal.ErrStop
		}
		h, body, err := decodeStreamRecord(r.Payload)
		if err != nil {
			return fmt.Errorf("stream %q offset %d: %w", s.name, r.Seq, err)
		}
		out = append(out, broker.StreamMessage{Offset: r.Seq, Time: time.Unix(0, r.Time).UTC(), Body: body, Headers: h})
		if len(out) >= max {
			return wal.ErrStop
		}
		return nil
	})
	return out, err
}

// OffsetAt resolves a position: "start" (the first retained offset), "end"
// (the next offset to be written), an RFC 3339 time (the first message at
// or after it) or a decimal offset.
func (b *Broker) OffsetAt(name, pos string) (uint64, error) {
	s, err := b.stream(name)
	if err != nil {
		return 0, err
	}
	switch pos {
	case "", "start":
		if f := s.log.FirstSeq(); f > 0 {
			return f, nil
		}
		return s.log.LastSeq() + 1, nil
	case "end":
		return s.log.LastSeq() + 1, nil
	}
	if n, err := strconv.ParseUint(pos, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, pos)
	if err != nil {
		return 0, fmt.Errorf("%w: position %q: want an offset, start, end or an RFC 3339 time", broker.ErrInvalid, pos)
	}
	return s.log.SeqAtTime(t)
}

// OffsetAtTime returns the offset of the first message at or after t, or
// the next offset to be written if there is none (OffsetAt with a time).
func (b *Broker) OffsetAtTime(name string, t time.Time) (uint64, error) {
	s, err := b.stream(name)
	if err != nil {
		return 0, err
	}
	return s.log.SeqAtTime(t)
}

// Fetch reads for a consumer group from its committed offset (the start of
// the stream for a new group). Fetch does not move the offset: Commit does.
// Members of one group share the offset, so a group has one active reader.
func (b *Broker) Fetch(ctx context.Context, name, group string, opts broker.ReadOptions) ([]broker.StreamMessage, error) {
	if !broker.ValidName(group) {
		return nil, fmt.Errorf("%w: group name %q", broker.ErrInvalid, group)
	}
	s, err := b.stream(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	from, ok := s.groups[group]
	s.mu.Unlock()
	if !ok {
		from = 0
	}
	return b.Read(ctx, name, from, opts)
}

// Commit durably records that group has processed everything before
// offset (the next offset it will read).
func (b *Broker) Commit(name, group string, offset uint64) error {
	if !broker.ValidName(group) {
		return fmt.Errorf("%w: group name %q", broker.ErrInvalid, group)
	}
	s, err := b.stream(name)
	if err != nil {
		return err
	}
	if last := s.log.LastSeq(); offset > last+1 {
		return fmt.Errorf("%w: offset %d is past the end of stream %q (next offset %d)", broker.ErrInvalid, offset, name, last+1)
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	s.groups[group] = offset
	data, err := json.Marshal(s.groups)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := wal.WriteFileAtomic(s.dir, groupsFile, data); err != nil {
		return fmt.Errorf("committing offset of group %q: %w", group, err)
	}
	return nil
}
