package rollout

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/internal/testclock"
	"github.com/switchyard/switchyard/upstream"
)

func mustSpec(t *testing.T, js string) Spec {
	t.Helper()
	s, err := ParseSpec([]byte(js))
	if err != nil {
		t.Fatalf("ParseSpec(%s): %v", js, err)
	}
	return s
}

func TestParseSpecDefaults(t *testing.T) {
	s := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:9002"]}`)
	if s.Strategy != Canary || len(s.Steps) != 4 || s.Steps[3] != 100 || time.Duration(s.Pause) != time.Minute ||
		s.Analysis.MinRequests != 20 || *s.Analysis.MaxErrorRateIncrease != 0.01 || s.Analysis.MaxP99Ratio != 1.5 {
		t.Fatalf("defaults not applied: %+v", s)
	}
	ab := mustSpec(t, `{"upstream":"api","strategy":"ab","targets":["127.0.0.1:9002"],"cookie":"uid"}`)
	if ab.Percent != 50 || ab.Steps != nil {
		t.Fatalf("ab defaults: %+v", ab)
	}
}

func TestParseSpecErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{``, "body"},
		{`[]`, "body"},
		{`{"upstream":"api","targets":["127.0.0.1:9002"]} {}`, "body"},
		{`{"upstream":"api","targets":["127.0.0.1:9002"],"extra":1}`, "extra"},
		{`{"targets":["127.0.0.1:9002"]}`, "upstream"},
		{`{"upstream":"api"}`, "targets"},
		{`{"upstream":"api","targets":["nope"]}`, "targets[0]"},
		{`{"upstream":"api","targets":["127.0.0.1:0"]}`, "targets[0]"},
		{`{"upstream":"api","targets":["127.0.0.1:1","127.0.0.1:1"]}`, "targets[1]"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"selector":{"version":"v2"}}`, "targets"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"strategy":"yolo"}`, "strategy"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"steps":[50,25]}`, "steps[1]"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"steps":[0]}`, "steps[0]"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"steps":[101]}`, "steps[0]"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"steps":"5,25"}`, "steps"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"pause":"1ns"}`, "pause"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"pause":"soon"}`, "pause"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"pause":30}`, "pause"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"analysis":{"min_p99_increase":"x"}}`, "analysis.min_p99_increase"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"analysis":{"min_requests":-1}}`, "analysis.min_requests"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"analysis":{"max_error_rate":2}}`, "analysis.max_error_rate"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"analysis":{"max_p99_ratio":0.5}}`, "analysis.max_p99_ratio"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"strategy":"ab"}`, "header"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"strategy":"ab","header":"a b"}`, "header"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"strategy":"ab","cookie":"u","percent":300}`, "percent"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"header":"X-User"}`, "header"},
		{`{"upstream":"api","targets":["127.0.0.1:1"],"strategy":"blue-green","steps":[5]}`, "steps"},
		{`{"upstream":"api","selector":{"ver sion":"v2"}}`, "selector"},
	} {
		_, err := ParseSpec([]byte(c.body))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want a field error on %s", c.body, err, c.field)
			continue
		}
		if !strings.Contains(err.Error(), c.field+": ") {
			t.Errorf("%s: error %q does not name %s", c.body, err, c.field)
		}
	}
}

func TestJudge(t *testing.T) {
	a := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:1"],"analysis":{"min_requests":10}}`).Analysis
	ok := SLI{Requests: 100, ErrorRate: 0, P99ms: 10}
	for _, c := range []struct {
		name           string
		stable, canary SLI
		baseline       *SLI
		verdict        string
	}{
		{"too few canary requests", ok, SLI{Requests: 9, ErrorRate: 1}, nil, "inconclusive"},
		{"healthy canary", ok, SLI{Requests: 10, P99ms: 12}, nil, "pass"},
		{"errors", ok, SLI{Requests: 10, ErrorRate: 0.2, P99ms: 10}, nil, "fail"},
		{"slow", ok, SLI{Requests: 10, P99ms: 200}, nil, "fail"},
		{"slower within the tolerated increase", ok, SLI{Requests: 10, P99ms: 55}, nil, "pass"},
		{"stable as bad as canary", SLI{Requests: 100, ErrorRate: 0.2}, SLI{Requests: 10, ErrorRate: 0.2}, nil, "pass"},
		{"no stable traffic, baseline", SLI{}, SLI{Requests: 10, ErrorRate: 0.2}, &SLI{Requests: 50, ErrorRate: 0.2}, "pass"},
		{"no stable traffic, no baseline", SLI{}, SLI{Requests: 10, ErrorRate: 0.2}, nil, "fail"},
	} {
		got := a.Judge(c.stable, c.baseline, c.canary)
		if got.Verdict != c.verdict {
			t.Errorf("%s: verdict %s (%s), want %s", c.name, got.Verdict, got.Reason, c.verdict)
		}
	}
}

