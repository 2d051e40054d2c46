package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/rollout"
)

// rolloutConfig is a gateway with upstream api on the given targets, the
// state kept in stateDir ("" for none).
func rolloutConfig(stateDir string, addrs ...string) string {
	sd := ""
	if stateDir != "" {
		sd = "state_dir: " + stateDir + "\n"
	}
	return `listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
` + sd + `upstreams:
  api:
    targets:
` + targets(addrs...) + `routes:
  - name: api
    match: { path_prefix: / }
    upstream: api
`
}

// rolloutStatus is a rollout.Status as the admin API writes it.
func rolloutStatus(t *testing.T, r *running, name string) rollout.Status {
	t.Helper()
	code, body, _ := get(t, r.admin+"/admin/rollouts/"+name)
	if code != 200 {
		t.Fatalf("GET rollout %s: %d %s", name, code, body)
	}
	var s rollout.Status
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return s
}

func adminDo(t *testing.T, r *running, method, path, body string) (int, string) {
	t.Helper()
	code, out, _ := do(t, method, r.admin+path, strings.NewReader(body), "Content-Type", "application/json")
	return code, out
}

// driveUntil sends requests through the gateway, counting the backends
// that answered, until cond holds (checked after each request).
func driveUntil(t *testing.T, r *running, within time.Duration, what string, cond func() bool) map[string]int {
	t.Helper()
	seen := map[string]int{}
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (answers %v)", within, what, seen)
		}
		code, body, _ := get(t, r.url+"/")
		seen[fmt.Sprintf("%d %s", code, body)]++
	}
	return seen
}

func upstreamTargets(t *testing.T, r *running) []string {
	t.Helper()
	code, body, _ := get(t, r.admin+"/admin/upstreams/api")
	if code != 200 {
		t.Fatalf("GET upstream: %d %s", code, body)
	}
	var u struct {
		Targets []struct{ Address string } `json:"targets"`
	}
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tg := range u.Targets {
		out = append(out, tg.Address)
	}
	return out
}

// answers sends n requests and counts the answers.
func answers(t *testing.T, r *running, n int, hdr ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		code, body, _ := get(t, r.url+"/", hdr...)
		seen[fmt.Sprintf("%d %s", code, body)]++
	}
	return seen
}

