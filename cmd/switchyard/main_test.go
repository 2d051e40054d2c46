package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run the real binary: the test executable re-executes
// itself with SWITCHYARD_MAIN=1 and behaves as `switchyard`.
func TestMain(m *testing.M) {
	if os.Getenv("SWITCHYARD_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestUsageAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{nil, 2, "", "Usage: switchyard <command>"},
		{[]string{"--help"}, 0, "gateway", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"gatway", "--config", "x"}, 2, "", `unknown command "gatway": did you mean "gateway"?`},
		{[]string{"brokr"}, 2, "", `did you mean "broker"?`},
		{[]string{"gateway", "--help"}, 0, "--config", ""},
		{[]string{"gateway"}, 2, "", "--config FILE is required"},
		{[]string{"gateway", "--bogus"}, 2, "", "flag provided but not defined"},
		{[]string{"gateway", "--config", "/nonexistent.yaml"}, 1, "", "/nonexistent.yaml"},
		{[]string{"demo", "--help"}, 0, "--backends", ""},
		{[]string{"version"}, 0, "switchyard ", ""},
		{[]string{"hitch"}, 2, "", "Usage: switchyard hitch <command>"},
		{[]string{"hitch", "down"}, 2, "", `unknown command "down"`},
		{[]string{"hitch", "up", "--help"}, 0, "--replicas", ""},
		{[]string{"hitch", "up", "--replicas", "0"}, 2, "", "--replicas 0"},
		{[]string{"hitch", "up", "--listen", "nope"}, 1, "", `--listen "nope"`},
		{[]string{"hitch", "serve"}, 2, "", "the service NAME is required"},
		{[]string{"hitch", "serve", "identiy", "--data", "d", "--registry", "http://r"}, 2, "", `did you mean "identity"`},
		{[]string{"hitch", "serve", "identity", "--data", "d"}, 2, "", "--registry URL is required"},
		{[]string{"load", "--help"}, 0, "--rate", ""},
		{[]string{"load"}, 2, "", "URL"},
		{[]string{"load", "--rate", "-5", "http://127.0.0.1:1/"}, 2, "", "rate"},
		{[]string{"load", "--slo", "p99<fast", "http://127.0.0.1:1/"}, 2, "", "slo"},
		{[]string{"load", "--ramp", "10:5", "http://127.0.0.1:1/"}, 2, "", "ramp"},
		{[]string{"load", "--rate", "10", "ftp://127.0.0.1/"}, 2, "", "ftp"},
		{[]string{"load", "--rate", "10", "127.0.0.1:8080/hello"}, 2, "", "did you mean http://127.0.0.1:8080/hello?"},
		{[]string{"load", "--rate", "10", "localhost:8080"}, 2, "", "did you mean http://localhost:8080?"},
		{[]string{"load", "--rate", "100/s", "http://127.0.0.1:1/"}, 2, "", `invalid value "100/s" for flag -rate: want requests per second as a number, e.g. 100`},
		{[]string{"load", "http://127.0.0.1:1/"}, 2, "", "--rate R is required (requests per second, e.g. --rate 1000), or --ramp"},
		{[]string{"broker", "--data", "/nonexistent/sy", "--native-ping-interval", "30"}, 2, "", "did you mean 30s?"},
		{[]string{"broker", "pubish", "orders", "x"}, 2, "", `unknown command "pubish": did you mean "publish"?`},
		{[]string{"gateway", "--confg", "gw.yaml"}, 2, "", "flag provided but not defined: -confg (did you mean --config?)"},
		{[]string{"load", "--duraton", "1s", "http://127.0.0.1:1/"}, 2, "", "-duraton (did you mean --duration?)"},
		{[]string{"broker", "--dta", "/tmp/x"}, 2, "", "-dta (did you mean --data?)"},
		{[]string{"broker", "publish", "q", "x", "--msg-id", "a"}, 2, "", "-msg-id (did you mean --id?)"},
		{[]string{"broker", "receive", "q", "--wiat", "1s"}, 2, "", "-wiat (did you mean --wait?)"},
		{[]string{"broker", "recieve", "orders"}, 2, "", `did you mean "receive"?`},
		{[]string{"broker", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"broker", "--data", "/nonexistent/sy", "x"}, 2, "", `unexpected argument "x"`},
		{[]string{"broker", "--data", "/nonexistent/sy", "--native-write-timeout", "10"}, 2, "", "did you mean 10s?"},
		{[]string{"registry", "--help"}, 0, "--listen", ""},
		{[]string{"registry"}, 2, "", "--data DIR is required"},
		{[]string{"registry", "--dat", "/tmp/x"}, 2, "", "-dat (did you mean --data?)"},
		{[]string{"registry", "--data", "/tmp/x", "extra"}, 2, "", `switchyard registry: unexpected argument "extra": expected only flags`},
		{[]string{"gateway", "--config", "gw.yaml", "extra"}, 2, "", `switchyard gateway: unexpected argument "extra": expected only flags`},
		{[]string{"gateway", "gw.yaml"}, 2, "", `switchyard gateway: unexpected argument "gw.yaml": expected only flags`},
		{[]string{"registry", "--data", "/tmp/x", "--max-instances", "0"}, 2, "", "--max-instances 0"},
		{[]string{"registry", "--data", "/tmp/x", "--max-bytes", "0"}, 2, "", "--max-bytes 0"},
		{[]string{"registry", "--data", "/tmp/x", "--log-level", "loud"}, 2, "", "--log-level"},
		{[]string{"registy"}, 2, "", `did you mean "registry"?`},
		{[]string{"registry", "--data", "/dev/null/x", "--listen", "127.0.0.1:0"}, 1, "", "data directory"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("switchyard %v: exit %d stdout %q stderr %q; want exit %d, stdout ~%q, stderr ~%q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
	}
}

// TestHelpGoesToStdout: --help of every command and subcommand prints its
// usage on stdout (so `switchyard load --help | less` works) and exits 0,
// as `switchyard --help` and `switchyard broker help` do.
func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"gateway", "--help"}, {"gateway", "-h"}, {"demo", "--help"}, {"load", "--help"},
		{"broker", "--help"}, {"broker", "repair", "--help"}, {"broker", "help"},
		{"broker", "publish", "--help"}, {"broker", "receive", "-h"}, {"broker", "read", "s", "--help"},
		{"registry", "--help"},
	} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), "Usage: switchyard") || errb.Len() != 0 {
			t.Errorf("switchyard %v: exit %d, stdout %q, stderr %q; want exit 0, usage on stdout only", args, code, out.String(), errb.String())
		}
	}
	// A flag error still goes to stderr, with exit 2.
	for _, args := range [][]string{{"gateway", "--bogus"}, {"broker", "publish", "q", "--bogus"}, {"load", "--bogus"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "bogus") {
			t.Errorf("switchyard %v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}

func TestGatewayCheckNamesFileAndKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(path, []byte("listen: 127.0.0.1:1\nupstreams:\n  a: {targets: [{address: 'h:1'}], retry: {backoff: sometimes}}\nroutes: [{upstream: a}]\n"), 0o644)
	for _, args := range [][]string{{"gateway", "--check", "--config", path}, {"gateway", "--config", path}} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), path+":3:44: upstreams.a.retry.backoff") {
			t.Fatalf("%v: exit %d, stderr %q: want 1 naming the file, line and upstreams.a.retry.backoff", args, code, errb.String())
		}
	}
	good := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(good, []byte("listen: 127.0.0.1:1\nupstreams:\n  a: {targets: [{address: 'h:1'}]}\nroutes: [{upstream: a}]\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"gateway", "--check", "--config", good}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ok") {
		t.Fatalf("valid config: exit %d %q %q", code, out.String(), errb.String())
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinarySIGHUPReloadAndSIGTERMDrain runs the real gateway process:
// SIGHUP swaps the config, a broken config on SIGHUP is refused, and
// SIGTERM lets an in-flight request finish before exiting 0.
func TestBinarySIGHUPReloadAndSIGTERMDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "a")
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	listen := freeAddr(t)
	cfgFor := func(target string) string {
		return fmt.Sprintf("listen: %s\naccess_log: off\nupstreams:\n  u: {targets: [{address: %s}]}\nroutes: [{upstream: u}]\n",
			listen, strings.TrimPrefix(target, "http://"))
	}
	path := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(path, []byte(cfgFor(a.URL)), 0o644)

	cmd := exec.Command(os.Args[0], "gateway", "--config", path)
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	waitLog := func(substr string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-logs:
				if !ok {
					t.Fatalf("gateway exited before logging %q", substr)
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-deadline:
				t.Fatalf("no log line containing %q within 10s", substr)
			}
		}
	}
	waitLog("gateway listening")
	body := func(p string) string {
		resp, err := http.Get("http://" + listen + p)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		return string(bb)
	}
	if got := body("/"); got != "a" {
		t.Fatalf("before reload: %q", got)
	}
	os.WriteFile(path, []byte(cfgFor(b.URL)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reloaded")
	if got := body("/"); got != "b" {
		t.Fatalf("after SIGHUP: %q, want b", got)
	}
	os.WriteFile(path, []byte("listen: [broken"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("reload refused")
	if got := body("/"); got != "b" {
		t.Fatalf("after refused SIGHUP: %q, want b", got)
	}

	// Graceful SIGTERM: an in-flight request to a finishes.
	os.WriteFile(path, []byte(cfgFor(a.URL)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reloaded")
	slow := make(chan string, 1)
	go func() { slow <- body("/slow") }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("slow request did not reach the backend")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitLog("gateway shutting down")
	close(release)
	if got := <-slow; got != "a" {
		t.Fatalf("in-flight request during SIGTERM: %q", got)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
}
