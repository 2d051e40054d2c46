package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/discovery"
)

func TestSidecarUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sc.yaml")
	os.WriteFile(cfg, []byte("service: rides\napp: 127.0.0.1:9000\ndependencies:\n  payments: {retry: {on: [teapot]}}\n"), 0o644)
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"sidecar", "--help"}, 0, "--depend", ""},
		{[]string{"sidecar"}, 2, "", "--service NAME and --app ADDR are required"},
		{[]string{"sidecar", "--service", "a"}, 2, "", "--app ADDR are required"},
		{[]string{"sidecar", "--servce", "a"}, 2, "", "did you mean --service?"},
		{[]string{"sidecar", "--service", "a", "--app", "127.0.0.1:1", "x"}, 2, "", "no positional arguments"},
		{[]string{"sidecar", "--service", "a", "--app", "127.0.0.1:1", "--ttl", "0s"}, 2, "", "invalid --ttl"},
		{[]string{"sidecar", "--service", "a", "--app", "127.0.0.1:1", "--depend", "b,"}, 2, "", "empty dependency name"},
		{[]string{"sidecar", "--service", "a", "--app", "127.0.0.1:1", "--log-level", "loud"}, 2, "", "--log-level"},
		{[]string{"sidecar", "--service", "A", "--app", "127.0.0.1:1", "--check"}, 1, "", "command line: service:"},
		{[]string{"sidecar", "--service", "a", "--app", "127.0.0.1:1", "--depend", "b,c", "--check"}, 0, "ok", ""},
		{[]string{"sidecar", "--config", cfg, "--check"}, 1, "", cfg + ":4:27: dependencies.payments.retry.on[0]"},
		{[]string{"sidecar", "--config", "/nonexistent.yaml"}, 1, "", "/nonexistent.yaml"},
		{[]string{"sidecr"}, 2, "", `did you mean "sidecar"?`},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("switchyard %v: exit %d stdout %q stderr %q; want exit %d, stdout ~%q, stderr ~%q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
	}
}

// TestBinarySidecar runs the registry and two sidecars as real processes:
// the payments app registers through its sidecar, the rides sidecar's
// outbound port reaches it, and SIGTERM deregisters it.
func TestBinarySidecar(t *testing.T) {
	regAddr := freeAddr(t)
	startRegistry(t, regAddr, t.TempDir())
	regURL := "http://" + regAddr
	c, err := discovery.NewClient(regURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	payments := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "payments %s", r.URL.Path)
	}))
	defer payments.Close()
	start := func(args ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], append([]string{"sidecar", "--registry", regURL, "--log-level", "debug"}, args...)...)
		cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
		cmd.Stdout = io.Discard
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		up := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "sidecar running") {
					up <- true
				}
			}
			up <- false
		}()
		select {
		case ok := <-up:
			if !ok {
				t.Fatal("sidecar exited before running")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("sidecar not running within 10s")
		}
		return cmd
	}
	payIn := freeAddr(t)
	pay := start("--service", "payments", "--app", strings.TrimPrefix(payments.URL, "http://"),
		"--listen", payIn, "--outbound", freeAddr(t), "--admin", freeAddr(t))
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := c.Service(context.Background(), "payments", 0, 0)
		if err == nil && len(snap.Instances) == 1 {
			if snap.Instances[0].Address != payIn {
				t.Fatalf("registered %s, want the sidecar's %s", snap.Instances[0].Address, payIn)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("payments not registered within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ridesOut := freeAddr(t)
	start("--service", "rides", "--app", "127.0.0.1:9", "--listen", freeAddr(t), "--outbound", ridesOut,
		"--admin", freeAddr(t), "--depend", "payments")
	resp, err := http.Get("http://" + ridesOut + "/payments/charge")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "payments /charge" {
		t.Fatalf("through the ambassador: %d %q", resp.StatusCode, body)
	}
	pay.Process.Signal(syscall.SIGTERM)
	if err := pay.Wait(); err != nil {
		t.Fatalf("sidecar exit: %v", err)
	}
	snap, err := c.Service(context.Background(), "payments", 0, 0)
	if err != nil || len(snap.Instances) != 0 {
		t.Fatalf("after SIGTERM: %+v %v", snap.Instances, err)
	}
}
