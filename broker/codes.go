package broker

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Error codes: the stable names of the broker's errors in the HTTP API's
// {"code": ...} bodies and the native protocol's Err frames. ErrorCode and
// CodeError translate between them and the error values, so that every
// front end and client maps them the same way.
const (
	CodeQueueFull  = "queue_full" // *QueueFullError
	CodeNotFound   = "not_found"  // ErrNotFound
	CodeLagged     = "lagged"     // ErrLagged
	CodeTooLarge   = "too_large"  // ErrTooLarge
	CodeBadRequest = "bad_request"
	CodeClosed     = "closed"  // ErrClosed
	CodeTimeout    = "timeout" // the request's context ended
	CodeInternal   = "internal"
	// CodeStorageFull: the disk is full (ErrStorageFull); publishes and
	// appends are refused until space returns, consumers keep working.
	CodeStorageFull = "storage_full"
	// CodeUnauthorized: no credential or a wrong one (ErrUnauthorized);
	// HTTP 401, and on the native protocol the connection is closed.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the user lacks the permission (ErrForbidden); HTTP 403.
	CodeForbidden = "forbidden"
)

// ErrorCode returns the code of err: CodeInternal for an error that is
// none of the broker's.
func ErrorCode(err error) string {
	var full *QueueFullError
	switch {
	case errors.As(err, &full):
		return CodeQueueFull
	case errors.Is(err, ErrStorageFull), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return CodeStorageFull
	case errors.Is(err, ErrUnauthorized):
		return CodeUnauthorized
	case errors.Is(err, ErrForbidden):
		return CodeForbidden
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrLagged):
		return CodeLagged
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrInvalid):
		return CodeBadRequest
	case errors.Is(err, ErrClosed):
		return CodeClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	}
	return CodeInternal
}

// CodeError turns a code and message a broker answered into an error that
// errors.Is recognises like the broker's own, or nil for a code without
// an error value (queue_full carries details: its callers build the
// *QueueFullError; timeout and internal stay the caller's to report).
func CodeError(code, msg string) error {
	var sentinel error
	switch code {
	case CodeNotFound:
		sentinel = ErrNotFound
	case CodeLagged:
		sentinel = ErrLagged
	case CodeTooLarge:
		sentinel = ErrTooLarge
	case CodeBadRequest:
		sentinel = ErrInvalid
	case CodeClosed:
		sentinel = ErrClosed
	case CodeStorageFull:
		sentinel = ErrStorageFull
	case CodeUnauthorized:
		sentinel = ErrUnauthorized
	case CodeForbidden:
		sentinel = ErrForbidden
	default:
		return nil
	}
	return fmt.Errorf("%s: %w", msg, sentinel)
}
