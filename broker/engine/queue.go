package engine

import (
	"container/heap"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard/switchyard/broker"
)

type msgState uint8

const (
	stPending  msgState = iota // appended, waiting for its fsync; invisible
	stReady                    // deliverable now
	stDelayed                  // deliverable at availableAt
	stInflight                 // delivered, invisible until deadline
	stKeyWait                  // waits for an earlier message with the same key
	stMoving                   // being moved out (redrive): in msgs, in no heap, not deliverable
)

// message is one queued message. All fields but the immutable ones (seq,
// msgID, key, headers, body, publishedAt) are guarded by queue.mu.
type message struct {
	seq         uint64
	msgID, key  string
	headers     map[string]string
	body        []byte
	publishedAt int64 // Unix ns
	expiresAt   int64 // Unix ns, 0 = never

	availableAt int64 // Unix ns
	deadline    int64 // visibility deadline while in flight
	deliveries  int
	state       msgState
	hidx        int  // index in the heap of its state (or readySet.fifo)
	inFifo      bool // in its queue's readySet FIFO (see readySet)
}

// mheap is a binary heap of messages ordered by less; it keeps
// message.hidx current so that any message can be removed.
type mheap struct {
	items []*message
	less  func(a, b *message) bool
}

func (h *mheap) Len() int           { return len(h.items) }
func (h *mheap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *mheap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].hidx = i
	h.items[j].hidx = j
}
func (h *mheap) Push(x any) {
	m := x.(*message)
	m.hidx = len(h.items)
	h.items = append(h.items, m)
}
func (h *mheap) Pop() any {
	n := len(h.items) - 1
	m := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	m.hidx = -1
	return m
}
func (h *mheap) peek() *message {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func bySeq(a, b *message) bool      { return a.seq < b.seq }
func byAvail(a, b *message) bool    { return a.availableAt < b.availableAt }
func byDeadline(a, b *message) bool { return a.deadline < b.deadline }

type dedupItem struct {
	id string
	at int64
}

type dedupEntry struct {
	seq uint64
	at  int64
}

// queue is the in-memory state of one queue, rebuilt from the log on start.
type queue struct {
	name string
	id   uint32
	cfg  broker.QueueConfig // with defaults

	mu        sync.Mutex
	msgs      map[uint64]*message // every message but pending ones
	pending   []*message          // appended, not yet durable, ascending seq
	ready     readySet            // by seq: publish order
	delayed   mheap               // by availableAt
	inflight  mheap               // by deadline
	keys      map[string][]*message
	dedup     map[string]dedupEntry
	dedupFIFO []dedupItem
	settled   settledRing   // how recently settled messages left, for MessageStatus
	notify    chan struct{} // closed when a message becomes ready; nil until someone waits
	space     chan struct{} // closed when a message leaves; nil until someone waits
	gone      error         // set when the queue is deleted or the broker closed
	ttls      bool          // some message ever had a TTL: sweeps must look
	stats     queueStats    // event counters (atomic; see metrics.go)
}

func newQueue(name string, id uint32, cfg broker.QueueConfig) *queue {
	return &queue{
		name:     name,
		id:       id,
		cfg:      cfg.WithDefaults(name),
		msgs:     make(map[uint64]*message),
		ready:    newReadySet(),
		delayed:  mheap{less: byAvail},
		inflight: mheap{less: byDeadline},
		keys:     make(map[string][]*message),
		dedup:    make(map[string]dedupEntry),
	}
}

func (q *queue) countLocked() int { return len(q.msgs) + len(q.pending) }

// The wait channels are made only when a receiver or a blocked publisher
// asks for one, so a queue nobody waits on allocates no channel per
// message.

// readyChanLocked returns a channel closed when a message becomes ready.
func (q *queue) readyChanLocked() <-chan struct{} {
	if q.notify == nil {
		q.notify = make(chan struct{})
	}
	return q.notify
}

// spaceChanLocked returns a channel closed when a message leaves.
func (q *queue) spaceChanLocked() <-chan struct{} {
	if q.space == nil {
		q.space = make(chan struct{})
	}
	return q.space
}

func (q *queue) signalReadyLocked() {
	if q.notify != nil {
		close(q.notify)
		q.notify = nil
	}
}

func (q *queue) signalSpaceLocked() {
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
}

// placeLocked makes an eligible message ready or delayed.
func (q *queue) placeLocked(m *message, now int64) {
	if m.availableAt > now {
		m.state = stDelayed
		heap.Push(&q.delayed, m)
		return
	}
	m.state = stReady
	q.ready.push(m)
	q.signalReadyLocked()
}

// insertLocked adds a durable message to the queue.
func (q *queue) insertLocked(m *message, now int64) {
	q.msgs[m.seq] = m
	if m.expiresAt > 0 {
		q.ttls = true
	}
	if m.key == "" {
		q.placeLocked(m, now)
		return
	}
	fifo := q.keys[m.key]
	i := sort.Search(len(fifo), func(i int) bool { return fifo[i].seq > m.seq })
	fifo = append(fifo, nil)
	copy(fifo[i+1:], fifo[i:])
	fifo[i] = m
	q.keys[m.key] = fifo
	if i == 0 && len(fifo) > 1 && fifo[1].state != stInflight {
		// An older message (replayed move) displaces the head.
		q.unheapLocked(fifo[1])
		fifo[1].state = stKeyWait
	}
	if i == 0 && (len(fifo) == 1 || fifo[1].state != stInflight) {
		q.placeLocked(m, now)
	} else {
		m.state = stKeyWait
	}
}

// unheapLocked removes m from the heap of its current state.
func (q *queue) unheapLocked(m *message) {
	switch m.state {
	case stReady:
		q.ready.remove(m)
	case stDelayed:
		heap.Remove(&q.delayed, m.hidx)
	case stInflight:
		heap.Remove(&q.inflight, m.hidx)
	}
}

// unlinkLocked removes m from the queue entirely (ack, drop, move).
func (q *queue) unlinkLocked(m *message, now int64) {
	q.unheapLocked(m)
	delete(q.msgs, m.seq)
	if m.key != "" {
		fifo := q.keys[m.key]
		for i, x := range fifo {
			if x == m {
				fifo = append(fifo[:i], fifo[i+1:]...)
				break
			}
		}
		if len(fifo) == 0 {
			delete(q.keys, m.key)
		} else {
			q.keys[m.key] = fifo
			if fifo[0].state == stKeyWait {
				q.placeLocked(fifo[0], now)
			}
		}
	}
	q.signalSpaceLocked()
}

// deadReason says why a message must leave the queue, or "" if it may be
// delivered.
func (q *queue) deadReason(m *message, now int64) string {
	switch {
	case m.expiresAt > 0 && now >= m.expiresAt:
		return "expired"
	case m.deliveries >= q.cfg.MaxDeliveries:
		return "max_deliveries"
	}
	return ""
}

// expiredByRetention reports whether m is older than the queue retention.
func (q *queue) expiredByRetention(m *message, now int64) bool {
	return q.cfg.Retention > 0 && now-m.publishedAt > int64(q.cfg.Retention)
}

// promoteLocked makes pending messages up to durable visible, in order,
// observing in confirm (if not nil) each one's time since its publish.
func (q *queue) promoteLocked(durable uint64, now int64, confirm prometheus.Observer) {
	i := 0
	for i < len(q.pending) && q.pending[i].seq <= durable {
		if confirm != nil {
			confirm.Observe(float64(max(now-q.pending[i].publishedAt, 0)) / 1e9)
		}
		q.insertLocked(q.pending[i], now)
		q.pending[i] = nil
		i++
	}
	if i > 0 {
		q.pending = append(q.pending[:0], q.pending[i:]...)
	}
}

// deadMsg is a message taken out of a queue to be dead-lettered or dropped.
type deadMsg struct {
	m      *message
	from   *queue
	reason string
}

// tickLocked moves due delayed messages to ready and expired in-flight
// messages back (or out, when they reached max deliveries).
func (q *queue) tickLocked(now int64, dead []deadMsg) []deadMsg {
	for m := q.delayed.peek(); m != nil && m.availableAt <= now; m = q.delayed.peek() {
		heap.Pop(&q.delayed)
		m.state = stReady
		q.ready.push(m)
		q.signalReadyLocked()
	}
	for m := q.inflight.peek(); m != nil && m.deadline <= now; m = q.inflight.peek() {
		dead = q.returnLocked(m, now, now, dead)
	}
	return dead
}

// returnLocked takes an in-flight message back (visibility expired or
// nack): it becomes available at availableAt, or is dead-lettered.
func (q *queue) returnLocked(m *message, availableAt, now int64, dead []deadMsg) []deadMsg {
	if r := q.deadReason(m, now); r != "" {
		q.retireLocked(m, now, q.deadOutcome(r))
		return append(dead, deadMsg{m: m, from: q, reason: r})
	}
	heap.Remove(&q.inflight, m.hidx)
	m.availableAt = availableAt
	q.placeLocked(m, now)
	return dead
}

// sweepLocked removes messages past their TTL or the queue retention from
// ready and delayed messages.
func (q *queue) sweepLocked(now int64, dead []deadMsg) []deadMsg {
	if q.cfg.Retention <= 0 && !q.ttls {
		return dead // nothing can expire: do not walk every message under the lock
	}
	for _, m := range q.msgs {
		if m.state == stInflight || m.state == stMoving {
			continue
		}
		switch {
		case q.expiredByRetention(m, now):
			q.retireLocked(m, now, q.deadOutcome("retention"))
			dead = append(dead, deadMsg{m: m, from: q, reason: "retention"})
		case m.expiresAt > 0 && now >= m.expiresAt:
			q.retireLocked(m, now, q.deadOutcome("expired"))
			dead = append(dead, deadMsg{m: m, from: q, reason: "expired"})
		}
	}
	return dead
}

// pruneDedupLocked forgets producer ids older than the dedup window.
func (q *queue) pruneDedupLocked(now int64) {
	i := 0
	for i < len(q.dedupFIFO) && now-q.dedupFIFO[i].at > int64(q.cfg.DedupWindow) {
		it := q.dedupFIFO[i]
		if e, ok := q.dedup[it.id]; ok && e.at == it.at {
			delete(q.dedup, it.id)
		}
		i++
	}
	if i > 0 {
		q.dedupFIFO = append(q.dedupFIFO[:0], q.dedupFIFO[i:]...)
	}
}

func (q *queue) rememberLocked(id string, seq uint64, at int64) {
	if id == "" || q.cfg.DedupWindow < 0 {
		return
	}
	q.dedup[id] = dedupEntry{seq: seq, at: at}
	q.dedupFIFO = append(q.dedupFIFO, dedupItem{id: id, at: at})
}

// minSeqLocked returns the lowest sequence the queue still needs, or 0.
func (q *queue) minSeqLocked() uint64 {
	var min uint64
	for s := range q.msgs {
		if min == 0 || s < min {
			min = s
		}
	}
	if len(q.pending) > 0 && (min == 0 || q.pending[0].seq < min) {
		min = q.pending[0].seq
	}
	return min
}

// holdLocked takes m out of delivery while it is being moved: it stays in
// the queue (and keeps its log record from compaction) until the move is
// durable.
func (q *queue) holdLocked(m *message) {
	q.unheapLocked(m)
	m.state = stMoving
}

// unholdLocked makes a held message deliverable again after a failed move.
func (q *queue) unholdLocked(m *message, now int64) {
	if m.state != stMoving || q.msgs[m.seq] != m {
		return
	}
	if m.key != "" {
		if fifo := q.keys[m.key]; len(fifo) > 0 && fifo[0] != m {
			m.state = stKeyWait
			return
		}
	}
	q.placeLocked(m, now)
}

// dropPendingLocked forgets the pending message seq whose record did not
// become durable.
func (q *queue) dropPendingLocked(seq uint64) {
	for i, p := range q.pending {
		if p.seq == seq {
			q.forgetPendingLocked(i)
			return
		}
	}
}

// forgetPendingLocked removes pending message i, and its producer id from
// the dedup memory so that a retry with the same id is stored.
func (q *queue) forgetPendingLocked(i int) {
	m := q.pending[i]
	q.pending = append(q.pending[:i], q.pending[i+1:]...)
	if e, ok := q.dedup[m.msgID]; ok && m.msgID != "" && e.seq == m.seq {
		delete(q.dedup, m.msgID)
	}
	q.signalSpaceLocked()
}

func pushInflight(q *queue, m *message) { heap.Push(&q.inflight, m) }

// retireAfterPopLocked removes a message already popped from its heap.
func (q *queue) retireAfterPopLocked(m *message, now int64, o outcome) {
	m.state = stPending // in no heap
	q.retireLocked(m, now, o)
}

func sortBySeq(ms []*message) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
}
