package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The active-passive test: two gateways, each with keepalived beside it
// in its own network namespace, share a virtual address; a client in a
// third namespace sends a bounded stream of requests to that address
// while the active gateway is killed with SIGKILL. keepalived's check is
// examples/ha/check-gateway.sh against the gateway's own GET /healthz, and
// its config is examples/ha/keepalived.conf.in, filled as envsubst would.

// haNetnsNeeds skips the test, saying why, unless it can create network
// namespaces and run keepalived.
func haNetnsNeeds(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces (ip netns) and run keepalived; CI runs as root")
	}
	for _, bin := range []string{"ip", "keepalived", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipped: %s not found in PATH (apt-get install iproute2 keepalived curl)", bin)
		}
	}
}

// sh runs a command and fails the test with its output if it fails.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netnsProc is a process started inside a namespace with `ip netns exec`
// (which execs the command, so the PID is the command's own).
type netnsProc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

func (p *netnsProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startInNetns starts argv in namespace ns ("": this one), collecting
// stdout and stderr;
// the test's cleanup kills it by PID and waits for it.
func startInNetns(t *testing.T, ns, name string, env []string, argv ...string) *netnsProc {
	t.Helper()
	p := &netnsProc{name: name, done: make(chan struct{})}
	if ns == "" {
		p.cmd = exec.Command(argv[0], argv[1:]...)
	} else {
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	}
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { p.cmd.Wait(); pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.output()
			if len(out) > 3000 {
				out = "..." + out[len(out)-3000:]
			}
			t.Logf("%s output:\n%s", name, out)
		}
	})
	return p
}

func (p *netnsProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// waitFor polls cond every 20ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHAHelperProcess is not a test: the namespace test runs this binary
// inside a namespace as a backend or as the client.
func TestHAHelperProcess(t *testing.T) {
	switch os.Getenv("SY_HA_HELPER") {
	case "backend":
		ln, err := net.Listen("tcp", os.Getenv("SY_HA_ADDR"))
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("backend listening")
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend\n") }))
		os.Exit(0)
	case "client":
		// One request every 10ms, each on a new connection (so each one
		// asks the network where the address is now), 500ms timeout; one
		// line per request. Bounded: stops after SY_HA_MAX requests (the
		// test kills it sooner).
		url := os.Getenv("SY_HA_URL")
		var max int
		fmt.Sscan(os.Getenv("SY_HA_MAX"), &max)
		c := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := 0; i < max; i++ {
			t0 := time.Now()
			resp, err := c.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				fmt.Printf("fail %d %v\n", t0.UnixNano(), err)
			} else {
				fmt.Printf("ok %d\n", t0.UnixNano())
			}
			time.Sleep(10 * time.Millisecond)
		}
		os.Exit(0)
	}
}

