package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryBrokerServesMetrics runs `switchyard broker` and scrapes
// GET /metrics on its --http listener after a publish.
func TestBinaryBrokerServesMetrics(t *testing.T) {
	httpAddr, pprofAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(os.Args[0], "broker", "--data", t.TempDir(), "--http", httpAddr, "--pprof", pprofAddr)
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "switchyard broker: http="+httpAddr) || !strings.Contains(line, "pprof="+pprofAddr) {
			t.Fatalf("startup line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not start within 10s")
	}
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	// Profiles are on their own listener only, never on the public API.
	if resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET pprof goroutine profile: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if st, _ := do("GET", "/debug/pprof/", ""); st != 404 {
		t.Fatalf("GET /debug/pprof/ on the API listener: %d, want 404", st)
	}
	if st, body := do("PUT", "/v1/queues/orders", ""); st != 200 {
		t.Fatalf("declare: %d %s", st, body)
	}
	if st, body := do("POST", "/v1/queues/orders/messages", "hello"); st != 201 {
		t.Fatalf("publish: %d %s", st, body)
	}
	st, body := do("GET", "/metrics", "")
	if st != 200 {
		t.Fatalf("GET /metrics: %d %s", st, body)
	}
	for _, want := range []string{
		`switchyard_broker_queue_published_total{queue="orders"} 1`,
		`switchyard_broker_queue_depth{queue="orders"} 1`,
		`switchyard_broker_fsync_duration_seconds_count{log="queues"}`,
		`switchyard_broker_publish_confirm_seconds_bucket`,
		`go_goroutines `,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("broker exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not exit after SIGTERM")
	}
}

// TestBinaryBrokerDataDirLocked starts two `switchyard broker` processes
// on one --data directory: the second exits with status 1 and a message
// naming the first one's pid.
func TestBinaryBrokerDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	first := exec.Command(os.Args[0], "broker", "--data", dir, "--http", "127.0.0.1:0")
	first.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, _ := first.StdoutPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.Process.Signal(syscall.SIGKILL)
		first.Wait()
	}()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "switchyard broker: http=") {
			t.Fatalf("startup line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first broker did not start within 10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, os.Args[0], "broker", "--data", dir, "--http", "127.0.0.1:0")
	second.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second broker on the same --data: %v (output %q), want exit status 1", err, out)
	}
	want := "in use by process " + strconv.Itoa(first.Process.Pid)
	if !strings.Contains(string(out), want) {
		t.Fatalf("second broker said %q, want it to contain %q", out, want)
	}
}
