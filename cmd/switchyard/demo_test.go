package main

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemoPortInUseSaysWhichAndWhatToDo: a busy port (gateway, admin or a
// backend) is named with its flag and a way out, and the demo exits 1.
func TestDemoPortInUseSaysWhichAndWhatToDo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--listen", addr, "--admin", "127.0.0.1:0", "--backends", "127.0.0.1:0"}, "--listen"},
		{[]string{"--listen", "127.0.0.1:0", "--admin", addr, "--backends", "127.0.0.1:0"}, "--admin"},
		{[]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--backends", "127.0.0.1:0," + addr}, "--backends"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"demo", "--access-log", "off"}, tc.args...), &out, &errb)
		msg := errb.String()
		if code != 1 {
			t.Errorf("%v: exit %d, want 1 (stderr %q)", tc.args, code, msg)
		}
		for _, w := range []string{"port " + port, tc.flag, "already in use", "port 0"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, msg, w)
			}
		}
	}
}

// TestDemoPrintsBoundAddresses: with port 0 (what the busy-port message
// suggests) the demo prints the ports it got, admin included, and counts
// the backends it started.
func TestDemoPrintsBoundAddresses(t *testing.T) {
	cmd := exec.Command(os.Args[0], "demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--backends", "127.0.0.1:0,127.0.0.1:0", "--access-log", "off")
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var text strings.Builder
	deadline := time.After(10 * time.Second)
	for !strings.Contains(text.String(), "Ctrl-C stops everything.") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited; printed %q", text.String())
			}
			text.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("demo printed %q in 10s", text.String())
		}
	}
	out := text.String()
	if strings.Contains(out, ":0/") || strings.Contains(out, ":0 ") {
		t.Fatalf("demo prints a port 0 address:\n%s", out)
	}
	// zsh refuses an unquoted "?" (no matches found): URLs with a query are quoted.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "curl") && strings.Contains(l, "?") && !strings.Contains(l, "'http://") {
			t.Errorf("unquoted URL with a query: %s", l)
		}
	}
	if !strings.Contains(out, "round robin over 2 backends") {
		t.Errorf("demo with 2 backends:\n%s", out)
	}
	var admin string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "admin" {
			admin = f[1]
		}
	}
	resp, err := http.Get(admin)
	if err != nil {
		t.Fatalf("admin %q: %v", admin, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", admin, resp.StatusCode)
	}
}

// TestDemoListenSameAsAdmin: the same address for --listen and --admin is
// a usage error naming the flags, not an error in a generated file.
func TestDemoListenSameAsAdmin(t *testing.T) {
	addr := freeAddr(t)
	var out, errb bytes.Buffer
	code := run([]string{"demo", "--listen", addr, "--admin", addr, "--backends", "127.0.0.1:0"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--admin "+addr+" is the same address as --listen") ||
		strings.Contains(errb.String(), "gateway.yaml") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}
