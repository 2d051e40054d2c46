package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// faultList reads GET /admin/faults.
type faultEntry struct {
	Route           string  `json:"route"`
	Active          bool    `json:"active"`
	Source          string  `json:"source"`
	Delay           string  `json:"delay"`
	DelayPercent    float64 `json:"delay_percent"`
	AbortStatus     int     `json:"abort_status"`
	AbortPercent    float64 `json:"abort_percent"`
	Header          string  `json:"header"`
	InjectedDelays  int64   `json:"injected_delays"`
	InjectedAborts  int64   `json:"injected_aborts"`
	CancelledDelays int64   `json:"cancelled_delays"`
}

func faultsOf(t *testing.T, admin string) map[string]faultEntry {
	t.Helper()
	code, body, _ := get(t, admin+"/admin/faults")
	if code != 200 {
		t.Fatalf("GET /admin/faults: %d %s", code, body)
	}
	var out struct {
		Faults []faultEntry `json:"faults"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("GET /admin/faults: %v: %s", err, body)
	}
	m := map[string]faultEntry{}
	for _, f := range out.Faults {
		m[f.Route] = f
	}
	return m
}

func faultConfig(b, extra string) string {
	return fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: off
%s
upstreams:
  app:
    targets:
      - { address: %s }
routes:
  - name: aborts
    match: { path_prefix: /aborts }
    upstream: app
    fault: { abort_status: 503, abort_percent: 30 }
  - name: delays
    match: { path_prefix: /delays }
    upstream: app
    fault: { delay: 1ms, delay_percent: 50 }
  - name: header
    match: { path_prefix: /header }
    upstream: app
    fault: { header: x-switchyard-fault, abort_status: 503 }
  - name: plain
    match: { path_prefix: / }
    upstream: app
`, extra, b)
}

// Percentages are honoured (within wide statistical bounds), counted in
// /admin/faults and in /metrics; aborted requests never reach the backend.
func TestRouteFaultPercentages(t *testing.T) {
	b := newBackend(t, "app")
	gw := startGateway(t, faultConfig(b.addr(), ""))
	const n = 400
	aborted := 0
	for i := 0; i < n; i++ {
		code, body, _ := get(t, gw.url+"/aborts")
		switch code {
		case 503:
			if !strings.Contains(body, `"fault_abort"`) {
				t.Fatalf("503 without the fault_abort code: %s", body)
			}
			aborted++
		case 200:
		default:
			t.Fatalf("status %d: %s", code, body)
		}
		if code, _, _ := get(t, gw.url+"/delays"); code != 200 {
			t.Fatalf("delayed request: %d", code)
		}
	}
	// Binomial(400, 0.3): mean 120, sd 9.2; (400, 0.5): mean 200, sd 10.
	if aborted < 70 || aborted > 170 {
		t.Errorf("aborted %d of %d at 30%%", aborted, n)
	}
	if got := b.requests.Load(); got != int64(2*n-aborted) {
		t.Errorf("backend saw %d requests, want %d (aborted ones never reach it)", got, 2*n-aborted)
	}
	f := faultsOf(t, gw.admin)
	if f["aborts"].InjectedAborts != int64(aborted) || !f["aborts"].Active || f["aborts"].Source != "config" || f["aborts"].AbortPercent != 30 {
		t.Errorf("aborts: %+v, counted %d", f["aborts"], aborted)
	}
	if d := f["delays"].InjectedDelays; d < 140 || d > 260 {
		t.Errorf("delayed %d of %d at 50%%", d, n)
	}
	if _, ok := f["plain"]; ok {
		t.Errorf("a route without a fault is listed: %+v", f["plain"])
	}
	_, metrics, _ := get(t, gw.admin+"/metrics")
	if want := fmt.Sprintf(`switchyard_fault_aborts_total{route="aborts"} %d`, aborted); !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %q", want)
	}
	if !strings.Contains(metrics, `switchyard_fault_active{route="plain"} 0`) || !strings.Contains(metrics, `switchyard_fault_active{route="aborts"} 1`) {
		t.Error("metrics lack switchyard_fault_active")
	}
}

