package gateway

// End-to-end tests of the failure paths: retries (safety, body replay,
// attempt cap, budget, backoff), circuit breakers, outlier ejection, active
// health checks, no available target and timeouts. Every test runs real
// backends on loopback and a real gateway (see harness_test.go).
//
// Round robin starts at the first target of a pool and advances once per
// pick, so with two targets where the first fails, every request picks the
// first target and then, on retry, the second: several tests rely on that
// to assert exact request counts.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/retry"
)

// e2eConfig renders a gateway config with one upstream "u" of addrs and one
// catch-all route "api". Each upstream line is a YAML line of the upstream
// mapping ("retry: {attempts: 3}"); top lines are top-level YAML lines.
type e2eConfig struct {
	addrs    []string
	upstream []string
	top      []string
}

func (c e2eConfig) String() string {
	var b strings.Builder
	b.WriteString("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n")
	for _, l := range c.top {
		b.WriteString(l + "\n")
	}
	b.WriteString("upstreams:\n  u:\n    targets:\n")
	b.WriteString(targets(c.addrs...))
	for _, l := range c.upstream {
		b.WriteString("    " + l + "\n")
	}
	b.WriteString("routes:\n  - { name: api, upstream: u }\n")
	return b.String()
}

// e2eError is the JSON body of a gateway-generated error.
type e2eError struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

// e2eErrorCode decodes a gateway error body and returns its code, failing
// the test when the body is not one.
func e2eErrorCode(t *testing.T, body string) string {
	t.Helper()
	var e e2eError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Code == "" || e.Error == "" || e.RequestID == "" {
		t.Fatalf("error body %q lacks error, code or request_id", body)
	}
	return e.Code
}

// e2eUpstream fetches one upstream from the admin API.
func e2eUpstream(t *testing.T, r *running, name string) admin.Upstream {
	t.Helper()
	code, body, _ := get(t, r.admin+"/admin/upstreams/"+name)
	if code != http.StatusOK {
		t.Fatalf("GET /admin/upstreams/%s: %d %s", name, code, body)
	}
	var u admin.Upstream
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatalf("decoding upstream %s: %v", name, err)
	}
	return u
}

// e2eTarget fetches one target of upstream "u" from the admin API.
func e2eTarget(t *testing.T, r *running, addr string) admin.Target {
	t.Helper()
	for _, tg := range e2eUpstream(t, r, "u").Targets {
		if tg.Address == addr {
			return tg
		}
	}
	t.Fatalf("target %s not in upstream u", addr)
	return admin.Target{}
}

// e2eMetrics scrapes the admin /metrics endpoint.
func e2eMetrics(t *testing.T, r *running) string {
	t.Helper()
	code, body, _ := get(t, r.admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	return body
}

// e2eMetric returns the value of the sample of metric name whose labels
// include every "key", "value" pair of labels; ok is false when there is
// none. It fails the test when more than one sample matches.
func e2eMetric(t *testing.T, text, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		rest, found := strings.CutPrefix(line, name)
		if !found || strings.HasPrefix(line, "#") {
			continue
		}
		var lbls, val string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			lbls, val = rest[1:end], strings.TrimSpace(rest[end+1:])
		case strings.HasPrefix(rest, " "):
			val = strings.TrimSpace(rest)
		default:
			continue // another metric whose name starts with name
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+lbls+",", ","+labels[i]+"="+strconv.Quote(labels[i+1])+",") {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if ok {
			t.Fatalf("metric %s%v matches more than one sample", name, labels)
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		v, ok = f, true
	}
	return v, ok
}

// failFirst returns a handler for several backends that answers the first
// n requests they receive together with status and every later one with
// 200 and the backend's name; it reads the request body first and records
// it per backend name.
type failFirst struct {
	n      int64
	status int
	seen   atomic.Int64
	mu     sync.Mutex
	bodies map[string][]string
}

func newFailFirst(n int64, status int) *failFirst {
	return &failFirst{n: n, status: status, bodies: map[string][]string{}}
}

func (f *failFirst) handler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.bodies[name] = append(f.bodies[name], string(body))
		f.mu.Unlock()
		w.Header().Set("X-Backend", name)
		if f.seen.Add(1) <= f.n {
			w.WriteHeader(f.status)
			_, _ = io.WriteString(w, name+" failing")
			return
		}
		_, _ = io.WriteString(w, name+":"+string(body))
	}
}

