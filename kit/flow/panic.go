package flow

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrPanic is matched (errors.Is) by the error of a stage, call, step or
// map-reduce task that panicked.
var ErrPanic = errors.New("flow: panic")

// PanicError is a panic turned into an error: flow runs callers' code on
// its own goroutines, where the caller could not recover a panic, so it
// recovers it and reports it as the failing stage's, call's or step's
// error instead of letting it end the process.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("flow: panic: %v", e.Value) }

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// catch runs f and turns a panic in it into a *PanicError.
func catch[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return f()
}