func TestCanaryStepsPromote(t *testing.T) {
	clock := testclock.New()
	s := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:2"],"steps":[10,50,100],"pause":"1m","analysis":{"min_requests":5}}`)
	r := New(s, []string{"127.0.0.1:1"}, []string{"127.0.0.1:2"}, clock.Now())
	good, stable := SLI{Requests: 5, P99ms: 1}, SLI{Requests: 50, P99ms: 1}
	if r.Percent() != 10 || r.Evaluate(clock.Now(), stable, good) {
		t.Fatalf("moved before the pause: %+v", r)
	}
	clock.Advance(time.Minute)
	if r.Evaluate(clock.Now(), stable, SLI{Requests: 4}) {
		t.Fatal("passed a step with too few canary requests")
	}
	if !strings.Contains(r.Message, "waiting for 4 of 5 canary requests") {
		t.Fatalf("message %q", r.Message)
	}
	for _, want := range []float64{50, 100} {
		if !r.Evaluate(clock.Now(), stable, good) || r.Percent() != want || r.State != Progressing {
			t.Fatalf("want step at %v%%: %+v", want, r)
		}
		clock.Advance(time.Minute)
	}
	// At 100% the stable has no traffic: the baseline is the reference.
	if !r.Evaluate(clock.Now(), SLI{}, good) || r.State != Promoted || r.Percent() != 100 {
		t.Fatalf("not promoted: %+v", r)
	}
	if err := r.Rollback(clock.Now()); !errors.Is(err, ErrNotActive) {
		t.Fatalf("rollback after promote: %v", err)
	}
}

func TestCanaryFailsMidStep(t *testing.T) {
	clock := testclock.New()
	s := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:2"],"pause":"1h","analysis":{"min_requests":5}}`)
	r := New(s, []string{"127.0.0.1:1"}, []string{"127.0.0.1:2"}, clock.Now())
	if !r.Evaluate(clock.Now(), SLI{Requests: 100}, SLI{Requests: 5, ErrorRate: 1}) || r.State != RolledBack || r.Percent() != 0 {
		t.Fatalf("a failing canary was not rolled back at once: %+v", r)
	}
	if !strings.Contains(r.Message, "canary error rate 1 > stable 0 + 0.01") {
		t.Fatalf("message %q", r.Message)
	}
}