func (f *failFirst) bodiesOf(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies[name]...)
}

// status answers every request with code after reading the body.
func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

func TestFailureRetryGetGoesToAnotherTarget(t *testing.T) {
	bad, good := newBackend(t, "bad"), newBackend(t, "good")
	bad.handle(status(http.StatusServiceUnavailable))
	r := startGateway(t, e2eConfig{addrs: []string{bad.addr(), good.addr()},
		upstream: []string{"retry: {attempts: 3, on: [503], base: 1ms}"}}.String())

	const n = 4
	for i := range n {
		code, body, hdr := get(t, r.url+"/x")
		if code != http.StatusOK || body != "good" || hdr.Get("X-Backend") != "good" {
			t.Fatalf("request %d: got %d %q from %q, want 200 from good", i, code, body, hdr.Get("X-Backend"))
		}
	}
	// Each request tried bad first (round robin), then good, never bad twice.
	if b, g := bad.requests.Load(), good.requests.Load(); b != n || g != n {
		t.Errorf("backend requests: bad %d, good %d; want %d each", b, g, n)
	}
	if v, _ := e2eMetric(t, e2eMetrics(t, r), "switchyard_retries_total", "upstream", "u"); v != n {
		t.Errorf("switchyard_retries_total = %v, want %d", v, n)
	}
}

func TestFailureRetryPostWithoutKeyNotRetriedAfterReachingBackend(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	a.handle(status(http.StatusServiceUnavailable))
	b.handle(status(http.StatusServiceUnavailable))
	r := startGateway(t, e2eConfig{addrs: []string{a.addr(), b.addr()},
		upstream: []string{"retry: {attempts: 3, on: [503], base: 1ms}"}}.String())

	code, _, _ := do(t, http.MethodPost, r.url+"/orders", strings.NewReader(`{"n":1}`))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("POST status %d, want the backend's 503", code)
	}
	if total := a.requests.Load() + b.requests.Load(); total != 1 {
		t.Fatalf("backend requests %d, want 1: a POST without Idempotency-Key that reached a backend must not be retried", total)
	}
}

func TestFailureRetryPostWithIdempotencyKeyReplaysBody(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	ff := newFailFirst(1, http.StatusServiceUnavailable)
	a.handle(ff.handler("a"))
	b.handle(ff.handler("b"))
	r := startGateway(t, e2eConfig{addrs: []string{a.addr(), b.addr()},
		upstream: []string{"retry: {attempts: 3, on: [503], base: 1ms}"}}.String())

	const payload = `{"order":"pizza","qty":2}`
	code, body, hdr := do(t, http.MethodPost, r.url+"/orders", strings.NewReader(payload), "Idempotency-Key", "k-123")
	if code != http.StatusOK {
		t.Fatalf("POST status %d %q, want 200 after a retry", code, body)
	}
	second := hdr.Get("X-Backend")
	if body != second+":"+payload {
		t.Errorf("response %q, want the second target echoing the body", body)
	}
	if a.requests.Load() != 1 || b.requests.Load() != 1 {
		t.Fatalf("backend requests a=%d b=%d, want 1 each (retry on another target)", a.requests.Load(), b.requests.Load())
	}
	for _, name := range []string{"a", "b"} {
		if got := ff.bodiesOf(name); len(got) != 1 || got[0] != payload {
			t.Errorf("backend %s received bodies %q, want [%q]", name, got, payload)
		}
	}
}

func TestFailureRetryConnectFailureRetriesPostWithoutKey(t *testing.T) {
	dead := deadAddr(t)
	b := newBackend(t, "b")
	ff := newFailFirst(0, 0)
	b.handle(ff.handler("b"))
	r := startGateway(t, e2eConfig{addrs: []string{dead, b.addr()},
		upstream: []string{"retry: {attempts: 3, on: [connect_failure], base: 1ms}"}}.String())

	const payload = "never reached the dead target"
	code, body, _ := do(t, http.MethodPost, r.url+"/orders", strings.NewReader(payload))
	if code != http.StatusOK || body != "b:"+payload {
		t.Fatalf("POST got %d %q, want 200 %q", code, body, "b:"+payload)
	}
	if n := b.requests.Load(); n != 1 {
		t.Errorf("live backend requests %d, want 1", n)
	}
	if got := ff.bodiesOf("b"); len(got) != 1 || got[0] != payload {
		t.Errorf("live backend received %q, want [%q]", got, payload)
	}
	m := e2eMetrics(t, r)
	if v, _ := e2eMetric(t, m, "switchyard_upstream_errors_total", "target", dead, "kind", "connect_failure"); v != 1 {
		t.Errorf("connect failures to the dead target = %v, want 1 (it was tried first)", v)
	}
}

func TestFailureRetryAttemptsCap(t *testing.T) {
	var bs []*backend
	var addrs []string
	for _, name := range []string{"a", "b", "c"} {
		b := newBackend(t, name)
		b.handle(status(http.StatusServiceUnavailable))
		bs, addrs = append(bs, b), append(addrs, b.addr())
	}
	r := startGateway(t, e2eConfig{addrs: addrs,
		upstream: []string{"retry: {attempts: 2, on: [503], base: 1ms}"}}.String())

	code, _, _ := get(t, r.url+"/x")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want the last attempt's 503", code)
	}
	var total int64
	for _, b := range bs {
		if n := b.requests.Load(); n > 1 {
			t.Errorf("backend %s got %d requests; a retry must go to another target", b.name, n)
		}
		total += b.requests.Load()
	}
	if total != 2 {
		t.Fatalf("backend requests %d, want exactly attempts = 2", total)
	}
}

func TestFailureRetryBudgetBoundsRetries(t *testing.T) {
	var bs []*backend
	var addrs []string
	for _, name := range []string{"a", "b", "c"} {
		b := newBackend(t, name)
		b.handle(status(http.StatusServiceUnavailable))
		bs, addrs = append(bs, b), append(addrs, b.addr())
	}
	const (
		requests = 150
		attempts = 3
		budget   = 0.01
	)
	r := startGateway(t, e2eConfig{addrs: addrs,
		upstream: []string{"retry: {attempts: 3, on: [503], backoff: fixed, base: 1ms, jitter: none, budget: 1%}"}}.String())

	// Sequential, so the budget's check-then-count cannot overshoot. The
	// burst lasts well under the budget window, so nothing ages out.
	for i := range requests {
		if code, _, _ := get(t, r.url+"/x"); code != http.StatusServiceUnavailable {
			t.Fatalf("request %d: status %d, want 503", i, code)
		}
	}
	var total int64
	for _, b := range bs {
		total += b.requests.Load()
	}
	retries := total - requests
	// The budget allows budget * requests plus a floor of
	// MinRetriesPerSecond (default 10, not exposed in YAML) per second of
	// the window.
	floor := float64(retry.DefaultMinRetriesPerSecond) * retry.BudgetWindow.Seconds()
	limit := int64(math.Ceil(budget*requests + floor))
	if retries > limit {
		t.Fatalf("%d retries for %d requests, want at most %d (budget %v + floor %v)", retries, requests, limit, budget, floor)
	}
	if retries < int64(floor) {
		t.Errorf("%d retries, want at least the floor %v to have been used", retries, floor)
	}
	if total >= requests*attempts {
		t.Errorf("backend requests %d, want well below requests*attempts = %d", total, requests*attempts)
	}
	m := e2eMetrics(t, r)
	if v, _ := e2eMetric(t, m, "switchyard_retries_total", "upstream", "u"); int64(v) != retries {
		t.Errorf("switchyard_retries_total = %v, want %d", v, retries)
	}
	if v, _ := e2eMetric(t, m, "switchyard_retry_budget_exhausted_total", "upstream", "u"); v == 0 {
		t.Error("switchyard_retry_budget_exhausted_total is 0, want refusals counted")
	}
}