func TestHAActivePassiveKeepalived(t *testing.T) {
	haNetnsNeeds(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile("../../examples/ha/keepalived.conf.in")
	if err != nil {
		t.Fatal(err)
	}
	check, err := filepath.Abs("../../examples/ha/check-gateway.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Namespaces: <p>b holds the bridge, <p>c the client and the backend,
	// <p>1 and <p>2 a gateway and a keepalived each.
	p := fmt.Sprintf("syha%d-", os.Getpid())
	nsB, nsC, ns1, ns2 := p+"b", p+"c", p+"1", p+"2"
	for _, ns := range []string{nsB, nsC, ns1, ns2} {
		sh(t, "ip", "netns", "add", ns)
		// Deleting a namespace removes its veth end and so its peer; the
		// processes in it are killed by PID first (cleanups run in reverse).
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh(t, "ip", "-n", nsB, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", nsB, "link", "set", "br0", "up")
	addr := map[string]string{nsC: "10.77.0.10", ns1: "10.77.0.1", ns2: "10.77.0.2"}
	for i, ns := range []string{nsC, ns1, ns2} {
		v := fmt.Sprint("v", i)
		sh(t, "ip", "-n", nsB, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh(t, "ip", "-n", nsB, "link", "set", v, "master", "br0", "up")
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
		sh(t, "ip", "-n", ns, "addr", "add", addr[ns]+"/24", "dev", "eth0")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	const vip = "10.77.0.100"

	dir := t.TempDir()
	backend := startInNetns(t, nsC, "backend", []string{"SY_HA_HELPER=backend", "SY_HA_ADDR=10.77.0.10:8000"},
		exe, "-test.run=^TestHAHelperProcess$")
	waitFor(t, "the backend", 10*time.Second, func() bool { return strings.Contains(backend.output(), "backend listening") })

	gwCfg := filepath.Join(dir, "gw.yaml")
	os.WriteFile(gwCfg, []byte("listen: 0.0.0.0:8080\nadmin: 127.0.0.1:9901\naccess_log: off\n"+
		"upstreams:\n  be: {targets: [{address: 10.77.0.10:8000}]}\nroutes: [{upstream: be}]\n"), 0o644)
	gw := map[string]*netnsProc{}
	for _, ns := range []string{ns1, ns2} {
		gw[ns] = startInNetns(t, ns, "gateway "+ns, []string{"SWITCHYARD_MAIN=1"}, exe, "gateway", "--config", gwCfg)
	}
	for ns, g := range gw {
		waitFor(t, "gateway in "+ns, 30*time.Second, func() bool { return strings.Contains(g.output(), "gateway listening") })
	}

	ka := map[string]*netnsProc{}
	for i, ns := range []string{ns1, ns2} {
		peer := map[string]string{ns1: addr[ns2], ns2: addr[ns1]}[ns]
		vars := map[string]string{
			"ROUTER_ID": "gw" + fmt.Sprint(i+1), "INTERFACE": "eth0", "VRID": "51",
			"PRIORITY": fmt.Sprint(150 - 50*i), "SRC_IP": addr[ns], "PEER_IP": peer, "VIP": vip + "/24",
			"CHECK_SCRIPT": check, "ADMIN_URL": "http://127.0.0.1:9901", "LISTEN_URL": "http://127.0.0.1:8080/",
			// The script lives in the source tree, whose directories may
			// be writable by others; production keeps it root-only and
			// sets enable_script_security (docs/redundancy.md).
			"SCRIPT_SECURITY": "",
		}
		conf := os.Expand(string(tmpl), func(k string) string {
			v, ok := vars[k]
			if !ok {
				t.Fatalf("keepalived.conf.in uses ${%s}, which the test does not set", k)
			}
			return v
		})
		path := filepath.Join(dir, ns+".keepalived.conf")
		os.WriteFile(path, []byte(conf), 0o600)
		pid := func(s string) string { return filepath.Join(dir, ns+"."+s+".pid") }
		// -n: stay in the foreground (so the PID is keepalived's), -l: log
		// to stdout, -P: VRRP only; own pid files so several runs coexist.
		k := startInNetns(t, ns, "keepalived "+ns, nil, "keepalived", "-n", "-l", "-D", "-P", "-f", path,
			"-p", pid("main"), "-r", pid("vrrp"), "-c", pid("checkers"))
		// SIGTERM first, so keepalived stops its VRRP child and drops the
		// address itself (the child also exits when its parent is killed).
		t.Cleanup(func() {
			_ = k.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-k.done:
			case <-time.After(5 * time.Second):
			}
		})
		ka[ns] = k
	}
	hasVIP := func(ns string) bool {
		out, _ := exec.Command("ip", "-n", ns, "-4", "-br", "addr", "show", "dev", "eth0").CombinedOutput()
		return strings.Contains(string(out), vip+"/")
	}
	waitFor(t, "the VIP on the first gateway", 30*time.Second, func() bool { return hasVIP(ns1) })

	client := startInNetns(t, nsC, "client", []string{"SY_HA_HELPER=client", "SY_HA_URL=http://" + vip + ":8080/", "SY_HA_MAX=6000"},
		exe, "-test.run=^TestHAHelperProcess$")
	counts := func() (ok, fail int) {
		for _, l := range strings.Split(client.output(), "\n") {
			switch {
			case strings.HasPrefix(l, "ok "):
				ok++
			case strings.HasPrefix(l, "fail "):
				fail++
			}
		}
		return
	}
	waitFor(t, "50 requests through the VIP", 30*time.Second, func() bool { ok, _ := counts(); return ok >= 50 })
	if _, fail := counts(); fail != 0 {
		t.Fatalf("requests failed before the kill:\n%s", client.output())
	}

	killed := time.Now()
	gw[ns1].kill()
	waitFor(t, "the VIP to move to the second gateway", 30*time.Second, func() bool { return hasVIP(ns2) && !hasVIP(ns1) })
	moved := time.Since(killed)
	okAtMove, _ := counts()
	waitFor(t, "50 requests through the second gateway", 30*time.Second, func() bool { ok, _ := counts(); return ok >= okAtMove+50 })
	client.kill()

	// The client's own view: the failed requests and the first success
	// after the kill that follows them.
	var failed int
	var firstFail, recovered time.Time
	for _, l := range strings.Split(client.output(), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		var ns int64
		fmt.Sscan(f[1], &ns)
		at := time.Unix(0, ns)
		switch f[0] {
		case "fail":
			failed++
			if firstFail.IsZero() {
				firstFail = at
			}
			recovered = time.Time{}
		case "ok":
			if !firstFail.IsZero() && recovered.IsZero() && at.After(killed) {
				recovered = at
			}
		}
	}
	outage := time.Duration(0)
	if !recovered.IsZero() {
		outage = recovered.Sub(firstFail)
	}
	t.Logf("active-passive: VIP moved %v after SIGKILL of the active gateway; %d requests failed (client saw errors for %v, one request every ~10ms)",
		moved.Round(time.Millisecond), failed, outage.Round(time.Millisecond))
	if failed == 0 {
		// Every request after the kill reached the second gateway, which
		// can only happen if the VIP moved before the next request.
		t.Logf("no request failed")
	}
	if !strings.Contains(ka[ns2].output(), "Entering MASTER STATE") {
		t.Errorf("keepalived on the second gateway never logged MASTER:\n%s", ka[ns2].output())
	}
	if !strings.Contains(ka[ns1].output(), "FAULT") {
		t.Errorf("keepalived on the first gateway never went to FAULT after its gateway died:\n%s", ka[ns1].output())
	}
}