func TestPauseResume(t *testing.T) {
	clock := testclock.New()
	s := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:2"],"pause":"1m","analysis":{"min_requests":1}}`)
	r := New(s, nil, []string{"127.0.0.1:2"}, clock.Now())
	if err := r.Pause(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.Pause(clock.Now()); err == nil {
		t.Fatal("paused twice")
	}
	clock.Advance(time.Hour)
	if r.Evaluate(clock.Now(), SLI{}, SLI{Requests: 10}) || r.Step != 1 {
		t.Fatal("a paused rollout moved")
	}
	if err := r.Resume(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if r.Evaluate(clock.Now(), SLI{}, SLI{Requests: 10}) {
		t.Fatal("resume did not restart the step's pause")
	}
}

func TestSplitPicksCohorts(t *testing.T) {
	ts := []*upstream.Target{upstream.NewTarget("s", 0, 1), upstream.NewTarget("c", 1, 1)}
	build := func(x []*upstream.Target) (balance.Policy, error) { return balance.New(balance.Config{}, x) }
	share := NewShare(0, "", "")
	sp, err := NewSplit(ts, []bool{false, true}, share, build)
	if err != nil {
		t.Fatal(err)
	}
	count := func() (canary int) {
		for i := 0; i < 200; i++ {
			if sp.Pick(nil, upstream.Tried{}) == ts[1] {
				canary++
			}
		}
		return canary
	}
	if n := count(); n != 0 {
		t.Fatalf("0%%: %d picks went to the canary", n)
	}
	share.SetPercent(100)
	if n := count(); n != 200 {
		t.Fatalf("100%%: %d of 200 picks went to the canary", n)
	}
	// The chosen cohort has nothing available: the other serves.
	ts[1].SetDraining(true)
	if got := sp.Pick(nil, upstream.Tried{}); got != ts[0] {
		t.Fatalf("fallback picked %v", got)
	}
	// Attempts are counted by cohort.
	sp.ObserveAttempt(ts[1], true, time.Millisecond)
	sp.ObserveAttempt(ts[0], false, time.Millisecond)
	st, ca := share.Windows()
	if st.SLI().Requests != 1 || ca.SLI().ErrorRate != 1 {
		t.Fatalf("windows: stable %+v canary %+v", st.SLI(), ca.SLI())
	}
	if allocs := testing.AllocsPerRun(100, func() { sp.Pick(nil, upstream.Tried{}) }); allocs != 0 {
		t.Fatalf("Pick allocates %v times", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { sp.ObserveAttempt(ts[1], false, time.Millisecond) }); allocs != 0 {
		t.Fatalf("ObserveAttempt allocates %v times", allocs)
	}
}

func TestABCohortsAreSticky(t *testing.T) {
	ts := []*upstream.Target{upstream.NewTarget("a", 0, 1), upstream.NewTarget("b", 1, 1)}
	build := func(x []*upstream.Target) (balance.Policy, error) { return balance.New(balance.Config{}, x) }
	sp, err := NewSplit(ts, []bool{false, true}, NewShare(50, "", "uid"), build)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*upstream.Target]int{}
	for u := 0; u < 100; u++ {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		v := "user-" + string(rune('a'+u%26)) + strings.Repeat("x", u)
		r.AddCookie(&http.Cookie{Name: "uid", Value: v})
		first := sp.Pick(r, upstream.Tried{})
		for i := 0; i < 5; i++ {
			if got := sp.Pick(r, upstream.Tried{}); got != first {
				t.Fatalf("user %q moved from %s to %s", v, first.Address, got.Address)
			}
		}
		if want := Cohort(v) < 5000; (first == ts[1]) != want {
			t.Fatalf("user %q in the wrong cohort", v)
		}
		seen[first]++
	}
	if seen[ts[0]] == 0 || seen[ts[1]] == 0 {
		t.Fatalf("one cohort is empty: %v", seen)
	}
	r, _ := http.NewRequest("GET", "http://x/", nil)
	if sp.Pick(r, upstream.Tried{}) != ts[0] {
		t.Fatal("a request without the cookie did not go to the stable cohort")
	}
}

func TestWindowP99(t *testing.T) {
	var w Window
	for i := 0; i < 99; i++ {
		w.Observe(false, time.Millisecond)
	}
	w.Observe(true, time.Second)
	s := w.SLI()
	if s.Requests != 100 || s.ErrorRate != 0.01 || s.P99ms < 1 || s.P99ms > 1.2 {
		t.Fatalf("sli %+v", s)
	}
	w.Observe(false, time.Second)
	if s := w.SLI(); s.P99ms < 1000 || s.P99ms > 1200 {
		t.Fatalf("p99 with two slow of 101: %+v", s)
	}
	if (&Window{}).SLI() != (SLI{}) {
		t.Fatal("empty window")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if rs, err := Load(path); err != nil || rs != nil {
		t.Fatalf("missing file: %v %v", rs, err)
	}
	s := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:2"],"steps":[10,100]}`)
	r := New(s, []string{"127.0.0.1:1"}, []string{"127.0.0.1:2"}, testclock.Epoch)
	r.Step = 2
	if err := Save(path, []*Rollout{r}); err != nil {
		t.Fatal(err)
	}
	rs, err := Load(path)
	if err != nil || len(rs) != 1 || rs[0].Step != 2 || rs[0].Percent() != 100 || rs[0].Spec.Targets[0] != "127.0.0.1:2" {
		t.Fatalf("loaded %+v, %v", rs, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	for _, bad := range []string{`{"version":1,"rollouts":[`, `{"version":2,"rollouts":[]}`,
		strings.Replace(mustRead(t, path), `"progressing"`, `"sideways"`, 1),
		strings.Replace(mustRead(t, path), `"step": 2`, `"step": 9`, 1)} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Load of a broken file: %v", err)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		`{"upstream":"api","targets":["127.0.0.1:9002"]}`,
		`{"upstream":"api","strategy":"ab","targets":["127.0.0.1:9002"],"cookie":"uid","percent":10}`,
		`{"upstream":"api","strategy":"blue-green","selector":{"version":"v2"},"analysis":{"max_error_rate":0.1}}`,
		`{"upstream":"api","targets":["[::1]:80"],"steps":[1,2.5,100],"pause":"10ms","analysis":{"min_p99_increase":"1s"}}`,
		`{"steps":[1e308,-0,NaN]}`, `null`, `{}`, `{"pause":5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		// A valid spec makes a usable rollout.
		r := New(s, nil, s.Targets, testclock.Epoch)
		if p := r.Percent(); p < 0 || p > 100 || p == 0 && s.Strategy != Shadow && s.Strategy != Rolling {
			t.Fatalf("valid spec with share %v", p)
		}
		if s.Validate() != nil {
			t.Fatal("defaults then validate is not stable")
		}
	})
}

func TestRollingSteps(t *testing.T) {
	clock := testclock.New()
	s := mustSpec(t, `{"upstream":"api","strategy":"rolling","targets":["n1:1","n2:1","n3:1"],"health_timeout":"10s","drain_timeout":"5s"}`)
	r := New(s, []string{"o1:1", "o2:1"}, s.Targets, clock.Now())
	if r.Steps() != 3 {
		t.Fatalf("steps %d", r.Steps())
	}
	set := func() string { a, d := r.RollingTargets(); return strings.Join(a, ",") + " drain=" + d }
	if got := set(); got != "o1:1,o2:1,n1:1 drain=" {
		t.Fatalf("step 1 gate: %s", got)
	}
	if r.AdvanceRolling(clock.Now(), false, 0) {
		t.Fatal("passed the gate with an unhealthy new target")
	}
	if !r.AdvanceRolling(clock.Now(), true, 0) || set() != "o1:1,o2:1,n1:1 drain=o1:1" {
		t.Fatalf("step 1 drain: %s", set())
	}
	if r.AdvanceRolling(clock.Now(), true, 3) {
		t.Fatal("removed an old target with requests in flight")
	}
	clock.Advance(5 * time.Second) // the drain timeout
	if !r.AdvanceRolling(clock.Now(), true, 3) || set() != "o2:1,n1:1,n2:1 drain=" || r.Percent() != 33.33 {
		t.Fatalf("step 2 gate: %s %v", set(), r.Percent())
	}
	r.AdvanceRolling(clock.Now(), true, 0)
	r.AdvanceRolling(clock.Now(), true, 0)
	if got := set(); got != "n1:1,n2:1,n3:1 drain=" || r.Step != 3 {
		t.Fatalf("step 3: %s", got)
	}
	clock.Advance(10 * time.Second)
	if !r.AdvanceRolling(clock.Now(), false, 0) || r.State != RolledBack || !strings.Contains(r.Message, "new target n3:1 did not pass") {
		t.Fatalf("health gate timeout: %+v", r)
	}
}

// Promote moves a canary one step (as Argo Rollouts' promote does): the
// step's pause starts again and a paused canary progresses; at the last
// step, with full, and for other strategies it ends promoted.
func TestPromoteGoesToNextStep(t *testing.T) {
	clock := testclock.New()
	s := mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:2"],"steps":[10,50,80,100],"pause":"1h"}`)
	r := New(s, []string{"127.0.0.1:1"}, []string{"127.0.0.1:2"}, clock.Now())
	clock.Advance(time.Minute)
	if err := r.Promote(clock.Now(), false); err != nil || r.Step != 2 || r.Percent() != 50 || r.State != Progressing || !r.StepStarted.Equal(clock.Now()) {
		t.Fatalf("promote from step 1: %v %+v", err, r)
	}
	if !strings.Contains(r.Message, "step 2 of 4: 50%") {
		t.Fatalf("message %q", r.Message)
	}
	if err := r.Pause(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(clock.Now(), false); err != nil || r.Step != 3 || r.State != Progressing {
		t.Fatalf("promote a paused canary: %v %+v", err, r)
	}
	if err := r.Promote(clock.Now(), true); err != nil || r.State != Promoted || r.Percent() != 100 {
		t.Fatalf("promote --full: %v %+v", err, r)
	}
	if err := r.Promote(clock.Now(), false); !errors.Is(err, ErrNotActive) {
		t.Fatalf("promote after the end: %v", err)
	}
	// At the last step, promote ends it.
	r = New(mustSpec(t, `{"upstream":"api","targets":["127.0.0.1:2"],"steps":[100]}`), nil, []string{"127.0.0.1:2"}, clock.Now())
	if err := r.Promote(clock.Now(), false); err != nil || r.State != Promoted {
		t.Fatalf("promote at the last step: %v %+v", err, r)
	}
	r = New(mustSpec(t, `{"upstream":"api","strategy":"blue-green","targets":["127.0.0.1:2"]}`), nil, []string{"127.0.0.1:2"}, clock.Now())
	if err := r.Promote(clock.Now(), false); err != nil || r.State != Promoted {
		t.Fatalf("promote blue-green: %v %+v", err, r)
	}
}

// A rolling rollout of a discovered upstream follows the instances the
// orchestrator starts: one old instance drained per healthy new one, the
// share moving instance by instance, completion once no old one serves;
// an unhealthy new instance past health_timeout, or a failing analysis,
// rolls it back and undoes the drains.
func TestAdvanceInstances(t *testing.T) {
	clock := testclock.New()
	spec := mustSpec(t, `{"upstream":"rides","strategy":"rolling","selector":{"version":"v2"},"health_timeout":"1m","drain_timeout":"10s","analysis":{"min_requests":5}}`)
	r := New(spec, nil, nil, clock.Now())
	r.Replace = 2
	o := func(a string, inflight int64) Instance {
		return Instance{Address: a, Healthy: true, InFlight: inflight}
	}
	n := func(a string, healthy bool) Instance {
		return Instance{Address: a, Healthy: healthy, Since: clock.Now()}
	}
	old := []Instance{o("10.0.0.1:1", 0), o("10.0.0.2:1", 0)}
	if r.AdvanceInstances(clock.Now(), old, nil, SLI{}, SLI{}) || r.Percent() != 0 || !strings.Contains(r.Message, "waiting for instances matching version=v2") {
		t.Fatalf("no new instance yet: %+v", r)
	}
	newer := []Instance{n("10.0.1.1:1", false)}
	r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{})
	if r.Percent() != 0 || len(r.Drained) != 0 {
		t.Fatalf("an unhealthy new instance took traffic: %+v", r)
	}
	newer[0].Healthy = true
	if !r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{}) || r.Percent() != 50 || !slices.Equal(r.Drained, []string{"10.0.0.1:1"}) || r.Step != 2 {
		t.Fatalf("one healthy new instance: %+v", r)
	}
	if !strings.Contains(r.Message, "step 2 of 2: 1 of 1 new instances healthy, 50% of the traffic; old 10.0.0.1:1 drained") {
		t.Fatalf("message %q", r.Message)
	}
	// The orchestrator stopped the drained one and started a second new
	// one: both old gone or drained, with a request in flight: not yet.
	old = []Instance{o("10.0.0.2:1", 3)}
	newer = append(newer, n("10.0.1.2:1", true))
	r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{})
	if r.State != Progressing || r.Percent() != 100 || !slices.Equal(r.Drained, []string{"10.0.0.2:1"}) {
		t.Fatalf("second step: %+v", r)
	}
	clock.Advance(10 * time.Second) // the drain timeout
	if !r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{}) || r.State != Completed || r.Percent() != 100 {
		t.Fatalf("not completed: %+v", r)
	}

	// A failing analysis rolls back and undoes the drains.
	r = New(spec, nil, nil, clock.Now())
	r.Replace = 2
	old = []Instance{o("10.0.0.1:1", 0), o("10.0.0.2:1", 0)}
	newer = []Instance{n("10.0.1.1:1", true)}
	r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{})
	if !r.AdvanceInstances(clock.Now(), old, newer, SLI{Requests: 50}, SLI{Requests: 5, ErrorRate: 0.6}) || r.State != RolledBack || r.Percent() != 0 || r.Drained != nil {
		t.Fatalf("bad new version: %+v", r)
	}
	if !strings.Contains(r.Message, "canary error rate 0.6 > stable 0 + 0.01") || !strings.Contains(r.Message, "stop the new ones") {
		t.Fatalf("message %q", r.Message)
	}

	// A new instance never healthy within health_timeout rolls back.
	r = New(spec, nil, nil, clock.Now())
	newer = []Instance{n("10.0.1.1:1", false)}
	clock.Advance(time.Minute)
	if !r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{}) || r.State != RolledBack || !strings.Contains(r.Message, "new instance 10.0.1.1:1 did not pass its health checks within 1m0s") {
		t.Fatalf("unhealthy new instance: %+v", r)
	}
	// A new instance turning unhealthy gives its old one the traffic back.
	r = New(spec, nil, nil, clock.Now())
	r.Replace = 2
	newer = []Instance{n("10.0.1.1:1", true), n("10.0.1.2:1", true)}
	r.AdvanceInstances(clock.Now(), old, newer[:1], SLI{}, SLI{})
	newer[0].Healthy = false
	newer = newer[:1]
	r.AdvanceInstances(clock.Now(), old, newer, SLI{}, SLI{})
	if len(r.Drained) != 0 || r.Percent() != 0 || r.State != Progressing {
		t.Fatalf("after the new instance turned unhealthy: %+v", r)
	}
}
