// Package httpx is the contract between the gateway's HTTP middleware and
// the proxy that runs them: the middleware type, the gateway's own error
// answers, and the per-request state (request id, recorded status) that
// middleware reads and the access log and metrics report.
//
// It sits below every middleware package (auth, cors, ipfilter, transform,
// throttle, compose, publish) and below the proxy, and imports only the
// standard library, so a middleware never needs the proxy engine.
package httpx

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Middleware wraps a handler. A route's chain runs outermost first.
type Middleware func(next http.Handler) http.Handler

// Chain wraps h in mws so that mws[0] runs first.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Error is a gateway-generated failure: the gateway answers it itself with
// a JSON body {"error": ..., "code": ..., "request_id": ...} and Status.
type Error struct {
	// Status is the HTTP status sent to the client.
	Status int
	// Code is a stable machine-readable reason (no_route, no_target,
	// circuit_open, upstream_timeout, rate_limited, ...).
	Code string
	// Msg is a human-readable message.
	Msg string
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Err is the underlying cause, if any; it is logged, never sent.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

type errorBody struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

// Write sends the error to the client. Most callers want WriteError,
// which also records the status for the access log.
func (e *Error) Write(w http.ResponseWriter, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	w.WriteHeader(e.Status)
	b, _ := json.Marshal(errorBody{Error: e.Msg, Code: e.Code, RequestID: requestID})
	_, _ = w.Write(append(b, '\n'))
}

// State follows one request through the gateway. The proxy creates it;
// middleware reads the request id and records the status of answers it
// writes itself.
type State struct {
	// RequestID is the gateway's id of the request (the client's
	// X-Request-Id when valid, otherwise generated).
	RequestID string
	// Traceparent is the W3C trace context the proxy forwarded upstream
	// (a child of the client's, or a new trace); "" before forwarding.
	Traceparent string
	// Status is the status of the answer, for the access log and metrics.
	Status int
}

// StateKey is the context key of a request's *State. A context may carry
// the state by answering Value(StateKey{}) itself (the proxy's
// per-request context does, to save an allocation).
type StateKey struct{}

// NewContext returns ctx carrying st.
func NewContext(ctx context.Context, st *State) context.Context {
	return context.WithValue(ctx, StateKey{}, st)
}

// StateOf returns the request's state, or nil outside the gateway.
func StateOf(r *http.Request) *State {
	st, _ := r.Context().Value(StateKey{}).(*State)
	return st
}

// WriteError answers r with a gateway error (JSON body, Retry-After) and
// records its status for the access log and metrics. A gRPC call gets the
// error as a gRPC status instead (WriteGRPC); the access log still shows
// the HTTP status the error stands for.
func WriteError(w http.ResponseWriter, r *http.Request, e *Error) {
	id := ""
	if st := StateOf(r); st != nil {
		st.Status = e.Status
		id = st.RequestID
	}
	if IsGRPC(r) {
		e.WriteGRPC(w, id)
		return
	}
	e.Write(w, id)
}

// RecordStatus records the status of a response a middleware wrote itself.
func RecordStatus(r *http.Request, status int) {
	if st := StateOf(r); st != nil {
		st.Status = status
	}
}

// RequestID returns the gateway's id of the request ("" outside the gateway).
func RequestID(r *http.Request) string {
	if st := StateOf(r); st != nil {
		return st.RequestID
	}
	return ""
}