func TestFailureRetryBackoffWaits(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	ff := newFailFirst(1, http.StatusServiceUnavailable)
	a.handle(ff.handler("a"))
	b.handle(ff.handler("b"))
	r := startGateway(t, e2eConfig{addrs: []string{a.addr(), b.addr()},
		upstream: []string{"retry: {attempts: 2, on: [503], backoff: fixed, base: 50ms, jitter: none}"}}.String())

	start := time.Now()
	code, _, _ := get(t, r.url+"/x")
	elapsed := time.Since(start)
	if code != http.StatusOK || a.requests.Load()+b.requests.Load() != 2 {
		t.Fatalf("status %d after %d backend requests, want 200 after 2", code, a.requests.Load()+b.requests.Load())
	}
	if elapsed < 50*time.Millisecond {
		t.Fatalf("retried request took %v, want at least the 50ms fixed backoff", elapsed)
	}
}

func TestFailureCircuitBreakerOpensProbesAndCloses(t *testing.T) {
	b := newBackend(t, "b")
	b.handle(status(http.StatusInternalServerError))
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, upstream: []string{
		"circuit_breaker: {failure_ratio: 0.5, min_requests: 5, window: 10s, open_for: 300ms, half_open_probes: 1}"}}.String())

	for i := range 5 {
		if code, _, _ := get(t, r.url+"/x"); code != http.StatusInternalServerError {
			t.Fatalf("request %d: status %d, want the backend's 500", i, code)
		}
	}
	assertOpen := func(when string) {
		t.Helper()
		before := b.requests.Load()
		code, body, hdr := get(t, r.url+"/x")
		if code != http.StatusServiceUnavailable || e2eErrorCode(t, body) != "circuit_open" {
			t.Fatalf("%s: got %d %s, want 503 circuit_open", when, code, body)
		}
		if ra := hdr.Get("Retry-After"); ra != "1" {
			t.Errorf("%s: Retry-After %q, want \"1\" (300ms rounded up)", when, ra)
		}
		if after := b.requests.Load(); after != before {
			t.Fatalf("%s: the backend was called (%d -> %d) although the circuit is open", when, before, after)
		}
	}
	assertOpen("after 5 failures")
	u := e2eUpstream(t, r, "u")
	if u.Circuit != "open" || u.Targets[0].Circuit != "open" {
		t.Errorf("admin circuit: upstream %q target %q, want open", u.Circuit, u.Targets[0].Circuit)
	}

	// After open_for one probe goes through; it fails, so the breaker opens again.
	eventually(t, 3*time.Second, "a half-open probe to reach the backend", func() bool {
		_, _, _ = get(t, r.url+"/x")
		return b.requests.Load() == 6
	})
	assertOpen("after a failed probe")

	// The backend recovers: the next probe succeeds and closes the breaker.
	b.handle(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	eventually(t, 3*time.Second, "a successful probe", func() bool {
		code, _, _ := get(t, r.url+"/x")
		return code == http.StatusOK
	})
	u = e2eUpstream(t, r, "u")
	if u.Circuit != "closed" || u.Targets[0].Circuit != "closed" {
		t.Errorf("admin circuit after recovery: upstream %q target %q, want closed", u.Circuit, u.Targets[0].Circuit)
	}
	for i := range 3 {
		if code, _, _ := get(t, r.url+"/x"); code != http.StatusOK {
			t.Fatalf("request %d after recovery: status %d", i, code)
		}
	}
	m := e2eMetrics(t, r)
	for _, tr := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "open"}, {"half-open", "closed"}} {
		for _, target := range []string{"", b.addr()} {
			if v, ok := e2eMetric(t, m, "switchyard_circuit_transitions_total", "upstream", "u", "target", target, "from", tr[0], "to", tr[1]); !ok || v < 1 {
				t.Errorf("switchyard_circuit_transitions_total{target=%q,from=%s,to=%s} = %v (present %v), want >= 1", target, tr[0], tr[1], v, ok)
			}
		}
	}
	if v, ok := e2eMetric(t, m, "switchyard_circuit_state", "upstream", "u", "target", ""); !ok || v != 0 {
		t.Errorf("switchyard_circuit_state of the upstream = %v (present %v), want 0 (closed)", v, ok)
	}
}