// A header triggers a fault only on a route whose config names it; its
// value may choose the fault there, within the configured bounds.
func TestRouteFaultHeaderOnlyWhenConfigured(t *testing.T) {
	b := newBackend(t, "app")
	gw := startGateway(t, faultConfig(b.addr(), ""))
	for _, h := range [][]string{
		{"X-Switchyard-Fault", "abort=500"},
		{"X-Switchyard-Fault", "1"},
		{"X-Envoy-Fault-Abort-Request", "503"},
		{"X-Envoy-Fault-Delay-Request", "1000"},
	} {
		if code, body, _ := get(t, gw.url+"/plain", h...); code != 200 || body != "app" {
			t.Fatalf("route without a fault, header %v: %d %s", h, code, body)
		}
	}
	if code, _, _ := get(t, gw.url+"/header"); code != 200 {
		t.Fatalf("header route without the header: %d", code)
	}
	for _, c := range []struct {
		value string
		want  int
	}{
		{"1", 503},         // presence: the configured abort
		{"abort=418", 418}, // the value chooses the status
		{"abort=418, abort_percent=0", 200},
		{"delay=2ms;abort=502", 502},
		{"abort=99", 503}, // invalid: the configured fault applies
		{"bogus=1", 503},  // unknown part: the configured fault applies
	} {
		if code, _, _ := get(t, gw.url+"/header", "X-Switchyard-Fault", c.value); code != c.want {
			t.Errorf("X-Switchyard-Fault: %q: status %d, want %d", c.value, code, c.want)
		}
	}
	f := faultsOf(t, gw.admin)["header"]
	if f.Header != "x-switchyard-fault" || f.InjectedDelays != 1 || f.InjectedAborts != 5 {
		t.Errorf("header route: %+v", f)
	}
}

func putFault(t *testing.T, admin, route, body string) (int, string) {
	t.Helper()
	code, out, _ := do(t, http.MethodPut, admin+"/admin/faults/"+route, strings.NewReader(body))
	return code, out
}

