package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/httpx"
)

// TestRolloutCLI runs a canary on a real gateway through `switchyard
// rollout`, and checks its usage errors.
func TestRolloutCLI(t *testing.T) {
	backend := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	stable, canary := backend("stable"), backend("canary")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: off\nupstreams:\n  api: { targets: [{address: %s}] }\nroutes:\n  - { upstream: api }\n", stable.Listener.Addr())
	g := runTestGateway(t, cfg)
	admin := g.AdminAddr().String()
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"rollout"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "missing command"},
		{[]string{"launch", "--admin", admin}, 2, `unknown command "launch"`},
		{[]string{"start", "--admin", admin}, 2, "--upstream is required"},
		{[]string{"promote", "--admin", admin}, 2, "--upstream is required"},
		{[]string{"pause", "--admin", admin, "--upstream", "api", "--full"}, 2, "--full only applies to promote"},
		{[]string{"start", "--admin", admin, "--upstream", "api", "--steps", "5,x"}, 2, `invalid --steps entry "x"`},
		{[]string{"start", "--admin", admin, "--upstream", "api", "--selector", "version"}, 2, "expected KEY=VALUE"},
		{[]string{"start", "--admin", admin, "--upstream", "api", "--max-error-rate", "lots"}, 2, `invalid --max-error-rate "lots"`},
		{[]string{"start", "--admin", admin, "--upstream", "nope", "--targets", "127.0.0.1:1"}, 1, `unknown upstream "nope"`},
		{[]string{"start", "--admin", admin, "--upstream", "api", "--targets", "127.0.0.1:1", "--steps", "50,10"}, 1, "steps[1]"},
		{[]string{"status", "--admin", admin, "--upstream", "api"}, 1, `no rollout of upstream "api"`},
	} {
		code, out, errOut := cli(c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("rollout %v: exit %d, %s%s; want %d with %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
	code, out, errOut := cli("start", "--admin", admin, "--upstream", "api", "--targets", canary.Listener.Addr().String(),
		"--steps", "10,50,100", "--pause", "1h", "--min-requests", "50", "--max-error-rate-increase", "0.02")
	if code != 0 || !strings.Contains(out, `"canary_weight": 10`) || !strings.Contains(out, `"state": "progressing"`) {
		t.Fatalf("start: %d %s %s", code, out, errOut)
	}
	if code, out, errOut = cli("start", "--admin", admin, "--upstream", "api", "--targets", canary.Listener.Addr().String()); code != 1 || !strings.Contains(errOut, "409") {
		t.Fatalf("second start: %d %s %s", code, out, errOut)
	}
	for _, step := range []struct {
		args  []string
		state string
	}{
		{[]string{"pause"}, `"state": "paused"`},
		{[]string{"resume"}, `"state": "progressing"`},
		{[]string{"promote"}, `"canary_weight": 50`}, // the next step
		{[]string{"promote", "--full"}, `"state": "promoted"`},
	} {
		code, out, errOut = cli(append(step.args, "--admin", admin, "--upstream", "api")...)
		if code != 0 || !strings.Contains(out, step.state) {
			t.Fatalf("%v: %d %s %s", step.args, code, out, errOut)
		}
	}
	if code, out, _ = cli("status", "--admin", admin); code != 0 || !strings.Contains(out, `"rollouts"`) || !strings.Contains(out, `"promoted"`) {
		t.Fatalf("status: %d %s", code, out)
	}
	if code, _, errOut = cli("abort", "--admin", admin, "--upstream", "api"); code != 1 || !strings.Contains(errOut, "not active") {
		t.Fatalf("abort after promote: %d %s", code, errOut)
	}
}

// TestRolloutStatusPages checks `rollout status` reads every page of
// /admin/rollouts: an admin API that answers two rollouts a page (as one
// with more rollouts than its page size does) gets all seven listed.
func TestRolloutStatusPages(t *testing.T) {
	var names []string
	for i := range 7 {
		names = append(names, fmt.Sprintf("up%d", i))
	}
	pages := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/rollouts" {
			http.NotFound(w, r)
			return
		}
		pages++
		p, err := httpx.ParsePage(r, "rollout", 2, 2)
		if err != nil {
			httpx.WriteProblem(w, 400, "bad_request", err.Error())
			return
		}
		start, end, next := httpx.PageRange(len(names), func(i int) string { return names[i] }, p)
		httpx.SetNextLink(w, r, "rollout", next, p.Limit)
		var list []map[string]string
		for _, n := range names[start:end] {
			list = append(list, map[string]string{"upstream": n, "state": "progressing"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"rollouts": list})
	}))
	t.Cleanup(srv.Close)
	var out, errb bytes.Buffer
	if code := run([]string{"rollout", "status", "--admin", srv.URL}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	var v struct {
		Rollouts []struct{ Upstream string } `json:"rollouts"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("status output not one JSON document: %v\n%s", err, out.String())
	}
	var got []string
	for _, r := range v.Rollouts {
		got = append(got, r.Upstream)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") || pages != 4 {
		t.Fatalf("listed %v from %d pages; want %v from 4", got, pages, names)
	}
}

// TestRolloutStatusForeignLink checks a next link to another host is not
// followed (the admin token would go with it).
func TestRolloutStatusForeignLink(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", `<http://203.0.113.9/admin/rollouts?cursor=x>; rel="next"`)
		fmt.Fprintln(w, `{"rollouts":[]}`)
	}))
	t.Cleanup(srv.Close)
	var out, errb bytes.Buffer
	if code := run([]string{"rollout", "status", "--admin", srv.URL}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "leaves") {
		t.Fatalf("exit %d: %s%s; want 1 saying the link leaves the admin API", code, out.String(), errb.String())
	}
}
