package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch/sim"
	"github.com/switchyard/switchyard/hitch/web/webtest"
)

// TestHitchUp runs `switchyard hitch up` as a user would, end to end: the
// test binary re-executes itself as switchyard (SWITCHYARD_MAIN=1, see
// TestMain), and hitch up starts its children (the broker, identity's
// replicas) from the same executable, which inherit the variable. Every
// listener is on an ephemeral port.
func TestHitchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Hitch")
	}
	cmd := exec.Command(os.Args[0], "hitch", "up", "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--replicas", "2", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var out syncBuf
	urls := make(chan [2]string, 1)
	go func() {
		var gw string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "gateway:" {
				gw = f[1]
			}
			if len(f) >= 2 && f[0] == "admin:" {
				urls <- [2]string{gw, strings.TrimSuffix(f[1], "/admin/status")}
			}
		}
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill() // the children die with it (Pdeathsig)
			<-exited
		}
		if t.Failed() {
			t.Logf("hitch up stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	})
	var gw, admin string
	select {
	case u := <-urls:
		gw, admin = u[0], u[1]
	case err := <-exited:
		stopped = true
		t.Fatalf("hitch up exited before it was up: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("hitch up did not print its URLs within 90s")
	}

	// Registration and login through the gateway.
	post := func(path, body string) (int, map[string]any) {
		return do(t, "POST", gw+path, "", body)
	}
	if code, b := post("/v1/auth/register", `{"role":"rider","name":"Rita","email":"rita@example.com","password":"rider pass"}`); code != 201 || b["id"] == nil {
		t.Fatalf("register rider: %d %v", code, b)
	}
	if code, b := post("/v1/auth/register", `{"role":"driver","name":"Dave","email":"dave@example.com","password":"driver pass"}`); code != 201 {
		t.Fatalf("register driver: %d %v", code, b)
	}
	if code, b := post("/v1/auth/register", `{"role":"driver","name":"Dave","email":"DAVE@example.com","password":"driver pass"}`); code != 409 {
		t.Fatalf("duplicate registration: %d %v", code, b)
	}
	login := func(email, password string) string {
		code, b := post("/v1/auth/login", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password))
		if code != 200 {
			t.Fatalf("login %s: %d %v", email, code, b)
		}
		return b["token"].(string)
	}
	rider, driver := login("rita@example.com", "rider pass"), login("dave@example.com", "driver pass")
	if code, _ := post("/v1/auth/login", `{"email":"rita@example.com","password":"wrong pass"}`); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}

	// Auth at the gateway: no token 401, a rider on a driver route 403,
	// a driver passes auth (the earnings service may have no instance:
	// anything but 401/403 shows the gateway let it through).
	if code, b := do(t, "GET", gw+"/v1/drivers/me/earnings", "", ""); code != 401 {
		t.Fatalf("no token: %d %v", code, b)
	}
	if code, b := do(t, "GET", gw+"/v1/drivers/me/earnings", "not.a.jwt", ""); code != 401 {
		t.Fatalf("bad token: %d %v", code, b)
	}
	if code, b := do(t, "GET", gw+"/v1/drivers/me/earnings", rider, ""); code != 403 {
		t.Fatalf("rider on a driver route: %d %v", code, b)
	}
	if code, b := do(t, "GET", gw+"/v1/rides/r1/receipt", driver, ""); code != 403 {
		t.Fatalf("driver on a rider route: %d %v", code, b)
	}
	if code, b := do(t, "GET", gw+"/v1/drivers/me/earnings", driver, ""); code == 401 || code == 403 {
		t.Fatalf("driver on a driver route: %d %v", code, b)
	}

	// The processes: broker and two identity replicas, all up.
	procs := processes(t, admin)
	identity0 := find(t, procs, "identity", 0)
	find(t, procs, "identity", 1)
	find(t, procs, "broker", 0)
	pids := map[int]bool{}
	for _, p := range procs {
		if p.Role != "gateway" && p.Role != "registry" {
			if p.Health != "up" || p.PID == 0 || p.Address == "" {
				t.Fatalf("process %+v: want up with a pid and an address", p)
			}
			pids[p.PID] = true
		}
	}

	// SIGKILL identity-0: the supervisor restarts it and logins work.
	if err := syscall.Kill(identity0.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := find(t, processes(t, admin), "identity", 0)
		if p.Restarts >= 1 && p.Health == "up" && p.PID != identity0.PID {
			pids[p.PID] = true
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("identity-0 not restarted: %+v", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 6; i++ { // both replicas, round robin
		login("rita@example.com", "rider pass")
	}

	// The operator view's data through the gateway (the web app's origin).
	for _, path := range []string{"/ops/admin/hitch/processes", "/ops/admin/upstreams", "/ops/v1/queues"} {
		resp, err := http.Get(gw + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !json.Valid(body) || len(body) < 10 {
			t.Errorf("GET %s through the gateway: %d %.200s", path, resp.StatusCode, body)
		}
	}

	// Every use case of the notes, through the gateway as a user would
	// (the declined payment through the card processor's faults), then
	// the web app in a real browser.
	for _, r := range sim.Check(context.Background(), sim.CheckConfig{BaseURL: gw, Decline: declineVia(admin, nil)}) {
		switch {
		case r.Err != nil:
			t.Errorf("use case %q: %v", r.Name, r.Err)
		case r.Skipped != "":
			t.Errorf("use case %q skipped: %s", r.Name, r.Skipped)
		default:
			t.Logf("use case %q: ok in %s", r.Name, r.Took.Round(time.Millisecond))
		}
	}
	t.Run("browser", func(t *testing.T) { webtest.RideFlow(t, gw) })
	t.Run("contract", func(t *testing.T) { checkHitchContract(t, gw, admin, rider) })

	// SIGTERM: everything stops, no process is left.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("hitch up after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hitch up did not stop within 60s of SIGTERM")
	}
	for pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after hitch up stopped (kill 0: %v)", pid, err)
		}
	}
}

type hitchProcess struct {
	Name     string
	Replica  int
	PID      int
	Address  string
	Health   string
	Restarts int
	Role     string
}

func processes(t *testing.T, admin string) []hitchProcess {
	t.Helper()
	resp, err := http.Get(admin + "/admin/hitch/processes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Processes []hitchProcess }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /admin/hitch/processes: %d %v", resp.StatusCode, err)
	}
	return v.Processes
}