// promote moves a canary to its next step (the traffic follows), and
// promote?full=true to the end; a bad full value is refused.
func TestRolloutPromoteNextStep(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	r := startGateway(t, rolloutConfig("", stable.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(
		`{"upstream":"api","targets":[%q],"steps":[1,100],"pause":"1h"}`, canary.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	code, body = adminDo(t, r, "POST", "/admin/rollouts/api/promote?full=maybe", "")
	if code != 400 || !strings.Contains(body, `full: invalid value \"maybe\": expected true or false`) {
		t.Fatalf("bad full: %d %s", code, body)
	}
	code, body = adminDo(t, r, "POST", "/admin/rollouts/api/promote", "")
	if code != 200 {
		t.Fatalf("promote: %d %s", code, body)
	}
	s := rolloutStatus(t, r, "api")
	if s.State != rollout.Progressing || s.Step != 2 || s.CanaryWeight != 100 {
		t.Fatalf("after promote: %+v", s)
	}
	if seen := answers(t, r, 10); seen["200 canary"] != 10 {
		t.Fatalf("at step 2 (100%%): %v", seen)
	}
	code, body = adminDo(t, r, "POST", "/admin/rollouts/api/promote?full=true", "")
	if code != 200 || !strings.Contains(body, `"state": "promoted"`) {
		t.Fatalf("promote full: %d %s", code, body)
	}
	if got := upstreamTargets(t, r); len(got) != 1 || got[0] != canary.addr() {
		t.Fatalf("targets after promote: %v", got)
	}
	if code, body = adminDo(t, r, "POST", "/admin/rollouts/api/promote", ""); code != 409 {
		t.Fatalf("promote after the end: %d %s", code, body)
	}
}

// A canary that answers 500 is rolled back by the analysis alone, and
// traffic returns to the stable targets.
func TestRolloutBadCanaryRollsBackByItself(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	canary.handle(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "broken", 500) })
	r := startGateway(t, rolloutConfig("", stable.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(
		`{"upstream":"api","targets":[%q],"steps":[50,100],"pause":"10s","analysis":{"min_requests":5}}`, canary.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	driveUntil(t, r, 20*time.Second, "the rollback", func() bool { return rolloutStatus(t, r, "api").State == rollout.RolledBack })
	s := rolloutStatus(t, r, "api")
	if s.CanaryWeight != 0 || s.Analysis == nil || s.Analysis.Verdict != "fail" || !strings.Contains(s.Message, "canary error rate") {
		t.Fatalf("status after the rollback: %+v", s)
	}
	if got := upstreamTargets(t, r); len(got) != 1 || got[0] != stable.addr() {
		t.Fatalf("targets after the rollback: %v", got)
	}
	before := canary.requests.Load()
	if seen := answers(t, r, 30); seen["200 stable"] != 30 {
		t.Fatalf("after the rollback: %v", seen)
	}
	if canary.requests.Load() != before {
		t.Fatal("the rolled-back canary still gets requests")
	}
	_, metrics, _ := get(t, r.admin+"/metrics")
	if !strings.Contains(metrics, `switchyard_rollout_state{state="rolled_back",upstream="api"} 1`) {
		t.Fatal("metrics do not show the rollback")
	}
}

// A healthy canary goes through every step and is promoted: it becomes
// the stable set.
func TestRolloutGoodCanaryIsPromoted(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	r := startGateway(t, rolloutConfig("", stable.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(
		`{"upstream":"api","targets":[%q],"steps":[20,60,100],"pause":"100ms","analysis":{"min_requests":5,"min_p99_increase":"10s"}}`, canary.addr()))
	if code != 201 || !strings.Contains(body, `"canary_weight": 20`) {
		t.Fatalf("start: %d %s", code, body)
	}
	steps := map[int]bool{}
	driveUntil(t, r, 30*time.Second, "the promotion", func() bool {
		s := rolloutStatus(t, r, "api")
		steps[s.Step] = true
		if s.State == rollout.RolledBack {
			t.Fatalf("a good canary was rolled back: %+v", s)
		}
		return s.State == rollout.Promoted
	})
	if !steps[2] {
		t.Errorf("never saw step 2: %v", steps)
	}
	s := rolloutStatus(t, r, "api")
	if s.CanaryWeight != 100 || s.Steps != 3 {
		t.Fatalf("promoted status: %+v", s)
	}
	if got := upstreamTargets(t, r); len(got) != 1 || got[0] != canary.addr() {
		t.Fatalf("targets after the promotion: %v", got)
	}
	if seen := answers(t, r, 20); seen["200 canary"] != 20 {
		t.Fatalf("after the promotion: %v", seen)
	}
	// The promoted set is the stable one: a reload of the same config keeps it.
	if code, body := adminDo(t, r, "POST", "/admin/reload", ""); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if seen := answers(t, r, 10); seen["200 canary"] != 10 {
		t.Fatalf("after a reload: %v", seen)
	}
}

// A gateway restart in the middle of a canary resumes it at its step,
// from STATE_DIR/rollouts.json.
func TestRolloutResumesAfterRestart(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	dir := t.TempDir()
	cfg := rolloutConfig(dir, stable.addr())
	r := startGateway(t, cfg)
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(
		`{"upstream":"api","targets":[%q],"steps":[50,100],"pause":"1h","analysis":{"min_requests":5}}`, canary.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	data, err := os.ReadFile(filepath.Join(dir, rollout.FileName))
	if err != nil || !strings.Contains(string(data), `"state": "progressing"`) {
		t.Fatalf("state file: %v %s", err, data)
	}
	r.cancel()
	err = <-r.done
	r.done <- err // for the cleanup's wait
	if err != nil {
		t.Fatalf("stopping: %v", err)
	}
	r2 := startGateway(t, cfg)
	s := rolloutStatus(t, r2, "api")
	if s.State != rollout.Progressing || s.Step != 1 || s.CanaryWeight != 50 || len(s.Canary) != 1 || s.Canary[0] != canary.addr() {
		t.Fatalf("after the restart: %+v", s)
	}
	driveUntil(t, r2, 10*time.Second, "both versions answering", func() bool {
		return canary.requests.Load() > 0 && stable.requests.Load() > 0
	})
	if code, body := adminDo(t, r2, "POST", "/admin/rollouts/api/promote?full=true", ""); code != 200 || !strings.Contains(body, `"promoted"`) {
		t.Fatalf("promote: %d %s", code, body)
	}
	data, _ = os.ReadFile(filepath.Join(dir, rollout.FileName))
	if !strings.Contains(string(data), `"state": "promoted"`) {
		t.Fatalf("state file after promote: %s", data)
	}
}

// Blue-green switches all traffic at once, keeps blue in the upstream
// until promoted, and rolls back at once.
func TestRolloutBlueGreenSwitchAndRollback(t *testing.T) {
	blue, green := newBackend(t, "blue"), newBackend(t, "green")
	r := startGateway(t, rolloutConfig("", blue.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"blue-green","targets":[%q]}`, green.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	if seen := answers(t, r, 20); seen["200 green"] != 20 {
		t.Fatalf("after the switch: %v", seen)
	}
	if got := upstreamTargets(t, r); len(got) != 2 {
		t.Fatalf("blue is not kept warm: targets %v", got)
	}
	if code, body := adminDo(t, r, "POST", "/admin/rollouts/api/rollback", ""); code != 200 || !strings.Contains(body, `"rolled_back"`) {
		t.Fatalf("rollback: %d %s", code, body)
	}
	if seen := answers(t, r, 20); seen["200 blue"] != 20 {
		t.Fatalf("after the rollback: %v", seen)
	}
	// Switch again and promote: green is the stable set.
	if code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"blue-green","targets":[%q]}`, green.addr())); code != 201 {
		t.Fatalf("second start: %d %s", code, body)
	}
	if code, body := adminDo(t, r, "POST", "/admin/rollouts/api/promote", ""); code != 200 {
		t.Fatalf("promote: %d %s", code, body)
	}
	if got := upstreamTargets(t, r); len(got) != 1 || got[0] != green.addr() {
		t.Fatalf("targets after the promotion: %v", got)
	}
}

// A/B by header: a user always lands in the same cohort, and the cohort
// is the one the hash of its header picks.
func TestRolloutABIsSticky(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	r := startGateway(t, rolloutConfig("", a.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"ab","targets":[%q],"header":"X-User","percent":50}`, b.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	cohorts := map[string]int{}
	for u := 0; u < 20; u++ {
		user := fmt.Sprintf("user-%d", u)
		seen := answers(t, r, 4, "X-User", user)
		if len(seen) != 1 {
			t.Fatalf("%s saw both versions: %v", user, seen)
		}
		want := "200 a"
		if rollout.Cohort(user) < 5000 {
			want = "200 b"
		}
		if seen[want] != 4 {
			t.Fatalf("%s: %v, want %s", user, seen, want)
		}
		cohorts[want]++
	}
	if len(cohorts) != 2 {
		t.Fatalf("one cohort is empty: %v", cohorts)
	}
	if seen := answers(t, r, 10); seen["200 a"] != 10 {
		t.Fatalf("requests without the header: %v", seen)
	}
}

// A running rollout survives a config reload: the new generation's pool
// gets the same split.
func TestRolloutSurvivesReload(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	r := startGateway(t, rolloutConfig("", stable.addr()))
	if code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(
		`{"upstream":"api","targets":[%q],"steps":[50,100],"pause":"1h"}`, canary.addr())); code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	r.rewrite(t, strings.Replace(rolloutConfig("", stable.addr()), "    targets:", "    timeout: { connect: 2s }\n    targets:", 1))
	if code, body := adminDo(t, r, "POST", "/admin/reload", ""); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	before := canary.requests.Load()
	driveUntil(t, r, 10*time.Second, "the canary answering after the reload", func() bool { return canary.requests.Load() > before })
	if s := rolloutStatus(t, r, "api"); s.State != rollout.Progressing || s.CanaryWeight != 50 {
		t.Fatalf("after the reload: %+v", s)
	}
}

func TestRolloutAdminErrors(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	r := startGateway(t, rolloutConfig("", stable.addr()))
	if code, body := adminDo(t, r, "GET", "/admin/rollouts", ""); code != 200 || !strings.Contains(body, `"rollouts": []`) {
		t.Fatalf("empty list: %d %s", code, body)
	}
	start := fmt.Sprintf(`{"upstream":"api","targets":[%q],"pause":"1h"}`, canary.addr())
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/admin/rollouts", `{"upstream":"nope","targets":["127.0.0.1:1"]}`, 404, `unknown upstream \"nope\"`},
		{"POST", "/admin/rollouts", `{"upstream":"api","targets":["127.0.0.1:1"],"steps":[50,10]}`, 400, "steps[1]"},
		{"POST", "/admin/rollouts", `{"upstream":"api","selector":{"version":"v2"}}`, 400, "selector: upstream"},
		{"POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","targets":[%q]}`, stable.addr()), 400, "targets[0]"},
		{"POST", "/admin/rollouts", `{"upstream":"api","targets":["127.0.0.1:1"],"bogus":true}`, 400, "bogus: unknown field"},
		{"POST", "/admin/rollouts/api/promote", "", 404, `no rollout of upstream \"api\"`},
		{"GET", "/admin/rollouts/nope", "", 404, `unknown upstream \"nope\"`},
		{"POST", "/admin/rollouts", start, 201, `"progressing"`},
		{"POST", "/admin/rollouts", start, 409, "already has a canary rollout"},
		{"POST", "/admin/rollouts/api/resume", "", 409, "not paused"},
		{"POST", "/admin/rollouts/api/pause", "", 200, `"paused"`},
		{"POST", "/admin/rollouts/api/pause", "", 409, "not progressing"},
		{"POST", "/admin/rollouts/api/resume", "", 200, `"progressing"`},
		{"DELETE", "/admin/rollouts/api", "", 200, `"aborted"`},
		{"DELETE", "/admin/rollouts/api", "", 409, "not active"},
		{"PUT", "/admin/rollouts/api", "", 405, "expected"},
	} {
		code, body := adminDo(t, r, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s, want %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
	if seen := answers(t, r, 10); seen["200 stable"] != 10 {
		t.Fatalf("after the abort: %v", seen)
	}
}

// rollingConfig has upstream api with fast health checks on /healthz.
func rollingConfig(addrs ...string) string {
	return strings.Replace(rolloutConfig("", addrs...), "    targets:",
		"    health_check: { path: /healthz, interval: 50ms, timeout: 40ms, healthy_after: 1, unhealthy_after: 1 }\n    targets:", 1)
}

// A rolling rollout replaces one target at a time: the new one is added,
// gated on its health checks, then the old one drains and goes.
func TestRolloutRollingReplacesTargets(t *testing.T) {
	o1, o2, n1, n2 := newBackend(t, "o1"), newBackend(t, "o2"), newBackend(t, "n1"), newBackend(t, "n2")
	r := startGateway(t, rollingConfig(o1.addr(), o2.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"rolling","targets":[%q,%q],"health_timeout":"5s","drain_timeout":"1s"}`, n1.addr(), n2.addr()))
	if code != 201 || !strings.Contains(body, `"phase": "gate"`) {
		t.Fatalf("start: %d %s", code, body)
	}
	phases := map[string]bool{}
	driveUntil(t, r, 20*time.Second, "the rolling rollout to complete", func() bool {
		s := rolloutStatus(t, r, "api")
		phases[fmt.Sprintf("%d/%s", s.Step, s.Phase)] = true
		if s.State == rollout.RolledBack {
			t.Fatalf("rolled back: %+v", s)
		}
		return s.State == rollout.Completed
	})
	if got := upstreamTargets(t, r); len(got) != 2 || got[0] != n1.addr() || got[1] != n2.addr() {
		t.Fatalf("targets after the rollout: %v", got)
	}
	seen := answers(t, r, 20)
	if seen["200 n1"]+seen["200 n2"] != 20 {
		t.Fatalf("after the rollout: %v", seen)
	}
	if !phases["2/gate"] && !phases["2/drain"] {
		t.Errorf("phases seen: %v", phases)
	}
}

// A new target that never passes its health checks stops a rolling
// rollout and rolls it back to the old targets.
func TestRolloutRollingStopsOnUnhealthyTarget(t *testing.T) {
	o1, o2, n1, n2 := newBackend(t, "o1"), newBackend(t, "o2"), newBackend(t, "n1"), newBackend(t, "n2")
	n2.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			http.Error(w, "not ready", 503)
			return
		}
		_, _ = fmt.Fprint(w, "n2")
	})
	r := startGateway(t, rollingConfig(o1.addr(), o2.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"rolling","targets":[%q,%q],"health_timeout":"2s"}`, n1.addr(), n2.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	steps := map[int]bool{}
	driveUntil(t, r, 20*time.Second, "the rollback", func() bool {
		s := rolloutStatus(t, r, "api")
		steps[s.Step] = true
		return s.State == rollout.RolledBack
	})
	s := rolloutStatus(t, r, "api")
	if s.Step != 2 || !strings.Contains(s.Message, "new target "+n2.addr()+" did not pass its health checks within 2s") {
		t.Fatalf("status: %+v", s)
	}
	if got := upstreamTargets(t, r); len(got) != 2 || got[0] != o1.addr() || got[1] != o2.addr() {
		t.Fatalf("targets after the rollback: %v", got)
	}
	if seen := answers(t, r, 20); seen["200 o1"]+seen["200 o2"] != 20 || n2.requests.Load() > 0 && seen["200 n2"] > 0 {
		t.Fatalf("after the rollback: %v", seen)
	}
	code, body = adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"rolling","targets":[%q]}`, n1.addr()))
	if code != 201 {
		t.Fatalf("a new rollout after the rollback: %d %s", code, body)
	}
}

func TestRolloutRollingNeedsHealthChecks(t *testing.T) {
	o1 := newBackend(t, "o1")
	r := startGateway(t, rolloutConfig("", o1.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", `{"upstream":"api","strategy":"rolling","targets":["127.0.0.1:1"]}`)
	if code != 400 || !strings.Contains(body, "health_check") {
		t.Fatalf("rolling without health checks: %d %s", code, body)
	}
}

// Shadow traffic: a copy of each request goes to the new version, whose
// answers are discarded and compared; clients see only the stable
// answers, a shadow that hangs slows nobody, and copies beyond the
// concurrency bound are dropped.
func TestRolloutShadowReportsDiffs(t *testing.T) {
	stable, shadow := newBackend(t, "stable"), newBackend(t, "shadow")
	release := make(chan struct{})
	var gotBody, gotHeader atomic.Value
	var inflight, maxInflight atomic.Int64
	shadow.handle(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := maxInflight.Load()
			if n <= m || maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			gotBody.Store(string(b))
			gotHeader.Store(r.Header.Get(rollout.ShadowHeader))
		}
		<-release
		http.Error(w, "shadow broken", 500)
	})
	r := startGateway(t, rolloutConfig("", stable.addr()))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", fmt.Sprintf(`{"upstream":"api","strategy":"shadow","targets":[%q],"concurrency":2}`, shadow.addr()))
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	// The shadow hangs: every client still gets the stable answer.
	if seen := answers(t, r, 10); seen["200 stable"] != 10 {
		t.Fatalf("with a hanging shadow: %v", seen)
	}
	s := rolloutStatus(t, r, "api")
	if s.Shadow == nil || s.Shadow.Mirrored != 2 || s.Shadow.Dropped != 8 || s.CanaryWeight != 0 {
		t.Fatalf("report while the shadow hangs: %+v", s.Shadow)
	}
	close(release)
	eventually(t, 10*time.Second, "the two copies to be compared", func() bool {
		s = rolloutStatus(t, r, "api")
		return s.Shadow.Compared == 2
	})
	if s.Shadow.StatusMismatches != 2 || s.Shadow.Mismatches["200->500"] != 2 || s.Shadow.Shadow.ErrorRate != 1 || s.Shadow.Primary.ErrorRate != 0 {
		t.Fatalf("report: %+v", s.Shadow)
	}
	if maxInflight.Load() > 2 {
		t.Fatalf("%d copies in flight at once, bound 2", maxInflight.Load())
	}
	// A request with a (buffered) body is copied with it.
	code, out, _ := do(t, "POST", r.url+"/orders", strings.NewReader(`{"n":1}`), "Content-Type", "application/json")
	if code != 200 || out != "stable" {
		t.Fatalf("POST: %d %s", code, out)
	}
	eventually(t, 10*time.Second, "the POST's copy", func() bool { return gotBody.Load() != nil })
	if gotBody.Load() != `{"n":1}` || gotHeader.Load() != "1" {
		t.Fatalf("copy body %v header %v", gotBody.Load(), gotHeader.Load())
	}
	if code, body := adminDo(t, r, "POST", "/admin/rollouts/api/rollback", ""); code != 200 || !strings.Contains(body, `"status_mismatches"`) {
		t.Fatalf("rollback keeps the report: %d %s", code, body)
	}
	before := shadow.requests.Load()
	answers(t, r, 5)
	if shadow.requests.Load() != before {
		t.Fatal("copies still sent after the rollback")
	}
}

// On a discovered upstream the new version is the instances a selector
// on their metadata matches; a bad one is rolled back by itself and gets
// no traffic afterwards, though still registered.
func TestRolloutDiscoveredSelector(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
	v2.handle(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "broken", 500) })
	for _, in := range []struct {
		id string
		be *backend
	}{{"v1", v1}, {"v2", v2}} {
		l, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: in.id, Address: in.be.addr(),
			TTL: config.Duration(time.Minute), Meta: map[string]string{"version": in.id}})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close(ctx)
	}
	r := startGateway(t, fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
discovery: {registry: %s}
upstreams:
  rides: {discover: rides}
routes: [{upstream: rides}]
`, regURL))
	code, body := adminDo(t, r, "POST", "/admin/rollouts", `{"upstream":"rides","targets":["127.0.0.1:1"]}`)
	if code != 400 || !strings.Contains(body, "selector") {
		t.Fatalf("targets on a discovered upstream: %d %s", code, body)
	}
	code, body = adminDo(t, r, "POST", "/admin/rollouts",
		`{"upstream":"rides","selector":{"version":"v2"},"steps":[50,100],"pause":"10s","analysis":{"min_requests":5}}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	s := rolloutStatus(t, r, "rides")
	if len(s.Canary) != 1 || s.Canary[0] != v2.addr() || len(s.Stable) != 1 || s.Stable[0] != v1.addr() {
		t.Fatalf("cohorts: stable %v canary %v", s.Stable, s.Canary)
	}
	driveUntil(t, r, 20*time.Second, "the rollback", func() bool { return rolloutStatus(t, r, "rides").State == rollout.RolledBack })
	before := v2.requests.Load()
	if seen := answers(t, r, 20); seen["200 v1"] != 20 {
		t.Fatalf("after the rollback: %v", seen)
	}
	if v2.requests.Load() != before {
		t.Fatal("the rolled-back instances still get traffic")
	}
}

// discoveredRolloutGateway registers backends as instances of service
// rides (meta version) and starts a gateway discovering it, with health
// checks on /healthz.
func discoveredRolloutGateway(t *testing.T, instances map[*backend]string) (*running, func(b *backend, version string) func()) {
	t.Helper()
	regURL, c := startRegistry(t)
	register := func(b *backend, version string) func() {
		ctx := context.Background()
		l, err := c.Register(ctx, discovery.Registration{Service: "rides", ID: b.name, Address: b.addr(),
			TTL: config.Duration(time.Minute), Meta: map[string]string{"version": version}})
		if err != nil {
			t.Fatal(err)
		}
		return func() { _ = l.Close(ctx) }
	}
	for b, v := range instances {
		t.Cleanup(register(b, v))
	}
	r := startGateway(t, fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
discovery: {registry: %s}
upstreams:
  rides:
    discover: rides
    # unhealthy_after 3: a check timing out on a loaded machine does not flap a new instance (its drained old one would get traffic back)
    health_check: { path: /healthz, interval: 100ms, timeout: 90ms, healthy_after: 1, unhealthy_after: 3 }
routes: [{upstream: rides}]
`, regURL))
	return r, register
}

// A rolling rollout of a discovered upstream: the orchestrator (here the
// test) starts new-version instances; each takes traffic once healthy and
// an old one is drained for it, so traffic moves instance by instance;
// once the old ones are drained (and stopped) the rollout completes.
func TestRolloutDiscoveredRolling(t *testing.T) {
	o1, o2, n1, n2 := newBackend(t, "o1"), newBackend(t, "o2"), newBackend(t, "n1"), newBackend(t, "n2")
	var n1Ready atomic.Bool
	n1.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && !n1Ready.Load() {
			http.Error(w, "starting", 503)
			return
		}
		_, _ = io.WriteString(w, "n1")
	})
	r, register := discoveredRolloutGateway(t, map[*backend]string{o1: "v1", o2: "v1"})
	code, body := adminDo(t, r, "POST", "/admin/rollouts",
		`{"upstream":"rides","strategy":"rolling","selector":{"version":"v2"},"health_timeout":"20s","drain_timeout":"2s","analysis":{"min_requests":5}}`)
	if code != 201 || !strings.Contains(body, "waiting for instances matching version=v2") {
		t.Fatalf("start: %d %s", code, body)
	}
	if s := rolloutStatus(t, r, "rides"); s.Steps != 2 || len(s.Stable) != 2 {
		t.Fatalf("status at the start: %+v", s)
	}
	// n1 registers but is not ready: it gets no traffic.
	t.Cleanup(register(n1, "v2"))
	eventually(t, 10*time.Second, "n1 to be seen", func() bool { return len(rolloutStatus(t, r, "rides").Canary) == 1 })
	if seen := answers(t, r, 20); seen["200 o1"]+seen["200 o2"] != 20 {
		t.Fatalf("with n1 not ready: %v", seen)
	}
	n1Ready.Store(true)
	eventually(t, 10*time.Second, "an old instance drained for n1", func() bool {
		s := rolloutStatus(t, r, "rides")
		return len(s.Drained) == 1 && s.CanaryWeight == 50
	})
	drained := rolloutStatus(t, r, "rides").Drained[0]
	seen := answers(t, r, 40)
	if seen["200 n1"] == 0 || seen["200 "+map[string]string{o1.addr(): "o1", o2.addr(): "o2"}[drained]] != 0 {
		t.Fatalf("after n1 is healthy (%s drained): %v", drained, seen)
	}
	t.Cleanup(register(n2, "v2"))
	driveUntil(t, r, 20*time.Second, "the rollout to complete", func() bool {
		s := rolloutStatus(t, r, "rides")
		if s.State == rollout.RolledBack {
			t.Fatalf("rolled back: %+v", s)
		}
		return s.State == rollout.Completed
	})
	if seen := answers(t, r, 20); seen["200 n1"]+seen["200 n2"] != 20 {
		t.Fatalf("after the rollout: %v", seen)
	}
}

// A new version that fails is stopped by the analysis: the rollout rolls
// back, the old instances serve again (their drains undone) and the new
// ones get no traffic though still registered.
func TestRolloutDiscoveredRollingRollsBack(t *testing.T) {
	o1, o2, n1 := newBackend(t, "o1"), newBackend(t, "o2"), newBackend(t, "n1")
	var served atomic.Int64
	n1.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		served.Add(1)
		http.Error(w, "broken", 500)
	})
	r, register := discoveredRolloutGateway(t, map[*backend]string{o1: "v1", o2: "v1"})
	code, body := adminDo(t, r, "POST", "/admin/rollouts",
		`{"upstream":"rides","strategy":"rolling","selector":{"version":"v2"},"analysis":{"min_requests":5}}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	t.Cleanup(register(n1, "v2"))
	driveUntil(t, r, 20*time.Second, "the rollback", func() bool { return rolloutStatus(t, r, "rides").State == rollout.RolledBack })
	s := rolloutStatus(t, r, "rides")
	if len(s.Drained) != 0 || !strings.Contains(s.Message, "canary error rate") || s.CanaryWeight != 0 {
		t.Fatalf("status: %+v", s)
	}
	before := served.Load()
	if seen := answers(t, r, 20); seen["200 o1"] == 0 || seen["200 o2"] == 0 || seen["200 o1"]+seen["200 o2"] != 20 {
		t.Fatalf("after the rollback: %v", seen)
	}
	// Health checks still reach n1; requests do not.
	if got := served.Load() - before; got != 0 {
		t.Fatalf("n1 got %d requests after the rollback", got)
	}
}

// Shadow on a discovered upstream: the instances the selector matches get
// a copy of each request and no live traffic.
func TestRolloutDiscoveredShadow(t *testing.T) {
	v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
	var live, copies atomic.Int64
	v2.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		if r.Header.Get(rollout.ShadowHeader) != "1" {
			live.Add(1)
		} else {
			copies.Add(1)
		}
		http.Error(w, "v2 broken", 500)
	})
	r, _ := discoveredRolloutGateway(t, map[*backend]string{v1: "v1", v2: "v2"})
	code, body := adminDo(t, r, "POST", "/admin/rollouts", `{"upstream":"rides","strategy":"shadow","selector":{"version":"v2"}}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	if seen := answers(t, r, 20); seen["200 v1"] != 20 {
		t.Fatalf("clients under shadow: %v", seen)
	}
	eventually(t, 10*time.Second, "20 copies compared", func() bool {
		s := rolloutStatus(t, r, "rides")
		return s.Shadow != nil && s.Shadow.Compared == 20
	})
	s := rolloutStatus(t, r, "rides")
	if s.Shadow.Mismatches["200->500"] != 20 || len(s.Canary) != 1 || s.Canary[0] != v2.addr() || live.Load() != 0 {
		t.Fatalf("report: %+v canary %v live %d", s.Shadow, s.Canary, live.Load())
	}
	if code, body := adminDo(t, r, "POST", "/admin/rollouts/rides/rollback", ""); code != 200 || !strings.Contains(body, `"compared": 20`) {
		t.Fatalf("rollback: %d %s", code, body)
	}
	before := copies.Load()
	if seen := answers(t, r, 10); seen["200 v1"] != 10 {
		t.Fatalf("after the rollback: %v", seen)
	}
	if got := copies.Load() - before; got != 0 || live.Load() != 0 {
		t.Fatalf("v2 got %d copies and %d requests after the rollback", got, live.Load())
	}
}
