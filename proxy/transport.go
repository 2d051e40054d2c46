package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/upstream"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// attemptSpan starts the client span of one upstream attempt, a child of
// the request's server span, and puts its context in the request's
// traceparent: the upstream's spans join the trace under this attempt.
func (at attemptTransport) attemptSpan(req *http.Request, st *reqState, pool *Pool, t *upstream.Target, attempt int, state string) trace.Span {
	ctx := trace.ContextWithSpan(req.Context(), st.span)
	_, span := at.h.tracer.Start(ctx, "upstream "+pool.name, clientKind,
		trace.WithAttributes(attribute.String("server.address", t.Address), attribute.String("switchyard.upstream", pool.name),
			attribute.Int("switchyard.retry", attempt-1), attribute.String("switchyard.breaker", state)))
	traceContext.Inject(trace.ContextWithSpan(req.Context(), span), propagation.HeaderCarrier(req.Header))
	st.Traceparent = req.Header.Get("Traceparent")
	return span
}

// endAttemptSpan ends an attempt's span when its response headers (or its
// error) arrived; the body streams afterwards under the server span.
func endAttemptSpan(span trace.Span, resp *http.Response, err error) {
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	endAttempt(span, status, err, time.Time{})
}

// endAttempt ends an attempt's span with its outcome, at end (zero: now).
func endAttempt(span trace.Span, status int, err error, end time.Time) {
	var at []trace.EventOption
	if !end.IsZero() {
		at = []trace.EventOption{trace.WithTimestamp(end)}
	}
	switch {
	case err != nil:
		span.RecordError(err, at...)
		span.SetStatus(otelcodes.Error, err.Error())
	case status >= 500:
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		span.SetStatus(otelcodes.Error, http.StatusText(status))
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if end.IsZero() {
		span.End()
	} else {
		span.End(trace.WithTimestamp(end))
	}
}

// clientKind is the attempt spans' kind option, made once.
var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// attemptTransport is the RoundTripper behind the reverse proxy: for each
// request it picks targets, applies breakers, sends attempts and decides
// retries. The reverse proxy in front of it handles the client side
// (headers, streaming, upgrades).
type attemptTransport struct {
	h *Handler
}

// RoundTrip implements http.RoundTripper for one proxied request.
func (at attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return nil, errors.New("proxy: request without routing state")
	}
	pool := st.pool
	if pool.breaker != nil {
		if err := pool.breaker.Allow(); err != nil {
			st.circuitOpen = true
			return nil, openError(pool.name, err)
		}
	}
	var mirrored func(int, time.Duration)
	var start time.Time
	if mm := pool.members.Load().mirror; mm != nil { // a rollout's shadow traffic
		switch {
		case st.bodyMode == bodyBuffered:
			mirrored = mm.Mirror(req, st.body)
		case req.Body == nil || req.Body == http.NoBody:
			mirrored = mm.Mirror(req, nil)
		}
		start = time.Now()
	}
	resp, err := at.attempts(req, st, pool)
	if mirrored != nil {
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		mirrored(status, time.Since(start))
	}
	if pool.breaker != nil && st.bodyErr.Load() != nil {
		// The client's body failed: nothing learnt about the upstream.
		pool.breaker.Release()
	} else if pool.breaker != nil {
		// A request the client abandoned says nothing about the upstream
		// (the target breakers treat it the same way).
		pool.breaker.Record(err == nil && resp.StatusCode < 500 || err != nil && st.clientGone())
	}
	return resp, err
}

func openError(upstreamName string, err error) *httpx.Error {
	e := &httpx.Error{Status: http.StatusServiceUnavailable, Code: "circuit_open",
		Msg: "circuit breaker open for upstream " + upstreamName, RetryAfter: time.Second, Err: err}
	var oe *breaker.OpenError
	if errors.As(err, &oe) && oe.RetryAfter() > 0 {
		e.RetryAfter = oe.RetryAfter()
	}
	return e
}

