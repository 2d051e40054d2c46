package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/httpx"
)

// Store is a span processor that keeps recent traces in memory: every
// trace whose local root span ended, in a ring of Memory.Traces, and the
// slow or failed ones in a second ring as long, so a flood of fast good
// traces never pushes out the failures. When an exporter is set, a trace
// the sampler dropped (recorded only) that turns out slow or failed is
// exported anyway: tail-based keeping.
type Store struct {
	mem     Memory
	service string
	exp     sdktrace.SpanExporter

	mu      sync.Mutex
	pending map[trace.TraceID]*pendingTrace // spans of traces whose local root has not ended
	recent  ring
	kept    ring
	byID    map[trace.TraceID]*Trace // every trace in either ring

	exportQ chan []sdktrace.ReadOnlySpan
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once
}

type pendingTrace struct {
	spans   []sdktrace.ReadOnlySpan
	ext     []Span // received from other processes (Receiver)
	dropped int
}

// maxPending bounds the traces whose root has not ended yet.
const maxPending = 10000

// NewStore returns a store; exp may be nil (nothing exported).
func NewStore(mem Memory, service string, exp sdktrace.SpanExporter) *Store {
	if mem.Traces <= 0 {
		mem.Traces = defaultTraces
	}
	if mem.Slow <= 0 {
		mem.Slow = defaultSlow
	}
	if mem.MaxSpans <= 0 {
		mem.MaxSpans = defaultMaxSpans
	}
	s := &Store{mem: mem, service: service, exp: exp, pending: map[trace.TraceID]*pendingTrace{},
		recent: ring{buf: make([]*Trace, mem.Traces)}, kept: ring{buf: make([]*Trace, mem.Traces)},
		byID: map[trace.TraceID]*Trace{}, stop: make(chan struct{})}
	if exp != nil {
		s.exportQ = make(chan []sdktrace.ReadOnlySpan, 64)
		s.wg.Add(1)
		go s.exportLoop()
	}
	return s
}

// ring is a fixed ring of traces, oldest overwritten first.
type ring struct {
	buf  []*Trace
	next int
	n    int
}

// push adds t and returns the trace it pushed out, if any.
func (r *ring) push(t *Trace) *Trace {
	old := r.buf[r.next]
	r.buf[r.next] = t
	r.next = (r.next + 1) % len(r.buf)
	if r.n < len(r.buf) {
		r.n++
	}
	return old
}

