package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"

	"github.com/switchyard/switchyard/httpx"
)

// Sources are where a dashboard reads from. Every field is optional: a
// missing source is a panel shown as "not available". The functions are
// called from one goroutine at a time, once a second while a page is open.
type Sources struct {
	// Status is the gateway's routes, upstreams and targets.
	Status func(ctx context.Context) (Status, error)
	// SLOs, Rollouts and Faults are the operations panels (the admin
	// contract's GET /admin/slos, /admin/rollouts, /admin/faults).
	SLOs     func(ctx context.Context) ([]SLO, error)
	Rollouts func(ctx context.Context) ([]Rollout, error)
	Faults   func(ctx context.Context) ([]Fault, error)
	// Traces are recent slow or failed traces, newest first.
	Traces func(ctx context.Context) ([]TraceInfo, error)
	// Processes are the system's processes (hitch up's supervisor).
	Processes func(ctx context.Context) ([]Process, error)
	// Metrics gathers the gateway's Prometheus metrics (a
	// prometheus.Gatherer's Gather), for per-route rates and latency.
	Metrics func() ([]*dto.MetricFamily, error)
	// MetricLabels, when set, keeps only series carrying all these label
	// values (several gateways sharing one registry).
	MetricLabels map[string]string
	// Brokers returns the broker HTTP API base URLs to show, read on every
	// snapshot (so a reload applies).
	Brokers func() []string
	// Client calls the brokers. Default: a client with a 2 s timeout that
	// ignores proxy environment variables.
	Client *http.Client
}

// maxBody bounds every JSON answer a source reads.
const maxBody = 4 << 20

// FromAdmin returns the sources read from an admin API handler called in
// process (no network): GET /admin/status, /admin/slos, /admin/rollouts,
// /admin/faults, /admin/traces?kind=kept&limit=20 and, when processes is
// not empty, that path (answering {"processes": [...]}). An endpoint that
// answers 404 or 405 is "not available", so panels light up as soon as the
// handler serves them.
func FromAdmin(h http.Handler, processes string) Sources {
	s := Sources{
		Status: func(ctx context.Context) (Status, error) {
			var st Status
			err := getInProcess(ctx, h, "/admin/status", &st)
			return st, err
		},
		SLOs: func(ctx context.Context) ([]SLO, error) {
			var v struct {
				SLOs []SLO `json:"slos"`
			}
			err := getInProcess(ctx, h, "/admin/slos", &v)
			return v.SLOs, err
		},
		Rollouts: func(ctx context.Context) ([]Rollout, error) {
			var v struct {
				Rollouts []Rollout `json:"rollouts"`
			}
			err := getInProcess(ctx, h, "/admin/rollouts", &v)
			return v.Rollouts, err
		},
		Faults: func(ctx context.Context) ([]Fault, error) {
			var v struct {
				Faults []Fault `json:"faults"`
			}
			err := getInProcess(ctx, h, "/admin/faults", &v)
			return v.Faults, err
		},
		Traces: func(ctx context.Context) ([]TraceInfo, error) {
			var v struct {
				Traces []TraceInfo `json:"traces"`
			}
			err := getInProcess(ctx, h, "/admin/traces?kind=kept&limit=20", &v)
			return keepTraceIDs(v.Traces), err
		},
	}
	if processes != "" {
		s.Processes = func(ctx context.Context) ([]Process, error) {
			var v struct {
				Processes []Process `json:"processes"`
			}
			err := getInProcess(ctx, h, processes, &v)
			return v.Processes, err
		}
	}
	return s
}

var traceID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// keepTraceIDs drops traces whose id is not 32 lowercase hex digits: the
// page builds /admin/traces/{id} links from them.
func keepTraceIDs(ts []TraceInfo) []TraceInfo {
	out := ts[:0]
	for _, t := range ts {
		if traceID.MatchString(t.ID) {
			out = append(out, t)
		}
	}
	return out
}

// getInProcess serves GET path on h into a buffer and decodes its JSON.
func getInProcess(ctx context.Context, h http.Handler, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin"+path, nil)
	if err != nil {
		return err
	}
	req.RemoteAddr = "127.0.0.1:0"
	w := &bufferWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return decodeAnswer(w.code, "GET "+path, bytes.NewReader(w.buf.Bytes()), v)
}

