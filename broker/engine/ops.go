package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/wal"
)

// getBuf and putBuf recycle record encoding buffers (per broker, so that
// brokers in one process share nothing).
func (b *Broker) getBuf() *[]byte {
	if bp, ok := b.bufs.Get().(*[]byte); ok {
		return bp
	}
	buf := make([]byte, 0, 4096)
	return &buf
}

func (b *Broker) putBuf(bp *[]byte) {
	if cap(*bp) <= 1<<20 {
		b.bufs.Put(bp)
	}
}

// enqueueSeqs queues a record of op on the seqs of queue qid for writing
// (encoded in a recycled buffer: the log copies it). A lazy record nobody
// waits for goes with the next write instead of starting one.
func (b *Broker) enqueueSeqs(op byte, qid uint32, availableAt int64, seqs []uint64, lazy bool) (uint64, error) {
	bp := b.getBuf()
	buf := appendSeqs((*bp)[:0], op, qid, availableAt, seqs)
	enqueue := b.log.EnqueueKept // bookkeeping is held, not voided, on a full disk
	if lazy {
		enqueue = b.log.EnqueueLazy
	}
	seq, err := enqueue(buf)
	*bp = buf
	b.putBuf(bp)
	return seq, err
}

// Publish appends a message to the queue and, unless opts.NoWait, returns
// once it is durable. A full queue returns *QueueFullError (after waiting
// up to block_timeout for overflow "block"); a body above max_message_size
// returns ErrTooLarge. A message carrying trace context gets a publish
// span (Config.Tracer).
func (b *Broker) Publish(ctx context.Context, name string, msg broker.Message, opts broker.PublishOptions) (broker.PublishResult, error) {
	sp := b.startPublish(name, &msg)
	if sp == nil {
		return b.publish(ctx, name, msg, opts)
	}
	res, err := b.publish(ctx, name, msg, opts)
	endPublish(sp, res.Seq, res.Duplicate, err)
	return res, err
}

