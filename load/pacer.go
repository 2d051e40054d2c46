package load

import (
	"context"
	"runtime"
	"time"
)

// Go's timers wake a goroutine only when the runtime next looks at its
// timers; in an otherwise idle process that is the netpoller's epoll_wait,
// whose timeout has millisecond resolution, so time.Sleep(200µs) sleeps
// about 1.1ms (measured on this machine: p50 +0.9ms, p99 +1.3ms). For a
// load generator that is a timing error added to every corrected latency.
// The pacer therefore sleeps on a timer only until preciseWindow before the
// due time and waits out the rest in nanosleep(2), which is accurate to
// microseconds. nanosleep holds an OS thread and its P (the runtime takes
// the P back only when sysmon notices, which can take milliseconds), so it
// is used by at most GOMAXPROCS-1 goroutines at a time, leaving one P for
// the I/O: with GOMAXPROCS=1 (e.g. under taskset -c 0) it is never used.
// Measured: with one P, nanosleep in the pacer cut the sustainable rate by
// more than half. The goroutines that do not get a slot fall back to the
// timer; at rates where that happens the busy runtime checks its timers
// often anyway (send lag is reported either way).

const preciseWindow = 2 * time.Millisecond

type pacer struct {
	sem chan struct{} // nil: timers only
}

func newPacer() *pacer {
	if n := runtime.GOMAXPROCS(0) - 1; n > 0 {
		return &pacer{sem: make(chan struct{}, n)}
	}
	return &pacer{}
}

// waitUntil blocks until due or until ctx is done; it reports false if ctx
// ended the wait. timer is the caller's own, stopped, timer.
func (p *pacer) waitUntil(ctx context.Context, timer *time.Timer, due time.Time) bool {
	wait := time.Until(due)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	if p.sem == nil {
		return p.sleep(ctx, timer, wait)
	}
	if wait > preciseWindow {
		if !p.sleep(ctx, timer, wait-preciseWindow) {
			return false
		}
		if wait = time.Until(due); wait <= 0 {
			return true
		}
	}
	select {
	case p.sem <- struct{}{}:
		preciseSleep(wait)
		<-p.sem
		return ctx.Err() == nil
	default:
	}
	return p.sleep(ctx, timer, wait)
}

func (p *pacer) sleep(ctx context.Context, timer *time.Timer, wait time.Duration) bool {
	timer.Reset(wait)
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		timer.Stop()
		return false
	}
}
