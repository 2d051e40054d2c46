package proxy

import (
	"context"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/upstream"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// A request the head sampler did not sample records no span: it keeps
// a tailRecord (pooled, fixed size) of what its spans would have held,
// and only when it turns out slow or failed (the tail rule) are its spans
// built, after the fact, with the ids it passed on and logged and the
// times it measured. The common case, a fast good request, then costs
// its ids, its traceparent and this record, not the SDK's spans.
type tailRecord struct {
	parent   trace.SpanContext // the client's, when it sent a valid one
	path     string
	failed   bool // an attempt failed (error or 5xx)
	n        int  // attempts recorded
	dropped  int  // attempts beyond len(attempts): not rebuilt
	attempts [maxTailAttempts]tailAttempt
}

// maxTailAttempts bounds the attempts an unsampled request's record
// keeps (a pool retries at most a few times; more are counted dropped).
const maxTailAttempts = 8

type tailAttempt struct {
	sid        trace.SpanID
	start, end time.Time
	target     string
	pool       string
	retry      int
	breaker    string
	status     int
	err        error
}

var tailPool = sync.Pool{New: func() any { return new(tailRecord) }}

func (rec *tailRecord) release() {
	// Only the attempts used: zeroing the whole record (about 1 KiB)
	// showed in the unsampled request's profile.
	for i := range rec.n {
		rec.attempts[i] = tailAttempt{}
	}
	rec.parent, rec.path, rec.failed, rec.n, rec.dropped = trace.SpanContext{}, "", false, 0, 0
	tailPool.Put(rec)
}

// attemptRecord notes an unsampled request's upstream attempt and puts
// its would-be span in the request's traceparent (sampled flag 0), so
// the upstream's spans join the trace under it if the request is kept.
func (at attemptTransport) attemptRecord(req *http.Request, st *reqState, pool *Pool, t *upstream.Target, attempt int, state string) *tailAttempt {
	rec := st.tail
	sid := telemetry.NewSpanID()
	tp := traceparent(st.tid, sid)
	st.setHeader(req.Header, "Traceparent", tp)
	if ts := rec.parent.TraceState(); ts.Len() > 0 {
		req.Header["Tracestate"] = []string{ts.String()}
	} else {
		delete(req.Header, "Tracestate")
	}
	st.Traceparent = tp
	if rec.n == len(rec.attempts) {
		rec.dropped++
		return nil
	}
	a := &rec.attempts[rec.n]
	rec.n++
	*a = tailAttempt{sid: sid, target: t.Address, pool: pool.name, retry: attempt - 1, breaker: state}
	return a
}

// done notes the attempt's outcome.
func (a *tailAttempt) done(rec *tailRecord, start, end time.Time, resp *http.Response, err error) {
	a.start, a.end, a.err = start, end, err
	if resp != nil && err == nil {
		a.status = resp.StatusCode
	}
	if err != nil || a.status >= 500 {
		rec.failed = true
	}
}

// traceparent formats a W3C traceparent of an unsampled span.
func traceparent(tid trace.TraceID, sid trace.SpanID) string {
	var b [55]byte
	copy(b[:3], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	copy(b[52:], "-00")
	return string(b[:])
}

// rebuild records an unsampled request's spans after the fact: the
// server span and one client span per attempt, with the ids it passed on
// and the times it measured, so the store keeps the trace and, when
// exporting, the exporter sends it.
func (h *Handler) rebuild(r *http.Request, st *reqState, id string, start time.Time, d time.Duration) {
	rec := st.tail
	ctx := context.Background()
	if rec.parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, rec.parent)
	}
	sctx, span := h.tracing.StartAs(ctx, st.tid, st.sid, r.Method+" "+st.route.Name, serverKind, trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", rec.path),
			attribute.String("http.route", st.route.Name), attribute.String("client.address", r.RemoteAddr),
			attribute.String("switchyard.request_id", id)))
	for i := range rec.n {
		a := &rec.attempts[i]
		_, as := h.tracing.StartAs(sctx, st.tid, a.sid, "upstream "+a.pool, clientKind, trace.WithTimestamp(a.start),
			trace.WithAttributes(attribute.String("server.address", a.target), attribute.String("switchyard.upstream", a.pool),
				attribute.Int("switchyard.retry", a.retry), attribute.String("switchyard.breaker", a.breaker)))
		endAttempt(as, a.status, a.err, a.end)
	}
	span.SetAttributes(attribute.Int("http.response.status_code", st.Status), attribute.Int("switchyard.attempts", st.attempts))
	if st.Status >= 500 {
		span.SetStatus(otelcodes.Error, http.StatusText(st.Status))
	}
	span.End(trace.WithTimestamp(start.Add(d)))
}
