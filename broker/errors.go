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

// RedriveKeptError: a redrive moved what it could and left Kept messages
// in dead-letter queue DLQ because their x-original-queue names no queue
// (kit/message's DeadLetter writes "topic:NAME" for a live topic
// subscription's; see kit/message.Redrive and its To option). It is an
// ErrInvalid.
type RedriveKeptError struct {
	DLQ   string
	Kept  int
	First string // the first kept message's x-original-queue
}

func (e *RedriveKeptError) Error() string {
	return fmt.Sprintf("kept %d message(s) in %q whose x-original-queue is not a queue to go back to (the first: %q): move them with kit/message.Redrive and RedriveOptions.To",
		e.Kept, e.DLQ, e.First)
}

// Is makes the error an ErrInvalid.
func (e *RedriveKeptError) Is(target error) bool { return target == ErrInvalid }

// ErrLagged ends a topic subscription whose consumer fell more than its
// buffer behind; the subscriber must resubscribe (and missed messages).
var ErrLagged = errors.New("subscriber fell behind and was dropped")

// ErrUnauthorized: the caller did not prove who it is (no credential, or
// a wrong one). Code unauthorized; HTTP 401.
var ErrUnauthorized = errors.New("unauthorized")

// ErrForbidden: the caller is known but may not do this. Code forbidden;
// HTTP 403. The broker's own refusals are *ForbiddenError.
var ErrForbidden = errors.New("forbidden")

// ForbiddenError is an operation refused by the broker's permissions: it
// names the user, the permission it lacks and the resource. errors.Is
// matches ErrForbidden.
type ForbiddenError struct {
	User       string // the authenticated user
	Permission string // publish, consume or manage
	Kind       string // queue, topic or stream; "" for the whole broker
	Name       string // the resource's name, or a pattern such as "*"
}

func (e *ForbiddenError) Error() string {
	if e.Kind == "" {
		return fmt.Sprintf("forbidden: user %q has no %s permission on %q", e.User, e.Permission, e.Name)
	}
	return fmt.Sprintf("forbidden: user %q has no %s permission on %s %q", e.User, e.Permission, e.Kind, e.Name)
}

// Is makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }
