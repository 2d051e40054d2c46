package broker

import (
	"errors"
	"fmt"

	"github.com/switchyard/switchyard/internal/diskfull"
)

// Errors returned by the broker; test with errors.Is / errors.As.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid request")
	ErrTooLarge = errors.New("message too large")
	ErrClosed   = errors.New("broker closed")
	// ErrStorageFull: the disk is full. Publishes, moves and stream appends
	// fail with it (nothing of them is stored) until space returns, which
	// the broker notices by itself; receives, acks and nacks go on.
	ErrStorageFull = diskfull.ErrNoSpace
)

// QueueFullError is returned when a publish finds the queue at max_length
// (after waiting, for overflow "block").
type QueueFullError struct {
	Queue string
	Limit int
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("queue %q is full (max_length %d)", e.Queue, e.Limit)
}

// ErrLagged ends a topic subscription whose consumer fell more than its
// buffer behind; the subscriber must resubscribe (and missed messages).
var ErrLagged = errors.New("subscriber fell behind and was dropped")