func find(t *testing.T, procs []hitchProcess, name string, replica int) hitchProcess {
	t.Helper()
	for _, p := range procs {
		if p.Name == name && p.Replica == replica {
			return p
		}
	}
	t.Fatalf("no process %s-%d in %+v", name, replica, procs)
	return hitchProcess{}
}

func do(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s %s: %d answer is not JSON: %q", method, url, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, v
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A hitch up killed with SIGKILL cannot stop its children: the kernel
// does (Pdeathsig), so none is left behind.
func TestHitchUpKilledLeavesNoChildren(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Hitch")
	}
	cmd := exec.Command(os.Args[0], "hitch", "up", "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--replicas", "1", "--log-level", "error")
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	admin := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "admin:" {
				admin <- strings.TrimSuffix(f[1], "/admin/status")
			}
		}
		exited <- cmd.Wait()
	}()
	var a string
	select {
	case a = <-admin:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("hitch up not up within 90s")
	}
	var children []int
	for _, p := range processes(t, a) {
		if p.Role == "broker" || p.Role == "service" {
			children = append(children, p.PID)
		}
	}
	if len(children) < 2 {
		t.Fatalf("children %v: want the broker and identity", children)
	}
	cmd.Process.Kill()
	<-exited
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range children {
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("child %d outlived its SIGKILLed supervisor", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// checkHitchContract: Hitch's OpenAPI document is served, a malformed
// ride is refused at the edge naming the field, and every request and
// response of the use cases and the browser run above (plus this test's
// own) conformed: no response violated it, and the only refused request
// is the malformed one.
func checkHitchContract(t *testing.T, gw, admin, rider string) {
	resp, err := http.Get(gw + "/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(doc, []byte("openapi: 3.1")) {
		t.Errorf("GET /v1/openapi.yaml: %d %.100q", resp.StatusCode, doc)
	}
	if code, b := do(t, "GET", gw+"/.well-known/jwks.json", "", ""); code != 200 || b["keys"] == nil { // its response checked too
		t.Errorf("GET /.well-known/jwks.json: %d %v", code, b)
	}
	code, b := do(t, "POST", gw+"/v1/rides", rider, `{"from":{"lat":91,"lon":-73.98},"to":{"lat":40.76,"lon":-73.97}}`)
	vs, _ := b["violations"].([]any)
	if code != 400 || b["contract"] != "hitch" || len(vs) != 1 || vs[0].(map[string]any)["pointer"] != "/from/lat" {
		t.Errorf("a ride from latitude 91: %d %v", code, b)
	}
	resp, err = http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	value := func(name, result string) float64 {
		prefix := name + `{contract="hitch",result="` + result + `"} `
		for _, line := range strings.Split(string(metrics), "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				return f
			}
		}
		return 0
	}
	checked, refused := value("switchyard_contract_requests_total", "checked"), value("switchyard_contract_requests_total", "refused")
	rChecked, rViolations := value("switchyard_contract_responses_total", "checked"), value("switchyard_contract_responses_total", "violation")
	t.Logf("contract hitch: %v requests checked, %v refused; %v responses checked, %v violations", checked, refused, rChecked, rViolations)
	if checked < 20 || refused != 1 || rChecked < 20 || rViolations != 0 {
		t.Errorf("contract metrics: requests checked %v refused %v (want 1: the malformed ride), responses checked %v violations %v (want 0; the gateway's log names them)",
			checked, refused, rChecked, rViolations)
	}
}
