package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listen returns a channel that receives a value (coalesced: at most one
// pending) whenever a transaction that called Notify(channel) commits,
// and a function that stops listening. On PostgreSQL a dedicated
// connection LISTENs, so commits in other processes wake it too; it
// reconnects by itself and sends a wake-up after every reconnect (a
// notification may have been missed meanwhile). Waiters must still poll
// now and then: a notification is a hint, never the only trigger.
func (db *DB) Listen(channel string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	db.mu.Lock()
	if db.waiters == nil {
		db.waiters = map[string]map[chan struct{}]struct{}{}
	}
	if db.waiters[channel] == nil {
		db.waiters[channel] = map[chan struct{}]struct{}{}
	}
	db.waiters[channel][ch] = struct{}{}
	if db.Dialect == Postgres {
		if db.pgl == nil {
			db.pgl = startPGListener(db)
		}
		db.pgl.add(channel)
	}
	db.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			db.mu.Lock()
			delete(db.waiters[channel], ch)
			db.mu.Unlock()
		})
	}
}

// notifyLater sends pg_notify(channel) from outside any transaction, by
// one goroutine per handle at a time; channels queued while a send runs
// go in the next one (NotifyAfterCommit).
func (db *DB) notifyLater(channel string) {
	db.mu.Lock()
	if db.later == nil {
		db.later = map[string]bool{}
	}
	db.later[channel] = true
	if db.sending {
		db.mu.Unlock()
		return
	}
	db.sending = true
	db.mu.Unlock()
	go func() {
		for {
			db.mu.Lock()
			chans := make([]string, 0, len(db.later))
			for c := range db.later {
				chans = append(chans, c)
			}
			clear(db.later)
			if len(chans) == 0 {
				db.sending = false
				db.mu.Unlock()
				return
			}
			db.mu.Unlock()
			for _, c := range chans {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				// Best effort (listeners poll too), so without waiting
				// for the WAL flush of the notifying transaction's
				// commit: what it announces is flushed already.
				db.DB.ExecContext(ctx, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)", c, db.origin)
				cancel()
			}
			// Commits in the next NotifyGap share the next send: under
			// load one notifying transaction per gap, not one per commit.
			time.Sleep(NotifyGap)
		}
	}()
}

// NotifyGap is the least time between two sends of NotifyAfterCommit's
// notifications (PostgreSQL). A commit after a quiet spell is sent at
// once; under load, commits within a gap share one send, which costs
// the server a transaction of its own. Listeners in other processes
// hear of a commit at most about this much later.
const NotifyGap = time.Millisecond

// signal wakes this process's listeners of channel.
func (db *DB) signal(channel string) {
	db.mu.Lock()
	for ch := range db.waiters[channel] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	db.mu.Unlock()
}

func (db *DB) signalAll() {
	db.mu.Lock()
	var chans []string
	for c := range db.waiters {
		chans = append(chans, c)
	}
	db.mu.Unlock()
	for _, c := range chans {
		db.signal(c)
	}
}

// pgListener holds one connection that LISTENs on every channel asked.
type pgListener struct {
	db     *DB
	mu     sync.Mutex
	chans  map[string]bool
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	echoes atomic.Int64 // own notifications skipped
}

func startPGListener(db *DB) *pgListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &pgListener{db: db, chans: map[string]bool{}, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

func (l *pgListener) add(channel string) {
	l.mu.Lock()
	l.chans[channel] = false
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *pgListener) stop() {
	l.cancel()
	<-l.done
}

func (l *pgListener) run(ctx context.Context) {
	defer close(l.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		_ = err
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// session is one connection's life: LISTEN on every channel, then wait
// for notifications, re-checking for new channels when kicked.
func (l *pgListener) session(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, l.db.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	l.mu.Lock()
	for c := range l.chans {
		l.chans[c] = false
	}
	l.mu.Unlock()
	first := true
	for {
		l.mu.Lock()
		var todo []string
		for c, on := range l.chans {
			if !on {
				todo = append(todo, c)
			}
		}
		l.mu.Unlock()
		for _, c := range todo {
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{c}.Sanitize()); err != nil {
				return err
			}
			l.mu.Lock()
			l.chans[c] = true
			l.mu.Unlock()
		}
		if first {
			// Anything committed before LISTEN took effect was missed.
			l.db.signalAll()
			first = false
		}
		wctx, cancel := context.WithCancel(ctx)
		stopKick := make(chan struct{})
		go func() {
			select {
			case <-l.kick:
				cancel()
			case <-stopKick:
			}
		}()
		n, err := conn.WaitForNotification(wctx)
		close(stopKick)
		kicked := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		if n != nil {
			// This handle's own notifications are echoes: the commits
			// they announce signalled this handle's waiters already
			// (InTx and NotifyCommitted signal before they send). An
			// echo would only wake them again for nothing: for the
			// outbox relay, a read of the outbox per notification sent,
			// that a real commit's wake-up may then queue behind.
			if n.Payload == "" || n.Payload != l.db.origin {
				l.db.signal(n.Channel)
			} else {
				l.echoes.Add(1)
			}
			continue
		}
		if kicked {
			continue
		}
		return err
	}
}

// newOrigin is a random payload that tells a handle's own notifications
// from other handles' and processes'.
func newOrigin() string {
	var b [8]byte
	rand.Read(b[:])
	return "sy-" + hex.EncodeToString(b[:])
}