// decodeAnswer decodes a 200 JSON answer into v: 404 and 405 are
// ErrNotAvailable, other statuses an error quoting the start of the body.
func decodeAnswer(code int, what string, body io.Reader, v any) error {
	switch {
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return ErrNotAvailable
	case code != http.StatusOK:
		b, _ := io.ReadAll(io.LimitReader(body, 200))
		return fmt.Errorf("%s: status %d: %s", what, code, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(io.LimitReader(body, maxBody)).Decode(v); err != nil {
		return fmt.Errorf("%s: decoding the answer: %v", what, err)
	}
	return nil
}

// bufferWriter is a ResponseWriter that keeps the answer in memory, up to
// maxBody bytes (the rest is dropped and fails decoding).
type bufferWriter struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (w *bufferWriter) Header() http.Header { return w.h }
func (w *bufferWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *bufferWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if room := maxBody - w.buf.Len(); room < len(p) {
		w.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return w.buf.Write(p)
}

// maxQueues bounds the queues (and, separately, streams) shown per broker.
const maxQueues = 200

// pollBroker reads a broker's queues and streams over its HTTP API.
func pollBroker(ctx context.Context, c *http.Client, base string) Broker {
	b := Broker{URL: base, Queues: []Queue{}, Streams: []Stream{}}
	base = strings.TrimSuffix(base, "/")
	var ql, sl struct {
		Queues  []string `json:"queues"`
		Streams []string `json:"streams"`
	}
	qOmitted, err := getNames(ctx, c, base+"/v1/queues", "queues", &ql.Queues)
	if err != nil {
		b.Error = err.Error()
		return b
	}
	sOmitted, streamErr := getNames(ctx, c, base+"/v1/streams", "streams", &sl.Streams)
	b.Omitted = qOmitted + sOmitted
	queues := make([]*Queue, len(ql.Queues))
	streams := make([]*Stream, len(sl.Streams))
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 8)
		mu   sync.Mutex
		errs []string
	)
	fail := func(err error) { mu.Lock(); errs = append(errs, err.Error()); mu.Unlock() }
	for i, name := range ql.Queues {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var qi struct {
				Depth        int `json:"depth"`
				InFlight     int `json:"in_flight"`
				Delayed      int `json:"delayed"`
				DeadLettered int `json:"dead_lettered"`
			}
			if err := getJSON(ctx, c, base+"/v1/queues/"+url.PathEscape(name), &qi); err != nil {
				if err != ErrNotAvailable { // deleted meanwhile: skip it
					fail(err)
				}
				return
			}
			queues[i] = &Queue{Name: name, Depth: qi.Depth, InFlight: qi.InFlight, Delayed: qi.Delayed, DeadLettered: qi.DeadLettered}
		}()
	}
	for i, name := range sl.Streams {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var si struct {
				FirstOffset uint64            `json:"first_offset"`
				LastOffset  uint64            `json:"last_offset"`
				Groups      map[string]uint64 `json:"groups"`
			}
			if err := getJSON(ctx, c, base+"/v1/streams/"+url.PathEscape(name), &si); err != nil {
				if err != ErrNotAvailable {
					fail(err)
				}
				return
			}
			s := &Stream{Name: name, LastOffset: si.LastOffset, Groups: []Group{}}
			for g, next := range si.Groups {
				s.Groups = append(s.Groups, Group{Name: g, Committed: next, Lag: streamLag(si.FirstOffset, si.LastOffset, next)})
			}
			sort.Slice(s.Groups, func(a, b int) bool { return s.Groups[a].Name < s.Groups[b].Name })
			streams[i] = s
		}()
	}
	wg.Wait()
	for _, q := range queues {
		if q != nil {
			b.Queues = append(b.Queues, *q)
		}
	}
	for _, s := range streams {
		if s != nil {
			b.Streams = append(b.Streams, *s)
		}
	}
	if streamErr != nil && streamErr != ErrNotAvailable {
		errs = append(errs, streamErr.Error())
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		b.Error = errs[0]
		if len(errs) > 1 {
			b.Error += fmt.Sprintf(" (and %d more errors)", len(errs)-1)
		}
	}
	return b
}

// streamLag is how many messages of a stream holding first..last a group
// whose next offset is next has not read (offsets count from 1; next 0
// means it has read nothing).
func streamLag(first, last, next uint64) uint64 {
	if last == 0 {
		return 0
	}
	if next < first {
		next = first
	}
	if next > last {
		return 0
	}
	return last - next + 1
}

// maxListPages bounds the pages of a broker listing a snapshot reads to
// count the names it does not show.
const maxListPages = 20

// getNames reads the first maxQueues names of a broker listing (JSON
// {"KEY": [...]}, sorted, in pages linked by Link rel="next") into names,
// and counts the others by following the links (up to maxListPages
// pages: the count is at least what they held).
func getNames(ctx context.Context, c *http.Client, u, key string, names *[]string) (omitted int, err error) {
	target := u
	for page := 0; target != "" && page < maxListPages; page++ {
		var v map[string][]string
		var link []string
		if link, err = getJSONLinks(ctx, c, target, &v); err != nil {
			return omitted, err
		}
		for _, n := range v[key] {
			if len(*names) < maxQueues {
				*names = append(*names, n)
			} else {
				omitted++
			}
		}
		next := httpx.NextLink(link)
		if next == "" {
			break
		}
		base, _ := url.Parse(target)
		ref, perr := url.Parse(next)
		if perr != nil {
			return omitted, fmt.Errorf("GET %s: Link rel=\"next\" %q: %v", target, next, perr)
		}
		nu := base.ResolveReference(ref)
		if nu.Host != base.Host || nu.Scheme != base.Scheme {
			return omitted, fmt.Errorf("GET %s: Link rel=\"next\" %q leaves the broker", target, next)
		}
		target = nu.String()
	}
	sort.Strings(*names)
	return omitted, nil
}

// getJSON GETs url and decodes its JSON answer into v.
func getJSON(ctx context.Context, c *http.Client, u string, v any) error {
	_, err := getJSONLinks(ctx, c, u, v)
	return err
}

// getJSONLinks is getJSON that also returns the answer's Link values.
func getJSONLinks(ctx context.Context, c *http.Client, u string, v any) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	err = decodeAnswer(resp.StatusCode, "GET "+u, resp.Body, v)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.Header.Values("Link"), err
}
