package notifications

import (
	"sync"
	"sync/atomic"
)

// hub holds this replica's connected clients, per user, and the recent
// notifications for Last-Event-ID. Publishing never blocks: a client whose
// buffer is full is kicked (its connection is closed) and the others go on.
type hub struct {
	clientBuf int

	mu      sync.Mutex
	clients map[string]map[*client]struct{} // by user id
	n       int                             // connected clients
	ring    []entry                         // recent notifications, oldest overwritten
	next    uint64                          // sequence of the next entry
	byID    map[string]uint64               // note id+user -> sequence, for entries still in ring
	seen    map[string]struct{}             // user|event|ride already pushed (dedup of two sources of one fact)
	seenQ   []string                        // FIFO of seen's keys
	seenAt  int

	kicked atomic.Int64 // clients dropped for not reading
}

type entry struct {
	seq  uint64
	note Note
}

// client is one connection. ch is its bounded buffer; kick is closed when
// the hub drops it.
type client struct {
	user     string
	ch       chan Note
	kick     chan struct{}
	kickOnce sync.Once
}

func newHub(clientBuf, ringSize int) *hub {
	return &hub{
		clientBuf: clientBuf,
		clients:   map[string]map[*client]struct{}{},
		ring:      make([]entry, ringSize),
		byID:      map[string]uint64{},
		seen:      map[string]struct{}{},
		seenQ:     make([]string, ringSize),
	}
}

// publish records n and hands it to each of its user's clients; false
// when it was a duplicate (the same fact from its second source).
func (h *hub) publish(n Note) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := n.User + "|" + n.Event + "|" + n.Ride
	if _, dup := h.seen[key]; dup {
		return false
	}
	if old := h.seenQ[h.seenAt]; old != "" {
		delete(h.seen, old)
	}
	h.seenQ[h.seenAt] = key
	h.seenAt = (h.seenAt + 1) % len(h.seenQ)
	h.seen[key] = struct{}{}

	slot := &h.ring[h.next%uint64(len(h.ring))]
	if slot.note.ID != "" {
		if s, ok := h.byID[slot.note.ID+"|"+slot.note.User]; ok && s == slot.seq {
			delete(h.byID, slot.note.ID+"|"+slot.note.User)
		}
	}
	*slot = entry{seq: h.next, note: n}
	h.byID[n.ID+"|"+n.User] = h.next
	h.next++

	for c := range h.clients[n.User] {
		select {
		case c.ch <- n:
		default:
			h.kickLocked(c) // it does not read: drop it, never wait
		}
	}
	return true
}

// kickLocked drops c; h.mu is held.
func (h *hub) kickLocked(c *client) {
	c.kickOnce.Do(func() {
		close(c.kick)
		h.kicked.Add(1)
	})
	h.removeLocked(c)
}

func (h *hub) removeLocked(c *client) {
	set := h.clients[c.user]
	if _, ok := set[c]; !ok {
		return
	}
	delete(set, c)
	h.n--
	if len(set) == 0 {
		delete(h.clients, c.user)
	}
}

// join connects a client of user and returns the notifications after
// lastID that this replica still holds for user (none when lastID is
// empty or no longer held), atomically: nothing published meanwhile is
// missed or sent twice. ok is false when max clients are connected.
func (h *hub) join(user, lastID string, max int) (c *client, replay []Note, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if max > 0 && h.n >= max {
		return nil, nil, false
	}
	c = &client{user: user, ch: make(chan Note, h.clientBuf), kick: make(chan struct{})}
	set := h.clients[user]
	if set == nil {
		set = map[*client]struct{}{}
		h.clients[user] = set
	}
	set[c] = struct{}{}
	h.n++
	if lastID == "" {
		return c, nil, true
	}
	from, held := h.byID[lastID+"|"+user]
	if !held {
		return c, nil, true
	}
	size := uint64(len(h.ring))
	for s := from + 1; s < h.next; s++ {
		if e := h.ring[s%size]; e.seq == s && e.note.User == user {
			replay = append(replay, e.note)
		}
	}
	return c, replay, true
}

// leave disconnects c.
func (h *hub) leave(c *client) {
	h.mu.Lock()
	h.removeLocked(c)
	h.mu.Unlock()
}

// count returns the connected clients.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