func TestFailureClientDisconnectDoesNotTripBreaker(t *testing.T) {
	b := newBackend(t, "b")
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, upstream: []string{
		"circuit_breaker: {failure_ratio: 0.5, min_requests: 2, window: 10s, open_for: 10s, half_open_probes: 1}"}}.String())

	started := make(chan struct{}, 1)
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	})
	for i := range 2 { // min_requests abandoned requests
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/x", nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		select {
		case <-started:
		case <-time.After(3 * time.Second):
			t.Fatalf("request %d did not reach the backend", i)
		}
		cancel()
		<-errc
	}
	b.handle(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	// Requests the client abandoned are not the upstream's failures.
	eventually(t, 2*time.Second, "the cancelled requests to finish", func() bool { return r.g.handler.InFlight() == 0 })
	if code, body, _ := get(t, r.url+"/x"); code != http.StatusOK {
		t.Fatalf("after 2 client disconnects: got %d %s, want 200 (breakers must not count client cancellations)", code, body)
	}
	u := e2eUpstream(t, r, "u")
	if u.Circuit != "closed" || u.Targets[0].Circuit != "closed" {
		t.Errorf("circuit upstream %q target %q, want closed", u.Circuit, u.Targets[0].Circuit)
	}
}

func TestFailureOutlierEjectsFailingTarget(t *testing.T) {
	bad, good := newBackend(t, "bad"), newBackend(t, "good")
	bad.handle(status(http.StatusInternalServerError))
	r := startGateway(t, e2eConfig{addrs: []string{bad.addr(), good.addr()},
		upstream: []string{"outlier: {consecutive_failures: 3, ejection: 10s, max_ejected: 50%}"}}.String())

	for i := 0; bad.requests.Load() < 3; i++ {
		if i == 10 {
			t.Fatalf("bad target got %d of 10 requests under round robin", bad.requests.Load())
		}
		get(t, r.url+"/x")
	}
	now := time.Now()
	tb := e2eTarget(t, r, bad.addr())
	if !tb.Ejected || tb.Available || tb.EjectedUntil == nil || !tb.EjectedUntil.After(now.Add(5*time.Second)) {
		t.Fatalf("bad target after 3 consecutive 500s: ejected %v available %v until %v, want ejected ~10s", tb.Ejected, tb.Available, tb.EjectedUntil)
	}
	if tg := e2eTarget(t, r, good.addr()); tg.Ejected {
		t.Fatal("good target ejected")
	}
	for i := range 10 {
		if code, body, _ := get(t, r.url+"/x"); code != http.StatusOK || body != "good" {
			t.Fatalf("request %d after ejection: %d %q, want 200 good", i, code, body)
		}
	}
	if n := bad.requests.Load(); n != 3 {
		t.Errorf("ejected target got %d requests, want it to stay at 3", n)
	}
	if v, _ := e2eMetric(t, e2eMetrics(t, r), "switchyard_outlier_ejections_total", "target", bad.addr()); v != 1 {
		t.Errorf("switchyard_outlier_ejections_total = %v, want 1", v)
	}
}

func TestFailureOutlierMaxEjected(t *testing.T) {
	var bs []*backend
	var addrs []string
	for _, name := range []string{"a", "b", "c"} {
		b := newBackend(t, name)
		b.handle(status(http.StatusInternalServerError))
		bs, addrs = append(bs, b), append(addrs, b.addr())
	}
	r := startGateway(t, e2eConfig{addrs: addrs,
		upstream: []string{"outlier: {consecutive_failures: 3, ejection: 10s, max_ejected: 34%}"}}.String())

	// Every target fails far more than 3 times in a row.
	for range 30 {
		get(t, r.url+"/x")
	}
	ejected := func() (n int, addr string) {
		for _, tg := range e2eUpstream(t, r, "u").Targets {
			if tg.Ejected {
				n, addr = n+1, tg.Address
			}
		}
		return n, addr
	}
	n, out := ejected()
	if n != 1 {
		t.Fatalf("%d of 3 targets ejected, want 1 (34%% of 3 rounds down to 1)", n)
	}
	before := map[string]int64{}
	for _, b := range bs {
		before[b.addr()] = b.requests.Load()
	}
	for range 10 {
		get(t, r.url+"/x")
	}
	for _, b := range bs {
		grew := b.requests.Load() > before[b.addr()]
		if b.addr() == out && grew {
			t.Errorf("ejected target %s still got traffic", b.name)
		}
		if b.addr() != out && !grew {
			t.Errorf("target %s kept in by max_ejected got no traffic", b.name)
		}
	}
	if n, _ := ejected(); n != 1 {
		t.Errorf("%d targets ejected after more failures, want still 1", n)
	}
}

