package flow

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GatherOptions tune a scatter-gather.
type GatherOptions struct {
	// Quorum is how many successes are enough: Gather returns as soon as
	// it has them, cancelling the rest. 0 means all of them. A quorum
	// above the number of calls is ErrNoQuorum at once, nothing called.
	Quorum int
	// Deadline bounds the whole gather; 0 leaves it to ctx. When it
	// passes, Gather returns what it has: success if the quorum is met.
	Deadline time.Duration
}

// Result is one call's answer in a gather.
type Result[T any] struct {
	Index int // position of the call in the calls given
	Value T
	Err   error
}

// ErrNoQuorum is returned (wrapped) when fewer calls than the quorum
// succeeded by the deadline.
var ErrNoQuorum = errors.New("flow: quorum not reached")

// Gather calls every call concurrently (scatter) and collects the answers
// (gather) until the quorum of successes is reached, every call has
// answered, or the deadline passes, whichever is first; calls still
// running are cancelled. It returns every answer that arrived (the
// partial results, in arrival order, errors included) and an error
// wrapping ErrNoQuorum, with the calls' errors joined, when the
// successes fall short. Calls must honour their context. A call that
// panics fails with a *PanicError.
func Gather[T any](ctx context.Context, opts GatherOptions, calls ...func(ctx context.Context) (T, error)) ([]Result[T], error) {
	quorum := opts.Quorum
	if quorum > len(calls) {
		// Lowering it would report a quorum that was never met.
		return nil, fmt.Errorf("%w: %d successes needed, only %d calls", ErrNoQuorum, quorum, len(calls))
	}
	if quorum <= 0 {
		quorum = len(calls)
	}
	if opts.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Deadline)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan Result[T], len(calls)) // buffered: late answers never block
	for i, call := range calls {
		go func() {
			v, err := catch(func() (T, error) { return call(ctx) })
			ch <- Result[T]{Index: i, Value: v, Err: err}
		}()
	}
	var out []Result[T]
	ok := 0
	var errs []error
	for len(out) < len(calls) && ok < quorum {
		select {
		case r := <-ch:
			out = append(out, r)
			if r.Err == nil {
				ok++
			} else {
				errs = append(errs, fmt.Errorf("call %d: %w", r.Index, r.Err))
			}
			// Stop early when the quorum can no longer be reached.
			if ok+(len(calls)-len(out)) < quorum {
				return out, fmt.Errorf("%w: %d of %d needed succeeded: %w", ErrNoQuorum, ok, quorum, errors.Join(errs...))
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			return out, fmt.Errorf("%w: %d of %d needed succeeded by the deadline: %w", ErrNoQuorum, ok, quorum, errors.Join(errs...))
		}
	}
	return out, nil
}
