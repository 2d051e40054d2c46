package slo

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testclock"
)

// receiver is a real webhook receiver on loopback that records events.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []Event
	// fail, while > 0, answers 503 and counts down.
	fail int
	hits int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.hits++
		if r.fail > 0 {
			r.fail--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil || req.Method != http.MethodPost {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.events = append(r.events, ev)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// statuses lists "alert:status" of the events received (of the alerts
// named, when any are).
func (r *receiver) statuses(alerts ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if len(alerts) > 0 && !slices.Contains(alerts, e.Alert) {
			continue
		}
		out = append(out, e.Alert+":"+e.Status)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustValid(t *testing.T, c Config) Config {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// startEngine runs e until the test ends; evaluations are the test's
// (EvalEvery is long), Run only delivers webhooks.
func startEngine(t *testing.T, e *Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// traffic observes n requests on route api per simulated minute for
// minutes, of which bad answer 500, evaluating after each minute.
func traffic(e *Engine, clk *testclock.Clock, minutes, n, bad int) []Status {
	var last []Status
	for range minutes {
		for i := range n {
			status := 200
			if i < bad {
				status = 500
			}
			e.Observe("api", "pool", status, time.Millisecond)
		}
		clk.Advance(time.Minute)
		last = e.Evaluate()
	}
	return last
}

func alert(s Status, name string) AlertStatus {
	for _, a := range s.Alerts {
		if a.Name == name {
			return a
		}
	}
	return AlertStatus{}
}

// TestBurnAlertFiresAndResolves drives hours of traffic through the
// engine on a manual clock: steady good traffic fires nothing, 10% errors
// fire the fast-burn page (14.4x over 1h and 5m) and the medium one, and
// when the errors stop the alerts resolve, each transition reaching the
// webhook receiver once.
func TestBurnAlertFiresAndResolves(t *testing.T) {
	clk := testclock.New()
	rec := newReceiver(t)
	e := New(Options{Now: clk.Now, EvalEvery: time.Hour})
	e.Set([]Config{mustValid(t, Config{Name: "api-availability", Route: "api", Objective: 0.999, Webhooks: []string{rec.srv.URL}})})
	startEngine(t, e)

	s := traffic(e, clk, 120, 1000, 0)
	if a := alert(s[0], "fast-burn"); a.Firing || a.LongBurn != 0 {
		t.Fatalf("good traffic: %+v", a)
	}
	firedAfter := 0
	for m := 1; m <= 30 && firedAfter == 0; m++ {
		s = traffic(e, clk, 1, 1000, 100)
		if alert(s[0], "fast-burn").Firing {
			firedAfter = m
		}
	}
	// 10% errors against a 0.1% budget burn at 100x: the 1h window
	// reaches 14.4x once 1.44/10 of an hour (9 minutes, by whole buckets)
	// has burned.
	if firedAfter < 8 || firedAfter > 10 {
		t.Fatalf("fast-burn fired after %d minutes of errors, expected about 9", firedAfter)
	}
	a := alert(s[0], "fast-burn")
	if a.ShortBurn < 99 || a.ShortBurn > 101 || a.Since == nil || !a.Since.Equal(clk.Now()) {
		t.Fatalf("firing alert: %+v", a)
	}
	eventually(t, "the firing event", func() bool { return strings.Join(rec.statuses("fast-burn"), ",") == "fast-burn:firing" })

	// Errors stop: the 5m window clears within 5 minutes, and the alert
	// resolves although the 1h window still burns.
	resolvedAfter := 0
	for m := 1; m <= 10 && resolvedAfter == 0; m++ {
		s = traffic(e, clk, 1, 1000, 0)
		if !alert(s[0], "fast-burn").Firing {
			resolvedAfter = m
		}
	}
	if resolvedAfter == 0 || resolvedAfter > 6 {
		t.Fatalf("fast-burn resolved after %d clean minutes, expected within 6", resolvedAfter)
	}
	if lb := alert(s[0], "fast-burn").LongBurn; lb < 10 {
		t.Fatalf("1h window burn %v: expected the errors still in it", lb)
	}
	eventually(t, "the resolved event", func() bool {
		return strings.Join(rec.statuses("fast-burn"), ",") == "fast-burn:firing,fast-burn:resolved"
	})
	var ev Event
	rec.mu.Lock()
	for _, e := range rec.events {
		if e.Alert == "fast-burn" {
			ev = e
			break
		}
	}
	rec.mu.Unlock()
	if ev.SLO != "api-availability" || ev.Severity != "page" || ev.Route != "api" || ev.BurnRate != 14.4 || ev.LongWindow != "1h0m0s" {
		t.Fatalf("event: %+v", ev)
	}
}

// TestBudget checks SLI and budget arithmetic over a 28-day window, and
// that counts older than the window stop counting.
func TestBudget(t *testing.T) {
	clk := testclock.New()
	e := New(Options{Now: clk.Now})
	e.Set([]Config{mustValid(t, Config{Name: "a", Upstream: "pool", Objective: 0.999})})
	for m := range 1000 {
		for i := range 1000 {
			status := 200
			if i == 0 && m%2 == 0 {
				status = 503
			}
			e.Observe("other", "pool", status, 0)
		}
		clk.Advance(time.Minute)
	}
	s := e.Status()[0]
	if s.Total != 1_000_000 || s.Good != 1_000_000-500 {
		t.Fatalf("counts: good %d total %d", s.Good, s.Total)
	}
	if math.Abs(s.BudgetRemaining-0.5) > 1e-9 || math.Abs(s.SLI-0.9995) > 1e-12 {
		t.Fatalf("budget %v sli %v, expected 0.5 and 0.9995", s.BudgetRemaining, s.SLI)
	}
	e.Observe("other", "", 500, 0) // no upstream: not this SLO's
	clk.Advance(28*24*time.Hour + 2*time.Hour)
	if s := e.Status()[0]; s.Total != 0 || s.BudgetRemaining != 1 || s.SLI != 1 {
		t.Fatalf("after the window: %+v", s)
	}
}

func TestLatencySLO(t *testing.T) {
	clk := testclock.New()
	e := New(Options{Now: clk.Now})
	e.Set([]Config{mustValid(t, Config{Name: "fast", Route: "api", Kind: Latency, Threshold: 300 * time.Millisecond, Objective: 0.99})})
	for i := range 100 {
		e.Observe("api", "", 500, time.Duration(i)*10*time.Millisecond) // 0..990ms; status does not matter
	}
	s := e.Status()[0]
	if s.Good != 31 || s.Total != 100 || s.Threshold != "300ms" || s.Kind != "latency" {
		t.Fatalf("latency status: %+v", s)
	}
}

// TestSetKeepsCounts: a reload keeps the counts and alert state of SLOs
// whose definition is unchanged and starts changed ones afresh.
func TestSetKeepsCounts(t *testing.T) {
	clk := testclock.New()
	e := New(Options{Now: clk.Now})
	a := mustValid(t, Config{Name: "a", Route: "api", Objective: 0.99})
	b := mustValid(t, Config{Name: "b", Route: "api", Objective: 0.99})
	e.Set([]Config{a, b})
	for range 10 {
		e.Observe("api", "", 500, 0)
	}
	e.Evaluate()
	b2 := b
	b2.Errors = []string{"503"}
	a2 := a
	a2.Webhooks = []string{"http://127.0.0.1:1/hook"} // webhooks do not change what is counted
	e.Set([]Config{a2, b2})
	st := e.Status()
	if st[0].Total != 10 || !alert(st[0], "fast-burn").Firing {
		t.Fatalf("unchanged SLO lost its counts or alert: %+v", st[0])
	}
	if st[1].Total != 0 || alert(st[1], "fast-burn").Firing {
		t.Fatalf("changed SLO kept its counts: %+v", st[1])
	}
	a3 := a2
	a3.Objective = 0.95
	e.Set([]Config{a3})
	st = e.Status()
	if len(st) != 1 || st[0].Total != 10 || alert(st[0], "fast-burn").Firing {
		t.Fatalf("objective change: counts kept, alert state not: %+v", st)
	}
}

// TestSetResolvesDroppedAlerts: an alert that a reload removes while it
// fires is reported resolved to its webhooks.
func TestSetResolvesDroppedAlerts(t *testing.T) {
	clk := testclock.New()
	rec := newReceiver(t)
	e := New(Options{Now: clk.Now, EvalEvery: time.Hour})
	a := mustValid(t, Config{Name: "a", Route: "api", Objective: 0.99, Webhooks: []string{rec.srv.URL}})
	e.Set([]Config{a})
	startEngine(t, e)
	e.Observe("api", "", 500, 0)
	e.Evaluate()
	eventually(t, "three firing events", func() bool { return len(rec.statuses()) == 3 })
	e.Set(nil)
	eventually(t, "three resolved events", func() bool {
		return strings.Join(rec.statuses(), ",") == "fast-burn:firing,medium-burn:firing,slow-burn:firing,fast-burn:resolved,medium-burn:resolved,slow-burn:resolved" ||
			len(rec.statuses()) > 6
	})
	if got := rec.statuses(); len(got) != 6 {
		t.Fatalf("events %v", got)
	}
}

// TestStatePersists: counts and alert states survive a new engine on the
// same state file; a changed definition starts afresh.
func TestStatePersists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slo.json")
	clk := testclock.New()
	cfg := mustValid(t, Config{Name: "a", Route: "api", Objective: 0.99})
	e := New(Options{Now: clk.Now, StatePath: path})
	e.Set([]Config{cfg})
	for range 50 {
		e.Observe("api", "", 200, 0)
		e.Observe("api", "", 502, 0)
	}
	e.Evaluate()
	if err := e.Save(); err != nil {
		t.Fatal(err)
	}
	before := e.Status()[0]
	clk.Advance(time.Minute)

	e2 := New(Options{Now: clk.Now, StatePath: path})
	if err := e2.Load(); err != nil { // before Set: kept for it
		t.Fatal(err)
	}
	e2.Set([]Config{cfg})
	after := e2.Status()[0]
	if after.Total != before.Total || after.Good != before.Good || after.BudgetRemaining != before.BudgetRemaining {
		t.Fatalf("restored counts %d/%d, saved %d/%d", after.Good, after.Total, before.Good, before.Total)
	}
	fa, fb := alert(after, "fast-burn"), alert(before, "fast-burn")
	if !fa.Firing || fa.Since == nil || !fa.Since.Equal(*fb.Since) {
		t.Fatalf("restored alert %+v, saved %+v", fa, fb)
	}

	e3 := New(Options{Now: clk.Now, StatePath: path})
	changed := cfg
	changed.Threshold, changed.Kind = time.Second, Latency
	e3.Set([]Config{changed})
	if err := e3.Load(); err != nil {
		t.Fatal(err)
	}
	if s := e3.Status()[0]; s.Total != 0 {
		t.Fatalf("a changed SLO took old counts: %+v", s)
	}
}

// TestCorruptState flips every byte of a state file in turn: each is
// reported (never a panic), the file moved aside, and the engine starts
// empty.
func TestCorruptState(t *testing.T) {
	clk := testclock.New()
	cfg := mustValid(t, Config{Name: "a", Route: "api", Objective: 0.99})
	dir := t.TempDir()
	path := filepath.Join(dir, "slo.json")
	e := New(Options{Now: clk.Now, StatePath: path})
	e.Set([]Config{cfg})
	e.Observe("api", "", 500, 0)
	e.Evaluate()
	if err := e.Save(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x01
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		e2 := New(Options{Now: clk.Now, StatePath: path})
		e2.Set([]Config{cfg})
		err := e2.Load()
		if err == nil {
			// A flip in insignificant whitespace or a key's case that
			// still decodes the same is not corruption.
			if s := e2.Status()[0]; s.Total != 1 {
				t.Fatalf("byte %d flipped: loaded without error but with %d requests", i, s.Total)
			}
			continue
		}
		if _, serr := os.Stat(path + ".corrupt"); serr != nil {
			t.Fatalf("byte %d flipped: %v, and the file was not moved aside: %v", i, err, serr)
		}
		if s := e2.Status()[0]; s.Total != 0 || alert(s, "fast-burn").Firing {
			t.Fatalf("byte %d flipped: corrupt state was used: %+v", i, s)
		}
	}
}

// TestWebhookRetries: a receiver that fails twice gets the event on the
// third attempt; a receiver that hangs does not hold up evaluation.
func TestWebhookRetries(t *testing.T) {
	clk := testclock.New()
	rec := newReceiver(t)
	rec.fail = 2
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	e := New(Options{Now: clk.Now, EvalEvery: time.Hour,
		Webhook: WebhookOptions{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: time.Minute}})
	e.Set([]Config{mustValid(t, Config{Name: "a", Route: "api", Objective: 0.99, Webhooks: []string{slow.URL, rec.srv.URL}})})
	startEngine(t, e)
	e.Observe("api", "", 500, 0)
	for range 3 { // the slow receiver holds its first event; evaluations go on
		e.Evaluate()
		clk.Advance(time.Hour)
		e.Observe("api", "", 500, 0)
	}
	eventually(t, "the event after two failures", func() bool { return len(rec.statuses()) >= 1 })
	rec.mu.Lock()
	hits := rec.hits
	rec.mu.Unlock()
	if hits < 3 {
		t.Fatalf("receiver saw %d attempts, expected 3 (two failures, one success)", hits)
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	e := New(Options{})
	e.Set([]Config{
		mustValid(t, Config{Name: "a", Route: "api", Objective: 0.999}),
		mustValid(t, Config{Name: "b", Upstream: "pool", Kind: Latency, Threshold: time.Second, Objective: 0.99}),
	})
	if n := testing.AllocsPerRun(1000, func() { e.Observe("api", "pool", 200, time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times per request", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	e := New(Options{})
	e.Set([]Config{
		{Name: "a", Route: "api", Objective: 0.999},
		{Name: "b", Upstream: "pool", Kind: Latency, Threshold: time.Second, Objective: 0.99},
	})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Observe("api", "pool", 200, time.Millisecond)
		}
	})
}

func TestHandler(t *testing.T) {
	e := New(Options{})
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/admin/slos", nil))
	if got := strings.TrimSpace(rec.Body.String()); got != `{
  "slos": []
}` {
		t.Fatalf("empty engine: %s", got)
	}
	e.Set([]Config{mustValid(t, Config{Name: "a", Route: "api", Objective: 0.999})})
	rec = httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/admin/slos", nil))
	var l struct {
		SLOs []map[string]any `json:"slos"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || len(l.SLOs) != 1 {
		t.Fatalf("decoding %s: %v", rec.Body, err)
	}
	for _, k := range []string{"name", "kind", "route", "upstream", "objective", "window", "threshold", "good", "total", "sli", "budget_remaining", "alerts"} {
		if _, ok := l.SLOs[0][k]; !ok {
			t.Errorf("field %q missing from %s", k, rec.Body)
		}
	}
	if l.SLOs[0]["window"] != "672h0m0s" {
		t.Errorf("window %v", l.SLOs[0]["window"])
	}
	alerts := l.SLOs[0]["alerts"].([]any)
	for _, k := range []string{"name", "severity", "burn_rate", "long_window", "short_window", "long_burn", "short_burn", "firing"} {
		if _, ok := alerts[0].(map[string]any)[k]; !ok {
			t.Errorf("alert field %q missing", k)
		}
	}
}
