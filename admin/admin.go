// Package admin serves the gateway's operator API: a JSON view of routes,
// upstreams and targets (health, circuit state, in-flight, ejection), drain
// and weight changes, config reload, and Prometheus /metrics.
//
// The API is meant for a loopback or otherwise protected address: it can
// take targets out of service.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard/switchyard/httpx"
)

// Backend is what the admin API controls; the gateway implements it.
type Backend interface {
	// Snapshot returns the current state of routes and upstreams.
	Snapshot() Snapshot
	// SetDraining drains (true) or undrains a target.
	SetDraining(upstream, address string, draining bool) error
	// SetWeight overrides a target's weight (1..MaxWeight); the override
	// survives reloads while the target stays in the config.
	SetWeight(upstream, address string, weight int) error
	// ResetWeight drops a weight override: the config's weight applies.
	ResetWeight(upstream, address string) error
	// Reload re-reads the configuration; on error the old one keeps serving.
	Reload(ctx context.Context) error
}

// MaxWeight is the largest target weight (the config's bound too).
const MaxWeight = 1_000_000

// ErrNotFound is returned (wrapped) by a Backend for unknown upstreams or targets.
var ErrNotFound = errors.New("not found")

// NotFound is an error that says only its message and matches ErrNotFound
// with errors.Is, for a Backend whose message already says what is missing.
func NotFound(format string, args ...any) error {
	return notFound(fmt.Sprintf(format, args...))
}

type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == ErrNotFound }

// Snapshot is the state the admin API shows.
type Snapshot struct {
	ConfigFile string     `json:"config_file"`
	LoadedAt   time.Time  `json:"loaded_at"`
	InFlight   int64      `json:"in_flight"`
	Routes     []Route    `json:"routes"`
	Upstreams  []Upstream `json:"upstreams"`
}

