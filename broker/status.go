package broker

import (
	"fmt"
	"time"
)

// MessageState is where a message is in its queue's life cycle, as
// reported by MessageStatus.
type MessageState string

// Message states. The first five are live messages; Acked, DeadLettered,
// Dropped and Moved are outcomes the queue remembers for its most recently
// settled messages (see SettledMemory); Unknown is everything else.
const (
	StatePending      MessageState = "pending"       // published without confirm, not yet durable
	StateReady        MessageState = "ready"         // deliverable now
	StateWaiting      MessageState = "waiting"       // queued behind an earlier message with the same key
	StateDelayed      MessageState = "delayed"       // deliverable at AvailableAt
	StateInFlight     MessageState = "in_flight"     // delivered, not yet acked; back at VisibleAt
	StateAcked        MessageState = "acked"         // acknowledged by a consumer (or auto-acked)
	StateDeadLettered MessageState = "dead_lettered" // moved to MovedTo because of Reason
	StateDropped      MessageState = "dropped"       // removed without a dead-letter queue because of Reason
	StateMoved        MessageState = "moved"         // redriven out of this (dead-letter) queue to MovedTo
	StateUnknown      MessageState = "unknown"       // never in this queue, or settled and forgotten
)

// SettledMemory is how many settled messages (acked, dead-lettered,
// dropped, moved) each queue remembers for MessageStatus, oldest forgotten
// first. The memory is per queue and in RAM only (roughly 100 bytes an
// entry); on restart it is rebuilt from the records the log still holds.
const SettledMemory = 4096

// MessageStatus describes one message of a queue.
type MessageStatus struct {
	Queue string       `json:"queue"`
	Seq   uint64       `json:"id,string"` // the broker's message id
	State MessageState `json:"state"`
	// Deliveries so far (live messages, and settled ones the queue
	// remembers).
	Deliveries int `json:"deliveries"`
	// MsgID, Key and PublishedAt are known for live messages only.
	MsgID       string    `json:"msg_id,omitempty"`
	Key         string    `json:"key,omitempty"`
	PublishedAt time.Time `json:"published,omitzero"`
	// AvailableAt is when a delayed message becomes deliverable.
	AvailableAt time.Time `json:"available_at,omitzero"`
	// VisibleAt is when an in-flight message comes back unless acked.
	VisibleAt time.Time `json:"visible_at,omitzero"`
	// SettledAt is when a settled message left the queue.
	SettledAt time.Time `json:"settled_at,omitzero"`
	// Reason is why a message was dead-lettered or dropped:
	// max_deliveries, expired or retention.
	Reason string `json:"reason,omitempty"`
	// MovedTo is the queue a dead-lettered or moved message went to.
	MovedTo string `json:"moved_to,omitempty"`
}

// outcome is how a message left its queue.
type outcome struct {
	state      MessageState
	reason     string // dead_lettered, dropped
	to         string // dead_lettered, moved
	deliveries int
	at         int64 // Unix ns
}

// settledRing remembers the outcomes of the last SettledMemory messages
// that left a queue. Guarded by queue.mu; the zero value is empty.
type settledRing struct {
	bySeq map[uint64]outcome
	order []uint64 // ring of the remembered sequences, oldest at next once full
	next  int
}

func (s *settledRing) add(seq uint64, o outcome) {
	if s.bySeq == nil {
		s.bySeq = make(map[uint64]outcome)
	}
	if _, ok := s.bySeq[seq]; ok {
		s.bySeq[seq] = o
		return
	}
	if len(s.order) < SettledMemory {
		s.order = append(s.order, seq)
	} else {
		delete(s.bySeq, s.order[s.next])
		s.order[s.next] = seq
		s.next = (s.next + 1) % SettledMemory
	}
	s.bySeq[seq] = o
}

// retireLocked removes m from the queue (ack, dead-letter, drop, move)
// and remembers how it left.
func (q *queue) retireLocked(m *message, now int64, o outcome) {
	q.unlinkLocked(m, now)
	o.deliveries, o.at = m.deliveries, now
	q.settled.add(m.seq, o)
}

// deadOutcome is the outcome of a message dead-lettered for reason:
// moved to the dead-letter queue, or dropped when there is none (or for
// retention, which never dead-letters).
func (q *queue) deadOutcome(reason string) outcome {
	if reason == "retention" || q.cfg.DeadLetter == NoDeadLetter {
		return outcome{state: StateDropped, reason: reason}
	}
	return outcome{state: StateDeadLettered, reason: reason, to: q.cfg.DeadLetter}
}

var acked = outcome{state: StateAcked}

// MessageStatus reports the state of message seq (a PublishResult.Seq) in
// the queue. A message the queue neither holds nor remembers having
// settled is StateUnknown; an unknown queue is ErrNotFound.
func (b *Broker) MessageStatus(name string, seq uint64) (MessageStatus, error) {
	q, err := b.queue(name)
	if err != nil {
		return MessageStatus{}, err
	}
	st := MessageStatus{Queue: name, Seq: seq, State: StateUnknown}
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs[seq]
	if m == nil {
		for _, p := range q.pending {
			if p.seq == seq {
				m = p
				break
			}
		}
	}
	if m == nil {
		if o, ok := q.settled.bySeq[seq]; ok {
			st.State, st.Reason, st.MovedTo, st.Deliveries = o.state, o.reason, o.to, o.deliveries
			st.SettledAt = time.Unix(0, o.at).UTC()
		}
		return st, nil
	}
	st.Deliveries, st.MsgID, st.Key = m.deliveries, m.msgID, m.key
	st.PublishedAt = time.Unix(0, m.publishedAt).UTC()
	switch m.state {
	case stPending:
		st.State = StatePending
	case stReady:
		st.State = StateReady
	case stKeyWait:
		st.State = StateWaiting
	case stDelayed:
		st.State = StateDelayed
		st.AvailableAt = time.Unix(0, m.availableAt).UTC()
	case stInflight:
		st.State = StateInFlight
		st.VisibleAt = time.Unix(0, m.deadline).UTC()
	default:
		return st, fmt.Errorf("message %d of queue %q: unexpected internal state %d", seq, name, m.state)
	}
	return st, nil
}

// moveOutcome is the outcome, for its source queue, of a replayed move
// record: a dead-letter move carries the reason in its headers; any other
// move is a redrive.
func (b *Broker) moveOutcome(r *pubRecord) outcome {
	to := ""
	if q := b.byID[r.queue]; q != nil {
		to = q.name
	}
	if reason := r.headers[HeaderDeadLetterReason]; reason != "" {
		return outcome{state: StateDeadLettered, reason: reason, to: to}
	}
	return outcome{state: StateMoved, to: to}
}
