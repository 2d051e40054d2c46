package discovery

import (
	"context"
	"sync"
	"time"
)

// Defaults of WatchOptions.
const (
	DefaultWatchWait = 30 * time.Second
	DefaultRetryMin  = 100 * time.Millisecond
	DefaultRetryMax  = 2 * time.Second
)

// WatchOptions tune a Watcher. Zero fields take their defaults.
type WatchOptions struct {
	// Wait is how long one long-poll may block at the registry. Default 30s.
	Wait time.Duration
	// RetryMin and RetryMax bound the backoff after a failed poll.
	// Defaults 100ms and 2s.
	RetryMin, RetryMax time.Duration
}

// Watcher follows one service's instance set: the registry answers its
// long-poll as soon as the set changes, so updates arrive immediately, not
// on a polling interval. While the registry cannot be reached the last
// known set stays current (stale beats empty; health checks and outlier
// detection still guard the instances) and the watcher retries with
// backoff. Safe for concurrent use.
type Watcher struct {
	c       *Client
	service string
	opts    WatchOptions
	cancel  context.CancelFunc
	done    chan struct{}
	ready   chan struct{}
	updates chan ServiceSnapshot

	mu      sync.Mutex
	cur     ServiceSnapshot
	have    bool
	lastErr error
	changed chan struct{} // closed (and replaced) when cur changes
}

// Watch starts watching service until ctx ends or Close.
func (c *Client) Watch(ctx context.Context, service string, opts WatchOptions) (*Watcher, error) {
	if err := ValidName(service); err != nil {
		return nil, err
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWatchWait
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(DefaultRetryMax, opts.RetryMin)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{c: c, service: service, opts: opts, cancel: cancel, done: make(chan struct{}),
		ready: make(chan struct{}), updates: make(chan ServiceSnapshot, 1), changed: make(chan struct{})}
	go w.loop(ctx)
	return w, nil
}

// Service returns the watched service's name.
func (w *Watcher) Service() string { return w.service }

// Updates delivers each new instance set. It holds at most one pending
// set: a reader that falls behind gets the latest, never a stale one.
// Each set goes to one receiver: with several readers, use Changed and
// Current instead (a Balancer does).
func (w *Watcher) Updates() <-chan ServiceSnapshot { return w.updates }

// Ready is closed once the first instance set has arrived; Current has
// it by then. While the registry cannot be reached it stays open: wait
// on it with a deadline.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Changed returns a channel that is closed when the next instance set
// arrives (after the one Current returns now). Any number of readers may
// wait on it; each then calls Current and Changed again. Unlike Updates
// it loses nothing to another reader.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// latest returns the current set and the channel closed at the next one,
// read together so no set can slip between them.
func (w *Watcher) latest() (ServiceSnapshot, bool, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.have, w.changed
}

// Current returns the latest instance set, and false before the first.
func (w *Watcher) Current() (ServiceSnapshot, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.have
}

// Err returns the error of the last poll, nil after a successful one.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Close stops the watcher and waits for its goroutine.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	var index uint64
	first := true
	backoff := w.opts.RetryMin
	for ctx.Err() == nil {
		wait := w.opts.Wait
		if first {
			wait = 0
		}
		pctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		snap, err := w.c.Service(pctx, w.service, index, wait)
		cancel()
		w.mu.Lock()
		w.lastErr = err
		w.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t := time.NewTimer(jittered(backoff))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, w.opts.RetryMax)
			continue
		}
		backoff = w.opts.RetryMin
		if first || snap.Index != index {
			index = snap.Index
			w.publish(snap, first)
			first = false
		}
	}
}

func (w *Watcher) publish(snap ServiceSnapshot, first bool) {
	w.mu.Lock()
	w.cur, w.have = snap, true
	close(w.changed)
	w.changed = make(chan struct{})
	if first {
		close(w.ready)
	}
	w.mu.Unlock()
	for {
		select {
		case w.updates <- snap:
			return
		default:
		}
		select { // drop the stale pending set
		case <-w.updates:
		default:
		}
	}
}
