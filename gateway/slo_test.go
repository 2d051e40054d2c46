package gateway

// End-to-end tests of SLOs: a real gateway in front of a real backend
// that can be switched to answer 500, a real webhook receiver on
// loopback, /admin/slos, /metrics and the state file across a restart.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/slo"
)

// hookReceiver is a webhook receiver on loopback recording the events.
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []slo.Event
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev slo.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) statuses() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		out = append(out, e.Status)
	}
	return out
}

// switchable makes a backend answer 500 while failing is set.
func switchable(b *backend) *sync.Map {
	var m sync.Map
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		if _, bad := m.Load("failing"); bad {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	return &m
}

func sloConfig(backendAddr, extraTop, slos string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
%supstreams:
  app:
    targets:
      - { address: %s }
routes:
  - { name: api, upstream: app }
slos:
%s`, extraTop, backendAddr, slos)
}

func adminSLOs(t *testing.T, r *running) []slo.Status {
	t.Helper()
	code, body, _ := get(t, r.admin+"/admin/slos")
	if code != http.StatusOK {
		t.Fatalf("GET /admin/slos: %d %s", code, body)
	}
	var l slo.List
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("GET /admin/slos: %v in %s", err, body)
	}
	return l.SLOs
}

// waitTotals waits until the SLOs have counted want requests each: a
// request is counted when the proxy finishes it, which may be just after
// the client has read the response.
func waitTotals(t *testing.T, r *running, want ...uint64) []slo.Status {
	t.Helper()
	var s []slo.Status
	eventually(t, 5*time.Second, fmt.Sprintf("the SLOs to count %v requests", want), func() bool {
		s = adminSLOs(t, r)
		if len(s) != len(want) {
			return false
		}
		for i, w := range want {
			if s[i].Total != w {
				return false
			}
		}
		return true
	})
	return s
}

func sloAlert(s slo.Status, name string) slo.AlertStatus {
	for _, a := range s.Alerts {
		if a.Name == name {
			return a
		}
	}
	return slo.AlertStatus{}
}

// TestSLOBurnAlertFiresAndResolves is the acceptance test: errors
// injected at the backend fire the burn alert (the webhook receiver gets
// "firing"), and when they stop it resolves ("resolved"). Windows are
// seconds long so the real clock runs the whole cycle.
func TestSLOBurnAlertFiresAndResolves(t *testing.T) {
	b := newBackend(t, "app")
	failing := switchable(b)
	hook := newHookReceiver(t)
	r := startGateway(t, sloConfig(b.addr(), "", fmt.Sprintf(`  - name: api-availability
    route: api
    objective: 99%%
    window: 1h
    alerts:
      - { name: fast-burn, severity: page, burn_rate: 14.4, long_window: 2s, short_window: 1s }
    webhooks: [%s]
`, hook.srv.URL)))

	for range 20 {
		if code, _, _ := get(t, r.url+"/"); code != 200 {
			t.Fatalf("healthy backend answered %d", code)
		}
	}
	s := waitTotals(t, r, 20)
	if len(s) != 1 || s[0].Total != 20 || s[0].Good != 20 || s[0].SLI != 1 || s[0].Route != "api" || s[0].Window != "1h0m0s" {
		t.Fatalf("after 20 good requests: %+v", s)
	}
	if sloAlert(s[0], "fast-burn").Firing {
		t.Fatal("firing on good traffic")
	}

	failing.Store("failing", true)
	eventually(t, 10*time.Second, "the burn alert to fire", func() bool {
		get(t, r.url+"/")
		return sloAlert(adminSLOs(t, r)[0], "fast-burn").Firing
	})
	eventually(t, 10*time.Second, "the webhook to get firing", func() bool { return slices.Equal(hook.statuses(), []string{"firing"}) })
	s = adminSLOs(t, r)
	if s[0].BudgetRemaining >= 0 || s[0].Total == s[0].Good {
		t.Fatalf("after errors: %+v", s[0])
	}
	_, metrics, _ := get(t, r.admin+"/metrics")
	for _, want := range []string{
		`switchyard_slo_alert_firing{alert="fast-burn",severity="page",slo="api-availability"} 1`,
		`switchyard_slo_burn_rate{slo="api-availability",window="1s"}`,
		`switchyard_slo_error_budget_remaining{slo="api-availability"}`,
		`switchyard_slo_sli{kind="availability",slo="api-availability"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	failing.Delete("failing")
	eventually(t, 10*time.Second, "the burn alert to resolve", func() bool {
		get(t, r.url+"/")
		return !sloAlert(adminSLOs(t, r)[0], "fast-burn").Firing
	})
	eventually(t, 10*time.Second, "the webhook to get resolved", func() bool {
		return slices.Equal(hook.statuses(), []string{"firing", "resolved"})
	})
	hook.mu.Lock()
	ev := hook.events[0]
	hook.mu.Unlock()
	if ev.SLO != "api-availability" || ev.Alert != "fast-burn" || ev.Route != "api" || ev.ShortBurn < 14.4 {
		t.Fatalf("firing event: %+v", ev)
	}
}

// TestSLOStateSurvivesRestart: a gateway restarted on the same state_dir
// shows the same budget and the same firing alert (with its original
// since), and does not announce it a second time.
func TestSLOStateSurvivesRestart(t *testing.T) {
	b := newBackend(t, "app")
	failing := switchable(b)
	hook := newHookReceiver(t)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := sloConfig(b.addr(), "state_dir: "+dir+"\n", fmt.Sprintf(`  - name: api-availability
    route: api
    objective: 99%%
    alerts:
      - { name: fast-burn, burn_rate: 14.4, long_window: 1h, short_window: 5m }
    webhooks: [%s]
`, hook.srv.URL))
	r := startGateway(t, cfg)
	for range 10 {
		get(t, r.url+"/")
	}
	failing.Store("failing", true)
	for range 5 {
		get(t, r.url+"/")
	}
	waitTotals(t, r, 15)
	r.g.slos.Evaluate() // the 5m window's evaluation period is 15s: do not wait for it
	eventually(t, 10*time.Second, "the webhook to get firing", func() bool { return slices.Equal(hook.statuses(), []string{"firing"}) })
	before := adminSLOs(t, r)[0]
	if !sloAlert(before, "fast-burn").Firing || before.Total != 15 {
		t.Fatalf("before the restart: %+v", before)
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	r.done <- nil // for the test's cleanup
	if _, err := os.Stat(filepath.Join(dir, SLOStateFile)); err != nil {
		t.Fatalf("state file: %v", err)
	}

	r2 := startGateway(t, cfg)
	after := adminSLOs(t, r2)[0]
	if after.Total != before.Total || after.Good != before.Good || after.BudgetRemaining != before.BudgetRemaining {
		t.Fatalf("budget after the restart %+v, before %+v", after, before)
	}
	fa, fb := sloAlert(after, "fast-burn"), sloAlert(before, "fast-burn")
	if !fa.Firing || fa.Since == nil || !fa.Since.Equal(*fb.Since) {
		t.Fatalf("alert after the restart %+v, before %+v", fa, fb)
	}
	r2.g.slos.Evaluate()
	if strings.Contains(r2.logs.String(), "slo alert firing") {
		t.Fatalf("the restarted gateway announced the alert again:\n%s", r2.logs)
	}
	if got := hook.statuses(); !slices.Equal(got, []string{"firing"}) {
		t.Fatalf("webhook events %v, expected one firing", got)
	}
}

// TestSLOCorruptStateIgnored: a corrupt state file is reported and moved
// aside; the gateway starts with fresh counts.
func TestSLOCorruptStateIgnored(t *testing.T) {
	b := newBackend(t, "app")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SLOStateFile), []byte(`{"version":1,"crc32c":1,"state":{"slos":[]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startGateway(t, sloConfig(b.addr(), "state_dir: "+dir+"\n", "  - { name: a, route: api, objective: 99.9% }\n"))
	if !strings.Contains(r.logs.String(), "slo state not restored") || !strings.Contains(r.logs.String(), "checksum") {
		t.Fatalf("corrupt state not reported:\n%s", r.logs)
	}
	if _, err := os.Stat(filepath.Join(dir, SLOStateFile+".corrupt")); err != nil {
		t.Fatalf("corrupt file not moved aside: %v", err)
	}
	get(t, r.url+"/")
	waitTotals(t, r, 1)
}

// TestSLOWebhookDownOrSlow: with one webhook receiver that holds every
// request and another address where nothing listens, the alert still
// fires and requests keep being served: delivery never runs on the
// request path.
func TestSLOWebhookDownOrSlow(t *testing.T) {
	b := newBackend(t, "app")
	failing := switchable(b)
	held := make(chan struct{}, 16)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	r := startGateway(t, sloConfig(b.addr(), "", fmt.Sprintf(`  - name: api-availability
    route: api
    objective: 99%%
    window: 1h
    alerts:
      - { name: fast-burn, burn_rate: 14.4, long_window: 2s, short_window: 1s }
    webhooks: [%s, http://%s/hook]
`, slow.URL, deadAddr(t))))
	failing.Store("failing", true)
	sent := uint64(0)
	eventually(t, 10*time.Second, "the burn alert to fire", func() bool {
		get(t, r.url+"/")
		sent++
		return sloAlert(adminSLOs(t, r)[0], "fast-burn").Firing
	})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow receiver got no webhook")
	}
	// The slow receiver holds its delivery, the dead one is being
	// retried: requests are answered all the same.
	waitTotals(t, r, sent)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				resp, err := client.Get(r.url + "/")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	waitTotals(t, r, sent+200) // all 200 answered and counted while the webhooks were stuck
	if !strings.Contains(r.logs.String(), "slo webhook failed: retrying") {
		t.Fatalf("the dead webhook's failure is not logged:\n%s", r.logs)
	}
}

// TestSLOReloadKeepsCounts: a reload that leaves an SLO unchanged keeps
// its counts; a new SLO starts at zero; a changed one starts afresh.
func TestSLOReloadKeepsCounts(t *testing.T) {
	b := newBackend(t, "app")
	one := "  - { name: a, route: api, objective: 99.9% }\n  - { name: b, upstream: app, objective: 99% }\n"
	r := startGateway(t, sloConfig(b.addr(), "", one))
	for range 7 {
		get(t, r.url+"/")
	}
	waitTotals(t, r, 7, 7)
	r.rewrite(t, sloConfig(b.addr(), "", "  - { name: a, route: api, objective: 99.9% }\n"+
		"  - { name: b, upstream: app, objective: 99%, errors: [5xx, 429] }\n"+
		"  - { name: c, route: api, kind: latency, threshold: 250ms, objective: 99% }\n"))
	if code, body, _ := do(t, http.MethodPost, r.admin+"/admin/reload", nil); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	s := adminSLOs(t, r)
	if len(s) != 3 || s[0].Total != 7 || s[1].Total != 0 || s[2].Total != 0 || s[2].Threshold != "250ms" {
		t.Fatalf("after reload: %+v", s)
	}
	get(t, r.url+"/")
	waitTotals(t, r, 8, 1, 1)
}

// TestSLOEmptyList: a gateway without SLOs answers an empty list.
func TestSLOEmptyList(t *testing.T) {
	b := newBackend(t, "app")
	r := startGateway(t, e2eConfig{addrs: []string{b.addr()}}.String())
	code, body, _ := get(t, r.admin+"/admin/slos")
	if code != 200 || strings.Join(strings.Fields(body), "") != `{"slos":[]}` {
		t.Fatalf("GET /admin/slos: %d %s", code, body)
	}
}

// TestSLOConfigErrors: every problem of the slos section is reported at
// its file, line and key path.
func TestSLOConfigErrors(t *testing.T) {
	base := "listen: 127.0.0.1:0\nupstreams:\n  app:\n    targets: [{ address: 127.0.0.1:9 }]\nroutes:\n  - { name: api, upstream: app }\nslos:\n"
	cases := []struct {
		name, slos string
		want       []string
	}{
		{"unknown route", "  - { name: a, route: nope, objective: 99% }\n",
			[]string{"gateway.yaml:8:", `slos[0].route: unknown route "nope": expected one of api`}},
		{"unknown upstream", "  - { name: a, upstream: nope, objective: 99% }\n",
			[]string{`slos[0].upstream: unknown upstream "nope": expected one of app`}},
		{"no target", "  - { name: a, objective: 99% }\n", []string{"slos[0].route: missing"}},
		{"both targets", "  - { name: a, route: api, upstream: app, objective: 99% }\n", []string{"slos[0].upstream: an SLO measures a route or an upstream, not both"}},
		{"objective 100%", "  - { name: a, route: api, objective: 100% }\n", []string{"slos[0].objective: 100% out of range"}},
		{"objective text", "  - { name: a, route: api, objective: high }\n", []string{`gateway.yaml:8:`, `slos[0].objective: invalid ratio "high"`}},
		{"window", "  - { name: a, route: api, objective: 99%, window: 28x }\n", []string{`slos[0].window: invalid duration "28x"`}},
		{"window range", "  - { name: a, route: api, objective: 99%, window: 500d }\n", []string{`slos[0].window: 500d out of range`}},
		{"kind", "  - { name: a, route: api, objective: 99%, kind: speed }\n", []string{`slos[0].kind: unknown kind "speed"`}},
		{"latency without threshold", "  - { name: a, route: api, objective: 99%, kind: latency }\n", []string{"slos[0].threshold: missing"}},
		{"threshold on availability", "  - { name: a, route: api, objective: 99%, threshold: 1s }\n", []string{"slos[0].threshold: an availability SLO has no threshold"}},
		{"bad status", "  - { name: a, route: api, objective: 99%, errors: [5xx, 6xx] }\n", []string{`slos[0].errors[1]: invalid status "6xx"`}},
		{"duplicate", "  - { name: a, route: api, objective: 99% }\n  - { name: a, route: api, objective: 99% }\n", []string{`gateway.yaml:9:`, `slos[1].name: duplicate slo name "a"`}},
		{"burn rate cannot fire", "  - name: a\n    route: api\n    objective: 90%\n", []string{`slos[0].alerts[0].burn_rate: 14.4 can never fire with objective 90%`}},
		{"alert windows", "  - name: a\n    route: api\n    objective: 99%\n    window: 1d\n    alerts:\n      - { name: x, burn_rate: 2, long_window: 2d, short_window: 3d }\n",
			[]string{`gateway.yaml:13:`, "slos[0].alerts[0].long_window: 2d out of range", "slos[0].alerts[0].short_window: 3d is not shorter than long_window"}},
		{"webhook", "  - { name: a, route: api, objective: 99%, webhooks: [ftp://x] }\n", []string{`slos[0].webhooks[0]: invalid webhook URL "ftp://x"`}},
		{"unknown key", "  - { name: a, route: api, objective: 99%, webhook: http://x }\n", []string{`slos[0].webhook: unknown key "webhook": did you mean "webhooks"?`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gateway.yaml")
			writeConfig(t, path, base+tc.slos)
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("not a located error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestSLORulesUseRealMetricNames: the series the Prometheus rules select
// are the ones the gateway's /metrics really serves.
func TestSLORulesUseRealMetricNames(t *testing.T) {
	b := newBackend(t, "app")
	r := startGateway(t, sloConfig(b.addr(), "", "  - { name: a, route: api, objective: 99.9% }\n"+
		"  - { name: l, upstream: app, kind: latency, threshold: 250ms, objective: 99% }\n"))
	get(t, r.url+"/")
	_, metrics, _ := get(t, r.admin+"/metrics")
	for _, series := range []string{
		`switchyard_requests_total{code="200",route="api",upstream="app"} 1`,
		`switchyard_request_duration_seconds_bucket{route="api",upstream="app",le="0.25"} 1`,
		`switchyard_request_duration_seconds_count{route="api",upstream="app"} 1`,
	} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	rules, err := r.g.current.Load().cfg.SLORules()
	if err != nil {
		t.Fatal(err)
	}
	out, err := rules.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, sel := range []string{`switchyard_requests_total{route="api",code=~"5.."}`, `switchyard_request_duration_seconds_bucket{upstream="app",le="0.25"}`,
		`switchyard_request_duration_seconds_count{upstream="app"}`} {
		if !strings.Contains(string(out), sel) {
			t.Errorf("rules lack %s:\n%s", sel, out)
		}
	}
}

// FuzzSLOConfig feeds slos sections to the loader: every rejection is a
// located error, every accepted SLO measures an existing route or
// upstream, and the rules of an accepted config are written or refused
// with a located error, never a panic.
func FuzzSLOConfig(f *testing.F) {
	base := "listen: 127.0.0.1:1\nupstreams:\n  app: {targets: [{address: 'h:1'}]}\nroutes: [{name: api, upstream: app}]\nslos:\n"
	for _, s := range []string{
		"  - { name: a, route: api, objective: 99.9% }\n",
		"  - { name: a, upstream: app, kind: latency, threshold: 250ms, objective: 0.99, window: 7d }\n",
		"  - { name: a, route: api, objective: 99%, errors: [5xx, 429, 400-404], webhooks: ['http://h/x?t=1'] }\n",
		"  - { name: a, route: api, objective: 99%, window: 1h, alerts: [{name: f, burn_rate: 14.4, long_window: 2s, short_window: 1s}] }\n",
		"  - { name: a, route: api, objective: 99%, alerts: [] }\n",
		"  - { name: a, route: api, objective: 99.99999%, window: 400d }\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, slos string) {
		cfg, err := ParseConfig([]byte(base+slos), "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		for _, s := range cfg.SLOs {
			if (s.Route != "api") == (s.Upstream != "app") {
				t.Fatalf("accepted slo %q measuring route %q upstream %q", s.Name, s.Route, s.Upstream)
			}
			if !(s.Objective > 0 && s.Objective < 1) {
				t.Fatalf("accepted objective %v", float64(s.Objective))
			}
		}
		rules, err := cfg.SLORules()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("rules error without file name: %v", err)
			}
			return
		}
		if _, err := rules.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}
