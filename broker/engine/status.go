package engine

import (
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// outcome is how a message left its queue.
type outcome struct {
	state      broker.MessageState
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
	if len(s.order) < broker.SettledMemory {
		s.order = append(s.order, seq)
	} else {
		delete(s.bySeq, s.order[s.next])
		s.order[s.next] = seq
		s.next = (s.next + 1) % broker.SettledMemory
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
	if reason == "retention" || q.cfg.DeadLetter == broker.NoDeadLetter {
		return outcome{state: broker.StateDropped, reason: reason}
	}
	return outcome{state: broker.StateDeadLettered, reason: reason, to: q.cfg.DeadLetter}
}

var acked = outcome{state: broker.StateAcked}

// MessageStatus reports the state of message seq (a PublishResult.Seq) in
// the queue. A message the queue neither holds nor remembers having
// settled is StateUnknown; an unknown queue is ErrNotFound.
func (b *Broker) MessageStatus(name string, seq uint64) (broker.MessageStatus, error) {
	q, err := b.queue(name)
	if err != nil {
		return broker.MessageStatus{}, err
	}
	st := broker.MessageStatus{Queue: name, Seq: seq, State: broker.StateUnknown}
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
		st.State = broker.StatePending
	case stReady:
		st.State = broker.StateReady
	case stKeyWait:
		st.State = broker.StateWaiting
	case stDelayed:
		st.State = broker.StateDelayed
		st.AvailableAt = time.Unix(0, m.availableAt).UTC()
	case stInflight:
		st.State = broker.StateInFlight
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
	if reason := r.headers[broker.HeaderDeadLetterReason]; reason != "" {
		return outcome{state: broker.StateDeadLettered, reason: reason, to: to}
	}
	return outcome{state: broker.StateMoved, to: to}
}