// healthBackend serves /healthz with a switchable status and counts the
// other (proxied) requests apart from the health checks.
type healthBackend struct {
	*backend
	healthz atomic.Int32
	traffic atomic.Int64
}

func newHealthBackend(t *testing.T, name string) *healthBackend {
	hb := &healthBackend{backend: newBackend(t, name)}
	hb.healthz.Store(http.StatusOK)
	hb.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(int(hb.healthz.Load()))
			return
		}
		hb.traffic.Add(1)
		_, _ = io.WriteString(w, name)
	})
	return hb
}

func TestFailureActiveHealthCheckHTTP(t *testing.T) {
	a, b := newHealthBackend(t, "a"), newHealthBackend(t, "b")
	r := startGateway(t, e2eConfig{addrs: []string{a.addr(), b.addr()}, upstream: []string{
		"health_check: {path: /healthz, interval: 20ms, healthy_after: 1, unhealthy_after: 2}"}}.String())

	eventually(t, 2*time.Second, "the first health checks", func() bool { return a.requests.Load() > 0 && b.requests.Load() > 0 })
	a.healthz.Store(http.StatusServiceUnavailable)
	eventually(t, 2*time.Second, "admin to show a unhealthy", func() bool { return !e2eTarget(t, r, a.addr()).Healthy })
	if tb := e2eTarget(t, r, b.addr()); !tb.Healthy {
		t.Fatal("b unhealthy although its checks pass")
	}
	before := a.traffic.Load()
	for i := range 10 {
		if code, body, _ := get(t, r.url+"/x"); code != http.StatusOK || body != "b" {
			t.Fatalf("request %d with a unhealthy: %d %q, want 200 b", i, code, body)
		}
	}
	if n := a.traffic.Load(); n != before {
		t.Fatalf("unhealthy target got %d requests", n-before)
	}

	a.healthz.Store(http.StatusOK)
	eventually(t, 2*time.Second, "admin to show a healthy again", func() bool { return e2eTarget(t, r, a.addr()).Healthy })
	for range 4 {
		get(t, r.url+"/x")
	}
	if a.traffic.Load() == before {
		t.Fatal("target healthy again but got none of 4 round-robin requests")
	}
}

func TestFailureActiveHealthCheckTCP(t *testing.T) {
	dead := deadAddr(t)
	b := newBackend(t, "b")
	// A check's timeout is at most its interval: at 20ms with one failure
	// enough, a loaded CI machine (race detector, parallel packages) let
	// one check of the live target time out and the request got 503.
	// The dead port is refused at once whatever the timeout.
	r := startGateway(t, e2eConfig{addrs: []string{dead, b.addr()}, upstream: []string{
		"health_check: {interval: 100ms, unhealthy_after: 2}"}}.String())

	eventually(t, 2*time.Second, "admin to show the closed port unhealthy", func() bool { return !e2eTarget(t, r, dead).Healthy })
	if !e2eTarget(t, r, b.addr()).Healthy {
		t.Fatal("listening target marked unhealthy by a TCP check")
	}
	if b.requests.Load() != 0 {
		t.Fatalf("a TCP check sent %d HTTP requests", b.requests.Load())
	}
	for i := range 4 {
		if code, body, _ := get(t, r.url+"/x"); code != http.StatusOK || body != "b" {
			t.Fatalf("request %d: %d %q, want 200 b (no retries configured, so the dead target must not be picked)", i, code, body)
		}
	}
}

