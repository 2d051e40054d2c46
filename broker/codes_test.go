package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// Every error value survives the trip to a code and back, so the HTTP and
// native clients see the broker's own errors.
func TestErrorCodesRoundTrip(t *testing.T) {
	for _, sentinel := range []error{ErrNotFound, ErrLagged, ErrTooLarge, ErrInvalid, ErrClosed, ErrStorageFull, ErrUnauthorized, ErrForbidden} {
		code := ErrorCode(fmt.Errorf("queue %q: %w", "q", sentinel))
		back := CodeError(code, "msg")
		if !errors.Is(back, sentinel) {
			t.Errorf("%v -> %q -> %v: lost the error value", sentinel, code, back)
		}
	}
	fe := &ForbiddenError{User: "u", Permission: "consume", Kind: "queue", Name: "q"}
	if code := ErrorCode(fmt.Errorf("wrapped: %w", fe)); code != CodeForbidden || !errors.Is(CodeError(code, fe.Error()), ErrForbidden) {
		t.Errorf("ForbiddenError -> %q: want %q and back to ErrForbidden", code, CodeForbidden)
	}
	for err, want := range map[error]string{
		&QueueFullError{Queue: "q", Limit: 1}: CodeQueueFull,
		context.DeadlineExceeded:              CodeTimeout,
		errors.New("disk on fire"):            CodeInternal,
	} {
		if got := ErrorCode(err); got != want {
			t.Errorf("ErrorCode(%v) = %q, want %q", err, got, want)
		}
		if CodeError(want, "msg") != nil {
			t.Errorf("CodeError(%q) made an error value; callers own that code", want)
		}
	}
}