// Route describes one route.
type Route struct {
	Name        string            `json:"name"`
	Host        string            `json:"host,omitempty"`
	Path        string            `json:"path,omitempty"`
	PathPrefix  string            `json:"path_prefix,omitempty"`
	PathPattern string            `json:"path_pattern,omitempty"`
	Methods     []string          `json:"methods,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Upstream    string            `json:"upstream"`
	StripPrefix string            `json:"strip_prefix,omitempty"`
}

// Upstream describes a pool.
type Upstream struct {
	Name    string   `json:"name"`
	Balance string   `json:"balance"`
	Circuit string   `json:"circuit,omitempty"` // upstream-wide breaker state
	Targets []Target `json:"targets"`
}

// Target describes one backend.
type Target struct {
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	// WeightOverride is true while an admin-set weight replaces the
	// config's (DELETE .../weight drops it).
	WeightOverride bool       `json:"weight_override,omitempty"`
	Healthy        bool       `json:"healthy"`
	Draining       bool       `json:"draining"`
	Ejected        bool       `json:"ejected"`
	EjectedUntil   *time.Time `json:"ejected_until,omitempty"`
	Ejections      int64      `json:"ejections"`
	Available      bool       `json:"available"`
	Circuit        string     `json:"circuit,omitempty"`
	InFlight       int64      `json:"in_flight"`
	Requests       uint64     `json:"requests"`
	Failures       uint64     `json:"failures"`
	LatencyEWMAms  float64    `json:"latency_ewma_ms"`
}

// Handler returns the admin API over b, with /metrics from g (nil omits it).
//
//	GET  /healthz                                       200 "ok"
//	GET  /admin/status                                  the whole Snapshot
//	GET  /admin/routes                                  routes
//	GET  /admin/upstreams                               upstreams with targets
//	GET  /admin/upstreams/{name}                        one upstream
//	POST /admin/upstreams/{name}/targets/{addr}/drain   ?wait=10s blocks until its in-flight reach 0
//	POST /admin/upstreams/{name}/targets/{addr}/undrain
//	PUT  /admin/upstreams/{name}/targets/{addr}/weight  {"weight": 3} (1..MaxWeight), kept across reloads
//	DELETE /admin/upstreams/{name}/targets/{addr}/weight  back to the config's weight
//	POST /admin/reload                                  re-read the config file
//	GET  /admin/caches                                  edge caches' counters (a CacheBackend only)
//	POST /admin/caches/{name}/purge                     {"url"|"prefix"|"tag": ..., "soft": true}
//	GET  /admin/caches/{name}/entries?url=URL           the entries stored for URL
//	GET  /admin/rollouts                                rollouts (a RolloutBackend; see rolloutRoutes)
//	POST /admin/rollouts                                start one; .../{upstream}/promote|rollback|pause|resume, DELETE aborts
//	GET  /admin/openapi.yaml                            this API as an OpenAPI 3.1 document
//	GET  /metrics                                       Prometheus exposition
//	GET  /debug/pprof/...                               Go profiles (pprof)
//
// A known path asked with a method it does not serve gets 405 with an
// Allow header; an unknown path gets 404. Both bodies are JSON errors.
func Handler(b Backend, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /admin/status", func(w http.ResponseWriter, r *http.Request) {
		writeTagged(w, r, b.Snapshot())
	})
	mux.HandleFunc("GET /admin/routes", func(w http.ResponseWriter, r *http.Request) {
		writeTagged(w, r, b.Snapshot().Routes)
	})
	mux.HandleFunc("GET /admin/upstreams", func(w http.ResponseWriter, r *http.Request) {
		writeTagged(w, r, b.Snapshot().Upstreams)
	})
	mux.HandleFunc("GET /admin/upstreams/{name}", func(w http.ResponseWriter, r *http.Request) {
		u, ok := findUpstream(b.Snapshot(), r.PathValue("name"))
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown upstream %q", r.PathValue("name")))
			return
		}
		writeTagged(w, r, u)
	})
	// A target's settings: the resource whose ETag the writes below take
	// in If-Match (its counters change all the time; its settings only
	// when someone changes them).
	mux.HandleFunc("GET /admin/upstreams/{name}/targets/{addr}", func(w http.ResponseWriter, r *http.Request) {
		ts, ok := targetSettings(b, r.PathValue("name"), r.PathValue("addr"))
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown target %q in upstream %q", r.PathValue("addr"), r.PathValue("name")))
			return
		}
		writeTagged(w, r, ts)
	})
	var writes sync.Mutex // If-Match and the write it guards, as one step
	mux.HandleFunc("POST /admin/upstreams/{name}/targets/{addr}/drain", func(w http.ResponseWriter, r *http.Request) {
		drain(w, r, b, true, &writes)
	})
	mux.HandleFunc("POST /admin/upstreams/{name}/targets/{addr}/undrain", func(w http.ResponseWriter, r *http.Request) {
		drain(w, r, b, false, &writes)
	})
	mux.HandleFunc("PUT /admin/upstreams/{name}/targets/{addr}/weight", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Weight *int `json:"weight"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		err := dec.Decode(&body)
		if err == nil && dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
		if err != nil || body.Weight == nil || *body.Weight < 1 || *body.Weight > MaxWeight {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(`expected a JSON body {"weight": N} with N from 1 to %d`, MaxWeight))
			return
		}
		name, addr := r.PathValue("name"), r.PathValue("addr")
		writes.Lock()
		defer writes.Unlock()
		if !targetIfMatch(w, r, b) {
			return
		}
		if err := b.SetWeight(name, addr, *body.Weight); err != nil {
			writeBackendError(w, err)
			return
		}
		writeTarget(w, b, name, addr)
	})
	mux.HandleFunc("DELETE /admin/upstreams/{name}/targets/{addr}/weight", func(w http.ResponseWriter, r *http.Request) {
		name, addr := r.PathValue("name"), r.PathValue("addr")
		writes.Lock()
		defer writes.Unlock()
		if !targetIfMatch(w, r, b) {
			return
		}
		if err := b.ResetWeight(name, addr); err != nil {
			writeBackendError(w, err)
			return
		}
		writeTarget(w, b, name, addr)
	})
	mux.HandleFunc("POST /admin/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Reload(r.Context()); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "reload_failed", "config refused, the previous one keeps serving: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"reloaded": true, "loaded_at": b.Snapshot().LoadedAt})
	})
	cacheRoutes(mux, b)
	rolloutRoutes(mux, b)
	openapiRoute(mux)
	// Profiling, as Caddy's and Envoy's admin endpoints offer it.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	// OpenMetrics when the scraper asks for it: the latency histogram's
	// exemplars (the trace ids of sampled requests) are only in that format.
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No pattern for this method and path: 405 when the path is served
		// for other methods, else 404, both as JSON errors.
		if allow := allowed(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("%s is not served on %s: expected %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no admin endpoint "+r.Method+" "+r.URL.Path)
	})
}

