package up

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procState reads a process's state letter from /proc (T: stopped).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "gone"
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// POST /admin/hitch/processes/{process}/kill|pause|resume: a paused child
// is stopped (state T) and reported "paused", resumed it runs again, a
// killed one is restarted by the supervisor; a paused child still stops
// promptly when hitch up does.
func TestProcessFaults(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	var procs []*process
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for i := 0; i < 2; i++ {
		p := &process{name: "svc", replica: i, role: "service",
			argv:    []string{"/bin/sh", "-c", "echo 'hitch serve: svc-" + strconv.Itoa(i) + " ready on 127.0.0.1:1'; exec sleep 60"},
			backoff: Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond, Reset: time.Hour}, log: quiet(), out: io.Discard,
			readyLine: serveReady, ready: make(chan struct{})}
		procs = append(procs, p)
		go func() { p.run(ctx); done <- struct{}{} }()
		<-p.ready
	}
	srv := httptest.NewServer(faultHandler(procs))
	defer srv.Close()
	post := func(path string) (int, map[string]any) {
		resp, err := http.Post(srv.URL+"/admin/hitch/processes/"+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	pid := func(p *process) int { p.mu.Lock(); defer p.mu.Unlock(); return p.pid }

	// By name: the lowest running replica.
	code, out := post("svc/pause")
	if code != 200 || out["process"] != "svc-0" {
		t.Fatalf("pause: %d %v", code, out)
	}
	p0 := pid(procs[0])
	waitFor(t, "svc-0 stopped", func() bool { return procState(t, p0) == "T" })
	if in := procs[0].info(ctx, http.DefaultClient); in.Health != "paused" {
		t.Fatalf("info %+v", in)
	}
	// The next pause by name takes the next running one; resume by name the paused one.
	if code, out := post("svc/pause"); code != 200 || out["process"] != "svc-1" {
		t.Fatalf("second pause: %d %v", code, out)
	}
	if code, out := post("svc-1/resume"); code != 200 || out["process"] != "svc-1" {
		t.Fatalf("resume svc-1: %d %v", code, out)
	}
	if code, out := post("svc/resume"); code != 200 || out["process"] != "svc-0" {
		t.Fatalf("resume by name: %d %v", code, out)
	}
	waitFor(t, "svc-0 running", func() bool { return procState(t, p0) != "T" })

	// Kill: the supervisor restarts it.
	if code, out := post("svc-0/kill"); code != 200 || int(out["pid"].(float64)) != p0 {
		t.Fatalf("kill: %d %v", code, out)
	}
	waitFor(t, "svc-0 restarted", func() bool {
		in := procs[0].info(ctx, http.DefaultClient)
		return in.Restarts == 1 && in.PID != 0 && in.PID != p0
	})

	for _, c := range []struct {
		path string
		code int
	}{{"svc-0/explode", 400}, {"nope/kill", 404}, {"svc-7/kill", 404}, {"svc", 404}, {"svc-0/kill/now", 404}} {
		if code, out := post(c.path); code != c.code || out["error"] == nil {
			t.Errorf("%s: %d %v, want %d with an error", c.path, code, out, c.code)
		}
	}

	// A paused child does not hold up the stop.
	if code, _ := post("svc-1/pause"); code != 200 {
		t.Fatal(code)
	}
	start := time.Now()
	cancel()
	<-done
	<-done
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("stopping with a paused child took %s", took)
	}
}