// Trace is one kept trace as this process saw it.
type Trace struct {
	ID       string        `json:"trace_id"`
	Root     string        `json:"root"`
	Service  string        `json:"service"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Error    bool          `json:"error"`
	Slow     bool          `json:"slow"`
	Sampled  bool          `json:"sampled"`
	Spans    []Span        `json:"spans,omitempty"`
	Dropped  int           `json:"dropped_spans,omitempty"`

	raw      []sdktrace.ReadOnlySpan // this process's spans, converted to Spans when asked for
	ext      []Span                  // spans other processes exported here (Receiver)
	tid      trace.TraceID           // ID, formatted when asked for
	trueRoot bool                    // Root is the trace's first span (it has no parent)
}

// Span is one span of a kept trace.
type Span struct {
	// Service is the service.name of the process that recorded the span.
	Service    string            `json:"service,omitempty"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_id,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Start      time.Time         `json:"start"`
	Duration   time.Duration     `json:"duration_ns"`
	Status     string            `json:"status,omitempty"`
	Message    string            `json:"status_message,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Events     []string          `json:"events,omitempty"`
}

// OnStart implements sdktrace.SpanProcessor.
func (s *Store) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: it buffers the span with its
// trace and, when it is the trace's local root, decides what to keep. A
// span of a trace already kept (one that ended after its local root, or
// whose trace arrived first from another process through the Receiver)
// joins that trace.
func (s *Store) OnEnd(sp sdktrace.ReadOnlySpan) {
	sc := sp.SpanContext()
	id := sc.TraceID()
	localRoot := !sp.Parent().IsValid() || sp.Parent().IsRemote()
	s.mu.Lock()
	p := s.pending[id]
	if p == nil && localRoot {
		// A trace of one span here (a cache hit): never pending.
		s.finishLocked(sp, []sdktrace.ReadOnlySpan{sp}, nil, 0)
		return
	}
	if p == nil {
		if t := s.byID[id]; t != nil && !localRoot {
			if s.room(t) {
				t.raw = append(t.raw, sp)
			}
			s.mu.Unlock()
			return
		}
		if !localRoot && len(s.pending) >= maxPending {
			s.mu.Unlock()
			return // too many open traces: this span is lost
		}
		p = &pendingTrace{}
		s.pending[id] = p
	}
	if len(p.spans)+len(p.ext) < s.mem.MaxSpans {
		p.spans = append(p.spans, sp)
	} else {
		p.dropped++
	}
	if !localRoot {
		s.mu.Unlock()
		return
	}
	delete(s.pending, id)
	s.finishLocked(sp, p.spans, p.ext, p.dropped)
}

// finishLocked keeps the trace whose local root sp ended, with its spans
// here, and unlocks s.mu; a trace the sampler dropped that turned out
// slow or failed is exported anyway.
func (s *Store) finishLocked(sp sdktrace.ReadOnlySpan, spans []sdktrace.ReadOnlySpan, ext []Span, dropped int) {
	sc := sp.SpanContext()
	id := sc.TraceID()
	dur := sp.EndTime().Sub(sp.StartTime())
	t := &Trace{tid: id, Root: sp.Name(), Service: s.service, Start: sp.StartTime(), Duration: dur,
		Slow: dur >= s.mem.Slow, Sampled: sc.IsSampled(), Dropped: dropped, trueRoot: !sp.Parent().IsValid()}
	for _, x := range spans {
		if x.Status().Code == codes.Error {
			t.Error = true
		}
	}
	for _, x := range ext {
		if x.Status == codes.Error.String() {
			t.Error = true
		}
	}
	t.raw, t.ext = spans, ext
	if old := s.byID[id]; old != nil {
		// The trace is kept already: a second local root (a request that
		// came back through this process), or spans other processes sent
		// first. One trace under one id: merge into the old one.
		s.mergeLocked(old, t)
	} else {
		s.placeLocked(t)
	}
	s.mu.Unlock()
	if s.exportQ != nil && !t.Sampled && (t.Error || t.Slow) {
		select {
		case s.exportQ <- spans:
		default: // the exporter is behind: the trace stays in memory only
		}
	}
}

// room reports whether t may take one more span, counting the one it
// cannot as dropped.
func (s *Store) room(t *Trace) bool {
	if len(t.raw)+len(t.ext) < s.mem.MaxSpans {
		return true
	}
	t.Dropped++
	return false
}

// placeLocked puts t in the ring its flags call for and indexes it.
func (s *Store) placeLocked(t *Trace) {
	var out *Trace
	if t.Error || t.Slow {
		out = s.kept.push(t)
	} else {
		out = s.recent.push(t)
	}
	if out != nil && s.byID[out.tid] == out {
		delete(s.byID, out.tid)
	}
	s.byID[t.tid] = t
}

// unplaceLocked takes t out of its ring (the slot is left empty).
func (s *Store) unplaceLocked(t *Trace) {
	for _, r := range []*ring{&s.recent, &s.kept} {
		for i, x := range r.buf {
			if x == t {
				r.buf[i] = nil
			}
		}
	}
}

// mergeLocked adds the spans and flags of t to old, a kept trace of the
// same id. The trace's summary (root, start, duration) is the one of the
// true root when either has it, else of the earlier local root. A trace
// that became slow or failed moves to the ring of kept traces.
func (s *Store) mergeLocked(old, t *Trace) {
	wasKept := old.Error || old.Slow
	for _, sp := range t.raw {
		if s.room(old) {
			old.raw = append(old.raw, sp)
		}
	}
	for _, sp := range t.ext {
		if s.room(old) {
			old.ext = append(old.ext, sp)
		}
	}
	old.Dropped += t.Dropped
	old.Error = old.Error || t.Error
	old.Sampled = old.Sampled || t.Sampled
	if (t.trueRoot && !old.trueRoot) || (!old.trueRoot && t.Start.Before(old.Start)) {
		old.Root, old.Service, old.Start, old.Duration, old.trueRoot = t.Root, t.Service, t.Start, t.Duration, t.trueRoot
		old.Slow = t.Duration >= s.mem.Slow
	}
	old.Slow = old.Slow || t.Slow
	if !wasKept && (old.Error || old.Slow) {
		s.unplaceLocked(old)
		s.placeLocked(old)
	}
}

// Received is one span that another process exported to this one (see
// Receiver), already decoded.
type Received struct {
	TraceID trace.TraceID
	Span    Span
	// Root: the span has no parent, it is the trace's first.
	Root bool
}

// Add keeps spans recorded by other processes with the traces they
// belong to: a trace this process kept, or one whose local root has not
// ended yet, takes them in; a trace unknown here is kept as received
// (its summary is its root span, or its earliest one so far).
func (s *Store) Add(spans []Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range spans {
		failed := r.Span.Status == codes.Error.String()
		if t := s.byID[r.TraceID]; t != nil {
			s.mergeLocked(t, &Trace{tid: r.TraceID, Root: r.Span.Name, Service: r.Span.Service, Start: r.Span.Start,
				Duration: r.Span.Duration, Error: failed, ext: []Span{r.Span}, trueRoot: r.Root})
			continue
		}
		if p := s.pending[r.TraceID]; p != nil {
			if len(p.spans)+len(p.ext) < s.mem.MaxSpans {
				p.ext = append(p.ext, r.Span)
			} else {
				p.dropped++
			}
			continue
		}
		s.placeLocked(&Trace{tid: r.TraceID, Root: r.Span.Name, Service: r.Span.Service, Start: r.Span.Start,
			Duration: r.Span.Duration, Error: failed, Slow: r.Span.Duration >= s.mem.Slow, Sampled: true,
			ext: []Span{r.Span}, trueRoot: r.Root})
	}
}

func (s *Store) convert(spans []sdktrace.ReadOnlySpan, ext []Span) []Span {
	out := make([]Span, 0, len(spans)+len(ext))
	for _, sp := range spans {
		x := Span{Service: s.service, SpanID: sp.SpanContext().SpanID().String(), Name: sp.Name(), Kind: sp.SpanKind().String(),
			Start: sp.StartTime(), Duration: sp.EndTime().Sub(sp.StartTime())}
		if sp.Parent().IsValid() {
			x.ParentID = sp.Parent().SpanID().String()
		}
		if st := sp.Status(); st.Code != codes.Unset {
			x.Status, x.Message = st.Code.String(), st.Description
		}
		if attrs := sp.Attributes(); len(attrs) > 0 {
			x.Attributes = make(map[string]string, len(attrs))
			for _, a := range attrs {
				x.Attributes[string(a.Key)] = a.Value.Emit()
			}
		}
		for _, e := range sp.Events() {
			x.Events = append(x.Events, e.Name)
		}
		out = append(out, x)
	}
	out = append(out, ext...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func (s *Store) exportLoop() {
	defer s.wg.Done()
	for {
		select {
		case spans := <-s.exportQ:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.exp.ExportSpans(ctx, spans)
			cancel()
		case <-s.stop:
			return
		}
	}
}

// Shutdown implements sdktrace.SpanProcessor.
func (s *Store) Shutdown(context.Context) error {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
	return nil
}

// ForceFlush implements sdktrace.SpanProcessor.
func (s *Store) ForceFlush(ctx context.Context) error {
	for s.exportQ != nil && len(s.exportQ) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Query selects traces.
type Query struct {
	// Kind: "all" (default), "slow", "error" or "kept" (slow or failed).
	Kind string
	// MinDuration keeps only traces at least this long.
	MinDuration time.Duration
	// Limit bounds the answer, newest first. Default 50.
	Limit int
	// After resumes the listing after this trace (the last of the page
	// before): only traces that sort after it, newest first (an older
	// start, or the same start and a smaller id). Nil: from the newest.
	After *TracePos
}

// TracePos is a trace's place in the newest-first order: its start and
// id (hex).
type TracePos struct {
	Start time.Time
	ID    string
}

// Traces returns kept traces without their spans, newest first.
func (s *Store) Traces(q Query) []Trace {
	out, _ := s.TracesPage(q)
	return out
}

// TracesPage is Traces, and whether more traces follow the page.
func (s *Store) TracesPage(q Query) ([]Trace, bool) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	s.mu.Lock()
	// Each trace once: a trace id found in both rings (or twice in one)
	// is listed as the trace byID holds for it, the one Trace(id) shows.
	var all []*Trace
	seen := map[trace.TraceID]bool{}
	for _, r := range []*ring{&s.recent, &s.kept} {
		for _, t := range r.buf {
			if t == nil || seen[t.tid] {
				continue
			}
			seen[t.tid] = true
			if cur := s.byID[t.tid]; cur != nil {
				t = cur
			}
			all = append(all, t)
		}
	}
	s.mu.Unlock()
	ids := make(map[*Trace]string, len(all))
	for _, t := range all {
		ids[t] = t.tid.String()
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Start.Equal(all[j].Start) {
			return all[i].Start.After(all[j].Start)
		}
		return ids[all[i]] > ids[all[j]]
	})
	out := []Trace{}
	for _, t := range all {
		if a := q.After; a != nil && (t.Start.After(a.Start) || (t.Start.Equal(a.Start) && ids[t] >= a.ID)) {
			continue
		}
		switch q.Kind {
		case "slow":
			if !t.Slow {
				continue
			}
		case "error":
			if !t.Error {
				continue
			}
		case "kept":
			if !t.Slow && !t.Error {
				continue
			}
		}
		if t.Duration < q.MinDuration {
			continue
		}
		if len(out) == q.Limit {
			return out, true
		}
		c := *t
		c.Spans, c.raw, c.ext, c.ID = nil, nil, nil, ids[t]
		out = append(out, c)
	}
	return out, false
}

// Trace returns one trace with its spans.
func (s *Store) Trace(id string) (Trace, bool) {
	tid, err := trace.TraceIDFromHex(id)
	if err != nil {
		return Trace{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byID[tid]
	if t == nil {
		return Trace{}, false
	}
	c := *t
	c.Spans, c.raw, c.ext, c.ID = s.convert(t.raw, t.ext), nil, nil, t.tid.String()
	return c, true
}

// Page sizes of GET /admin/traces: without ?limit= and at most.
const (
	defaultTracesPage = 50
	maxTracesPage     = 10000
)

// Handler serves the store:
//
//	GET /admin/traces?kind=all|slow|error|kept&min_ms=N&limit=N   summaries, newest first
//	GET /admin/traces/{id}                                         one trace with its spans
//
// Both answer with an ETag of the body (a page changes as traces arrive
// and age out, a trace as its spans do) and 304 Not Modified to an
// If-None-Match that has it, as the admin API's other lists do.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/traces", func(w http.ResponseWriter, r *http.Request) {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("query %.80q: %v: expected name=value pairs, percent-encoded", r.URL.RawQuery, err))
			return
		}
		q := Query{Kind: r.URL.Query().Get("kind")}
		switch q.Kind {
		case "", "all", "slow", "error", "kept":
		default:
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("kind %q: want all, slow, error or kept", q.Kind))
			return
		}
		if v := r.URL.Query().Get("min_ms"); v != "" {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("min_ms %q: want milliseconds, 0 or more", v))
				return
			}
			q.MinDuration = time.Duration(n * float64(time.Millisecond))
		}
		// limit and cursor as every cursor-paged list reads them (one
		// each, limit 1..10000, default 50; a cursor of this list).
		p, err := httpx.ParsePage(r, "traces", defaultTracesPage, maxTracesPage)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		q.Limit = p.Limit
		if p.After != "" {
			if q.After, err = parseTracePos(p.After); err != nil {
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		page, more := s.TracesPage(q)
		if more && len(page) > 0 {
			last := page[len(page)-1]
			httpx.SetNextLink(w, r, "traces", strconv.FormatInt(last.Start.UnixNano(), 10)+"."+last.ID, q.Limit)
		}
		writeTagged(w, r, map[string]any{"traces": page})
	})
	mux.HandleFunc("GET /admin/traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.Trace(r.PathValue("id"))
		if !ok {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no trace %q kept here (32 hex digits; traces age out)", r.PathValue("id")))
			return
		}
		writeTagged(w, r, t)
	})
	return mux
}

// writeTagged answers v as JSON with its ETag, or 304 when r's
// If-None-Match names it.
func writeTagged(w http.ResponseWriter, r *http.Request, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	if httpx.NotModified(w, r, httpx.ETag(buf.Bytes())) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// writeErr answers an RFC 9457 problem details object (httpx.Problem)
// with the code the admin API uses for the status: bad_request (400) or
// not_found (404).
func writeErr(w http.ResponseWriter, status int, msg string) {
	code := "bad_request"
	if status == http.StatusNotFound {
		code = "not_found"
	}
	httpx.WriteProblem(w, status, code, msg)
}

// parseTracePos reads a traces cursor's position: UNIXNANO.TRACEID.
func parseTracePos(pos string) (*TracePos, error) {
	ns, id, ok := strings.Cut(pos, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, &httpx.PageError{Msg: "query parameter cursor: not a position of this list (traces): expected the cursor of a Link rel=\"next\", unchanged"}
	}
	return &TracePos{Start: time.Unix(0, n), ID: id}, nil
}
