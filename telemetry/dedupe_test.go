package telemetry

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// TestTracesListEachTraceOnce: a trace id found in both rings (the same
// trace, or an older copy left behind) is listed once, as the trace
// Trace(id) shows; pages with a cursor still visit every id once.
func TestTracesListEachTraceOnce(t *testing.T) {
	s := NewStore(Memory{Traces: 8}, "gw", nil)
	t0 := time.Unix(1_700_000_000, 0)
	mk := func(b byte, start time.Time, slow bool) *Trace {
		var id trace.TraceID
		id[15] = b
		return &Trace{Root: "GET /", Start: start, Slow: slow, tid: id}
	}
	a, b := mk(1, t0, false), mk(2, t0.Add(time.Second), true)
	s.mu.Lock()
	s.recent.push(a)
	s.kept.push(a) // the same trace in both rings
	s.recent.push(b)
	s.kept.push(mk(2, t0.Add(2*time.Second), false)) // an older copy of b's id
	s.byID[a.tid], s.byID[b.tid] = a, b
	s.mu.Unlock()
	got := s.Traces(Query{Limit: 100})
	if len(got) != 2 || got[0].ID != b.tid.String() || !got[0].Slow || got[1].ID != a.tid.String() {
		t.Fatalf("traces %+v: want b (slow, as byID holds it) then a, once each", got)
	}
	for limit := 1; limit <= 3; limit++ {
		var ids []string
		var after *TracePos
		for {
			page, more := s.TracesPage(Query{Limit: limit, After: after})
			for _, tr := range page {
				ids = append(ids, tr.ID)
			}
			if !more {
				break
			}
			last := page[len(page)-1]
			after = &TracePos{Start: last.Start, ID: last.ID}
		}
		if len(ids) != 2 || ids[0] == ids[1] {
			t.Fatalf("limit %d: pages gave %v", limit, ids)
		}
	}
}

// TestTraceNotFoundProblemHasCode: an unknown or malformed trace id is a
// 404 problem with the code not_found, a bad query a 400 with bad_request.
func TestTraceNotFoundProblemHasCode(t *testing.T) {
	srv := httptest.NewServer(NewStore(Memory{}, "gw", nil).Handler())
	defer srv.Close()
	for path, want := range map[string]struct {
		status int
		code   string
	}{
		"/admin/traces/nope":                             {404, "not_found"},
		"/admin/traces/00000000000000000000000000000001": {404, "not_found"},
		"/admin/traces?limit=0":                          {400, "bad_request"},
		"/admin/traces?kind=weird":                       {400, "bad_request"},
		"/admin/traces?cursor=%%%":                       {400, "bad_request"},
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p map[string]any
		if resp.StatusCode != want.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(body, &p) != nil || p["code"] != want.code || p["status"] != float64(want.status) {
			t.Errorf("%s: %d %s %s, want %d code %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body, want.status, want.code)
		}
	}
}