func TestFailureNoTarget(t *testing.T) {
	b := newBackend(t, "b")
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())

	code, body, _ := do(t, http.MethodPost, r.admin+"/admin/upstreams/u/targets/"+b.addr()+"/drain", nil)
	if code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	code, body, hdr := get(t, r.url+"/x")
	if code != http.StatusServiceUnavailable || e2eErrorCode(t, body) != "no_target" {
		t.Fatalf("with every target drained: %d %s, want 503 no_target", code, body)
	}
	if hdr.Get("Retry-After") == "" || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v, want Retry-After and application/json", hdr)
	}
	if n := b.requests.Load(); n != 0 {
		t.Errorf("drained backend got %d requests", n)
	}
}

// slow answers after d, or gives up when the request is cancelled.
func slow(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			_, _ = io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	}
}

func TestFailureResponseTimeout(t *testing.T) {
	b := newBackend(t, "b")
	b.handle(slow(5 * time.Second))
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, upstream: []string{"timeout: {response: 200ms}"}}.String())

	start := time.Now()
	code, body, _ := get(t, r.url+"/x")
	if code != http.StatusGatewayTimeout || e2eErrorCode(t, body) != "upstream_timeout" {
		t.Fatalf("got %d %s, want 504 upstream_timeout", code, body)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("timed out after %v, before the 200ms response timeout", d)
	}
}

func TestFailureHeaderTimeout(t *testing.T) {
	b := newBackend(t, "b")
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}, upstream: []string{"timeout: {header: 100ms, response: 5s}"}}.String())

	b.handle(slow(5 * time.Second))
	code, body, _ := get(t, r.url+"/x")
	if code != http.StatusGatewayTimeout || e2eErrorCode(t, body) != "upstream_timeout" {
		t.Fatalf("headers late: got %d %s, want 504 upstream_timeout", code, body)
	}

	// Headers on time and a slow body: the header timeout does not apply.
	b.handle(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		time.Sleep(250 * time.Millisecond)
		_, _ = io.WriteString(w, "slow body")
	})
	if code, body, _ := get(t, r.url+"/x"); code != http.StatusOK || body != "slow body" {
		t.Fatalf("slow body: got %d %q, want 200 \"slow body\"", code, body)
	}
	// The connect timeout is not tested: on loopback a connection is
	// accepted or refused at once, and provoking a dial that hangs needs a
	// blackholed address or a full accept queue, neither portable.
}

func TestFailureHeaderTimeoutIsRetriedOnTimeout(t *testing.T) {
	slowB, fast := newBackend(t, "slow"), newBackend(t, "fast")
	slowB.handle(slow(5 * time.Second))
	r := startGateway(t, e2eConfig{addrs: []string{slowB.addr(), fast.addr()}, upstream: []string{
		"timeout: {header: 100ms, response: 5s}",
		"retry: {attempts: 2, on: [timeout], base: 1ms}"}}.String())

	// Round robin tries the slow target first; its header timeout is a
	// retriable timeout for a GET.
	code, body, _ := get(t, r.url+"/x")
	if code != http.StatusOK || body != "fast" {
		t.Fatalf("got %d %q, want 200 from the fast target after a header timeout", code, body)
	}
	if s, f := slowB.requests.Load(), fast.requests.Load(); s != 1 || f != 1 {
		t.Errorf("backend requests slow %d fast %d, want 1 each", s, f)
	}
	if v, _ := e2eMetric(t, e2eMetrics(t, r), "switchyard_upstream_errors_total", "target", slowB.addr(), "kind", "timeout"); v != 1 {
		t.Errorf("timeouts of the slow target = %v, want 1", v)
	}
}

func TestFailureClientDisconnectCancelsUpstream(t *testing.T) {
	b := newBackend(t, "b")
	started, cancelled := make(chan struct{}), make(chan struct{})
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(5 * time.Second):
		}
	})
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/x", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(3 * time.Second):
		t.Fatal("request did not reach the backend")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(2 * time.Second):
		t.Fatal("backend request context not cancelled within 2s of the client going away")
	}
}
