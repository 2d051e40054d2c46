package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
)

// startRegistry runs `switchyard registry` as a real process and waits
// until it listens.
func startRegistry(t *testing.T, listen, data string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "registry", "--listen", listen, "--data", data)
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "registry listening") {
				up <- true
			}
		}
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatal("registry exited before listening")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("registry not listening within 10s")
	}
	return cmd
}

// TestBinaryRegistryDurable: registrations survive a graceful restart
// (SIGTERM) and a crash (SIGKILL) of the registry process.
func TestBinaryRegistryDurable(t *testing.T) {
	listen, data := freeAddr(t), t.TempDir()
	ctx := context.Background()
	c, err := discovery.NewClient("http://"+listen, nil)
	if err != nil {
		t.Fatal(err)
	}
	leases := map[string]string{}
	reg := func(id, addr string) {
		t.Helper()
		in, err := c.RegisterOnce(ctx, discovery.Registration{Service: "rides", ID: id, Address: addr, TTL: config.Duration(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		leases[id] = in.Lease
	}
	ids := func() string {
		t.Helper()
		s, err := c.Service(ctx, "rides", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range s.Instances {
			out = append(out, in.ID+"@"+in.Address)
		}
		return strings.Join(out, ",")
	}

	cmd := startRegistry(t, listen, data)
	reg("a", "127.0.0.1:9001")
	reg("b", "127.0.0.1:9002")
	if err := c.WithLease(leases["b"]).Deregister(ctx, "rides", "b"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("registry exit after SIGTERM: %v", err)
	}

	cmd = startRegistry(t, listen, data)
	if got := ids(); got != "a@127.0.0.1:9001" {
		t.Fatalf("after graceful restart: %q", got)
	}
	reg("c", "127.0.0.1:9003")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	startRegistry(t, listen, data)
	if got := ids(); got != "a@127.0.0.1:9001,c@127.0.0.1:9003" {
		t.Fatalf("after SIGKILL and restart: %q", got)
	}
}