func (at attemptTransport) attempts(req *http.Request, st *reqState, pool *Pool) (*http.Response, error) {
	maxAttempts := pool.attempts
	idempotencyKey := req.Header.Get("Idempotency-Key") != ""
	safe := retry.Safe(req.Method, idempotencyKey, true)

	// A body can only be resent if we kept it: keep up to maxBody bytes
	// when retries are enabled; larger bodies are streamed once and such a
	// request is never retried.
	var body []byte
	replayable := true
	switch st.bodyMode {
	case bodyBuffered: // read ahead by forward
		body = st.body
	case bodyStreamed:
		replayable = false
	}
	if st.bodyMode == bodyUnread && req.Body != nil && req.Body != http.NoBody && maxAttempts > 1 {
		buf, rest, err := bufferBody(req.Body, at.h.maxBody)
		if err != nil {
			var pe *httpx.Error
			if errors.As(err, &pe) {
				return nil, pe // e.g. a body-size middleware's 413
			}
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
					Msg: "request body larger than " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes", Err: err}
			}
			return nil, &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request_body", Msg: "reading request body", Err: err}
		}
		body = buf
		if rest != nil {
			replayable = false
			req.Body = readCloser{io.MultiReader(bytes.NewReader(buf), rest), req.Body}
		}
	}

	if pool.budget != nil {
		pool.budget.Request(time.Now())
	}
	m := pool.members.Load()
	st.sticky = m.sticky
	var (
		tried    upstream.Tried
		lastResp *http.Response
		lastErr  error
		picks    int
	)
	for attempt := 1; ; {
		picks++
		if picks > len(m.targets)+maxAttempts {
			break // every candidate's breaker is open
		}
		t := m.policy.Pick(req, tried)
		if t == nil {
			break
		}
		tried.Add(t.Index)
		var tb *breaker.Breaker
		if m.breakers != nil {
			tb = m.breakers[t.Index]
			if err := tb.Allow(); err != nil {
				st.circuitOpen = true
				lastErr = openError(pool.name+" target "+t.Address, err)
				continue
			}
		}
		if lastResp != nil { // discard the previous, retried response
			drainClose(lastResp.Body)
			lastResp = nil
		}
		if body != nil && replayable {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		req.URL.Scheme, req.URL.Host = pool.scheme, t.Address
		st.target = t
		st.attempts = attempt

		var span trace.Span
		var ta *tailAttempt
		if st.span != nil || st.tail != nil {
			state := "none"
			if tb != nil {
				state = tb.State().String()
			}
			if st.span != nil {
				span = at.attemptSpan(req, st, pool, t, attempt, state)
			} else {
				ta = at.attemptRecord(req, st, pool, t, attempt, state)
			}
		}
		start := time.Now()
		t.Begin()
		resp, err := pool.transport.RoundTrip(req)
		now := time.Now()
		if span != nil {
			endAttemptSpan(span, resp, err)
		} else if ta != nil {
			ta.done(st.tail, start, now, resp, err)
		}
		if ce := st.clientBodyFailed(err); ce != nil {
			// Reading the client's body failed while it was sent: the
			// client's fault, whatever the transport or the target made of
			// the cut request. Nothing is learnt about the target and the
			// request cannot be retried (its body is gone).
			if tb != nil {
				tb.Release()
			}
			if err != nil {
				t.Done(false)
				return nil, ce
			}
			return at.finish(st, t, resp, nil, false)
		}
		failed := err != nil || resp.StatusCode >= 500
		if err != nil && st.clientGone() {
			// The client went away: not the target's fault.
			t.Done(false)
			if tb != nil {
				tb.Record(true)
			}
			return nil, err
		}
		if tb != nil {
			tb.Record(!failed)
		}
		tobs := m.obs.target(t)
		if m.outlier != nil && m.outlier.Observe(t, failed, now) {
			tobs.ejection()
		}
		tobs.attempt(resp, err, now.Sub(start))
		if m.observer != nil {
			m.observer.ObserveAttempt(t, failed, now.Sub(start))
		}
		if err == nil {
			t.ObserveLatency(now, now.Sub(start))
		}

		// Decide whether to retry.
		if attempt >= maxAttempts || pool.retry == nil {
			return at.finish(st, t, resp, err, failed)
		}
		var retryable bool
		if err != nil {
			reached := !isDialError(err)
			retryable = pool.retry.RetryOnError(classify(err)) &&
				retry.Safe(req.Method, idempotencyKey, reached) && replayable
		} else {
			retryable = pool.retry.RetryOnStatus(resp.StatusCode) && safe && replayable
		}
		if !retryable {
			return at.finish(st, t, resp, err, failed)
		}
		if !pool.budget.TryRetry(now) {
			m.obs.budgetRefused()
			return at.finish(st, t, resp, err, failed)
		}
		t.Done(failed)
		lastResp, lastErr = resp, err
		m.obs.retry()
		if !sleep(req.Context(), pool.backoff.Delay(attempt, jitterRand{})) {
			if lastResp != nil {
				drainClose(lastResp.Body)
			}
			return nil, req.Context().Err()
		}
		attempt++
	}
	// No (further) target could be tried.
	if lastResp != nil {
		return lastResp, nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, errNoTarget
}

// finish hands the response to the reverse proxy, keeping the target's
// in-flight count until the body is fully read (or the upgrade starts).
func (at attemptTransport) finish(st *reqState, t *upstream.Target, resp *http.Response, err error, failed bool) (*http.Response, error) {
	if err != nil {
		t.Done(true)
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Done(false) // a long-lived upgraded connection is not an in-flight request
		return resp, nil
	}
	resp.Body = &trackedBody{ReadCloser: resp.Body, st: st, t: t, failed: failed}
	return resp, nil
}

// trackedBody ends a target's in-flight request when the body is closed,
// and records a body that broke off (for the status in logs and metrics,
// and as a failure of the target).
type trackedBody struct {
	io.ReadCloser
	st     *reqState
	t      *upstream.Target
	failed bool
	done   bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		if u, ok := b.ReadCloser.(interface{ upstreamErr() error }); ok {
			// The frame-level HTTP/2 path ends a gRPC response the
			// upstream broke off with an UNAVAILABLE status rather than
			// an error: it is a failure all the same.
			if uerr := u.upstreamErr(); uerr != nil && b.st.respBodyErr == nil {
				b.st.respBodyErr = uerr
				b.failed = true
			}
		}
	}
	if err != nil && err != io.EOF && b.st.respBodyErr == nil {
		b.st.respBodyErr = err
		if !b.st.clientGone() {
			b.failed = true
		}
	}
	return n, err
}

// ready reports whether a Read would return at once, for bodies that can
// tell (the frame-level HTTP/2 path's); false otherwise.
func (b *trackedBody) ready() bool {
	r, ok := b.ReadCloser.(interface{ ready() bool })
	return ok && r.ready()
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done {
		b.done = true
		b.t.Done(b.failed)
	}
	return err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// bufferBody reads up to limit bytes of r. When r holds more, rest is the
// unread remainder (r itself) and buf the part already read.
func bufferBody(r io.Reader, limit int) (buf []byte, rest io.Reader, err error) {
	buf, err = io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, nil, err
	}
	if len(buf) > limit {
		return buf, r, nil
	}
	return buf, nil, nil
}

// drainClose reads a little of an unwanted body so the connection can be
// reused, then closes it.
func drainClose(rc io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, rc, 64<<10)
	_ = rc.Close()
}