// Faults are set, switched off and cleared at runtime, without a reload.
func TestRouteFaultRuntimeSwitch(t *testing.T) {
	b := newBackend(t, "app")
	gw := startGateway(t, faultConfig(b.addr(), ""))
	if code, _, _ := get(t, gw.url+"/plain"); code != 200 {
		t.Fatal(code)
	}
	code, body := putFault(t, gw.admin, "plain", `{"abort_status": 502, "abort_percent": 100}`)
	if code != 200 || !strings.Contains(body, `"source": "runtime"`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, _, _ := get(t, gw.url+"/plain"); code != 502 {
		t.Fatalf("after PUT: %d", code)
	}
	// Switch a configured fault off, then clear the switch: the config's applies again.
	if code, body := putFault(t, gw.admin, "aborts", `{"abort_status": 503, "active": false}`); code != 200 {
		t.Fatalf("PUT active false: %d %s", code, body)
	}
	for i := 0; i < 50; i++ {
		if code, _, _ := get(t, gw.url+"/aborts"); code != 200 {
			t.Fatalf("switched off, still aborted: %d", code)
		}
	}
	if f := faultsOf(t, gw.admin)["aborts"]; f.Active || f.Source != "runtime" {
		t.Fatalf("switched off: %+v", f)
	}
	for _, route := range []string{"plain", "aborts", "plain"} { // clearing twice is fine
		if code, _, _ := do(t, http.MethodDelete, gw.admin+"/admin/faults/"+route, nil); code != 204 {
			t.Fatalf("DELETE %s: %d", route, code)
		}
	}
	if code, _, _ := get(t, gw.url+"/plain"); code != 200 {
		t.Fatalf("after DELETE: %d", code)
	}
	if f := faultsOf(t, gw.admin)["aborts"]; !f.Active || f.Source != "config" || f.AbortPercent != 30 {
		t.Fatalf("after DELETE the config's fault: %+v", f)
	}
	for _, c := range []struct {
		route, body string
		code        int
		want        string
	}{
		{"nope", `{"abort_status": 503}`, 404, `unknown route`},
		{"plain", `{"abort_status": 700}`, 400, `abort_status: 700 out of range`},
		{"plain", `{"delay": "soon"}`, 400, `delay \"soon\"`},
		{"plain", `{"delay": "1s", "delay_percent": 120}`, 400, `delay_percent: 120 out of range`},
		{"plain", `{"abort": 503}`, 400, `unknown field \"abort\"`},
		{"plain", `{}`, 400, `no fault`},
		{"plain", `{"header": "bad header"}`, 400, `invalid header name`},
		{"plain", `[`, 400, `invalid JSON`},
	} {
		code, body := putFault(t, gw.admin, c.route, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("PUT %s %s: %d %s, want %d containing %s", c.route, c.body, code, body, c.code, c.want)
		}
	}
	if code, _, _ := do(t, http.MethodDelete, gw.admin+"/admin/faults/nope", nil); code != 404 {
		t.Errorf("DELETE unknown route: %d", code)
	}
	if code, _, _ := get(t, gw.url+"/plain"); code != 200 {
		t.Fatalf("bad PUTs changed nothing: %d", code)
	}
}

// Runtime faults are kept in state_dir/faults.json and restored by the
// next gateway; a reload without the route drops its fault.
func TestRouteFaultPersistsAcrossRestart(t *testing.T) {
	b := newBackend(t, "app")
	dir := t.TempDir()
	cfg := faultConfig(b.addr(), "state_dir: "+dir)
	gw := startGateway(t, cfg)
	if code, body := putFault(t, gw.admin, "plain", `{"abort_status": 504, "abort_percent": 100}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := putFault(t, gw.admin, "aborts", `{"abort_status": 503, "active": false}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	saved := mustRead(t, filepath.Join(dir, "faults.json"))
	if !strings.Contains(saved, `"plain"`) || !strings.Contains(saved, `"abort_status": 504`) {
		t.Fatalf("faults.json: %s", saved)
	}
	gw.cancel()
	select {
	case err := <-gw.done:
		gw.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop")
	}

	gw2 := startGateway(t, cfg)
	if code, _, _ := get(t, gw2.url+"/plain"); code != 504 {
		t.Fatalf("restored fault: status %d", code)
	}
	for i := 0; i < 20; i++ {
		if code, _, _ := get(t, gw2.url+"/aborts"); code != 200 {
			t.Fatalf("restored switch-off: %d", code)
		}
	}
	// Reload without the route "plain": its runtime fault goes, in the file too.
	gw2.rewrite(t, strings.Replace(cfg, "  - name: plain\n", "  - name: other\n", 1))
	if err := gw2.g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, gw2.url+"/x"); code != 200 {
		t.Fatalf("renamed route: %d", code)
	}
	if saved := mustRead(t, filepath.Join(dir, "faults.json")); strings.Contains(saved, `"plain"`) || !strings.Contains(saved, `"aborts"`) {
		t.Fatalf("faults.json after reload: %s", saved)
	}
}

// A state file that does not parse stops the gateway at start, naming
// the file: starting without it would bring back a config fault an
// operator had switched off at runtime, and the next change would
// overwrite the file. The file is left as it was.
func TestRouteFaultBadStateFile(t *testing.T) {
	b := newBackend(t, "app")
	for name, content := range map[string]string{
		"not json":      "{not json",
		"truncated":     `{"version": 1, "faults": {"plain": {"active": fal`,
		"wrong version": `{"version": 2, "faults": {}}`,
		"bad fault":     `{"version": 1, "faults": {"plain": {"abort_status": 99, "abort_percent": 50}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			state := filepath.Join(dir, "faults.json")
			if err := os.WriteFile(state, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "gateway.yaml")
			if err := os.WriteFile(path, []byte(faultConfig(b.addr(), "state_dir: "+dir)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := New(Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler), AccessLogWriter: io.Discard}); err == nil {
				t.Fatal("gateway.New succeeded with a bad faults.json")
			} else if !strings.Contains(err.Error(), state) {
				t.Errorf("error does not name the file %s: %v", state, err)
			}
			if got := mustRead(t, state); got != content {
				t.Errorf("faults.json changed to %q", got)
			}
		})
	}
}

// A client that goes away during an injected delay ends it: the request
// never reaches the backend and the delay is counted as cancelled.
func TestRouteFaultClientCancelsDuringDelay(t *testing.T) {
	b := newBackend(t, "app")
	gw := startGateway(t, faultConfig(b.addr(), ""))
	if code, body := putFault(t, gw.admin, "plain", `{"delay": "1h"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+"/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, 5*time.Second, "the delay to begin", func() bool { return faultsOf(t, gw.admin)["plain"].InjectedDelays == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	eventually(t, 5*time.Second, "the delay to be cancelled", func() bool { return faultsOf(t, gw.admin)["plain"].CancelledDelays == 1 })
	eventually(t, 5*time.Second, "no request in flight", func() bool { return gw.g.handler.InFlight() == 0 })
	if n := b.requests.Load(); n != 0 {
		t.Fatalf("the backend saw %d requests", n)
	}
	// Other requests are not held by the delayed one (no lock across it).
	if code, body := putFault(t, gw.admin, "plain", `{"delay": "1ms"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, _, _ := get(t, gw.url+"/x"); code != 200 {
		t.Fatal(code)
	}
}

// A bad fault block is refused with the key path.
func TestRouteFaultConfigErrors(t *testing.T) {
	_, err := ParseConfig([]byte(`
listen: 127.0.0.1:0
upstreams: { app: { targets: [ { address: 127.0.0.1:1 } ] } }
routes:
  - name: a
    upstream: app
    fault: { delay: 2h, abort_status: 42, abort_percent: 101, header: "a b", delai: 1s }
`), "g.yaml")
	if err == nil || !strings.Contains(err.Error(), `routes[0].fault.delai: unknown key "delai"`) {
		t.Fatalf("unknown key: %v", err)
	}
	path := filepath.Join(t.TempDir(), "g.yaml")
	writeConfig(t, path, `
listen: 127.0.0.1:0
upstreams: { app: { targets: [ { address: 127.0.0.1:1 } ] } }
routes:
  - name: a
    upstream: app
    fault: { delay: 2h, abort_status: 42, abort_percent: 101, header: "a b" }
`)
	err = Check(path)
	for _, want := range []string{"routes[0].fault.delay: 2h0m0s out of range", "routes[0].fault.abort_status: 42 out of range",
		"routes[0].fault.abort_percent: 101 out of range", "routes[0].fault.header: invalid header name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
