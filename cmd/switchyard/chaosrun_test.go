package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startFaultGateway runs a real gateway in front of a real backend and
// returns its proxy and admin base URLs.
func startFaultGateway(t *testing.T) (front, admin string) {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: off\nupstreams:\n  app: { targets: [{address: %s}] }\n"+
		"routes:\n  - { name: api, match: { path_prefix: /api }, upstream: app }\n  - { name: other, upstream: app }\n", backend.Listener.Addr())
	g := runTestGateway(t, cfg)
	return "http://" + g.Addr().String(), "http://" + g.AdminAddr().String()
}

func writeExperiment(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "experiment.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type chaosReport struct {
	Held         bool     `json:"held"`
	Reason       string   `json:"reason"`
	FailedProbes []string `json:"failed_probes"`
	During       []struct {
		Held bool `json:"held"`
	} `json:"during"`
	Method []struct {
		Name string `json:"name"`
		OK   bool   `json:"ok"`
	} `json:"method"`
	Rollbacks []struct {
		Name string `json:"name"`
		OK   bool   `json:"ok"`
	} `json:"rollbacks"`
	Load     *struct{ Requests int64 }  `json:"load"`
	Timeline []struct{ Requests int64 } `json:"timeline"`
}

func experimentText(front, admin, method string) string {
	return fmt.Sprintf(`title: the API stays up
admin: %[2]s
load: { rate: 40, duration: 4s, url: "%[1]s/api/items" }
steady_state:
  probes:
    - name: api-up
      http: { url: "%[1]s/api/health", status: 200 }
    - name: api-errors
      sli: { max_error_rate: 5%%, window: 2s }
    - name: api-aborts
      metric: { url: "%[2]s/metrics", name: switchyard_fault_aborts_total, labels: { route: api }, increase: true, max: 0 }
method:
%[3]s
rollbacks:
  - route_fault: { route: api, clear: true }
`, front, admin, method)
}

// An experiment whose faults the API survives: a fault on another route
// and a delay the SLIs tolerate. Exit 0, a chart, the timeline in JSON.
func TestChaosRunHolds(t *testing.T) {
	front, admin := startFaultGateway(t)
	path := writeExperiment(t, experimentText(front, admin, `  - at: 1s
    route_fault: { route: other, set: { abort_status: 503 } }
  - at: 1s
    route_fault: { route: api, set: { delay: 1ms, delay_percent: 50 } }
  - wait: 1s
  - route_fault: { route: other, clear: true }`))
	svg := filepath.Join(t.TempDir(), "timeline.svg")
	var out, errb bytes.Buffer
	code := run([]string{"chaos", "run", "--json", "--chart", svg, path}, &out, &errb)
	var rep chaosReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if code != 0 || !rep.Held || len(rep.FailedProbes) != 0 {
		t.Fatalf("exit %d, report %+v\n%s", code, rep, errb.String())
	}
	if len(rep.Method) != 4 || len(rep.Rollbacks) != 1 || !rep.Rollbacks[0].OK {
		t.Fatalf("actions %+v rollbacks %+v", rep.Method, rep.Rollbacks)
	}
	if len(rep.During) < 3 || rep.Load == nil || rep.Load.Requests < 100 || len(rep.Timeline) < 3 {
		t.Fatalf("checks %d, load %+v, timeline %d", len(rep.During), rep.Load, len(rep.Timeline))
	}
	if b, err := os.ReadFile(svg); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Fatalf("chart: %v", err)
	}
	if !strings.Contains(errb.String(), "during held") {
		t.Errorf("progress lines: %s", errb.String())
	}
}

// An injected abort breaks the hypothesis: exit 1, the report names the
// probes that failed, and the rollback ran (the fault is gone).
func TestChaosRunBrokenByAbort(t *testing.T) {
	front, admin := startFaultGateway(t)
	path := writeExperiment(t, experimentText(front, admin, `  - at: 1s
    route_fault: { route: api, set: { abort_status: 503, abort_percent: 100 } }`))
	var out, errb bytes.Buffer
	code := run([]string{"chaos", "run", path}, &out, &errb)
	text := out.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, text, errb.String())
	}
	for _, want := range []string{"the hypothesis DID NOT HOLD", "failed probes: api-up, api-errors, api-aborts", "FAIL api-up", "status 503, expected 200",
		"rollbacks:", "clear route fault api", "timeline"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(errb.String(), "the hypothesis did not hold") {
		t.Errorf("stderr: %s", errb.String())
	}
	// The rollback removed the fault.
	resp, err := http.Get(admin + "/admin/faults")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Faults []json.RawMessage }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Faults) != 0 {
		t.Fatalf("faults left after the rollback: %s", list.Faults)
	}
	if resp, err := http.Get(front + "/api/x"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the rollback: %v %v", resp, err)
	}
}

// A file that does not validate: exit 2, each problem at file:line with its key.
func TestChaosRunInvalidFile(t *testing.T) {
	path := writeExperiment(t, `title: bad
load: { rate: 0, duration: 2s, url: "ftp://x" }
steady_state:
  probes:
    - name: p
      http: { url: http://127.0.0.1:1/, status: 999 }
    - name: p
      sli: { max_error_rate: 200% }
method:
  - at: 2s
    route_fault: { route: api, set: { abort_status: 42 } }
  - at: 1s
    process: { admin: http://127.0.0.1:1, name: rides, action: explode }
  - toxic: { proxy: db, add: { name: x, type: latency } }
rollbacks:
  - { wait: 1s, at: 1s }
`)
	var out, errb bytes.Buffer
	code := run([]string{"chaos", "run", path}, &out, &errb)
	if code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, errb.String())
	}
	msg := errb.String()
	for _, want := range []string{path + ":8:30: steady_state.probes[1].sli.max_error_rate: invalid percentage"} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
	// With the percentage fixed, validation reports every other problem.
	os.WriteFile(path, bytes.Replace(mustReadFile(t, path), []byte("200%"), []byte("2%"), 1), 0o644)
	errb.Reset()
	if code := run([]string{"chaos", "run", path}, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	msg = errb.String()
	for _, want := range []string{"load.rate: 0", "load.url: invalid URL", "probes[0].http.status: 999", `probes[1].name: duplicate probe name "p"`,
		"method[0].route_fault.admin: missing", "method[0].route_fault.set.abort_status: 42 out of range",
		"method[1].at: 1s is before", `method[1].process.action: "explode"`, "method[2].toxic.api: missing", "method[2].toxic.add: latency",
		"rollbacks[0].at: rollbacks run at the end", path + ":16:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
