package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// sy runs `switchyard ARGS...` as a process with stdin; it returns stdout,
// stderr and the exit status.
func sy(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1", "SWITCHYARD_BROKER=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestBrokerClientCommandsAgainstBinary starts `switchyard broker` (server
// mode, as before) and drives it with the client subcommands of the same
// binary: publish, then `receive --json | ack` as two processes.
func TestBrokerClientCommandsAgainstBinary(t *testing.T) {
	httpAddr := freeAddr(t)
	srv := exec.Command(os.Args[0], "broker", "--data", t.TempDir(), "--http", httpAddr)
	srv.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "http="+httpAddr) {
			t.Fatalf("startup line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not start within 10s")
	}
	server := "http://" + httpAddr
	if out, errOut, code := sy(t, "", "broker", "declare", "queue", "orders", "--server", server); code != 0 {
		t.Fatalf("declare: %d %s %s", code, out, errOut)
	}
	if out, _, code := sy(t, "hello\nworld\n", "broker", "publish", "orders", "--lines", "--server", httpAddr); code != 0 || !strings.Contains(out, "published message 2") {
		t.Fatalf("publish: %d %q", code, out)
	}
	received, errOut, code := sy(t, "", "broker", "receive", "orders", "--max", "5", "--json", "--server", httpAddr)
	if code != 0 || strings.Count(received, "\n") != 2 {
		t.Fatalf("receive: %d %q %s", code, received, errOut)
	}
	if _, errOut, code := sy(t, received, "broker", "ack", "--server", httpAddr); code != 0 || !strings.Contains(errOut, "acked 2 messages in queue orders") {
		t.Fatalf("ack: %d %s", code, errOut)
	}
	if out, _, code := sy(t, "", "broker", "ls", "--server", httpAddr); code != 0 || !strings.Contains(out, "queue  orders      0         in_flight=0") {
		t.Fatalf("ls: %d\n%s", code, out)
	}
	// Errors: exit 1 naming the queue; usage exit 2; the server's own
	// flags still parse as before.
	if _, errOut, code := sy(t, "", "broker", "receive", "rides", "--server", httpAddr); code != 1 ||
		errOut != "switchyard broker: receive: queue \"rides\" not found\n" {
		t.Fatalf("unknown queue: %d %q", code, errOut)
	}
	if _, _, code := sy(t, "", "broker", "receive"); code != 2 {
		t.Fatalf("usage: %d", code)
	}
	srv.Process.Kill()
	srv.Wait()
	if _, errOut, code := sy(t, "", "broker", "status", "--server", httpAddr); code != 1 ||
		!strings.Contains(errOut, "cannot reach the broker at http://"+httpAddr) {
		t.Fatalf("server down: %d %q", code, errOut)
	}
	if _, errOut, code := sy(t, "", "broker", "--data", t.TempDir(), "--http", httpAddr, "extra"); code != 2 ||
		!strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Fatalf("server mode with a stray argument: %d %q", code, errOut)
	}
}