// publish is Publish without its span (the topic's publish to its bound
// queues is in the topic's).
func (b *Broker) publish(ctx context.Context, name string, msg broker.Message, opts broker.PublishOptions) (broker.PublishResult, error) {
	q, err := b.queue(name)
	if err != nil {
		return broker.PublishResult{}, err
	}
	if msg.Delay < 0 || msg.TTL < 0 || msg.Delay > broker.MaxMessageTTL || msg.TTL > broker.MaxMessageTTL {
		return broker.PublishResult{}, fmt.Errorf("%w: delay %s, ttl %s: each must be between 0 and %s", broker.ErrInvalid, msg.Delay, msg.TTL, broker.MaxMessageTTL)
	}
	size := msg.Size()
	now := b.cfg.Now()
	nowNS := now.UnixNano()
	q.mu.Lock()
	if size > q.cfg.MaxMessageSize {
		limit := q.cfg.MaxMessageSize
		q.mu.Unlock()
		q.stats.tooLarge.Add(1)
		return broker.PublishResult{}, fmt.Errorf("%w: %d bytes (id, key, headers and body), queue %q accepts at most %d", broker.ErrTooLarge, size, name, limit)
	}
	if msg.ID != "" && q.cfg.DedupWindow > 0 {
		if e, ok := q.dedup[msg.ID]; ok && nowNS-e.at <= int64(q.cfg.DedupWindow) {
			q.mu.Unlock()
			if !opts.NoWait {
				if err := b.log.Wait(ctx, e.seq); err != nil {
					return broker.PublishResult{}, err
				}
			}
			return broker.PublishResult{Seq: e.seq, Duplicate: true}, nil
		}
	}
	var deadline time.Time
	for q.cfg.MaxLength > 0 && q.countLocked() >= q.cfg.MaxLength {
		full := &broker.QueueFullError{Queue: name, Limit: q.cfg.MaxLength}
		if q.cfg.Overflow != broker.OverflowBlock || q.gone != nil {
			q.mu.Unlock()
			q.stats.full.Add(1)
			return broker.PublishResult{}, full
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(q.cfg.BlockTimeout.Std())
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			q.mu.Unlock()
			q.stats.full.Add(1)
			return broker.PublishResult{}, full
		}
		space := q.spaceChanLocked()
		q.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-space:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return broker.PublishResult{}, ctx.Err()
		}
		t.Stop()
		q.mu.Lock()
		if q.gone != nil {
			err := q.gone
			q.mu.Unlock()
			return broker.PublishResult{}, err
		}
	}
	rec := pubRecord{
		queue:       q.id,
		publishedAt: nowNS,
		msgID:       msg.ID,
		key:         msg.Key,
		headers:     msg.Headers,
		body:        msg.Body,
	}
	if msg.Delay > 0 {
		rec.availableAt = nowNS + int64(msg.Delay)
	}
	ttl := msg.TTL
	if ttl == 0 {
		ttl = q.cfg.MessageTTL.Std()
	}
	if ttl > 0 {
		rec.expiresAt = nowNS + int64(ttl)
	}
	bp := b.getBuf()
	buf := appendPublish((*bp)[:0], &rec)
	seq, err := b.log.Enqueue(buf)
	*bp = buf
	b.putBuf(bp)
	if err != nil {
		q.mu.Unlock()
		return broker.PublishResult{}, fmt.Errorf("appending to log: %w", err)
	}
	// The message owns copies of what the caller passed.
	rec.body = append([]byte(nil), msg.Body...)
	if len(msg.Headers) > 0 {
		rec.headers = maps.Clone(msg.Headers)
	}
	m := newMessage(seq, &rec)
	m.state = stPending
	q.pending = append(q.pending, m)
	q.rememberLocked(msg.ID, seq, nowNS)
	q.mu.Unlock()
	q.stats.published.Add(1)
	if opts.NoWait {
		return broker.PublishResult{Seq: seq}, nil
	}
	if err := b.log.Wait(ctx, seq); err != nil {
		if errors.Is(err, wal.ErrNoSpace) {
			// Voided (forgetVoided dropped it) or written before the
			// failure: in the log's hands, decided by the time Wait answers.
			q.mu.Lock()
			q.dropPendingLocked(seq)
			q.mu.Unlock()
		}
		return broker.PublishResult{}, fmt.Errorf("waiting for fsync: %w", err)
	}
	b.promoteTimed(q, b.metrics.confirmObserver())
	return broker.PublishResult{Seq: seq}, nil
}

// promote makes the queue's durable pending messages visible.
func (b *Broker) promote(q *queue) { b.promoteTimed(q, nil) }

// promoteTimed is promote for a publisher's confirm: it also observes, in
// confirm (if not nil), each promoted message's time since its publish.
func (b *Broker) promoteTimed(q *queue, confirm prometheus.Observer) {
	durable := b.log.DurableSeq()
	q.mu.Lock()
	if len(q.pending) > 0 && q.pending[0].seq <= durable {
		q.promoteLocked(durable, b.cfg.Now().UnixNano(), confirm)
	}
	q.mu.Unlock()
}

func receipt(qid uint32, seq uint64, deliveries int) string {
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, uint64(qid), 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq, 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(deliveries), 36)
	return string(b)
}

func parseReceipt(s string) (qid uint32, seq uint64, deliveries int, ok bool) {
	a, rest, ok1 := strings.Cut(s, ".")
	c, d, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return 0, 0, 0, false
	}
	q, e1 := strconv.ParseUint(a, 36, 32)
	sq, e2 := strconv.ParseUint(c, 36, 64)
	dl, e3 := strconv.ParseUint(d, 36, 31)
	if e1 != nil || e2 != nil || e3 != nil {
		return 0, 0, 0, false
	}
	return uint32(q), sq, int(dl), true
}