// allowed lists the methods mux serves r's path with, sorted.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// drain takes the target out of rotation (on) or back; writes is held
// while If-Match is checked and the change made, not while it waits.
func drain(w http.ResponseWriter, r *http.Request, b Backend, on bool, writes *sync.Mutex) {
	name, addr := r.PathValue("name"), r.PathValue("addr")
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" && on {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 10*time.Minute {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid wait %q: expected a duration up to 10m, e.g. 30s", s))
			return
		}
		wait = d
	}
	writes.Lock()
	if !targetIfMatch(w, r, b) {
		writes.Unlock()
		return
	}
	err := b.SetDraining(name, addr, on)
	writes.Unlock()
	if err != nil {
		writeBackendError(w, err)
		return
	}
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if t, ok := findTarget(b.Snapshot(), name, addr); !ok || t.InFlight == 0 {
				break
			}
			select {
			case <-ctx.Done():
				writeError(w, http.StatusGatewayTimeout, "drain_timeout",
					fmt.Sprintf("target %s is draining but still has requests in flight after %s", addr, wait))
				return
			case <-tick.C:
			}
		}
	}
	writeTarget(w, b, name, addr)
}

func writeTarget(w http.ResponseWriter, b Backend, name, addr string) {
	t, ok := findTarget(b.Snapshot(), name, addr)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown target %q in upstream %q", addr, name))
		return
	}
	if ts, ok := targetSettings(b, name, addr); ok {
		w.Header().Set("ETag", settingsTag(ts)) // of the settings resource, for the next If-Match
	}
	writeJSON(w, http.StatusOK, t)
}

// TargetSettings is what an operator may change of a target (GET
// /admin/upstreams/{name}/targets/{addr}); its ETag is what the target's
// writes take in If-Match.
type TargetSettings struct {
	Upstream       string `json:"upstream"`
	Address        string `json:"address"`
	Weight         int    `json:"weight"`
	WeightOverride bool   `json:"weight_override"`
	Draining       bool   `json:"draining"`
}

func targetSettings(b Backend, name, addr string) (TargetSettings, bool) {
	t, ok := findTarget(b.Snapshot(), name, addr)
	if !ok {
		return TargetSettings{}, false
	}
	return TargetSettings{Upstream: name, Address: t.Address, Weight: t.Weight, WeightOverride: t.WeightOverride, Draining: t.Draining}, true
}

func settingsTag(ts TargetSettings) string { return httpx.ETag(marshal(ts)) }

// targetIfMatch answers 412 (precondition_failed) and returns false when
// r's If-Match does not match the target's settings now. An unknown
// target passes: the write answers its 404.
func targetIfMatch(w http.ResponseWriter, r *http.Request, b Backend) bool {
	if len(r.Header.Values("If-Match")) == 0 {
		return true
	}
	ts, ok := targetSettings(b, r.PathValue("name"), r.PathValue("addr"))
	if !ok {
		return true
	}
	if err := httpx.IfMatch(r, settingsTag(ts)); err != nil {
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", err.Error())
		return false
	}
	return true
}

// marshal is writeJSON's encoding of v.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return buf.Bytes()
}

// writeTagged answers v as writeJSON does, with an ETag of the body; a
// matching If-None-Match gets 304 and no body.
func writeTagged(w http.ResponseWriter, r *http.Request, v any) {
	body := marshal(v)
	if httpx.NotModified(w, r, httpx.ETag(body)) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func findUpstream(s Snapshot, name string) (Upstream, bool) {
	for _, u := range s.Upstreams {
		if u.Name == name {
			return u, true
		}
	}
	return Upstream{}, false
}

func findTarget(s Snapshot, name, addr string) (Target, bool) {
	u, ok := findUpstream(s, name)
	if !ok {
		return Target{}, false
	}
	for _, t := range u.Targets {
		if t.Address == addr {
			return t, true
		}
	}
	return Target{}, false
}

func writeBackendError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "bad_request", err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // messages say "rate 0.2 > 0.01", not "\u003e"
	_ = enc.Encode(v)
}

// writeError answers an RFC 9457 problem details object (httpx.Problem):
// "status" the number, "detail" and "error" the message, "code" the reason.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	httpx.WriteProblem(w, status, code, msg)
}
