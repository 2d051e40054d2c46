package experiment

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchyard/switchyard/chaos"
)

// Ctrl-C during the method: the run stops, reports itself interrupted and
// not held, and still runs the rollbacks (the route's fault is gone).
func TestInterruptRunsRollbacks(t *testing.T) {
	rf, _ := chaos.NewRouteFaults(chaos.RouteFaultsOptions{})
	app := httptest.NewServer(rf.Middleware("api")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })))
	defer app.Close()
	rf.SetRoutes(map[string]*chaos.RouteFault{"api": nil})
	admin := httptest.NewServer(rf.Handler())
	defer admin.Close()
	doc := fmt.Sprintf(`title: interrupted
admin: %s
steady_state:
  probes:
    - { name: up, http: { url: "%s/" } }
method:
  - route_fault: { route: api, set: { abort_status: 503 } }
  - wait: 1h
rollbacks:
  - route_fault: { route: api, clear: true }
`, admin.URL, app.URL)
	e, err := Parse([]byte(doc), "i.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Report, 1)
	go func() { done <- Run(ctx, e, Options{Interval: 50 * time.Millisecond}) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(rf.List()) == 0 || !rf.List()[0].Active {
		if time.Now().After(deadline) {
			t.Fatal("the method did not set the fault")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // Ctrl-C
	var rep *Report
	select {
	case rep = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not stop")
	}
	if rep.Held || !rep.Interrupted || rep.After != nil {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Rollbacks) != 1 || !rep.Rollbacks[0].OK {
		t.Fatalf("rollbacks %+v", rep.Rollbacks)
	}
	if l := rf.List(); len(l) != 0 {
		t.Fatalf("fault left: %+v", l)
	}
	resp, err := http.Get(app.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the rollback: %v %v", resp, err)
	}
	resp.Body.Close()
}

// When the hypothesis does not hold before the method, the method is not
// run (the rollbacks are).
func TestNoMethodWithoutSteadyState(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	var calls int
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusNoContent)
	}))
	defer admin.Close()
	e, err := Parse([]byte(fmt.Sprintf(`title: t
admin: %s
steady_state: { probes: [ { name: up, http: { url: "%s/" } } ] }
method: [ { route_fault: { route: api, set: { abort_status: 500 } } } ]
rollbacks: [ { route_fault: { route: api, clear: true } } ]
`, admin.URL, down.URL)), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), e, Options{})
	if rep.Held || len(rep.Method) != 0 || len(rep.Rollbacks) != 1 || calls != 1 || rep.FailedProbes[0] != "up" {
		t.Fatalf("report %+v, admin calls %d", rep, calls)
	}
}

// Toxic actions go to a real chaos proxy API: add puts the fault on the
// proxy, remove takes it off (removing a missing one is fine).
func TestToxicActions(t *testing.T) {
	srv := chaos.NewServer(nil)
	defer srv.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	p, err := srv.Add(chaos.ProxyConfig{Name: "app", Listen: "127.0.0.1:0", Upstream: up.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.Handler())
	defer api.Close()
	run := func(method string) *Report {
		t.Helper()
		e, err := Parse([]byte(fmt.Sprintf(`title: toxics
chaos_api: %s
steady_state: { probes: [ { name: through-proxy, http: { url: "http://%s/" } } ] }
method:
%s
`, api.URL, p.Addr(), method)), "t.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		return Run(context.Background(), e, Options{})
	}
	rep := run(`  - toxic: { proxy: app, add: { name: slow, type: latency, latency: 1ms, stream: downstream } }`)
	if !rep.Held || len(rep.Method) != 1 || !rep.Method[0].OK {
		t.Fatalf("add: %+v", rep)
	}
	if f := p.Faults(); len(f) != 1 || f[0].Name != "slow" || f[0].Latency != time.Millisecond {
		t.Fatalf("faults after add: %+v", f)
	}
	rep = run(`  - toxic: { proxy: app, remove: slow }
  - toxic: { proxy: app, remove: slow }`)
	if !rep.Held || len(rep.Method) != 2 || len(p.Faults()) != 0 {
		t.Fatalf("remove: %+v, faults %+v", rep, p.Faults())
	}
	rep = run(`  - toxic: { proxy: nope, add: { name: x, type: reset } }`)
	if rep.Held || rep.Method[0].OK || rep.Reason == "" {
		t.Fatalf("unknown proxy: %+v", rep)
	}
}
