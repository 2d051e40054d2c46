package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/retry"
)

// Error is a gateway-generated failure: the proxy answers it itself with a
// JSON body {"error": ..., "code": ...} and Status.
type Error struct {
	// Status is the HTTP status sent to the client.
	Status int
	// Code is a stable machine-readable reason (no_route, no_target,
	// circuit_open, upstream_timeout, upstream_unreachable, upstream_error,
	// client_closed, bad_request_body, request_body_timeout).
	Code string
	// Msg is a human-readable message.
	Msg string
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// write sends the error to the client.
func (e *Error) write(w http.ResponseWriter, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	w.WriteHeader(e.Status)
	fmt.Fprintf(w, `{"error":%q,"code":%q,"request_id":%q}`+"\n", e.Msg, e.Code, requestID)
}

var (
	errNoTarget = &Error{Status: http.StatusServiceUnavailable, Code: "no_target",
		Msg: "no healthy target available", RetryAfter: time.Second}
)

// classify maps a transport error to the retry package's error kind.
func classify(err error) retry.ErrorKind {
	var op *net.OpError
	switch {
	case isDialError(err):
		return retry.ConnectFailure
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return retry.Timeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return retry.Reset
	case errors.As(err, &op):
		return retry.Reset
	}
	return retry.Other
}

// isDialError reports whether err happened while connecting, so the request
// never reached a backend and any request may be retried safely.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// toError turns an upstream failure into the response the client sees.
func toError(err error, clientGone bool) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe // e.g. a body-size middleware's 413
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Msg: "request body larger than " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes", Err: err}
	}
	if clientGone {
		return &Error{Status: 499, Code: "client_closed", Msg: "client closed the request", Err: err}
	}
	var ce *ClientBodyError
	if errors.As(err, &ce) {
		return ce.toError()
	}
	switch classify(err) {
	case retry.ConnectFailure:
		return &Error{Status: http.StatusBadGateway, Code: "upstream_unreachable", Msg: "could not connect to upstream", Err: err}
	case retry.Timeout:
		return &Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Msg: "upstream timed out", Err: err}
	}
	return &Error{Status: http.StatusBadGateway, Code: "upstream_error", Msg: "upstream request failed", Err: err}
}