// Receive delivers up to opts.Max messages, waiting up to opts.Wait for
// the first one. Delivered messages are invisible to other consumers until
// acked, nacked or their visibility timeout passes.
func (b *Broker) Receive(ctx context.Context, name string, opts broker.ReceiveOptions) ([]broker.Delivery, error) {
	q, err := b.queue(name)
	if err != nil {
		return nil, err
	}
	if opts.Max <= 0 {
		opts.Max = 1
	}
	var bad []string
	if opts.Max > 1000 {
		bad = append(bad, fmt.Sprintf("max %d: expected 1 to 1000", opts.Max))
	}
	if opts.Wait < 0 {
		bad = append(bad, fmt.Sprintf("wait %s: must not be negative", opts.Wait))
	}
	if opts.Visibility < 0 {
		bad = append(bad, fmt.Sprintf("visibility %s: must not be negative", opts.Visibility))
	} else if opts.Visibility > broker.MaxVisibilityTimeout {
		bad = append(bad, fmt.Sprintf("visibility %s: must be at most %s", opts.Visibility, broker.MaxVisibilityTimeout))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", broker.ErrInvalid, strings.Join(bad, "; "))
	}
	var timer *time.Timer
	var expired <-chan time.Time
	if opts.Wait > 0 {
		timer = time.NewTimer(opts.Wait)
		defer timer.Stop()
		expired = timer.C
	}
	for {
		out, dead, notify, err := b.take(q, opts)
		b.traceDeliveries(name, out)
		if len(dead) > 0 {
			b.opMu.RLock()
			b.deadLetter(ctx, dead)
			b.opMu.RUnlock()
		}
		if err != nil || len(out) > 0 || expired == nil {
			return out, err
		}
		select {
		case <-notify:
		case <-expired:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take pops ready messages under the queue lock and logs their delivery.
func (b *Broker) take(q *queue, opts broker.ReceiveOptions) ([]broker.Delivery, []deadMsg, <-chan struct{}, error) {
	now := b.cfg.Now().UnixNano()
	vis := opts.Visibility
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gone != nil {
		return nil, nil, nil, q.gone
	}
	if vis == 0 {
		vis = q.cfg.VisibilityTimeout.Std()
	}
	var (
		out   []broker.Delivery
		dead  []deadMsg
		seqs  []uint64
		again uint64 // redeliveries among seqs
	)
	if n := min(opts.Max, q.ready.Len()); n > 0 {
		out = make([]broker.Delivery, 0, n)
		seqs = make([]uint64, 0, n)
	}
	for len(out) < opts.Max && q.ready.Len() > 0 {
		m := q.ready.peek()
		if r := q.deadReason(m, now); r != "" {
			q.retireLocked(m, now, q.deadOutcome(r))
			dead = append(dead, deadMsg{m: m, from: q, reason: r})
			continue
		}
		q.ready.remove(m)
		m.deliveries++
		if m.deliveries > 1 {
			again++
		}
		seqs = append(seqs, m.seq)
		out = append(out, broker.Delivery{
			Seq: m.seq, Body: m.body, MsgID: m.msgID, Key: m.key, Headers: m.headers,
			Deliveries: m.deliveries, PublishedAt: time.Unix(0, m.publishedAt),
		})
		if opts.AutoAck {
			q.retireAfterPopLocked(m, now, acked)
			continue
		}
		m.deadline = now + int64(vis)
		m.state = stInflight
		pushInflight(q, m)
		out[len(out)-1].Receipt = receipt(q.id, m.seq, m.deliveries)
	}
	if len(seqs) > 0 {
		op := opDeliver
		if opts.AutoAck {
			op = opAck
		}
		if _, err := b.enqueueSeqs(op, q.id, 0, seqs, true); err != nil {
			// The log is failing: deliver nothing. In-flight messages come
			// back after their visibility timeout; auto-acked ones are
			// still in the log and come back on restart.
			return nil, dead, nil, fmt.Errorf("logging delivery: %w", err)
		}
		q.stats.delivered.Add(uint64(len(seqs)))
		q.stats.redelivered.Add(again)
		if opts.AutoAck {
			q.stats.acked.Add(uint64(len(seqs)))
		}
	}
	var notify <-chan struct{}
	if len(out) == 0 {
		notify = q.readyChanLocked() // only a receiver about to wait needs it
	}
	return out, dead, notify, nil
}

// Ack acknowledges delivered messages; it returns once the acks are
// durable. Stale receipts (the message was redelivered since, or is gone)
// are reported in Failed.
func (b *Broker) Ack(ctx context.Context, name string, receipts []string) (broker.AckResult, error) {
	return b.settle(ctx, name, receipts, opAck, 0)
}

// Nack returns delivered messages to the queue, visible again after delay.
// A message that reached max_deliveries goes to the dead-letter queue.
func (b *Broker) Nack(ctx context.Context, name string, receipts []string, delay time.Duration) (broker.AckResult, error) {
	if delay < 0 {
		return broker.AckResult{}, fmt.Errorf("%w: negative delay", broker.ErrInvalid)
	}
	return b.settle(ctx, name, receipts, opNack, delay)
}

func (b *Broker) settle(ctx context.Context, name string, receipts []string, op byte, delay time.Duration) (broker.AckResult, error) {
	q, err := b.queue(name)
	if err != nil {
		return broker.AckResult{}, err
	}
	now := b.cfg.Now().UnixNano()
	availableAt := now + int64(delay)
	var (
		res  broker.AckResult
		seqs []uint64
		dead []deadMsg
	)
	b.opMu.RLock()
	defer b.opMu.RUnlock()
	q.mu.Lock()
	for _, r := range receipts {
		qid, seq, n, ok := parseReceipt(r)
		if !ok || qid != q.id {
			res.Failed = append(res.Failed, broker.ReceiptError{Receipt: r, Error: "malformed receipt or another queue's"})
			continue
		}
		m := q.msgs[seq]
		if m == nil || m.state != stInflight || m.deliveries != n {
			res.Failed = append(res.Failed, broker.ReceiptError{Receipt: r, Error: "stale receipt: message acked, redelivered or gone"})
			continue
		}
		if op == opAck {
			q.retireLocked(m, now, acked)
		} else {
			dead = q.returnLocked(m, availableAt, now, dead)
		}
		seqs = append(seqs, seq)
		res.Done++
	}
	var last uint64
	async := q.cfg.AsyncAcks
	if len(seqs) > 0 {
		last, err = b.enqueueSeqs(op, q.id, availableAt, seqs, async)
	}
	q.mu.Unlock()
	if err != nil {
		return broker.AckResult{}, fmt.Errorf("appending to log: %w", err)
	}
	if op == opAck {
		q.stats.acked.Add(uint64(res.Done))
	} else {
		q.stats.nacked.Add(uint64(res.Done))
	}
	if len(dead) > 0 {
		b.deadLetter(ctx, dead)
	}
	if last > 0 && !async {
		// On a full disk the record is held in memory and written once
		// space returns: the ack is applied and answered like an async one.
		if err := b.log.Wait(ctx, last); err != nil && !errors.Is(err, wal.ErrNoSpace) {
			return broker.AckResult{}, fmt.Errorf("waiting for fsync: %w", err)
		}
	}
	return res, nil
}

// deadLetter moves messages taken out of their queues to the dead-letter
// queue (or drops them) with one log record each. Caller holds b.opMu for
// reading so that compaction cannot delete the messages' records first. A
// move that fails (or whose record does not become durable) puts the
// message back into the queue it came from: it is dead-lettered again on a
// later attempt, never dropped.
func (b *Broker) deadLetter(ctx context.Context, dead []deadMsg) {
	var last uint64
	var moves []moveItem
	for _, d := range dead {
		target := d.from.cfg.DeadLetter
		drop := d.reason == "retention" || target == broker.NoDeadLetter
		if drop {
			// An intended drop: if its record is lost the message comes
			// back on restart and is dropped again.
			d.from.stats.countDead(d.reason, true)
			if s, err := b.enqueueSeqs(opAck, d.from.id, 0, []uint64{d.m.seq}, false); err == nil {
				last = max(last, s)
			}
			continue
		}
		h := make(map[string]string, len(d.m.headers)+3)
		maps.Copy(h, d.m.headers)
		h[broker.HeaderDeadLetterReason] = d.reason
		h[broker.HeaderOriginalQueue] = d.from.name
		h[broker.HeaderDeliveries] = strconv.Itoa(d.m.deliveries)
		moves = append(moves, moveItem{m: d.m, from: d.from, target: target, headers: h, retired: true, reason: d.reason})
	}
	if len(moves) > 0 {
		b.moveAll(ctx, moves, false) // failures are put back and retried later
	}
	if last > 0 {
		_ = b.log.Wait(context.WithoutCancel(ctx), last)
	}
}

// deadLetterRetry is how long a message whose dead-letter move failed
// waits in its queue before the next attempt.
const deadLetterRetry = time.Second

// moveItem is one message to move to the queue named target.
type moveItem struct {
	m       *message
	from    *queue
	target  string
	headers map[string]string
	// retired: the message was already taken out of from (dead-lettering)
	// and goes back in if the move fails; otherwise it is still in from,
	// held out of delivery (stMoving), and leaves only once moved.
	retired bool
	reason  string // dead-letter reason, for the counters

	seq uint64 // the move record, once appended
	tq  *queue
}

// moveAll appends a move record for each item, in order, waits until they
// are durable and only then takes the messages out of their source queues
// and makes them visible in their targets. On the first error it stops
// appending (if stopOnError) or skips the item; every item whose record
// did not become durable stays in (or goes back to) its source queue. It
// returns how many moved and the first error.
func (b *Broker) moveAll(ctx context.Context, items []moveItem, stopOnError bool) (int, error) {
	var (
		firstErr error
		last     uint64
	)
	for i := range items {
		it := &items[i]
		seq, tq, err := b.move(it.m, it.from, it.target, it.headers)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if stopOnError {
				break
			}
			continue
		}
		it.seq, it.tq = seq, tq
		last = max(last, seq)
	}
	if last > 0 {
		// Wait even if the caller gives up: the outcome decides where the
		// messages live in memory.
		if err := b.log.Wait(context.WithoutCancel(ctx), last); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("moving messages: %w", err)
		}
	}
	durable := b.log.DurableSeq()
	now := b.cfg.Now().UnixNano()
	moved := 0
	touched := map[*queue]bool{}
	for i := range items {
		it := &items[i]
		ok := it.seq != 0 && it.seq <= durable && !b.log.Voided(it.seq)
		if it.seq != 0 && !ok {
			it.tq.mu.Lock()
			it.tq.dropPendingLocked(it.seq)
			it.tq.mu.Unlock()
		}
		it.from.mu.Lock()
		switch {
		case ok && !it.retired:
			it.from.retireLocked(it.m, now, outcome{state: broker.StateMoved, to: it.target})
		case !ok && it.retired:
			if it.from.gone == nil {
				// Back in its queue; dead-lettered again at a later
				// attempt, not at once (no spinning on a full disk).
				it.m.availableAt = now + int64(deadLetterRetry)
				it.from.insertLocked(it.m, now)
			}
		case !ok:
			it.from.unholdLocked(it.m, now)
		}
		it.from.mu.Unlock()
		if ok {
			moved++
			touched[it.tq] = true
			if it.retired {
				it.from.stats.countDead(it.reason, false)
			}
		}
	}
	for tq := range touched {
		b.promote(tq)
	}
	return moved, firstErr
}

// move appends a move record of m (in queue from) into the queue named
// target and adds the new message as pending there. It returns the
// record's sequence and the target queue.
func (b *Broker) move(m *message, from *queue, target string, headers map[string]string) (uint64, *queue, error) {
	tq, err := b.queue(target)
	if err != nil {
		if derr := b.Declare(target, broker.QueueConfig{}); derr != nil {
			return 0, nil, fmt.Errorf("moving message %d of queue %q to %q: %w", m.seq, from.name, target, derr)
		}
		if tq, err = b.queue(target); err != nil {
			return 0, nil, fmt.Errorf("moving message %d of queue %q to %q: %w", m.seq, from.name, target, err)
		}
	}
	now := b.cfg.Now().UnixNano()
	rec := pubRecord{
		queue: tq.id, fromQueue: from.id, fromSeq: m.seq,
		publishedAt: now, msgID: m.msgID, key: m.key, headers: headers, body: m.body,
	}
	tq.mu.Lock()
	defer tq.mu.Unlock()
	if tq.cfg.MessageTTL > 0 {
		rec.expiresAt = now + int64(tq.cfg.MessageTTL)
	}
	seq, err := b.log.Enqueue(appendPublish(nil, &rec))
	if err != nil {
		return 0, nil, fmt.Errorf("moving message %d of queue %q to %q: %w", m.seq, from.name, target, err)
	}
	nm := newMessage(seq, &rec)
	nm.state = stPending
	tq.pending = append(tq.pending, nm)
	return seq, tq, nil
}

// Redrive moves the messages of the queue's dead-letter queue back to the
// queues they came from (x-original-queue, else this queue), with fresh
// delivery counts, in order. Each message leaves the dead-letter queue
// only once its move is durable: on an error the redrive stops, the rest
// stay, and it returns how many moved together with the error. A message
// whose x-original-queue names no queue ("topic:NAME", which kit/message
// writes for a live topic subscription's dead letters, or any other
// invalid name; "queue:NAME" is NAME) stays where it is, and the others
// move: the error is then a *broker.RedriveKeptError.
func (b *Broker) Redrive(ctx context.Context, name string) (int, error) {
	q, err := b.queue(name)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	dl := q.cfg.DeadLetter
	q.mu.Unlock()
	if dl == broker.NoDeadLetter {
		return 0, fmt.Errorf("%w: queue %q has no dead-letter queue", broker.ErrInvalid, name)
	}
	dq, err := b.queue(dl)
	if err != nil {
		return 0, err
	}
	b.opMu.RLock()
	defer b.opMu.RUnlock()
	var moving []*message
	dq.mu.Lock()
	for _, m := range dq.msgs {
		if m.state != stInflight && m.state != stMoving {
			moving = append(moving, m)
		}
	}
	sortBySeq(moving)
	for _, m := range moving {
		dq.holdLocked(m) // no consumer gets it while it moves
	}
	dq.mu.Unlock()
	items := make([]moveItem, 0, len(moving))
	var kept *broker.RedriveKeptError
	for _, m := range moving {
		target := m.headers[broker.HeaderOriginalQueue]
		if target == "" {
			target = name
		}
		target = strings.TrimPrefix(target, "queue:")
		if !broker.ValidName(target) {
			// No queue to go back to: it stays, and does not hold up
			// the messages behind it.
			if kept == nil {
				kept = &broker.RedriveKeptError{DLQ: dl, First: target}
			}
			kept.Kept++
			dq.mu.Lock()
			dq.unholdLocked(m, b.cfg.Now().UnixNano())
			dq.mu.Unlock()
			continue
		}
		h := maps.Clone(m.headers)
		delete(h, broker.HeaderDeadLetterReason)
		delete(h, broker.HeaderOriginalQueue)
		delete(h, broker.HeaderDeliveries)
		items = append(items, moveItem{m: m, from: dq, target: target, headers: h})
	}
	n, err := b.moveAll(ctx, items, true)
	if err != nil {
		return n, fmt.Errorf("redrive of %q stopped after moving %d of %d messages (the rest stay in %q): %w", dl, n, len(items), dl, err)
	}
	if kept != nil {
		return n, kept
	}
	return n, nil
}

// Confirm waits until the messages of earlier NoWait publishes to the
// queue are durable, and makes them visible. A batch of NoWait publishes
// followed by one Confirm costs one group commit.
func (b *Broker) Confirm(ctx context.Context, name string, res []broker.PublishResult) error {
	q, err := b.queue(name)
	if err != nil {
		return err
	}
	var last uint64
	for _, r := range res {
		last = max(last, r.Seq)
	}
	if last == 0 {
		return nil
	}
	if err := b.log.Wait(ctx, last); err != nil {
		return fmt.Errorf("waiting for fsync: %w", err)
	}
	b.promoteTimed(q, b.metrics.confirmObserver())
	return nil
}
